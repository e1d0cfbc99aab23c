//! The lifecycle core's two idle tiers and its scheduled windows in virtual time: replicas
//! asleep and woken, the fall back to stop, and a window warmed ahead of its opening.

use super::tests::{s, settings, starts, tick};
use super::*;

fn sleep_tier() -> CoreSettings {
    let mut s = settings();
    s.policy.min_replicas = 1;
    s.hibernation.hibernate = Some((Duration::from_secs(60), 0.0, 1));
    s.hibernation.sleep_after = Some(Duration::from_secs(20));
    s
}

fn step(core: &mut LifecycleCore, at: f64, arrivals: u64) -> Vec<Command> {
    let mut out = Vec::new();
    let observed = Observation {
        load: 0.0,
        arrivals,
        follow: None,
    };
    core.tick(s(at), observed, &|_| 0, &mut out);
    out
}

#[test]
fn the_sleep_tier_sleeps_idle_replicas_wakes_them_on_a_request_then_stops_them() {
    let mut core = LifecycleCore::running_with_ready("m", sleep_tier(), 1);
    assert!(step(&mut core, 0.0, 0).is_empty());
    assert!(step(&mut core, 19.0, 0).is_empty());
    let out = step(&mut core, 20.0, 0);
    assert!(out.contains(&Command::Sleep { index: 0 }), "{out:?}");
    assert_eq!(core.serving(), Serving::Sleeping);
    // Asleep: kept, no start although min_replicas is 1, and not costed as GPU time.
    let out = step(&mut core, 25.0, 0);
    assert!(starts(&out).is_empty(), "{out:?}");
    let before = core.accounting_at(s(25.0));
    let after = core.accounting_at(s(35.0));
    assert_eq!(after.sleeping - before.sleeping, 10.0);
    assert_eq!(after.total(), before.total());
    // A request wakes the same replica (no new one).
    let out = step(&mut core, 36.0, 1);
    assert!(out.contains(&Command::WakeUp { index: 0 }), "{out:?}");
    assert!(starts(&out).is_empty(), "{out:?}");
    let mut out = Vec::new();
    core.replica_ready(0, s(38.0), &mut out);
    step(&mut core, 38.5, 1);
    assert_eq!(core.serving(), Serving::Active);
    // Idle again: asleep 20 s after it was awake, stopped 60 s after the last request.
    step(&mut core, 59.0, 1);
    assert_eq!(core.serving(), Serving::Sleeping);
    let out = step(&mut core, 97.0, 1);
    assert!(out.contains(&Command::Drain { index: 0 }), "{out:?}");
    assert_eq!(core.serving(), Serving::Hibernated);
}

#[test]
fn a_server_without_sleep_mode_falls_back_to_stop_with_one_event() {
    let mut core = LifecycleCore::running_with_ready("m", sleep_tier(), 2);
    step(&mut core, 0.0, 0);
    let out = step(&mut core, 20.0, 0);
    assert_eq!(
        out.iter()
            .filter(|c| matches!(c, Command::Sleep { .. }))
            .count(),
        2
    );
    let mut out = Vec::new();
    core.sleep_refused(0, "404", s(20.5), &mut out);
    core.sleep_refused(1, "404", s(20.5), &mut out);
    let warnings = out
        .iter()
        .filter(|c| {
            matches!(
                c,
                Command::Event {
                    kind: EventKind::SleepUnsupported,
                    ..
                }
            )
        })
        .count();
    assert_eq!(warnings, 1, "{out:?}");
    assert_eq!(core.serving(), Serving::Active);
    // From now on it stops at idle_after and never sleeps.
    let out = step(&mut core, 40.0, 0);
    assert!(
        !out.iter().any(|c| matches!(c, Command::Sleep { .. })),
        "{out:?}"
    );
    step(&mut core, 85.0, 0);
    assert_eq!(core.serving(), Serving::Hibernated);
}

#[test]
fn a_scheduled_window_warms_replicas_before_it_opens_and_lets_them_go_after() {
    let text = "[deployments.m]\nmax_replicas = 4\nscale_down_delay = \"0s\"\nautoscaling_window = \"10s\"\n\
        hibernation = { idle_after = \"60s\" }\n\
        [[deployments.m.schedule]]\ncron = \"0 9 * * 1-5\"\ntz = \"Europe/Berlin\"\nduration = \"1h\"\nmin_replicas = 2\nprewarm = \"2m\"\n\
        [deployments.m.backend]\ntype = \"process\"\ncommand = [\"x\", \"{port}\"]\n";
    let config = infergate_config::Config::from_toml_str(text).unwrap();
    let mut core = LifecycleCore::running("m", CoreSettings::from_config(&config.deployments["m"]));
    // t = 0 is Monday 2026-11-30 07:00 UTC = 08:00 in Berlin; warm from 08:58, open 09:00–10:00.
    core.set_wall_epoch("2026-11-30T07:00:00Z".parse().unwrap());
    let (d, out) = tick(&mut core, 100.0, 0.0);
    assert_eq!(d.desired, 0);
    assert!(out.is_empty(), "{out:?}");
    // It hibernates while idle…
    tick(&mut core, 200.0, 0.0);
    assert_eq!(core.serving(), Serving::Hibernated);
    // …and wakes for the window's prewarm, two minutes before 09:00.
    assert_eq!(core.next_wakeup(s(200.0)), Some(s(3480.0)));
    let (d, out) = tick(&mut core, 3480.0, 0.0);
    assert_eq!(d.desired, 2, "{d:?}");
    assert_eq!(starts(&out).len(), 2, "{out:?}");
    assert_ne!(core.serving(), Serving::Hibernated);
    let mut ready = Vec::new();
    for index in starts(&out) {
        core.replica_ready(index, s(3490.0), &mut ready);
    }
    // Inside the window it holds 2 without load.
    let (d, _) = tick(&mut core, 5000.0, 0.0);
    assert_eq!((d.desired, d.reason), (2, "schedule"));
    // After 10:00 the base settings hold: down to zero.
    assert_eq!(core.window_in_force(s(7199.0)).map(|w| w.window), Some(0));
    assert_eq!(core.window_in_force(s(7200.0)), None);
    let (d, _) = tick(&mut core, 7300.0, 0.0);
    assert_eq!(d.desired, 1, "halved first: {d:?}");
    let (d, _) = tick(&mut core, 7320.0, 0.0);
    assert_eq!(d.desired, 0, "{d:?}");
}
