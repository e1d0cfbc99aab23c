//! Scheduled warm windows in the lifecycle core, without a clock: which window's settings hold
//! at a time the caller gives (a `Duration` since the core's epoch, whose wall-clock time the
//! caller also gives). Inside a window — and `prewarm` before it, by default the last measured
//! cold start — its `min_replicas` (and `max_replicas`) replace the deployment's; outside every
//! window the deployment's own hold. A window that wants replicas also keeps the deployment
//! from hibernating and wakes it.

use infergate_config::cron::{time_zone, Cron};
use infergate_config::DeploymentConfig;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// One window, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// As written, for status and events.
    pub cron_text: String,
    /// The zone's name.
    pub tz_name: String,
    cron: Cron,
    tz: TimeZone,
    duration: Duration,
    /// Replicas kept inside it.
    pub min_replicas: u32,
    /// Most replicas inside it.
    pub max_replicas: Option<u32>,
    prewarm: Option<Duration>,
}

/// The deployment's windows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schedule {
    /// In config order.
    pub windows: Vec<Window>,
}

/// A window in force, or the next to open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Its index in the config.
    pub window: usize,
    /// When it opens (replicas start `prewarm` earlier).
    pub opens: Timestamp,
    /// When it closes.
    pub closes: Timestamp,
    /// When replicas start for it.
    pub warm_from: Timestamp,
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

impl Schedule {
    /// The windows of a deployment's config (validated: a window that does not parse is left
    /// out).
    pub fn from_config(c: &DeploymentConfig) -> Self {
        let windows = c
            .schedule
            .iter()
            .filter_map(|s| {
                Some(Window {
                    cron_text: s.cron.clone(),
                    tz_name: s.tz.clone(),
                    cron: s.cron.parse().ok()?,
                    tz: time_zone(&s.tz).ok()?,
                    duration: s.duration.get(),
                    min_replicas: s.min_replicas,
                    max_replicas: s.max_replicas,
                    prewarm: s.prewarm.map(|p| p.get()),
                })
            })
            .collect();
        Schedule { windows }
    }

    /// The window whose settings hold at `wall` (open, or within its prewarm), the one opening
    /// first when several do; `cold_start` is the default prewarm.
    pub fn in_force(&self, wall: Timestamp, cold_start: Option<Duration>) -> Option<Span> {
        self.windows
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let lead = signed(w.prewarm.or(cold_start).unwrap_or_default());
                // The first window that has not closed by `wall`.
                let opens = w.cron.next_at_or_after(
                    wall - signed(w.duration) + SignedDuration::from_nanos(1),
                    &w.tz,
                )?;
                let span = Span {
                    window: i,
                    opens,
                    closes: opens + signed(w.duration),
                    warm_from: opens - lead,
                };
                (span.warm_from <= wall && wall < span.closes).then_some(span)
            })
            .min_by_key(|s| s.opens)
    }

    /// The next window to open after `wall`.
    pub fn next(&self, wall: Timestamp, cold_start: Option<Duration>) -> Option<Span> {
        self.windows
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let opens = w
                    .cron
                    .next_at_or_after(wall + SignedDuration::from_nanos(1), &w.tz)?;
                let lead = signed(w.prewarm.or(cold_start).unwrap_or_default());
                Some(Span {
                    window: i,
                    opens,
                    closes: opens + signed(w.duration),
                    warm_from: opens - lead,
                })
            })
            .min_by_key(|s| s.opens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(toml: &str) -> Schedule {
        let text = format!(
            "[deployments.m]\nmax_replicas = 4\n{toml}\n[deployments.m.backend]\ntype = \"process\"\ncommand = [\"x\", \"{{port}}\"]\n"
        );
        let config = infergate_config::Config::from_toml_str(&text).unwrap();
        Schedule::from_config(&config.deployments["m"])
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_weekday_window_in_new_york_holds_at_local_nine_across_the_dst_change() {
        let s = schedule(
            "[[deployments.m.schedule]]\ncron = \"0 9 * * 1-5\"\ntz = \"America/New_York\"\nduration = \"8h\"\nmin_replicas = 2\nprewarm = \"10m\"",
        );
        // Friday 2026-10-30, EDT: warm from 08:50 local = 12:50 UTC, open 13:00–21:00 UTC.
        assert_eq!(s.in_force(at("2026-10-30T12:49:00Z"), None), None);
        let span = s.in_force(at("2026-10-30T12:50:00Z"), None).unwrap();
        assert_eq!(
            (span.opens, span.closes),
            (at("2026-10-30T13:00:00Z"), at("2026-10-30T21:00:00Z"))
        );
        assert!(s.in_force(at("2026-10-30T20:59:59Z"), None).is_some());
        assert_eq!(s.in_force(at("2026-10-30T21:00:00Z"), None), None);
        // The weekend: nothing; the next opens Monday 2026-11-02 at 09:00 EST = 14:00 UTC.
        assert_eq!(s.in_force(at("2026-10-31T14:00:00Z"), None), None);
        let next = s.next(at("2026-10-31T14:00:00Z"), None).unwrap();
        assert_eq!(next.opens, at("2026-11-02T14:00:00Z"));
        assert_eq!(next.warm_from, at("2026-11-02T13:50:00Z"));
    }

    #[test]
    fn without_a_prewarm_the_last_cold_start_is_the_lead() {
        let s = schedule(
            "[[deployments.m.schedule]]\ncron = \"30 6 * * *\"\nduration = \"1h\"\nmin_replicas = 1",
        );
        assert_eq!(s.in_force(at("2026-12-02T06:28:00Z"), None), None);
        let span = s
            .in_force(at("2026-12-02T06:28:00Z"), Some(Duration::from_secs(180)))
            .unwrap();
        assert_eq!(span.warm_from, at("2026-12-02T06:27:00Z"));
    }
}
