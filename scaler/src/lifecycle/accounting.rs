//! Replica-seconds by lifecycle state: what a deployment's replicas cost, counted the same way by
//! the live controller (Prometheus, status, admin API) and by `infergate simulate`.
//!
//! A replica costs from the moment it is asked for (starting) until it is gone (after draining),
//! times the GPUs it holds. Integration is piecewise constant between observations, so the caller
//! only has to call [`ReplicaSeconds::advance`] before every change of replica counts.

use std::time::Duration;

/// Replicas in each costed state at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Asked for, not yet ready (loading weights: the GPU is held).
    pub starting: u32,
    /// Serving.
    pub ready: u32,
    /// Finishing in-flight requests before it stops.
    pub draining: u32,
    /// Asleep (`hibernation.mode = "sleep"`): the process stays, its GPU memory is freed.
    pub sleeping: u32,
}

/// Accumulated replica time per state, in seconds, and the GPUs each replica holds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReplicaSeconds {
    /// Seconds of replicas starting.
    pub starting: f64,
    /// Seconds of replicas ready.
    pub ready: f64,
    /// Seconds of replicas draining.
    pub draining: f64,
    /// Seconds of replicas asleep (not in [`ReplicaSeconds::total`]: no GPU memory held).
    pub sleeping: f64,
    last: Option<Duration>,
    counts: StateCounts,
}

impl ReplicaSeconds {
    /// Integrates the counts in force since the last call up to `now`, then takes `counts` as
    /// the counts from `now` on. Time never runs backwards: an earlier `now` adds nothing.
    pub fn advance(&mut self, now: Duration, counts: StateCounts) {
        if let Some(last) = self.last {
            let dt = now.saturating_sub(last).as_secs_f64();
            self.starting += dt * f64::from(self.counts.starting);
            self.ready += dt * f64::from(self.counts.ready);
            self.draining += dt * f64::from(self.counts.draining);
            self.sleeping += dt * f64::from(self.counts.sleeping);
        }
        if self.last.is_none_or(|last| now >= last) {
            self.last = Some(now);
        }
        self.counts = counts;
    }

    /// Replica-seconds in every state that holds a GPU's memory (asleep does not).
    pub fn total(&self) -> f64 {
        self.starting + self.ready + self.draining
    }

    /// GPU-seconds: replica-seconds × GPUs per replica.
    pub fn gpu_seconds(&self, gpus_per_replica: u32) -> f64 {
        self.total() * f64::from(gpus_per_replica.max(1))
    }

    /// Dollars at `gpu_hour_price` per GPU-hour.
    pub fn cost_usd(&self, gpus_per_replica: u32, gpu_hour_price: f64) -> f64 {
        self.gpu_seconds(gpus_per_replica) / 3600.0 * gpu_hour_price
    }

    /// The counts in force since the last `advance`.
    pub fn counts(&self) -> StateCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    #[test]
    fn integrates_each_state_piecewise() {
        let mut a = ReplicaSeconds::default();
        let c = |starting, ready, draining| StateCounts {
            sleeping: 0,
            starting,
            ready,
            draining,
        };
        a.advance(s(10), c(2, 0, 0));
        a.advance(s(40), c(0, 2, 0)); // 2 × 30 s starting
        a.advance(s(100), c(0, 1, 1)); // 2 × 60 s ready
        a.advance(s(105), c(0, 1, 0)); // 5 s ready + 5 s draining
        assert_eq!(a.starting, 60.0);
        assert_eq!(a.ready, 125.0);
        assert_eq!(a.draining, 5.0);
        assert_eq!(a.gpu_seconds(2), 380.0);
        assert!((a.cost_usd(2, 3.6) - 0.38).abs() < 1e-9);
    }

    #[test]
    fn time_running_backwards_adds_nothing() {
        let mut a = ReplicaSeconds::default();
        a.advance(
            s(10),
            StateCounts {
                sleeping: 0,
                ready: 1,
                ..Default::default()
            },
        );
        a.advance(
            s(5),
            StateCounts {
                sleeping: 0,
                ready: 1,
                ..Default::default()
            },
        );
        a.advance(s(12), StateCounts::default());
        assert_eq!(a.ready, 2.0);
    }
}
