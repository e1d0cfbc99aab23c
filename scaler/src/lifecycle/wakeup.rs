//! When the lifecycle core must be asked again without a new observation: what lets an
//! event-driven caller (the simulator) sleep through idle time and still decide when the live
//! controller, ticking every 200 ms, would.

use super::LifecycleCore;
use crate::replica::ReplicaState;
use std::time::Duration;

impl LifecycleCore {
    /// The earliest time a decision could change without a new observation (a countdown, a
    /// back-off, a startup deadline, a hibernation timer, the load window moving); `None` when
    /// nothing is due. A caller may always decide earlier.
    pub fn next_wakeup(&self, now: Duration) -> Option<Duration> {
        let s = &self.settings;
        let mut due: Option<Duration> = None;
        // Timers already past were acted on by the decision just taken (a countdown whose delay is
        // over now waits for the next step, not for its own end again).
        let mut at = |t: Duration| {
            if t > now {
                due = Some(due.map_or(t, |d: Duration| d.min(t)));
            }
        };
        let current = self.counts().current();
        if self.memory.below_since.is_none() && current > 0 {
            // The window moving is the only thing that can start a countdown by itself.
            let policy = &s.policy;
            if let Some(t) =
                self.history
                    .first_drop_below(now, policy.autoscaling_window, current, |avg| {
                        policy.replicas_for(avg)
                    })
            {
                at(t);
            }
        }
        if let Some(since) = self.memory.below_since {
            at(since + s.policy.scale_down_delay);
        }
        if let Some(last) = self.memory.last_step_down {
            at(last + s.policy.autoscaling_window);
        }
        if let Some(until) = self.backoff_until.filter(|u| *u > now) {
            if self.desired > self.counts().current() {
                at(until);
            }
        }
        for r in &self.replicas {
            if r.state == ReplicaState::Starting && r.launched {
                at(r.asked_at + s.startup_timeout);
            }
        }
        if let Some(t) =
            crate::hibernation::next_due(&s.hibernation, self.serving, &self.hibernation, now)
        {
            at(t);
        }
        // A window closing, or the next one's prewarm starting.
        let since_epoch = |wall: jiff::Timestamp| {
            let epoch = self.wall_at(Duration::ZERO)?;
            Duration::try_from(wall.duration_since(epoch)).ok()
        };
        if let Some(t) = self
            .window_in_force(now)
            .and_then(|w| since_epoch(w.closes))
        {
            at(t);
        }
        if let Some(t) = self.next_window(now).and_then(|w| since_epoch(w.warm_from)) {
            at(t.max(now + Duration::from_millis(1)));
        }
        due
    }
}
