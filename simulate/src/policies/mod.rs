//! The scaling policies `simulate` compares, behind one trait. `infergate` is the live lifecycle
//! core itself ([`infergate_scaler::lifecycle`]); the others imitate a peer's published rule,
//! each file citing the source it follows. All run on the same replica model and queue.

mod fixed_peak;
mod hybrid_histogram;
mod infergate;
mod keda_http;
mod knative;
mod ttl;

pub use fixed_peak::FixedPeak;
pub use hybrid_histogram::HybridHistogram;
pub use infergate::Infergate;
pub use keda_http::KedaHttp;
pub use knative::Knative;
pub use ttl::Ttl;

use infergate_config::DeploymentConfig;
use infergate_scaler::ReplicaState;
use std::time::Duration;

/// One simulated replica as policies see it.
#[derive(Debug, Clone)]
pub struct SimReplica {
    /// Launch number (the policy's own numbering).
    pub index: u64,
    /// Starting, ready or draining.
    pub state: ReplicaState,
    /// Requests being served on it.
    pub in_flight: u32,
    /// Requests pinned to it, waiting for one of its slots (KEDA's release to the first ready).
    pub local_queue: u32,
    /// Requests it served.
    pub served: u64,
}

/// What a policy observes at a decision.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// Requests waiting in the proxy's queue.
    pub waiting: u32,
    /// Requests being served (or pinned) on replicas.
    pub in_flight: u32,
    /// Requests being answered by the fallback provider.
    pub external: u32,
    /// Requests that arrived so far.
    pub arrivals: u64,
    /// The replicas.
    pub replicas: &'a [SimReplica],
}

impl View<'_> {
    /// Concurrency: in flight + waiting + at the fallback (what `metric = concurrency` measures).
    pub fn concurrency(&self) -> f64 {
        f64::from(self.in_flight + self.waiting + self.external)
    }

    /// Ready replicas.
    pub fn ready(&self) -> u32 {
        self.replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Ready)
            .count() as u32
    }

    /// Starting + ready replicas.
    pub fn current(&self) -> u32 {
        self.replicas
            .iter()
            .filter(|r| matches!(r.state, ReplicaState::Starting | ReplicaState::Ready))
            .count() as u32
    }
}

/// What a policy asks the simulator to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start replica `index` (ready after a cold start).
    Start {
        /// Its number.
        index: u64,
    },
    /// Send it no new requests; stop it when idle.
    Drain {
        /// Its number.
        index: u64,
    },
    /// It failed (missed its startup deadline): remove it now.
    Fail {
        /// Its number.
        index: u64,
    },
    /// Put it to sleep: it keeps its place but serves nothing and holds no GPU memory.
    Sleep {
        /// Its number.
        index: u64,
    },
    /// Wake it: ready again after the model's wake time.
    WakeUp {
        /// Its number.
        index: u64,
    },
}

/// A scaling policy driven in virtual time.
pub trait Scaler {
    /// A decision round at `now`.
    fn tick(&mut self, now: Duration, view: &View, out: &mut Vec<Action>);
    /// A request ended: the load fell. By default a decision round; a policy that, like the
    /// live controller, decides on its own clock records the load only.
    fn observe(&mut self, now: Duration, view: &View, out: &mut Vec<Action>) {
        self.tick(now, view, out);
    }
    /// Replica `index` became ready.
    fn replica_ready(&mut self, _index: u64, _now: Duration) {}
    /// Replica `index` is gone.
    fn replica_stopped(&mut self, _index: u64, _now: Duration) {}
    /// When to decide again without an event (`None`: only on the next event).
    fn next_wakeup(&self, now: Duration, view: &View) -> Option<Duration>;
    /// Replicas the policy wants now (the live `desired` for infergate; by default what it has).
    fn desired(&self, view: &View) -> u32 {
        view.current()
    }
    /// Replicas ready at time zero, by index (a fixed fleet, or a deployment's floor: it was
    /// running before the trace began).
    fn initial_replicas(&self) -> Vec<u64> {
        Vec::new()
    }
    /// Whether waiting requests are handed to the first ready replica at once, regardless of
    /// its free slots (an interceptor that does not know replica capacity).
    fn releases_to_first_ready(&self) -> bool {
        false
    }
}

