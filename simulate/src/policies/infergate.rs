//! infergate's own policy: the live [`LifecycleCore`], fed the simulator's observations. No rule
//! is copied here — a change to the core changes `simulate` too.

use super::{Action, Scaler, View};
use infergate_config::{DeploymentConfig, Metric};
use infergate_scaler::lifecycle::{Command, CoreSettings, LifecycleCore, Observation};
use infergate_scaler::load::{self, LoadInputs, ReplicaMetrics, Scraped};
use infergate_scaler::ReplicaState;
use std::time::Duration;

/// The lifecycle core as a simulated policy.
pub struct Infergate {
    core: LifecycleCore,
    metric: Metric,
    floor: u32,
    replica_concurrency: f64,
    commands: Vec<Command>,
}

impl Infergate {
    /// The core of an already running deployment: its `min_replicas` are ready at time zero
    /// (no first-deploy replica).
    pub fn new(name: &str, config: &DeploymentConfig, start: jiff::Timestamp) -> Self {
        let floor = config
            .effective_min_replicas()
            .min(config.effective_max_replicas());
        let mut core =
            LifecycleCore::running_with_ready(name, CoreSettings::from_config(config), floor);
        core.set_wall_epoch(start);
        Infergate {
            core,
            floor,
            metric: config.metric,
            replica_concurrency: f64::from(config.replica_concurrency.max(1)),
            commands: Vec::new(),
        }
    }

    /// The load in the deployment's metric. Scraped metrics are modelled: a replica's queue is
    /// its pinned requests, its KV-cache use its busy share of slots.
    fn load(&self, view: &View) -> f64 {
        let mut inputs = LoadInputs {
            in_flight: u64::from(view.in_flight),
            waiting: u64::from(view.waiting),
            external: u64::from(view.external),
            ready_replicas: Vec::new(),
        };
        if self.metric != Metric::Concurrency {
            inputs.ready_replicas = view
                .replicas
                .iter()
                .filter(|r| r.state == ReplicaState::Ready)
                .map(|r| {
                    Scraped::Read(ReplicaMetrics {
                        num_requests_waiting: Some(f64::from(r.local_queue)),
                        kv_cache_usage: Some(
                            (f64::from(r.in_flight) / self.replica_concurrency).min(1.0),
                        ),
                    })
                })
                .collect();
        }
        load::measure(
            self.metric,
            self.core.settings().policy.per_replica(),
            &inputs,
        )
    }
}

impl Scaler for Infergate {
    fn tick(&mut self, now: Duration, view: &View, out: &mut Vec<Action>) {
        let observed = Observation {
            load: self.load(view),
            arrivals: view.arrivals,
            follow: None,
        };
        let in_flight = |index: u64| {
            view.replicas
                .iter()
                .find(|r| r.index == index)
                .map_or(0, |r| r.in_flight + r.local_queue)
        };
        self.commands.clear();
        self.core
            .tick(now, observed, &in_flight, &mut self.commands);
        for command in self.commands.drain(..) {
            match command {
                Command::Start { index } => {
                    self.core.launched(index);
                    out.push(Action::Start { index });
                }
                Command::Drain { index } => out.push(Action::Drain { index }),
                Command::Fail { index, .. } => out.push(Action::Fail { index }),
                Command::Sleep { index } => out.push(Action::Sleep { index }),
                Command::WakeUp { index } => out.push(Action::WakeUp { index }),
                _ => {}
            }
        }
    }

    fn observe(&mut self, now: Duration, view: &View, _out: &mut Vec<Action>) {
        let load = self.load(view);
        self.core.observe(now, load);
    }

    fn replica_ready(&mut self, index: u64, now: Duration) {
        self.commands.clear();
        self.core.replica_ready(index, now, &mut self.commands);
    }

    fn replica_stopped(&mut self, index: u64, now: Duration) {
        self.core.replica_stopped(index, now);
    }

    fn initial_replicas(&self) -> Vec<u64> {
        (0..u64::from(self.floor)).collect()
    }

    fn desired(&self, _view: &View) -> u32 {
        self.core.desired()
    }

    fn next_wakeup(&self, now: Duration, _view: &View) -> Option<Duration> {
        self.core.next_wakeup(now)
    }
}
