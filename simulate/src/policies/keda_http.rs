//! The KEDA HTTP add-on (`kedacore/http-add-on`): the interceptor counts pending requests per
//! host (in flight + queued) and holds requests while the workload is at zero; KEDA activates
//! 0 → 1 as soon as the count is non-zero (the add-on's external-push scaler) and hands 1 → N to
//! the HPA with `targetPendingRequests` = 100 (the add-on's default, `scaledobject`
//! `scalingMetric.concurrency.targetValue`). The HPA (`kubernetes/pkg/controller/podautoscaler`)
//! syncs every 15 s with a 10 % tolerance and a 300 s scale-down stabilization window; KEDA's
//! `cooldownPeriod` of 300 s applies to 1 → 0. When the first replica is ready the interceptor
//! releases every waiting request to it (it does not know the replica's slots).

use super::{converge, Action, Scaler, View};
use infergate_config::DeploymentConfig;
use std::collections::VecDeque;
use std::time::Duration;

const TARGET_PENDING: f64 = 100.0;
const HPA_SYNC: Duration = Duration::from_secs(15);
const TOLERANCE: f64 = 0.1;
const STABILIZATION: Duration = Duration::from_secs(300);
const COOLDOWN: Duration = Duration::from_secs(300);

/// KEDA + HPA state.
pub struct KedaHttp {
    min: u32,
    max: u32,
    last_sync: Option<Duration>,
    last_active: Option<Duration>,
    /// HPA recommendations in the stabilization window: (time, replicas).
    recommendations: VecDeque<(Duration, u32)>,
    next_index: u64,
}

impl KedaHttp {
    /// KEDA's defaults with the deployment's min and max.
    pub fn new(config: &DeploymentConfig) -> Self {
        KedaHttp {
            min: config.effective_min_replicas(),
            max: config.effective_max_replicas(),
            last_sync: None,
            last_active: None,
            recommendations: VecDeque::new(),
            next_index: u64::from(config.effective_min_replicas()),
        }
    }

    fn hpa(&mut self, now: Duration, pending: f64, current: u32) -> u32 {
        let current_f = f64::from(current.max(1));
        let ratio = pending / (TARGET_PENDING * current_f);
        let recommendation = if (ratio - 1.0).abs() <= TOLERANCE {
            current.max(1)
        } else {
            ((pending / TARGET_PENDING).ceil() as u32).max(1)
        };
        self.recommendations.push_back((now, recommendation));
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > STABILIZATION)
        {
            self.recommendations.pop_front();
        }
        // Scale-down stabilization: the highest recommendation of the window.
        let stabilized = self
            .recommendations
            .iter()
            .map(|r| r.1)
            .max()
            .unwrap_or(recommendation);
        let desired = if recommendation > current {
            recommendation
        } else {
            stabilized.min(current.max(1))
        };
        desired.clamp(self.min.max(1), self.max)
    }
}

impl Scaler for KedaHttp {
    fn tick(&mut self, now: Duration, view: &View, out: &mut Vec<Action>) {
        let pending = view.concurrency();
        if pending > 0.0 {
            self.last_active = Some(now);
        }
        let current = view.current();
        if current == 0 {
            if pending > 0.0 || self.min > 0 {
                converge(self.min.max(1), view, &mut self.next_index, out);
                self.last_sync = Some(now);
            }
            return;
        }
        if self.min == 0 && self.last_active.is_none_or(|t| now >= t + COOLDOWN) {
            self.recommendations.clear();
            converge(0, view, &mut self.next_index, out);
            return;
        }
        if self.last_sync.is_none_or(|t| now >= t + HPA_SYNC) {
            self.last_sync = Some(now);
            let desired = self.hpa(now, pending, current);
            converge(desired, view, &mut self.next_index, out);
        }
    }

    fn initial_replicas(&self) -> Vec<u64> {
        (0..u64::from(self.min)).collect()
    }

    fn next_wakeup(&self, now: Duration, view: &View) -> Option<Duration> {
        if view.current() == 0 {
            return None; // the interceptor wakes KEDA on the next request
        }
        let sync = self.last_sync.map_or(now, |t| t + HPA_SYNC);
        let cooldown = self.last_active.map_or(now, |t| t + COOLDOWN);
        Some(sync.min(cooldown).max(now))
    }

    fn releases_to_first_ready(&self) -> bool {
        true
    }
}
