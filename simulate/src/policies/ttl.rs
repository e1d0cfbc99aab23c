//! Start on demand, stop after an idle TTL: llama-swap's model (`mostlygeek/llama-swap`,
//! `proxy/process.go`: one process per model, started by the first request that names it, the
//! process's `ttl` unloads it after that many seconds without a request). llama-swap's default
//! TTL is 0 (never unload); here the TTL is the deployment's `scale_down_delay`, the same idle
//! budget infergate gets, so the two differ only in the rules.

use super::{converge, Action, Scaler, View};
use infergate_config::DeploymentConfig;
use std::time::Duration;

/// One replica on demand with an idle TTL.
pub struct Ttl {
    ttl: Duration,
    /// When the deployment last had a request in flight or waiting.
    last_busy: Duration,
    busy: bool,
    next_index: u64,
}

impl Ttl {
    /// The deployment's `scale_down_delay` as the TTL.
    pub fn new(config: &DeploymentConfig) -> Self {
        Ttl {
            ttl: config.scale_down_delay.get(),
            last_busy: Duration::ZERO,
            busy: false,
            next_index: 0,
        }
    }
}

impl Scaler for Ttl {
    fn tick(&mut self, now: Duration, view: &View, out: &mut Vec<Action>) {
        let busy = view.concurrency() > 0.0;
        if busy || self.busy {
            self.last_busy = now; // the idle clock starts when the last request ends
        }
        self.busy = busy;
        if busy {
            converge(1, view, &mut self.next_index, out);
        } else if view.current() > 0 && now >= self.last_busy + self.ttl {
            converge(0, view, &mut self.next_index, out);
        }
    }

    fn next_wakeup(&self, now: Duration, view: &View) -> Option<Duration> {
        (view.current() > 0 && view.concurrency() == 0.0)
            .then(|| (self.last_busy + self.ttl).max(now))
    }
}
