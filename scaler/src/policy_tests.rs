//! Virtual-time tests of the autoscaling policy, one per rule, plus property tests.

use super::*;
use proptest::prelude::*;

const S: Duration = Duration::from_secs(1);

fn secs(t: u64) -> Duration {
    Duration::from_secs(t)
}

fn settings(min: u32, max: u32) -> Settings {
    Settings {
        min_replicas: min,
        max_replicas: max,
        autoscaling_window: 60 * S,
        scale_down_delay: 900 * S,
        concurrency_target: 1,
        target_utilization: 70,
        metric: Metric::Concurrency,
        kv_cache_target: 0.8,
    }
}

/// `decide` with `current` ready replicas and none starting.
fn decide_ready(
    s: &Settings,
    history: &[LoadSample],
    current: u32,
    memory: PolicyMemory,
    now: Duration,
) -> Decision {
    let replicas = ReplicaCounts {
        starting: 0,
        ready: current,
    };
    decide(s, history, replicas, memory, now)
}

/// One sample per second with the given load, from `from` to `to` inclusive.
fn flat(from: u64, to: u64, load: f64) -> Vec<LoadSample> {
    (from..=to)
        .map(|t| LoadSample { at: secs(t), load })
        .collect()
}

/// Runs the policy once per second over `history`, actuating every decision at once.
fn replay(s: &Settings, history: &[LoadSample], start: u32, until: u64) -> Vec<u32> {
    let (mut current, mut memory, mut out) = (start, PolicyMemory::default(), vec![]);
    for t in 0..=until {
        let d = decide_ready(s, history, current, memory, secs(t));
        current = d.desired;
        memory = d.memory;
        out.push(current);
    }
    out
}

#[test]
fn desired_is_ceil_of_load_over_target_times_utilization() {
    let s = Settings {
        concurrency_target: 4,
        target_utilization: 50,
        ..settings(0, 100)
    };
    assert_eq!(s.replicas_for(0.0), 0);
    assert_eq!(s.replicas_for(2.0), 1);
    assert_eq!(s.replicas_for(2.1), 2);
    assert_eq!(s.replicas_for(10.0), 5);
    let s = settings(0, 100); // 1 × 70 %
    assert_eq!(s.replicas_for(1.4), 2);
    assert_eq!(s.replicas_for(7.0), 10);
}

#[test]
fn desired_is_clamped_to_min_and_max() {
    let s = settings(2, 5);
    assert_eq!(s.replicas_for(0.0), 2);
    assert_eq!(s.replicas_for(1000.0), 5);
}

#[test]
fn first_request_at_zero_scales_up_at_once() {
    // Not on a tick, not after a window: the single instantaneous sample is enough.
    let s = Settings {
        target_utilization: 100,
        ..settings(0, 3)
    };
    let history = [LoadSample {
        at: 100 * S,
        load: 1.0,
    }];
    let d = decide_ready(&s, &history, 0, PolicyMemory::default(), 100 * S);
    assert_eq!((d.desired, d.reason), (1, Reason::ScaleUp));
}

#[test]
fn scale_up_happens_as_soon_as_desired_exceeds_current() {
    let s = settings(0, 10);
    let mut history = flat(0, 59, 0.7);
    history.push(LoadSample {
        at: 60 * S,
        load: 3.5,
    });
    let d = decide_ready(&s, &history, 1, PolicyMemory::default(), 60 * S);
    assert_eq!((d.desired, d.reason), (5, Reason::ScaleUp));
}

#[test]
fn starting_replicas_count_as_capacity_already_asked_for() {
    // 3 replicas starting for a load that needs 3: nothing more is started.
    let s = settings(0, 10);
    let history = flat(0, 10, 2.1);
    let starting = ReplicaCounts {
        starting: 3,
        ready: 0,
    };
    let d = decide(&s, &history, starting, PolicyMemory::default(), 10 * S);
    assert_eq!((d.desired, d.reason), (3, Reason::Steady));
    // One ready and one starting for the same load: one more.
    let mixed = ReplicaCounts {
        starting: 1,
        ready: 1,
    };
    let d = decide(&s, &history, mixed, PolicyMemory::default(), 10 * S);
    assert_eq!((d.desired, d.reason), (3, Reason::ScaleUp));
}

#[test]
fn kv_cache_usage_divides_by_the_kv_cache_target() {
    let s = Settings {
        metric: Metric::KvCacheUsage,
        kv_cache_target: 0.5,
        ..settings(0, 10)
    };
    // Two replicas at 90 % and 60 % of their KV cache: 1.5 / 0.5 = 3.
    let d = decide_ready(&s, &flat(0, 10, 1.5), 2, PolicyMemory::default(), 10 * S);
    assert_eq!((d.desired, d.reason), (3, Reason::ScaleUp));
}

