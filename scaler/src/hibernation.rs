//! Hibernation and deactivation (SPEC §5) as a pure state machine: which serving state a
//! deployment is in, decided from its request arrivals, its ready replicas and the time.
//!
//! - `Active` → `Hibernated` when the request rate over `idle_after` is at or below `below_rps`
//!   (by default: no request at all for `idle_after`), whatever `min_replicas` says; or by hand.
//! - With `mode = "sleep"`, first `Active` → `Sleeping` after no request for `sleep_after`: the
//!   replicas stay, asleep (vLLM's `/sleep`); `Sleeping` → `Hibernated` by the rule above, and
//!   `Sleeping` → `Waking` as from `Hibernated` (the replicas are woken with `/wake_up`).
//! - `Hibernated` → `Waking` after `wake_after_requests` requests, or by hand (`resume`).
//! - `Waking` → `Active` once a replica is ready.
//! - any → `Deactivated` after `deactivate_after` without a request; only `activate` leaves it.
//!
//! Like the autoscaling policy, time is a `Duration` since the caller's epoch.

use std::collections::VecDeque;
use std::time::Duration;

/// How a deployment serves requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Serving {
    /// Normal: replicas per the autoscaling policy.
    Active = 0,
    /// At zero replicas on purpose; requests wake it (or go to the fallback meanwhile).
    Hibernated = 1,
    /// Woken, no replica ready yet.
    Waking = 2,
    /// Idle too long: requests are refused until an explicit `activate`.
    Deactivated = 3,
    /// Idle: the replicas are kept asleep (GPU memory freed); requests wake them in seconds.
    Sleeping = 4,
}

impl Serving {
    /// Stable lower-case name for logs, events and the admin API.
    pub fn name(self) -> &'static str {
        match self {
            Serving::Active => "active",
            Serving::Hibernated => "hibernated",
            Serving::Waking => "waking",
            Serving::Deactivated => "deactivated",
            Serving::Sleeping => "sleeping",
        }
    }

    /// Decodes the `repr(u8)` value (unknown values read as `Active`).
    pub fn from_u8(v: u8) -> Serving {
        match v {
            1 => Serving::Hibernated,
            2 => Serving::Waking,
            3 => Serving::Deactivated,
            4 => Serving::Sleeping,
            _ => Serving::Active,
        }
    }

    /// Whether the deployment must be held at zero replicas.
    pub fn holds_at_zero(self) -> bool {
        matches!(self, Serving::Hibernated | Serving::Deactivated)
    }
}

/// The hibernation settings of a deployment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HibernationSettings {
    /// Automatic hibernation: (idle_after, below_rps, wake_after_requests); `None` = off.
    pub hibernate: Option<(Duration, f64, u32)>,
    /// No traffic for this long deactivates (`None` = never).
    pub deactivate_after: Option<Duration>,
    /// No request for this long puts the replicas to sleep first (`mode = "sleep"`).
    pub sleep_after: Option<Duration>,
}

impl HibernationSettings {
    /// Reads them from a deployment's config.
    pub fn from_config(c: &infergate_config::DeploymentConfig) -> Self {
        HibernationSettings {
            hibernate: c
                .hibernation
                .as_ref()
                .map(|h| (h.idle_after.get(), h.below_rps, h.wake_after_requests)),
            deactivate_after: Some(c.deactivate_after.get()).filter(|d| !d.is_zero()),
            sleep_after: c
                .hibernation
                .as_ref()
                .filter(|h| h.mode == infergate_config::HibernationMode::Sleep)
                .map(|h| h.sleep_after.get()),
        }
    }

    fn wake_after(&self) -> u64 {
        self.hibernate.map_or(1, |(_, _, n)| u64::from(n.max(1)))
    }
}

/// What the state machine remembers between steps.
#[derive(Debug, Clone, Default)]
pub struct HibernationMemory {
    /// (time, arrivals total) once per bucket, covering `idle_after`.
    arrivals: VecDeque<(Duration, u64)>,
    /// Last time the arrivals total grew.
    last_traffic: Duration,
    last_total: u64,
    /// Arrivals total when the deployment went to sleep (wake counts from here).
    total_at_sleep: u64,
    /// Since when a replica has been ready without a break: the sleep tier's idle clock starts
    /// no earlier (a replica that just finished loading is not put to sleep at once).
    ready_since: Option<Duration>,
}

/// A transition and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// New state.
    pub to: Serving,
    /// Why, for logs and events.
    pub reason: &'static str,
    /// Request rate over `idle_after` (when hibernation is on).
    pub rate: f64,
}

