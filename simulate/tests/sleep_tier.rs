//! `simulate` replays the sleep tier: with one replica kept (`min_replicas = 1`), bursts
//! separated by quiet gaps longer than `sleep_after` but shorter than `idle_after` cost only
//! wake-ups (each the model's wake time, 2 s), where `mode = "stop"` pays a cold start (30 s) for
//! each; and the time asleep is not GPU time.

mod common;

use common::{config, jsonl, run};
use infergate_simulate::PolicyKind;

/// Five bursts of 4 requests, 10 minutes apart.
fn bursts() -> Vec<(f64, u32, u32)> {
    (0..5)
        .flat_map(|b| {
            (0..4).map(move |i| (f64::from(b) * 600_000.0 + f64::from(i) * 500.0, 10, 50))
        })
        .collect()
}

#[test]
fn a_sleeping_replica_is_woken_not_started_again_and_sleeps_off_the_gpu_bill() {
    let sleep = "min_replicas = 1\nmax_replicas = 1\nautoscaling_window = \"10s\"\nscale_down_delay = \"0s\"\n\
                 hibernation = { mode = \"sleep\", sleep_after = \"60s\", idle_after = \"2h\" }";
    let stop = "min_replicas = 1\nmax_replicas = 1\nautoscaling_window = \"10s\"\nscale_down_delay = \"0s\"\n\
                hibernation = { idle_after = \"60s\" }";
    let asleep = run(jsonl(&bursts()), config(sleep), &[PolicyKind::Infergate]);
    let stopped = run(jsonl(&bursts()), config(stop), &[PolicyKind::Infergate]);
    let (a, s) = (
        asleep.total("infergate").unwrap(),
        stopped.total("infergate").unwrap(),
    );
    assert_eq!((a.served, s.served), (20, 20));
    assert_eq!(
        a.cold_starts, 0,
        "the one replica runs from the start: {a:?}"
    );
    assert_eq!(a.wake_ups, 4, "{a:?}");
    assert!(s.cold_starts >= 4, "{s:?}");
    assert!(a.sleeping_seconds > 4.0 * 400.0, "{a:?}");
    // Woken in 2 s instead of a 30 s cold start: the waits are shorter.
    assert!(a.wait_ms.p99 < s.wait_ms.p99, "{a:?} {s:?}");
    eprintln!(
        "sleep: {} GPU-s, {} wake-ups, wait p99 {} ms; stop: {} GPU-s, {} cold starts, wait p99 {} ms",
        a.gpu_seconds, a.wake_ups, a.wait_ms.p99, s.gpu_seconds, s.cold_starts, s.wait_ms.p99
    );
}
