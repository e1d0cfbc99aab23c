//! The windowed autoscaling policy of SPEC §4 (Baseten's semantics) as a pure function:
//! `decide(settings, load history, replica counts, memory, now) -> Decision`.
//!
//! Time is a `Duration` since an arbitrary epoch supplied by the caller, so the same code runs live
//! (epoch = process start) and in virtual time (tests, the trace simulator). The only state carried
//! between decisions is [`PolicyMemory`] (the scale-down countdown), which the caller stores.
//!
//! Rules:
//! - desired = ceil(load / (concurrency_target × target_utilization)), clamped to [min, max];
//!   starting replicas count as capacity already asked for.
//! - Scale up as soon as desired > current. Up-scaling looks at the larger of the windowed average
//!   and the instantaneous load, so the first request at zero (or a burst during a cold start) acts
//!   at once; a burst of N waiting requests therefore asks for at most ceil(N / (t × u)) replicas.
//! - Scale down only after the windowed desired has stayed below current for the whole
//!   `scale_down_delay`; then remove half the excess (rounded up), wait one `autoscaling_window`,
//!   halve again, until desired (or min) is reached. Load back at or above current cancels the
//!   countdown.
//!
//! What "load" means is the controller's business (`crate::load`): in-flight + waiting requests,
//! waiting requests only, or the KV-cache fraction; the policy only divides it by the per-replica
//! target.

use infergate_config::Metric;
use std::time::Duration;

/// The settings the policy reads (from `DeploymentConfig`, after presets).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Floor of replicas.
    pub min_replicas: u32,
    /// Ceiling of replicas.
    pub max_replicas: u32,
    /// Averaging window.
    pub autoscaling_window: Duration,
    /// How long desired must stay below current before removing replicas.
    pub scale_down_delay: Duration,
    /// Requests one replica should carry.
    pub concurrency_target: u32,
    /// Headroom in percent (1–100).
    pub target_utilization: u32,
    /// What load means; decides the per-replica target.
    pub metric: Metric,
    /// Per-replica KV-cache fraction when `metric` is `KvCacheUsage`.
    pub kv_cache_target: f64,
}

impl Settings {
    /// Reads the policy settings of a deployment.
    pub fn from_config(c: &infergate_config::DeploymentConfig) -> Self {
        let max = c.effective_max_replicas();
        Settings {
            min_replicas: c.effective_min_replicas().min(max),
            max_replicas: max,
            autoscaling_window: c.autoscaling_window.get(),
            scale_down_delay: c.scale_down_delay.get(),
            concurrency_target: c.concurrency_target,
            target_utilization: c.target_utilization,
            metric: c.metric,
            kv_cache_target: c.kv_cache_target,
        }
    }

    /// Load one replica should carry: concurrency_target × target_utilization for request counts,
    /// `kv_cache_target` for the KV-cache fraction.
    pub fn per_replica(&self) -> f64 {
        match self.metric {
            Metric::KvCacheUsage => self.kv_cache_target.clamp(0.01, 1.0),
            Metric::Concurrency | Metric::QueueDepth => {
                f64::from(self.concurrency_target.max(1))
                    * f64::from(self.target_utilization.clamp(1, 100))
                    / 100.0
            }
        }
    }

    /// Replicas needed for `load`, clamped to [min, max].
    pub fn replicas_for(&self, load: f64) -> u32 {
        // A tiny tolerance keeps 1.4 / 0.7 (= 2.0000000000000004 in floating point) at 2.
        let raw = (load / self.per_replica() - 1e-9).ceil().max(0.0);
        let raw = if raw > f64::from(u32::MAX) {
            u32::MAX
        } else {
            raw as u32
        };
        raw.clamp(self.min_replicas, self.max_replicas)
    }
}

/// One load observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSample {
    /// When it was taken (since the caller's epoch).
    pub at: Duration,
    /// Load at that instant (in-flight + waiting, or the chosen metric).
    pub load: f64,
}

/// The replicas a deployment has that count as capacity (draining ones do not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaCounts {
    /// Asked for and not yet ready: capacity already on its way.
    pub starting: u32,
    /// Serving.
    pub ready: u32,
}

impl ReplicaCounts {
    /// Starting + ready: what the policy compares desired against.
    pub fn current(&self) -> u32 {
        self.starting.saturating_add(self.ready)
    }
}

/// What the policy remembers between decisions: the scale-down countdown and, for a deployment
/// just deployed, the replicas it must start with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyMemory {
    /// Since when the windowed desired has been below current.
    pub below_since: Option<Duration>,
    /// When the last scale-down step was taken.
    pub last_step_down: Option<Duration>,
    /// Replicas held until that many have been ready once (0 = none): a deployment starts with
    /// max(1, min_replicas) replicas, so a new model is proven to start before it may sleep.
    pub first_deploy_floor: u32,
}

