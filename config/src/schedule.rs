//! Scheduled warm windows (`[[deployments.NAME.schedule]]`): traffic that arrives at known
//! times (weekdays at 9:00) finds replicas already warm. Inside a window its `min_replicas` (and
//! `max_replicas`, if given) hold; replicas start `prewarm` before it opens; outside every window
//! the deployment's own settings hold. As Sablier's and KubeElasti's schedules, in the policy.

use crate::cron::{time_zone, Cron};
use crate::duration::HumanDuration;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// When it opens: five-field cron (`0 9 * * 1-5`).
    pub cron: String,
    /// The time zone the cron is read in (IANA name; default `UTC`).
    #[serde(default = "utc")]
    pub tz: String,
    /// How long it stays open.
    pub duration: HumanDuration,
    /// Replicas kept inside it.
    pub min_replicas: u32,
    /// Most replicas inside it (default: the deployment's `max_replicas`, raised to
    /// `min_replicas` if lower).
    #[serde(default)]
    pub max_replicas: Option<u32>,
    /// Start replicas this long before it opens (default: the deployment's last measured cold
    /// start; none before one was measured).
    #[serde(default)]
    pub prewarm: Option<HumanDuration>,
}

fn utc() -> String {
    "UTC".to_string()
}

/// The windows' problems as (field under the deployment, message): bad cron, unknown zone,
/// durations out of range, windows of the next 14 days that overlap.
pub fn problems(schedules: &[ScheduleConfig], max_replicas: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut parsed = Vec::new();
    for (i, s) in schedules.iter().enumerate() {
        let field = |f: &str| format!("schedule[{i}].{f}");
        let cron = s
            .cron
            .parse::<Cron>()
            .map_err(|e| out.push((field("cron"), format!("{e}, got {:?}", s.cron))));
        let tz = time_zone(&s.tz).map_err(|e| out.push((field("tz"), e)));
        let d = s.duration.get();
        if !(Duration::from_secs(60)..=Duration::from_secs(7 * 86_400)).contains(&d) {
            out.push((
                field("duration"),
                format!("must be between 1m and 7days, got {}", s.duration),
            ));
        }
        if s.prewarm
            .is_some_and(|p| p.get() > Duration::from_secs(86_400))
        {
            out.push((field("prewarm"), "must be at most 1day".to_string()));
        }
        if s.min_replicas > 1000 {
            out.push((
                field("min_replicas"),
                format!("must be between 0 and 1000, got {}", s.min_replicas),
            ));
        }
        if let Some(max) = s.max_replicas {
            if max == 0 || max < s.min_replicas || max > 1000 {
                out.push((
                    field("max_replicas"),
                    format!(
                        "must be between max(1, min_replicas = {}) and 1000, got {max}",
                        s.min_replicas
                    ),
                ));
            }
        } else if max_replicas == 0 {
            out.push((
                field("max_replicas"),
                "the deployment's max_replicas is 0".into(),
            ));
        }
        if let (Ok(cron), Ok(tz)) = (cron, tz) {
            parsed.push((i, cron, tz, d));
        }
    }
    // Overlaps over the next 14 days, between windows and between a window's own occurrences.
    let now = Timestamp::now();
    let horizon = now + SignedDuration::from_secs(14 * 86_400);
    let mut spans: Vec<(Timestamp, Timestamp, usize)> = Vec::new();
    for (i, cron, tz, d) in &parsed {
        let mut t = now;
        while let Some(start) = cron.next_at_or_after(t, tz) {
            if start > horizon || spans.len() > 20_000 {
                break;
            }
            let end = start + SignedDuration::try_from(*d).unwrap_or(SignedDuration::ZERO);
            spans.push((start, end, *i));
            t = start + SignedDuration::from_secs(60);
        }
    }
    spans.sort();
    let mut reported = std::collections::BTreeSet::new();
    for pair in spans.windows(2) {
        let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
        if start < end && reported.insert((a.min(b), a.max(b))) {
            let message = if a == b {
                format!("window {a} opens again before it closes (at {start}): its duration is longer than the time between two openings")
            } else {
                format!("windows {} and {} overlap (at {start})", a.min(b), a.max(b))
            };
            out.push((format!("schedule[{}]", a.max(b)), message));
        }
    }
    out
}
