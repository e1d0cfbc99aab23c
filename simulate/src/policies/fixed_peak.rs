//! Fixed provisioning: as many replicas as the trace's busiest minute needs (offered
//! concurrency over that minute / (concurrency_target × target_utilization)), ready from the
//! start and never changed — what a team without autoscaling buys.

use super::{Action, Scaler, View};
use std::time::Duration;

/// A fleet of constant size.
pub struct FixedPeak {
    replicas: u32,
}

impl FixedPeak {
    /// `replicas` ready at time zero.
    pub fn new(replicas: u32) -> Self {
        FixedPeak {
            replicas: replicas.max(1),
        }
    }
}

impl Scaler for FixedPeak {
    fn tick(&mut self, _now: Duration, _view: &View, _out: &mut Vec<Action>) {}

    fn next_wakeup(&self, _now: Duration, _view: &View) -> Option<Duration> {
        None
    }

    fn initial_replicas(&self) -> Vec<u64> {
        (0..u64::from(self.replicas)).collect()
    }
}