#[test]
fn burst_during_cold_start_asks_for_at_most_ceil_n_over_t_u_and_never_more_than_max() {
    let s = Settings {
        concurrency_target: 4,
        target_utilization: 100,
        ..settings(0, 100)
    };
    let d = decide_ready(
        &s,
        &[LoadSample { at: S, load: 50.0 }],
        1,
        PolicyMemory::default(),
        S,
    );
    assert_eq!(d.desired, 13);
    let s = Settings {
        max_replicas: 4,
        ..s
    };
    let d = decide_ready(
        &s,
        &[LoadSample { at: S, load: 50.0 }],
        1,
        PolicyMemory::default(),
        S,
    );
    assert_eq!(
        d.desired, 4,
        "traffic beyond max waits; it does not start replicas"
    );
}

#[test]
fn no_scale_down_before_the_delay_then_halves_the_excess_each_window() {
    let s = settings(0, 10); // window 60 s, delay 900 s
                             // 10 replicas busy until t = 100, then no load at all.
    let mut history = flat(0, 100, 7.0);
    history.extend(flat(101, 3000, 0.0));
    let counts = replay(&s, &history, 10, 3000);
    // The windowed average drops below the threshold during the minute after the load stops.
    let first_drop = counts.iter().position(|&c| c < 10).unwrap() as u64;
    assert!(
        first_drop >= 101 + 900,
        "scaled down at {first_drop} s, before the delay"
    );
    // Then halving steps, one window apart: 10 → 5 → 2 → 1 → 0.
    let steps: Vec<(u64, u32)> = counts
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] != w[0])
        .map(|(t, w)| (t as u64 + 1, w[1]))
        .collect();
    assert_eq!(
        steps.iter().map(|s| s.1).collect::<Vec<_>>(),
        vec![5, 2, 1, 0]
    );
    for pair in steps.windows(2) {
        assert_eq!(
            pair[1].0 - pair[0].0,
            60,
            "steps must be one autoscaling_window apart: {steps:?}"
        );
    }
}

#[test]
fn scale_down_stops_at_min_replicas() {
    let s = settings(3, 10);
    let mut history = flat(0, 100, 7.0);
    history.extend(flat(101, 4000, 0.0));
    let counts = replay(&s, &history, 10, 4000);
    assert_eq!(*counts.last().unwrap(), 3);
    assert!(counts.iter().all(|&c| c >= 3));
}

#[test]
fn load_returning_during_the_countdown_cancels_it() {
    let s = settings(0, 10);
    let mut history = flat(0, 100, 7.0);
    history.extend(flat(101, 600, 0.0)); // quiet for ~8 minutes (< 15 min delay)
    history.extend(flat(601, 700, 7.0)); // back at full load
    history.extend(flat(701, 1500, 0.0)); // quiet again, for less than delay + window
    let counts = replay(&s, &history, 10, 1500);
    assert!(
        counts.iter().all(|&c| c == 10),
        "the countdown restarted when load came back"
    );
}

#[test]
fn fixed_scaling_when_min_equals_max() {
    let s = settings(4, 4);
    let mut history = flat(0, 100, 100.0);
    history.extend(flat(101, 3000, 0.0));
    assert!(replay(&s, &history, 4, 3000).iter().all(|&c| c == 4));
}

#[test]
fn settings_changed_below_current_moves_to_the_new_bounds() {
    let s = settings(0, 2);
    let d = decide_ready(&s, &flat(0, 10, 7.0), 5, PolicyMemory::default(), 10 * S);
    assert_eq!((d.desired, d.reason), (2, Reason::Bounds));
}

fn arb_history() -> impl Strategy<Value = Vec<LoadSample>> {
    prop::collection::vec(0.0f64..50.0, 1..400).prop_map(|loads| {
        loads
            .into_iter()
            .enumerate()
            .map(|(t, load)| LoadSample {
                at: secs(t as u64),
                load,
            })
            .collect()
    })
}

fn arb_settings() -> impl Strategy<Value = Settings> {
    (
        0u32..5,
        1u32..20,
        10u64..120,
        0u64..300,
        1u32..8,
        1u32..=100,
    )
        .prop_map(|(min, extra, window, delay, target, util)| Settings {
            min_replicas: min,
            max_replicas: min.max(1) + extra - 1,
            autoscaling_window: secs(window),
            scale_down_delay: secs(delay),
            concurrency_target: target,
            target_utilization: util,
            metric: Metric::Concurrency,
            kv_cache_target: 0.8,
        })
}