/// Advances the state machine: `total` is the deployment's request arrivals counter, `ready` its
/// ready replicas. Returns the transition, if any, and updates `memory`.
pub fn step(
    settings: &HibernationSettings,
    state: Serving,
    total: u64,
    ready: u32,
    memory: &mut HibernationMemory,
    now: Duration,
) -> Option<Transition> {
    if total != memory.last_total {
        memory.last_total = total;
        memory.last_traffic = now;
    }
    let rate = record_and_rate(settings, memory, total, now);
    if ready == 0 {
        memory.ready_since = None;
    } else if memory.ready_since.is_none() {
        memory.ready_since = Some(now);
    }
    let to = |to, reason| {
        Some(Transition {
            to,
            reason,
            rate: rate.unwrap_or(0.0),
        })
    };
    if state != Serving::Deactivated {
        if let Some(after) = settings.deactivate_after {
            if now.saturating_sub(memory.last_traffic) >= after {
                memory.total_at_sleep = total;
                return to(Serving::Deactivated, "no traffic for deactivate_after");
            }
        }
    }
    let idle = match (settings.hibernate, rate) {
        (Some((_, below_rps, _)), Some(rate)) => rate <= below_rps,
        _ => false,
    };
    match state {
        Serving::Active | Serving::Sleeping if idle => {
            memory.total_at_sleep = total;
            to(
                Serving::Hibernated,
                "request rate at or below below_rps for idle_after",
            )
        }
        Serving::Active => match (settings.sleep_after, memory.ready_since) {
            (Some(after), Some(since))
                if now.saturating_sub(memory.last_traffic.max(since)) >= after =>
            {
                memory.total_at_sleep = total;
                to(Serving::Sleeping, "no request for sleep_after")
            }
            _ => None,
        },
        Serving::Hibernated | Serving::Sleeping => {
            if total.saturating_sub(memory.total_at_sleep) >= settings.wake_after() {
                to(Serving::Waking, "wake_after_requests requests arrived")
            } else {
                None
            }
        }
        Serving::Waking if ready > 0 => to(Serving::Active, "a replica is ready"),
        Serving::Waking | Serving::Deactivated => None,
    }
}

/// The earliest time a step could change the state without a new arrival (`None`: only an
/// arrival or a ready replica can). Lets an event-driven caller (the simulator) sleep until then.
pub fn next_due(
    settings: &HibernationSettings,
    state: Serving,
    memory: &HibernationMemory,
    now: Duration,
) -> Option<Duration> {
    let mut due = None;
    if state != Serving::Deactivated {
        due = settings
            .deactivate_after
            .map(|after| memory.last_traffic + after);
    }
    if let (Serving::Active, Some(after), Some(since)) =
        (state, settings.sleep_after, memory.ready_since)
    {
        let sleep_at = memory.last_traffic.max(since) + after;
        due = Some(due.map_or(sleep_at, |d: Duration| d.min(sleep_at)));
    }
    if let (Serving::Active | Serving::Sleeping, Some((idle_after, below_rps, _))) =
        (state, settings.hibernate)
    {
        let bucket = (idle_after / 512).max(Duration::from_millis(100));
        let hibernate_at = if below_rps > 0.0 {
            now + bucket // the rate moves as arrivals age out of the window
        } else {
            // No arrival for idle_after, measured from the first record of the last total.
            match memory
                .arrivals
                .iter()
                .find(|(_, total)| *total == memory.last_total)
            {
                Some((at, _)) => *at + idle_after,
                None => memory.arrivals.back().map_or(now, |(at, _)| *at + bucket),
            }
        };
        due = Some(due.map_or(hibernate_at, |d: Duration| d.min(hibernate_at)));
    }
    due
}

/// Marks a manual transition in the memory (hibernate: wake counting starts now; activate or
/// resume: the idle clocks restart now).
pub fn manual(memory: &mut HibernationMemory, to: Serving, total: u64, now: Duration) {
    memory.total_at_sleep = total;
    if !to.holds_at_zero() {
        memory.last_traffic = now;
        memory.arrivals.clear();
    }
}

