//! Scheduled warm windows in the lifecycle core: the wall-clock epoch the caller gives, and
//! which window holds at a time since it (`crate::schedule`).

use super::LifecycleCore;
use std::time::Duration;

impl LifecycleCore {
    /// Gives the wall-clock time of `now = 0`: scheduled windows hold from then on.
    pub fn set_wall_epoch(&mut self, epoch: jiff::Timestamp) {
        self.wall_epoch = Some(epoch);
    }

    /// The wall-clock time at `now`, if the epoch is known.
    pub fn wall_at(&self, now: Duration) -> Option<jiff::Timestamp> {
        let epoch = self.wall_epoch?;
        Some(epoch + jiff::SignedDuration::try_from(now).ok()?)
    }

    /// The scheduled window whose settings hold at `now`.
    pub fn window_in_force(&self, now: Duration) -> Option<crate::schedule::Span> {
        if self.settings.schedule.windows.is_empty() {
            return None;
        }
        self.settings
            .schedule
            .in_force(self.wall_at(now)?, self.last_cold_start)
    }

    /// The next scheduled window to open after `now`.
    pub fn next_window(&self, now: Duration) -> Option<crate::schedule::Span> {
        if self.settings.schedule.windows.is_empty() {
            return None;
        }
        self.settings
            .schedule
            .next(self.wall_at(now)?, self.last_cold_start)
    }

    /// The replicas the deployment keeps whatever happens at `now`: its `min_replicas`, or the
    /// scheduled window's.
    pub fn min_replicas_in_force(&self, now: Duration) -> u32 {
        self.policy_in_force(now).1.min_replicas
    }

    /// The window in force at `now` and the policy settings it makes: its `min_replicas` and
    /// `max_replicas` over the deployment's.
    pub(super) fn policy_in_force(
        &self,
        now: Duration,
    ) -> (Option<crate::schedule::Span>, crate::policy::Settings) {
        let window = self.window_in_force(now);
        let mut settings = self.settings.policy;
        if let Some(w) = window.and_then(|span| self.settings.schedule.windows.get(span.window)) {
            settings.min_replicas = w.min_replicas;
            settings.max_replicas = w
                .max_replicas
                .unwrap_or(settings.max_replicas)
                .max(w.min_replicas);
        }
        (window, settings)
    }

    /// A round while asleep: the replicas are kept as they are until a request wakes them.
    pub(super) fn hold_asleep(
        &mut self,
        now: Duration,
        decision: &crate::policy::Decision,
    ) -> super::Decided {
        let sleeping = self.sleeping_count();
        let previous = std::mem::replace(&mut self.desired, sleeping);
        self.account(now);
        super::Decided {
            desired: self.desired,
            previous,
            reason: self.serving.name(),
            average_load: decision.average_load,
            current_load: decision.current_load,
            replicas: self.counts(),
            in_backoff: self.in_backoff(now),
        }
    }
}
