//! The lifecycle core in virtual time: scale-up from zero, back-off after failures, startup
//! deadlines, drains, hibernation and accounting, all without a clock.

use super::*;
use crate::policy::Settings;
use infergate_config::Metric;

pub(super) fn settings() -> CoreSettings {
    CoreSettings {
        policy: Settings {
            min_replicas: 0,
            max_replicas: 4,
            autoscaling_window: Duration::from_secs(10),
            scale_down_delay: Duration::from_secs(20),
            concurrency_target: 1,
            target_utilization: 100,
            metric: Metric::Concurrency,
            kv_cache_target: 0.8,
        },
        hibernation: HibernationSettings {
            hibernate: None,
            deactivate_after: None,
            sleep_after: None,
        },
        startup_timeout: Duration::from_secs(30),
        startup_failures_to_give_up: 3,
        schedule: Default::default(),
    }
}

pub(super) fn s(v: f64) -> Duration {
    Duration::from_secs_f64(v)
}

pub(super) fn tick(core: &mut LifecycleCore, at: f64, load: f64) -> (Decided, Vec<Command>) {
    let mut out = Vec::new();
    let d = core.tick(
        s(at),
        Observation {
            load,
            arrivals: 0,
            follow: None,
        },
        &|_| 0,
        &mut out,
    );
    (d, out)
}

pub(super) fn starts(out: &[Command]) -> Vec<u64> {
    out.iter()
        .filter_map(|c| match c {
            Command::Start { index } => Some(*index),
            _ => None,
        })
        .collect()
}

#[test]
fn a_burst_at_zero_asks_for_replicas_at_once_and_they_cost_from_then() {
    let mut core = LifecycleCore::running("m", settings());
    let (d, out) = tick(&mut core, 1.0, 3.0);
    assert_eq!(d.desired, 3);
    assert_eq!(starts(&out), vec![0, 1, 2]);
    for i in 0..3 {
        core.launched(i);
    }
    let mut out = Vec::new();
    assert_eq!(
        core.replica_ready(0, s(31.0 - 0.5), &mut out),
        Some(s(29.5))
    );
    let a = core.accounting_at(s(31.0));
    assert!((a.starting - (29.5 + 30.0 + 30.0)).abs() < 1e-9, "{a:?}");
    assert!((a.ready - 0.5).abs() < 1e-9);
}

#[test]
fn failures_back_off_exponentially_and_give_up_after_the_limit() {
    let mut core = LifecycleCore::running("m", settings());
    let (_, out) = tick(&mut core, 0.0, 1.0);
    assert_eq!(starts(&out), vec![0]);
    core.launched(0);
    let mut out = Vec::new();
    let f = core.replica_failed(0, "exit 3", s(0.1), &mut out);
    assert_eq!((f.consecutive, f.backoff), (1, Duration::from_millis(500)));
    assert!(
        starts(&tick(&mut core, 0.5, 1.0).1).is_empty(),
        "in back-off"
    );
    assert_eq!(core.next_wakeup(s(0.5)), Some(s(0.6)));
    assert_eq!(starts(&tick(&mut core, 0.6, 1.0).1), vec![1]);
    core.launched(1);
    let f = core.replica_failed(1, "exit 3", s(0.7), &mut out);
    assert_eq!(f.backoff, Duration::from_millis(1000));
    assert!(out.is_empty());
    assert_eq!(starts(&tick(&mut core, 1.7, 1.0).1), vec![2]);
    core.launched(2);
    core.replica_failed(2, "exit 3", s(1.8), &mut out);
    assert!(
        matches!(&out[0], Command::Unavailable(u) if u.reason.contains("3 replica starts in a row failed"))
    );
    assert_eq!(starts(&tick(&mut core, 3.8, 1.0).1), vec![3]);
    core.launched(3);
    let mut out = Vec::new();
    core.replica_ready(3, s(4.0), &mut out);
    assert_eq!(out, vec![Command::Available { ready: Some(3) }]);
}