proptest! {
    #[test]
    fn desired_always_within_min_and_max(s in arb_settings(), history in arb_history(), start in 0u32..30) {
        let until = history.len() as u64 + 200;
        let start = start.clamp(s.min_replicas, s.max_replicas);
        for c in replay(&s, &history, start, until) {
            prop_assert!(c >= s.min_replicas && c <= s.max_replicas);
        }
    }

    #[test]
    fn never_scales_down_before_the_delay(s in arb_settings(), history in arb_history()) {
        let (mut current, mut memory) = (s.min_replicas, PolicyMemory::default());
        let mut above_until = Duration::ZERO; // last time windowed desired was >= current
        for t in 0..(history.len() as u64 + 200) {
            let now = secs(t);
            let d = decide_ready(&s, &history, current, memory, now);
            if d.windowed_desired >= current {
                above_until = now;
            }
            if d.desired < current && d.reason == Reason::ScaleDown {
                prop_assert!(now.saturating_sub(above_until) >= s.scale_down_delay,
                    "scaled down at {now:?}, load was high at {above_until:?}");
            }
            current = d.desired;
            memory = d.memory;
        }
    }

    #[test]
    fn never_more_replicas_than_the_burst_formula_allows(s in arb_settings(), history in arb_history()) {
        let (mut current, mut memory) = (s.min_replicas, PolicyMemory::default());
        for t in 0..(history.len() as u64) {
            let now = secs(t);
            let d = decide_ready(&s, &history, current, memory, now);
            if d.desired > current {
                let peak = d.average_load.max(d.current_load);
                let bound = ((peak / s.per_replica()) - 1e-9).ceil().max(0.0) as u32;
                prop_assert!(d.desired <= bound.max(s.min_replicas).min(s.max_replicas));
            }
            current = d.desired;
            memory = d.memory;
        }
    }
}

#[test]
fn first_deploy_starts_max_1_min_replicas_and_holds_them_until_ready() {
    let s = settings(0, 5);
    let memory = PolicyMemory::first_deploy(&s);
    let none = ReplicaCounts::default();
    let d = decide(&s, &[], none, memory, S);
    assert_eq!((d.desired, d.reason), (1, Reason::FirstDeploy));
    // Still starting, no load, long after the delay would have passed: held.
    let starting = ReplicaCounts {
        starting: 1,
        ready: 0,
    };
    let d = decide(&s, &flat(0, 2000, 0.0), starting, d.memory, 2000 * S);
    assert_eq!((d.desired, d.reason), (1, Reason::FirstDeploy));
    // Ready once: from then on the load rules apply, and the delay counts from here.
    let ready = ReplicaCounts {
        starting: 0,
        ready: 1,
    };
    let d = decide(&s, &flat(0, 2001, 0.0), ready, d.memory, 2001 * S);
    assert_eq!((d.desired, d.reason), (1, Reason::CountingDown));
    assert_eq!(d.memory.first_deploy_floor, 0);
    let d = decide(&s, &flat(0, 2901, 0.0), ready, d.memory, 2901 * S);
    assert_eq!((d.desired, d.reason), (0, Reason::ScaleDown));

    let s = settings(3, 5);
    let d = decide(&s, &[], none, PolicyMemory::first_deploy(&s), S);
    assert_eq!(d.desired, 3, "min above 1 starts min");
    // Load asking for more than the floor is not held back by it.
    let d = decide(
        &s,
        &flat(0, 1, 4.0),
        none,
        PolicyMemory::first_deploy(&s),
        S,
    );
    assert_eq!((d.desired, d.reason), (5, Reason::ScaleUp));
}

fn deployment(extra: &str) -> infergate_config::DeploymentConfig {
    let text = format!(
        "[deployments.m]\n{extra}\n[deployments.m.backend]\ntype = \"static\"\nurls = [\"http://127.0.0.1:9\"]\n"
    );
    let config = infergate_config::Config::from_toml_str(&text).unwrap();
    config.deployments["m"].clone()
}

#[test]
fn development_preset_pins_min_0_and_max_1_and_rejects_changes() {
    let dev = deployment("preset = \"development\"\nconcurrency_target = 4");
    let s = Settings::from_config(&dev);
    assert_eq!((s.min_replicas, s.max_replicas), (0, 1));
    assert_eq!(
        s.concurrency_target, 4,
        "the other settings stay changeable"
    );
    let mut changed = dev.clone();
    changed.max_replicas = 3;
    changed.min_replicas = 1;
    let err = changed.validate("m").unwrap_err().to_string();
    assert!(
        err.contains("deployments.m.max_replicas: is fixed at 1 by preset"),
        "{err}"
    );
    assert!(
        err.contains("deployments.m.min_replicas: is fixed at 0 by preset"),
        "{err}"
    );
    // Heavy load still never leaves [0, 1].
    let d = decide(
        &s,
        &flat(0, 10, 100.0),
        ReplicaCounts::default(),
        PolicyMemory::default(),
        10 * S,
    );
    assert_eq!(d.desired, 1);
}

#[test]
fn settings_changed_names_every_changed_field() {
    let old = deployment("min_replicas = 0\nmax_replicas = 2");
    let new = deployment("min_replicas = 1\nmax_replicas = 2\nreplica_concurrency = 8\nqueue = { max_wait = \"30s\" }");
    let said = crate::controller::changed_fields(&old, &new);
    assert_eq!(
        said,
        "min_replicas: 0 → 1, queue.max_wait: \"10m\" → \"30s\", replica_concurrency: 0 → 8"
    );
    assert_eq!(
        crate::controller::changed_fields(&old, &old),
        "no setting changed"
    );
}
