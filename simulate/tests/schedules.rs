//! `simulate` replays scheduled windows on the wall clock the replay starts at (`--start`,
//! default Monday 2026-01-05 00:00 UTC): weekday-morning traffic finds a replica warmed for the
//! 09:00 window instead of paying a cold start each morning.

mod common;

use common::{config, jsonl, run};
use infergate_simulate::PolicyKind;

/// One request at Monday 00:00:01 (the simulator makes a deployment at its first request),
/// then four just after 09:00 UTC on each weekday of the first week.
fn weekday_mornings() -> Vec<(f64, u32, u32)> {
    let first = std::iter::once((1000.0, 10, 50));
    first
        .chain((0..5).flat_map(|day| {
            (0..4).map(move |i| {
                let t = f64::from(day) * 86_400.0 + 9.0 * 3600.0 + 30.0 + f64::from(i) * 60.0;
                (t * 1000.0, 10, 50)
            })
        }))
        .collect()
}

#[test]
fn a_weekday_window_warms_a_replica_before_the_morning_traffic() {
    let base = "min_replicas = 0\nmax_replicas = 2\ntarget_utilization = 100\nautoscaling_window = \"10s\"\nscale_down_delay = \"0s\"";
    let window = format!(
        "{base}\n[[deployments.m.schedule]]\ncron = \"0 9 * * 1-5\"\ntz = \"UTC\"\nduration = \"1h\"\nmin_replicas = 1\nprewarm = \"2m\""
    );
    let cold = run(
        jsonl(&weekday_mornings()),
        config(base),
        &[PolicyKind::Infergate],
    );
    let warm = run(
        jsonl(&weekday_mornings()),
        config(&window),
        &[PolicyKind::Infergate],
    );
    let (c, w) = (
        cold.total("infergate").unwrap(),
        warm.total("infergate").unwrap(),
    );
    assert_eq!((c.served, w.served), (21, 21));
    // Without the window every morning's first request waits for a 30 s cold start (6 of 21
    // with the midnight one).
    assert!(c.wait_ms.p95 >= 25_000.0, "{c:?}");
    // With it the replica is ready at 09:00: only the midnight request waits.
    assert_eq!(w.wait_ms.p95, 0.0, "{w:?}");
    assert_eq!(
        w.cold_starts, 6,
        "the midnight one, then one prewarm per weekday: {w:?}"
    );
    // It costs the hours it is held: 1 h + 2 min on each of the first four mornings (the books
    // close a while after the last request, inside Friday's window).
    assert!(
        w.gpu_seconds > 4.0 * 3720.0 && w.gpu_seconds < 5.0 * 3800.0,
        "{w:?}"
    );
}