/// Records the arrivals total and returns the rate over `idle_after`, once the history covers it.
fn record_and_rate(
    settings: &HibernationSettings,
    memory: &mut HibernationMemory,
    total: u64,
    now: Duration,
) -> Option<f64> {
    let (idle_after, _, _) = settings.hibernate?;
    // At most ~512 samples whatever the window: one per bucket.
    let bucket = (idle_after / 512).max(Duration::from_millis(100));
    if memory
        .arrivals
        .back()
        .is_none_or(|(at, _)| now.saturating_sub(*at) >= bucket)
    {
        memory.arrivals.push_back((now, total));
    }
    let start = now.checked_sub(idle_after)?;
    // Keep one sample at or before the window start, drop older ones.
    while memory.arrivals.len() >= 2 && memory.arrivals[1].0 <= start {
        memory.arrivals.pop_front();
    }
    let (first_at, first_total) = *memory.arrivals.front()?;
    if first_at > start {
        return None; // not observed for a whole idle_after yet
    }
    let requests = total.saturating_sub(first_total) as f64;
    Some(requests / idle_after.as_secs_f64().max(1e-3))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn secs(t: u64) -> Duration {
        Duration::from_secs(t)
    }

    fn settings(
        idle: u64,
        below_rps: f64,
        wake: u32,
        deactivate: Option<u64>,
    ) -> HibernationSettings {
        HibernationSettings {
            hibernate: Some((secs(idle), below_rps, wake)),
            deactivate_after: deactivate.map(secs),
            sleep_after: None,
        }
    }

    /// Steps once per second from `from` to `to`, with `arrivals(t)` the counter at t.
    fn run(
        s: &HibernationSettings,
        mut state: Serving,
        memory: &mut HibernationMemory,
        from: u64,
        to: u64,
        arrivals: impl Fn(u64) -> u64,
        ready: u32,
    ) -> Vec<(u64, Serving)> {
        let mut changes = vec![];
        for t in from..=to {
            if let Some(tr) = step(s, state, arrivals(t), ready, memory, secs(t)) {
                state = tr.to;
                changes.push((t, state));
            }
        }
        changes
    }

    #[test]
    fn hibernates_after_idle_after_without_requests_whatever_min_replicas() {
        let s = settings(60, 0.0, 1, None);
        let mut m = HibernationMemory::default();
        // Requests until t = 100, then none.
        let changes = run(&s, Serving::Active, &mut m, 0, 300, |t| t.min(100), 1);
        assert_eq!(changes, vec![(160, Serving::Hibernated)]);
    }

    #[test]
    fn the_sleep_tier_sleeps_at_sleep_after_then_stops_at_idle_after_or_wakes_on_a_request() {
        let mut s = settings(60, 0.0, 1, None);
        s.sleep_after = Some(secs(20));
        let mut m = HibernationMemory::default();
        // Requests until t = 100: asleep at 120, stopped at 160.
        let changes = run(&s, Serving::Active, &mut m, 0, 300, |t| t.min(100), 1);
        assert_eq!(
            changes,
            vec![(120, Serving::Sleeping), (160, Serving::Hibernated)]
        );
        let due = next_due(&s, Serving::Active, &HibernationMemory::default(), S);
        assert!(due.is_some_and(|d| d <= secs(20)), "{due:?}");
        // A request while asleep wakes it (its replicas are woken, not started).
        let mut m = HibernationMemory::default();
        let changes = run(
            &s,
            Serving::Active,
            &mut m,
            0,
            140,
            |t| t.min(100) + u64::from(t >= 130),
            1,
        );
        assert_eq!(
            changes,
            vec![
                (120, Serving::Sleeping),
                (130, Serving::Waking),
                (131, Serving::Active)
            ]
        );
    }

    #[test]
    fn a_rate_above_below_rps_keeps_it_active() {
        let s = settings(60, 0.5, 1, None);
        let mut m = HibernationMemory::default();
        // One request per second: rate 1 > 0.5.
        assert!(run(&s, Serving::Active, &mut m, 0, 300, |t| t, 1).is_empty());
        // One request every 4 s: rate 0.25 ≤ 0.5 → hibernates once a full window is seen.
        let mut m = HibernationMemory::default();
        let changes = run(&s, Serving::Active, &mut m, 0, 300, |t| t / 4, 1);
        assert_eq!(changes.first(), Some(&(60, Serving::Hibernated)));
    }

    #[test]
    fn wakes_after_wake_after_requests_then_active_once_ready() {
        let s = settings(60, 0.0, 3, None);
        let mut m = HibernationMemory::default();
        manual(&mut m, Serving::Hibernated, 10, S);
        assert_eq!(step(&s, Serving::Hibernated, 12, 0, &mut m, 2 * S), None);
        let t = step(&s, Serving::Hibernated, 13, 0, &mut m, 3 * S).unwrap();
        assert_eq!(t.to, Serving::Waking);
        assert_eq!(step(&s, Serving::Waking, 13, 0, &mut m, 4 * S), None);
        assert_eq!(
            step(&s, Serving::Waking, 13, 1, &mut m, 5 * S).unwrap().to,
            Serving::Active
        );
    }

    #[test]
    fn deactivates_after_deactivate_after_without_traffic_and_stays() {
        let s = HibernationSettings {
            hibernate: None,
            deactivate_after: Some(600 * S),
            sleep_after: None,
        };
        let mut m = HibernationMemory::default();
        let changes = run(&s, Serving::Active, &mut m, 0, 2000, |t| t.min(50), 1);
        assert_eq!(changes, vec![(650, Serving::Deactivated)]);
        // Requests do not bring it back; only activate does.
        let mut m2 = m.clone();
        assert!(run(&s, Serving::Deactivated, &mut m2, 2001, 2100, |t| t, 0).is_empty());
        manual(&mut m, Serving::Active, 50, 2200 * S);
        assert_eq!(step(&s, Serving::Active, 50, 1, &mut m, 2201 * S), None);
    }

    #[test]
    fn hibernation_off_never_hibernates() {
        let s = HibernationSettings {
            hibernate: None,
            deactivate_after: None,
            sleep_after: None,
        };
        let mut m = HibernationMemory::default();
        assert!(run(&s, Serving::Active, &mut m, 0, 10_000, |_| 0, 0).is_empty());
    }
}