/// The policies by their report names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// infergate's own lifecycle core.
    Infergate,
    /// Knative Serving's KPA.
    Knative,
    /// The KEDA HTTP add-on.
    KedaHttp,
    /// A fixed fleet sized for the trace's peak.
    FixedPeak,
    /// Start on demand, stop after an idle TTL (llama-swap).
    Ttl,
    /// "Serverless in the Wild"'s hybrid histogram keep-alive.
    HybridHistogram,
}

impl PolicyKind {
    /// Every policy, in report order.
    pub const ALL: [PolicyKind; 6] = [
        PolicyKind::Infergate,
        PolicyKind::Knative,
        PolicyKind::KedaHttp,
        PolicyKind::FixedPeak,
        PolicyKind::Ttl,
        PolicyKind::HybridHistogram,
    ];

    /// The name in `--policies`, the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Infergate => "infergate",
            PolicyKind::Knative => "knative",
            PolicyKind::KedaHttp => "keda-http",
            PolicyKind::FixedPeak => "fixed-peak",
            PolicyKind::Ttl => "ttl",
            PolicyKind::HybridHistogram => "hybrid-histogram",
        }
    }

    /// Parses a comma-separated `--policies` list.
    pub fn parse_list(list: &str) -> Result<Vec<PolicyKind>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                PolicyKind::ALL
                    .into_iter()
                    .find(|p| p.name() == s)
                    .ok_or_else(|| format!("unknown policy {s:?}; expected one of infergate, knative, keda-http, fixed-peak, ttl, hybrid-histogram"))
            })
            .collect()
    }

    /// A fresh policy for one deployment; `peak` is the replicas the trace's peak needs, `start`
    /// the wall-clock time the trace starts at (scheduled windows).
    pub fn build(
        self,
        name: &str,
        config: &DeploymentConfig,
        peak: u32,
        start: jiff::Timestamp,
    ) -> Box<dyn Scaler> {
        match self {
            PolicyKind::Infergate => Box::new(Infergate::new(name, config, start)),
            PolicyKind::Knative => Box::new(Knative::new(config)),
            PolicyKind::KedaHttp => Box::new(KedaHttp::new(config)),
            PolicyKind::FixedPeak => Box::new(FixedPeak::new(peak)),
            PolicyKind::Ttl => Box::new(Ttl::new(config)),
            PolicyKind::HybridHistogram => Box::new(HybridHistogram::new(config)),
        }
    }
}

/// Starts or drains replicas so that starting + ready = `desired` (drains starting replicas
/// newest first, then the least busy ready ones, like a ReplicaSet prefers unready pods).
pub(crate) fn converge(desired: u32, view: &View, next_index: &mut u64, out: &mut Vec<Action>) {
    let current = view.current();
    if desired > current {
        for _ in current..desired {
            out.push(Action::Start { index: *next_index });
            *next_index += 1;
        }
    } else if desired < current {
        let mut live: Vec<&SimReplica> = view
            .replicas
            .iter()
            .filter(|r| matches!(r.state, ReplicaState::Starting | ReplicaState::Ready))
            .collect();
        live.sort_by_key(|r| {
            (
                r.state == ReplicaState::Ready,
                r.in_flight + r.local_queue,
                std::cmp::Reverse(r.index),
            )
        });
        for r in live.into_iter().take((current - desired) as usize) {
            out.push(Action::Drain { index: r.index });
        }
    }
}

/// Per-replica target of a request-count policy: concurrency_target × utilization.
pub(crate) fn per_replica(config: &DeploymentConfig, utilization_percent: f64) -> f64 {
    (f64::from(config.concurrency_target) * utilization_percent / 100.0).max(1e-9)
}