impl PolicyMemory {
    /// The memory of a deployment deployed for the first time.
    pub fn first_deploy(settings: &Settings) -> Self {
        PolicyMemory {
            first_deploy_floor: settings.min_replicas.max(1).min(settings.max_replicas),
            ..PolicyMemory::default()
        }
    }
}

/// Why the policy decided what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Nothing to change.
    Steady,
    /// Load asks for more replicas.
    ScaleUp,
    /// Below current, but the scale-down delay (or the step window) has not passed.
    CountingDown,
    /// Removing half of the excess.
    ScaleDown,
    /// Current is outside [min, max] (settings changed).
    Bounds,
    /// Holding max(1, min_replicas) until the first replicas of a new deployment are ready.
    FirstDeploy,
}

impl Reason {
    /// Stable lower-case name for logs, events and the admin API.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Steady => "steady",
            Reason::ScaleUp => "scale_up",
            Reason::CountingDown => "counting_down",
            Reason::ScaleDown => "scale_down",
            Reason::Bounds => "bounds",
            Reason::FirstDeploy => "first_deploy",
        }
    }
}

/// The decision and the numbers behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Replicas the deployment should have (starting + ready).
    pub desired: u32,
    /// Why.
    pub reason: Reason,
    /// Windowed average load.
    pub average_load: f64,
    /// Load at the latest sample.
    pub current_load: f64,
    /// Replicas the windowed load alone asks for.
    pub windowed_desired: u32,
    /// Memory to pass to the next decision.
    pub memory: PolicyMemory,
}

/// Average of the samples taken within the window ending at `now` (0 without samples).
pub fn windowed_average(history: &[LoadSample], window: Duration, now: Duration) -> f64 {
    // Samples are oldest first: find the window's ends by binary search, then sum the slice.
    let start = now.saturating_sub(window);
    let from = history.partition_point(|s| s.at < start);
    let to = history.partition_point(|s| s.at <= now);
    let in_window = &history[from..to.max(from)];
    if in_window.is_empty() {
        0.0
    } else {
        in_window.iter().map(|s| s.load).sum::<f64>() / in_window.len() as f64
    }
}

/// Decides the desired replica count from the settings, the load history (oldest first), the
/// replicas that count as capacity, what the previous decision remembered, and the time.
pub fn decide(
    settings: &Settings,
    history: &[LoadSample],
    replicas: ReplicaCounts,
    memory: PolicyMemory,
    now: Duration,
) -> Decision {
    let mut d = decide_on_load(settings, history, replicas.current(), memory, now);
    let floor = memory.first_deploy_floor.min(settings.max_replicas);
    if floor > 0 && replicas.ready < floor {
        d.memory.first_deploy_floor = floor;
        if d.desired <= floor {
            d.desired = floor;
            d.reason = Reason::FirstDeploy;
            d.memory.below_since = None;
            d.memory.last_step_down = None;
        }
    }
    d
}

/// The load rules alone (SPEC §4), without the first-deploy floor.
fn decide_on_load(
    settings: &Settings,
    history: &[LoadSample],
    current: u32,
    memory: PolicyMemory,
    now: Duration,
) -> Decision {
    let average_load = windowed_average(history, settings.autoscaling_window, now);
    let current_load = history
        .iter()
        .rev()
        .find(|s| s.at <= now)
        .map_or(0.0, |s| s.load);
    let windowed_desired = settings.replicas_for(average_load);
    let up_desired = settings.replicas_for(average_load.max(current_load));
    let decision = |desired, reason, memory| Decision {
        desired,
        reason,
        average_load,
        current_load,
        windowed_desired,
        memory,
    };

    if current > settings.max_replicas {
        return decision(
            settings.max_replicas,
            Reason::Bounds,
            PolicyMemory::default(),
        );
    }
    if current < settings.min_replicas && up_desired <= settings.min_replicas {
        return decision(
            settings.min_replicas,
            Reason::Bounds,
            PolicyMemory::default(),
        );
    }
    if up_desired > current {
        return decision(up_desired, Reason::ScaleUp, PolicyMemory::default());
    }
    if windowed_desired >= current || up_desired >= current {
        // Load is at the threshold again: any countdown is cancelled.
        return decision(current, Reason::Steady, PolicyMemory::default());
    }
    let below_since = memory.below_since.unwrap_or(now);
    let mut next = PolicyMemory {
        below_since: Some(below_since),
        last_step_down: memory.last_step_down,
        first_deploy_floor: 0,
    };
    let delay_over = now.saturating_sub(below_since) >= settings.scale_down_delay;
    let step_due = memory
        .last_step_down
        .is_none_or(|last| now.saturating_sub(last) >= settings.autoscaling_window);
    if !(delay_over && step_due) {
        return decision(current, Reason::CountingDown, next);
    }
    let floor = windowed_desired.max(up_desired).max(settings.min_replicas);
    let excess = current - floor;
    let desired = current - excess.div_ceil(2);
    next.last_step_down = Some(now);
    if desired == floor {
        next = PolicyMemory::default();
    }
    decision(desired, Reason::ScaleDown, next)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