#[test]
fn a_replica_past_its_startup_deadline_fails_and_is_replaced_after_back_off() {
    let mut core = LifecycleCore::running("m", settings());
    tick(&mut core, 0.0, 1.0);
    core.launched(0);
    assert_eq!(
        core.next_wakeup(s(1.0)),
        Some(s(1.0)).max(core.next_wakeup(s(1.0)))
    );
    let (_, out) = tick(&mut core, 30.0, 1.0);
    assert!(
        matches!(&out[0], Command::Fail { index: 0, why, .. } if why == "not ready within startup_timeout (30s)"),
        "{out:?}"
    );
    assert!(starts(&out).is_empty());
    assert_eq!(starts(&tick(&mut core, 30.5, 1.0).1), vec![1]);
}

#[test]
fn scale_down_drains_the_least_busy_ready_replica_after_the_delay() {
    let mut core = LifecycleCore::running("m", settings());
    tick(&mut core, 0.0, 2.0);
    let mut out = Vec::new();
    for i in 0..2 {
        core.launched(i);
        core.replica_ready(i, s(1.0), &mut out);
    }
    tick(&mut core, 2.0, 1.0);
    // Load 1 from t=2: the window average falls below 2 replicas at once (10 s window)...
    let mut t = 2.0;
    let mut drained = Vec::new();
    while t < 40.0 && drained.is_empty() {
        t += 1.0;
        let mut out = Vec::new();
        core.tick(
            s(t),
            Observation {
                load: 1.0,
                arrivals: 0,
                follow: None,
            },
            &|i| if i == 0 { 1 } else { 0 },
            &mut out,
        );
        drained = out
            .iter()
            .filter_map(|c| match c {
                Command::Drain { index } => Some(*index),
                _ => None,
            })
            .collect();
    }
    assert_eq!(drained, vec![1], "the idle one goes");
    // The last sample of load 2 (t = 1 s) leaves the 10 s window at t = 12 s; 20 s later it goes.
    assert_eq!(
        t, 32.0,
        "after scale_down_delay (20 s) of the windowed desired below current"
    );
    core.replica_stopped(1, s(23.0));
    assert_eq!(core.counts().ready, 1);
}

#[test]
fn an_event_driven_caller_sleeps_until_the_countdown_and_decides_the_same() {
    // Ticking every 200 ms and ticking only at next_wakeup give the same decisions.
    let mut every = LifecycleCore::running("m", settings());
    let mut lazy = LifecycleCore::running("m", settings());
    let mut out = Vec::new();
    for core in [&mut every, &mut lazy] {
        core.tick(
            s(0.0),
            Observation {
                load: 3.0,
                arrivals: 0,
                follow: None,
            },
            &|_| 0,
            &mut out,
        );
        for i in 0..3 {
            core.launched(i);
            core.replica_ready(i, s(1.0), &mut out);
        }
        core.tick(
            s(5.0),
            Observation {
                load: 0.0,
                arrivals: 0,
                follow: None,
            },
            &|_| 0,
            &mut out,
        );
    }
    let mut changes_every = Vec::new();
    for ms in (5_200..120_000).step_by(200) {
        let t = Duration::from_millis(ms);
        let d = every.tick(
            t,
            Observation {
                load: 0.0,
                arrivals: 0,
                follow: None,
            },
            &|_| 0,
            &mut out,
        );
        if d.desired != d.previous {
            changes_every.push((t.as_secs(), d.desired));
        }
    }
    let mut changes_lazy = Vec::new();
    let mut now = s(5.0);
    while let Some(at) = lazy.next_wakeup(now) {
        if at > s(120.0) {
            break;
        }
        now = at.max(now + Duration::from_millis(1));
        let d = lazy.tick(
            now,
            Observation {
                load: 0.0,
                arrivals: 0,
                follow: None,
            },
            &|_| 0,
            &mut out,
        );
        if d.desired != d.previous {
            changes_lazy.push((now.as_secs(), d.desired));
        }
    }
    assert_eq!(changes_every, changes_lazy);
    assert_eq!(changes_lazy.last().map(|c| c.1), Some(0));
}

