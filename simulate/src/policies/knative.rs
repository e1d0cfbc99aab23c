//! Knative Serving's KPA, as in `knative/serving` `pkg/autoscaler/scaling/autoscaler.go`
//! (`(*autoscaler).Scale`) with the defaults of `config/core/configmaps/autoscaler.yaml`:
//! stable window 60 s, panic window 6 s (10 %), panic threshold 200 %, target utilization 70 %,
//! max scale-up rate 1000, max scale-down rate 2, scale-to-zero grace period 30 s, a decision
//! every 2 s (`tickInterval`). The activator holds requests at zero and pokes the autoscaler, so
//! the first request at zero is decided on at once. Concurrency counts requests in flight on pods
//! and held by the activator. The per-pod target is the deployment's `concurrency_target`.

use super::{converge, per_replica, Action, Scaler, View};
use infergate_config::DeploymentConfig;
use infergate_scaler::load::LoadHistory;
use infergate_scaler::policy::windowed_average;
use std::time::Duration;

const STABLE_WINDOW: Duration = Duration::from_secs(60);
const PANIC_WINDOW: Duration = Duration::from_secs(6);
const PANIC_THRESHOLD: f64 = 2.0;
const TARGET_UTILIZATION: f64 = 70.0;
const MAX_SCALE_UP_RATE: f64 = 1000.0;
const MAX_SCALE_DOWN_RATE: f64 = 2.0;
const SCALE_TO_ZERO_GRACE: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_secs(2);

/// The KPA's state between ticks.
pub struct Knative {
    target: f64,
    min: u32,
    max: u32,
    history: LoadHistory,
    panic_since: Option<Duration>,
    max_panic_pods: u32,
    zero_since: Option<Duration>,
    last_tick: Option<Duration>,
    next_index: u64,
}

impl Knative {
    /// A KPA with the deployment's target, min and max scale.
    pub fn new(config: &DeploymentConfig) -> Self {
        Knative {
            target: per_replica(config, TARGET_UTILIZATION),
            min: config.effective_min_replicas(),
            max: config.effective_max_replicas(),
            history: LoadHistory::default(),
            panic_since: None,
            max_panic_pods: 0,
            zero_since: None,
            last_tick: None,
            next_index: u64::from(config.effective_min_replicas()),
        }
    }

    /// Whether the KPA is in panic mode.
    pub fn panicking(&self) -> bool {
        self.panic_since.is_some()
    }

    fn scale(&mut self, now: Duration, ready: u32) -> u32 {
        let stable = windowed_average(self.history.samples(), STABLE_WINDOW, now);
        let panic = windowed_average(self.history.samples(), PANIC_WINDOW, now);
        let ready = f64::from(ready.max(1));
        let max_up = (MAX_SCALE_UP_RATE * ready).ceil();
        let max_down = (ready / MAX_SCALE_DOWN_RATE).floor();
        let clamp = |v: f64| v.max(max_down).min(max_up);
        let stable_pods = clamp((stable / self.target).ceil());
        let panic_pods = clamp((panic / self.target).ceil());
        let over_threshold = panic_pods / ready >= PANIC_THRESHOLD;
        if over_threshold {
            if self.panic_since.is_none() {
                self.max_panic_pods = 0;
            }
            self.panic_since = Some(now);
        } else if self
            .panic_since
            .is_some_and(|since| now >= since + STABLE_WINDOW)
        {
            self.panic_since = None;
            self.max_panic_pods = 0;
        }
        let desired = if self.panic_since.is_some() {
            // In panic the KPA never scales down.
            self.max_panic_pods = self.max_panic_pods.max(panic_pods as u32);
            self.max_panic_pods
        } else {
            stable_pods as u32
        };
        desired.clamp(self.min, self.max)
    }
}

impl Scaler for Knative {
    fn tick(&mut self, now: Duration, view: &View, out: &mut Vec<Action>) {
        let keep = STABLE_WINDOW + Duration::from_secs(1);
        self.history.record(now, view.concurrency(), keep);
        let at_zero = view.current() == 0;
        let poked = at_zero && view.concurrency() > 0.0;
        let due = self.last_tick.is_none_or(|last| now >= last + TICK);
        if !(due || poked) {
            return;
        }
        self.last_tick = Some(now);
        let mut desired = self.scale(now, view.ready());
        if poked {
            desired = desired.max(1); // the activator's poke
        }
        if desired == 0 && view.current() > 0 {
            // Scale to zero only after the grace period (the activator must be in the path).
            let since = *self.zero_since.get_or_insert(now);
            if now < since + SCALE_TO_ZERO_GRACE {
                desired = 1;
            }
        } else {
            self.zero_since = None;
        }
        converge(desired, view, &mut self.next_index, out);
    }

    fn initial_replicas(&self) -> Vec<u64> {
        (0..u64::from(self.min)).collect()
    }

    fn next_wakeup(&self, now: Duration, view: &View) -> Option<Duration> {
        let idle = view.current() == 0 && view.concurrency() == 0.0 && self.history.settled();
        if idle {
            return None;
        }
        Some(self.last_tick.map_or(now, |last| (last + TICK).max(now)))
    }
}