#[test]
fn hibernation_by_hand_holds_at_zero_and_resume_wakes_like_a_first_deploy() {
    let mut core = LifecycleCore::running("m", settings());
    let mut out = Vec::new();
    core.hibernate(0, s(1.0), &mut out).unwrap();
    assert!(matches!(
        out[0],
        Command::Serving {
            to: Serving::Hibernated,
            ..
        }
    ));
    let (d, _) = tick(&mut core, 2.0, 0.0);
    assert_eq!((d.desired, d.reason), (0, "hibernated"));
    assert!(core
        .activate(0, s(3.0), &mut out)
        .unwrap_err()
        .contains("is hibernated"));
    core.resume(0, s(3.0), &mut out).unwrap();
    let (d, out) = tick(&mut core, 3.1, 0.0);
    assert_eq!((d.desired, d.reason), (1, "first_deploy"));
    assert_eq!(starts(&out), vec![0]);
}

#[test]
fn waiting_for_gpus_cancels_the_rest_of_the_batch_and_reuses_the_index() {
    let mut core = LifecycleCore::running("m", settings());
    let (_, out) = tick(&mut core, 0.0, 3.0);
    assert_eq!(starts(&out), vec![0, 1, 2]);
    core.launched(0);
    let mut ev = Vec::new();
    core.waiting_for_gpus(1, 1, 0, s(0.0), &mut ev);
    assert!(!core.wants_launch(2));
    assert_eq!(ev.len(), 1);
    core.waiting_for_gpus(1, 1, 0, s(0.1), &mut ev);
    assert_eq!(ev.len(), 1, "one event per wait");
    assert!(
        starts(&tick(&mut core, 0.3, 3.0).1).is_empty(),
        "retried after GPU_RETRY"
    );
    assert_eq!(starts(&tick(&mut core, 0.4, 3.0).1), vec![1, 2]);
}

#[test]
fn a_follower_takes_the_leaders_count_and_decides_itself_the_moment_it_leads() {
    let mut core = LifecycleCore::running("m", settings());
    let mut out = Vec::new();
    let follow = |load, n| Observation {
        load,
        arrivals: 0,
        follow: Some(n),
    };
    // Heavy load, but the leader says 1: one start, no more.
    let d = core.tick(s(1.0), follow(10.0, 1), &|_| 0, &mut out);
    assert_eq!((d.desired, d.reason), (1, "leader"));
    assert_eq!(starts(&out), vec![0]);
    out.clear();
    let d = core.tick(s(2.0), follow(10.0, 1), &|_| 0, &mut out);
    assert_eq!(d.desired, 1);
    assert!(starts(&out).is_empty());
    // Leading now: its own policy, on the load it has been recording all along.
    out.clear();
    let (d, _) = tick(&mut core, 3.0, 10.0);
    assert!(d.desired > 1, "{d:?}");
    assert_ne!(d.reason, "leader");
}

#[test]
fn an_evicted_replica_drains_and_is_not_started_again_while_the_load_does_not_ask() {
    // Two replicas after a burst, idle now and counting down: one is evicted for another
    // deployment's GPUs.
    let mut core = LifecycleCore::running_with_ready("m", settings(), 2);
    let (d, _) = tick(&mut core, 1.0, 0.0);
    assert_eq!(d.desired, 2, "counting down, not yet below");
    assert!(core.evict(1, s(2.0)));
    assert!(!core.evict(1, s(2.0)), "already draining");
    assert_eq!(core.counts().ready, 1);
    let (d, out) = tick(&mut core, 3.0, 0.0);
    assert!(starts(&out).is_empty(), "{out:?}");
    assert_eq!(d.replicas.current(), 1);
    // It costs until it has stopped.
    let a = core.accounting_at(s(3.0));
    assert!(a.draining > 0.9, "{a:?}");
    core.replica_stopped(1, s(4.0));
    // Load that needs two again starts a second one.
    let (_, out) = tick(&mut core, 5.0, 2.0);
    assert_eq!(starts(&out).len(), 1);
}

#[test]
fn min_replicas_in_force_is_the_floor_an_eviction_keeps() {
    let mut st = settings();
    st.policy.min_replicas = 1;
    let core = LifecycleCore::running_with_ready("m", st, 1);
    assert_eq!(core.min_replicas_in_force(s(1.0)), 1);
}
