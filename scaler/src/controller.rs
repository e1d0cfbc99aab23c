//! The replica lifecycle controller of one deployment: it samples the load, asks the policy what
//! to do, and actuates through the backend — starting replicas, polling their readiness, replacing
//! failed ones with back-off, and draining replicas before stopping them.
//!
//! Every decision is taken by the deployment's sans-I/O [`LifecycleCore`] (`crate::lifecycle`);
//! this is the thin async shell around it: it stamps observations with the time since its epoch,
//! feeds the core and carries out its commands through the `Backend`. Carrying them out is
//! `controller/commands.rs`; starting, watching and stopping one replica is
//! `controller/replica_tasks.rs`; watching replicas' health (and a static deployment's
//! availability) is `controller/health_watch.rs`; scraping their metrics is
//! `controller/scraping.rs`; maintenance is `controller/maintenance.rs`.

mod commands;
mod gpu_sharing;
mod health_watch;
mod maintenance;
mod replica_tasks;
mod scraping;
mod settings_diff;
mod sleep_tasks;

pub use settings_diff::changed_fields;

use crate::backend::{self, Backend, BackendError, ReplicaHandle};
use crate::events::{EventKind, EventSink, Numbers};
use crate::health;
use crate::hibernation::Serving;
use crate::lifecycle::accounting::ReplicaSeconds;
use crate::lifecycle::{Command, CoreSettings, LifecycleCore, Observation};
use crate::load::{self, LoadInputs, Scraped};
use crate::policy::ReplicaCounts;
use crate::pool::{ReplicaPool, Unavailable};
use crate::replica::{Replica, ReplicaState};
use arc_swap::ArcSwap;
use infergate_config::{ConfigError, DeploymentConfig};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the controller re-evaluates without a demand signal.
const TICK: Duration = Duration::from_millis(200);

/// Counters of what the controller did, for the admin API and tests.
#[derive(Debug, Default)]
pub struct ControllerStats {
    /// Replicas launched since start.
    pub replicas_started: AtomicU64,
    /// Replicas that crashed, failed readiness or timed out.
    pub replicas_failed: AtomicU64,
    /// Replicas stopped on purpose.
    pub replicas_stopped: AtomicU64,
    /// Last desired replica count.
    pub desired: AtomicU32,
    /// Most replicas asked for at once (starting + ready) since start.
    pub peak_desired: AtomicU32,
}

/// The last decision and the numbers behind it, for the admin API, logs and events.
#[derive(Debug, Clone, Copy)]
pub struct DecisionReport {
    /// Replicas the deployment should have.
    pub desired: u32,
    /// Why (the policy's reason).
    pub reason: &'static str,
    /// Load averaged over the window.
    pub average_load: f64,
    /// Load at this instant.
    pub current_load: f64,
    /// Replicas starting and ready when it was taken.
    pub replicas: ReplicaCounts,
    /// Request that found no free replica → scale-up issued, for the last scale-up that
    /// followed such a request.
    pub scale_up_latency: Option<Duration>,
}

/// The last decision and the replica-seconds already exported to Prometheus (touched by the
/// control loop and by readers of the report; never by the request path).
#[derive(Debug, Default)]
struct Reporting {
    report: Option<DecisionReport>,
    exported: ReplicaSeconds,
}

/// One deployment's controller.
pub struct Controller {
    name: String,
    config: ArcSwap<DeploymentConfig>,
    pool: Arc<ReplicaPool>,
    backend: Arc<dyn Backend>,
    handles: Mutex<HashMap<String, Arc<dyn ReplicaHandle>>>,
    /// Every scaling and lifecycle decision (one lock, taken off the request path).
    core: Mutex<LifecycleCore>,
    /// Since when a static deployment has had no healthy replica.
    no_healthy_since: Mutex<Option<Instant>>,
    reporting: Mutex<Reporting>,
    /// Last scrape of each ready replica by id.
    scraped: Mutex<HashMap<String, Scraped>>,
    epoch: Instant,
    /// Maintenance switched on by hand: the fallback answers (when configured for it), else new
    /// requests wait until it is off.
    maintenance: std::sync::atomic::AtomicBool,
    /// Woken when maintenance ends.
    maintenance_over: tokio::sync::Notify,
    /// Requests waiting for maintenance to end.
    maintenance_held: AtomicU64,
    /// `Serving` as u8, mirrored from the core: read by the data plane on every request, lock-free.
    serving: std::sync::atomic::AtomicU8,
    /// Requests that arrived for this deployment (any state, any route).
    arrivals: AtomicU64,
    events: EventSink,
    /// The box's shared GPU pool, when this deployment takes its GPUs from it.
    gpus: Option<Arc<crate::gpus::SharedGpus>>,
    /// What the controller did.
    pub stats: ControllerStats,
    stopping: watch::Sender<bool>,
}

/// A running controller and its tasks.
pub struct ControllerHandle {
    /// The controller (shared with the data plane through its pool).
    pub controller: Arc<Controller>,
    tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    /// Creates the pool and starts the dispatcher and control loop for a newly deployed
    /// deployment, which starts with max(1, min_replicas) replicas. `gpus` is the box's shared
    /// GPU pool (`[gpus]`), used when the deployment sets `gpus_per_replica` without a list.
    pub fn spawn(
        name: &str,
        config: DeploymentConfig,
        events: EventSink,
        gpus: Option<&Arc<crate::gpus::SharedGpus>>,
    ) -> ControllerHandle {
        let gpus = gpus.filter(|_| infergate_config::GpusConfig::shares(&config));
        let backend = backend::from_config(&config, gpus.map(|g| g.allocator()));
        let handle = Self::spawn_inner(name, config, backend, events, gpus.cloned());
        if let Some(g) = gpus {
            g.join(&handle.controller);
        }
        handle
    }

    /// Same as [`Controller::spawn`] with an explicit backend (tests, other backends).
    pub fn spawn_with_backend(
        name: &str,
        config: DeploymentConfig,
        backend: Arc<dyn Backend>,
        events: EventSink,
    ) -> ControllerHandle {
        Self::spawn_inner(name, config, backend, events, None)
    }

    fn spawn_inner(
        name: &str,
        config: DeploymentConfig,
        backend: Arc<dyn Backend>,
        events: EventSink,
        gpus: Option<Arc<crate::gpus::SharedGpus>>,
    ) -> ControllerHandle {
        let pool = ReplicaPool::new(name, config.replica_concurrency);
        pool.set_max_waiting_per_client(config.queue.max_waiting_per_client);
        let (stopping, _) = watch::channel(false);
        let mut core = LifecycleCore::first_deploy(name, CoreSettings::from_config(&config));
        // Scheduled windows read wall-clock time: the core's time zero is now.
        core.set_wall_epoch(jiff::Timestamp::now());
        let controller = Arc::new(Controller {
            name: name.to_string(),
            config: ArcSwap::from_pointee(config),
            pool: pool.clone(),
            backend,
            handles: Mutex::new(HashMap::new()),
            core: Mutex::new(core),
            scraped: Mutex::new(HashMap::new()),
            no_healthy_since: Mutex::new(None),
            reporting: Mutex::new(Reporting::default()),
            epoch: Instant::now(),
            maintenance: std::sync::atomic::AtomicBool::new(false),
            maintenance_over: tokio::sync::Notify::new(),
            maintenance_held: AtomicU64::new(0),
            serving: std::sync::atomic::AtomicU8::new(Serving::Active as u8),
            arrivals: AtomicU64::new(0),
            events,
            gpus,
            stats: ControllerStats::default(),
            stopping,
        });
        let mut tasks = vec![tokio::spawn(pool.run_dispatcher())];
        if let Some(addrs) = controller.backend.fixed_replicas() {
            for (i, addr) in addrs.into_iter().enumerate() {
                let replica = Arc::new(Replica::new(format!("{name}-{i}"), addr));
                controller.pool.add_replica(replica.clone());
                tasks.push(tokio::spawn(
                    controller.clone().watch_fixed_replica(replica),
                ));
            }
            tasks.push(tokio::spawn(controller.clone().static_health_loop()));
        } else {
            tasks.push(tokio::spawn(controller.clone().control_loop()));
            tasks.push(tokio::spawn(controller.clone().scrape_loop()));
        }
        ControllerHandle { controller, tasks }
    }

    /// The pool the data plane draws slots from.
    pub fn pool(&self) -> &Arc<ReplicaPool> {
        &self.pool
    }

    /// The settings in force.
    pub fn config(&self) -> Arc<DeploymentConfig> {
        self.config.load_full()
    }

    /// How the deployment serves requests now (active, hibernated, waking, deactivated).
    pub fn serving(&self) -> Serving {
        Serving::from_u8(self.serving.load(Ordering::Acquire))
    }

    /// Counts a request for this deployment (whatever answers it); a hibernated deployment's
    /// controller is woken at once to count towards `wake_after_requests`. Returns the serving
    /// state the request found — read once, before the wake-up it causes can change it.
    pub fn note_request(&self) -> Serving {
        self.arrivals.fetch_add(1, Ordering::Relaxed);
        let serving = self.serving();
        if matches!(serving, Serving::Hibernated | Serving::Sleeping) {
            self.pool.demand().notify_one();
        }
        serving
    }

    /// Hibernates by hand: zero replicas until requests wake it or `resume`.
    pub fn hibernate(self: &Arc<Self>) -> Result<(), String> {
        self.by_hand(LifecycleCore::hibernate)
    }

    /// Wakes a hibernated deployment by hand.
    pub fn resume(self: &Arc<Self>) -> Result<(), String> {
        self.by_hand(LifecycleCore::resume)
    }

    /// Brings a deactivated deployment back.
    pub fn activate(self: &Arc<Self>) -> Result<(), String> {
        self.by_hand(LifecycleCore::activate)
    }

    fn by_hand(
        self: &Arc<Self>,
        transition: fn(&mut LifecycleCore, u64, Duration, &mut Vec<Command>) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut out = Vec::new();
        let arrivals = self.arrivals.load(Ordering::Acquire);
        let at = self.at(Instant::now());
        {
            let mut core = self
                .core
                .lock()
                .map_err(|_| "controller state unavailable".to_string())?;
            transition(&mut core, arrivals, at, &mut out)?;
        }
        self.apply_all(out);
        self.pool.demand().notify_one();
        Ok(())
    }

    /// Time since this controller's epoch: the clock the lifecycle core is fed.
    fn at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.epoch)
    }

    /// Replica-seconds per state since start (what the replicas cost so far).
    pub fn replica_seconds(&self) -> ReplicaSeconds {
        let at = self.at(Instant::now());
        self.core
            .lock()
            .map(|core| core.accounting_at(at))
            .unwrap_or_default()
    }

    /// Where this deployment's events go (the data plane reports fallback events here).
    pub fn events(&self) -> &EventSink {
        &self.events
    }

    /// The scheduled window in force and the next one, for status: (window index, opens,
    /// closes, warm from) each.
    pub fn schedule_status(
        &self,
    ) -> (Option<crate::schedule::Span>, Option<crate::schedule::Span>) {
        let at = self.at(Instant::now());
        self.core
            .lock()
            .map(|core| (core.window_in_force(at), core.next_window(at)))
            .unwrap_or((None, None))
    }

    /// The last scaling decision, if one was taken.
    pub fn last_decision(&self) -> Option<DecisionReport> {
        self.reporting.lock().ok().and_then(|s| s.report)
    }

    /// Validates and swaps in new settings (a reload or an API change); they take effect on the
    /// next decision. In-flight and waiting requests are untouched. Invalid settings (including
    /// min/max under the `development` preset) are refused and the running ones stay.
    /// `by` names who asked (`api`, `config`), for the event log.
    pub fn update_config(
        &self,
        config: DeploymentConfig,
        by: &'static str,
    ) -> Result<(), ConfigError> {
        if let Err(e) = config.validate(&self.name) {
            self.events.emit(
                &self.name,
                EventKind::ConfigRejected,
                by,
                format!("settings refused: {e}"),
                Numbers::default(),
            );
            return Err(e);
        }
        self.pool
            .set_replica_concurrency(config.replica_concurrency);
        self.pool
            .set_max_waiting_per_client(config.queue.max_waiting_per_client);
        tracing::info!(deployment = %self.name, min_replicas = config.min_replicas, max_replicas = config.effective_max_replicas(), "settings changed");
        self.events.emit(
            &self.name,
            EventKind::SettingsChanged,
            by,
            changed_fields(&self.config.load(), &config),
            Numbers::default(),
        );
        if let Ok(mut core) = self.core.lock() {
            core.set_settings(CoreSettings::from_config(&config));
        }
        self.config.store(Arc::new(config));
        self.pool.demand().notify_one();
        Ok(())
    }

    async fn control_loop(self: Arc<Self>) {
        self.backend.prepare().await;
        let demand = self.pool.demand();
        let mut stopping = self.stopping.subscribe();
        loop {
            if *stopping.borrow() {
                return;
            }
            self.reconcile().await;
            tokio::select! {
                _ = demand.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
                _ = stopping.changed() => return,
            }
        }
    }

    /// One observe → decide → actuate round: the core decides, the shell logs and carries out.
    async fn reconcile(self: &Arc<Self>) {
        for notice in self.backend.take_notices() {
            self.events.emit(
                &self.name,
                EventKind::ScaledOutside,
                "backend",
                notice,
                Numbers::default(),
            );
        }
        let config = self.config.load_full();
        let now = Instant::now();
        let at = self.at(now);
        let replicas = self.pool.replicas();
        let in_flight = |index: u64| {
            replicas
                .iter()
                .find(|r| r.order == index)
                .map_or(0, |r| r.in_flight())
        };
        let mut out = Vec::new();
        let (decided, accounted) = {
            let Ok(mut core) = self.core.lock() else {
                return; // a panicked holder: keep what we have rather than act on nothing
            };
            let cluster = self.cluster();
            let peers = cluster
                .map(|c| c.peer_load(&self.name, config.autoscaling_window.get()))
                .unwrap_or_default();
            let load = load::measure(
                config.metric,
                core.settings().policy.per_replica(),
                &self.load_inputs(&replicas, &peers),
            );
            let follow = match cluster {
                Some(c) if !c.is_leader() => {
                    Some(self.backend.observed_scale().unwrap_or(core.desired()))
                }
                _ => None,
            };
            let observed = Observation {
                load,
                arrivals: self.arrivals.load(Ordering::Acquire) + peers.arrivals,
                follow,
            };
            let decided = core.tick(at, observed, &in_flight, &mut out);
            (decided, core.accounting_at(at))
        };
        self.stats.desired.store(decided.desired, Ordering::Release);
        self.stats
            .peak_desired
            .fetch_max(decided.desired, Ordering::AcqRel);
        let current = decided.replicas.current();
        // Taken every round, so a signal that led to no scale-up (e.g. at max_replicas) cannot
        // be reported, much later, as the latency of an unrelated one.
        let signal = self.pool.take_demand_signal();
        let mut report = DecisionReport {
            desired: decided.desired,
            reason: decided.reason,
            average_load: decided.average_load,
            current_load: decided.current_load,
            replicas: decided.replicas,
            scale_up_latency: None,
        };
        if decided.desired > current {
            report.scale_up_latency = signal.map(|at| now.saturating_duration_since(at));
            if !decided.in_backoff || decided.previous != decided.desired {
                tracing::info!(
                    deployment = %self.name,
                    desired = decided.desired,
                    current,
                    ready = decided.replicas.ready,
                    average_load = decided.average_load,
                    current_load = decided.current_load,
                    reason = decided.reason,
                    since_request_us = report.scale_up_latency.map(|d| d.as_micros() as u64),
                    in_backoff = decided.in_backoff,
                    "scale up"
                );
            }
        } else if decided.desired < current {
            tracing::info!(
                deployment = %self.name,
                desired = decided.desired,
                current,
                average_load = decided.average_load,
                reason = decided.reason,
                "scale down"
            );
        } else if decided.previous != decided.desired {
            tracing::debug!(deployment = %self.name, desired = decided.desired, reason = decided.reason, "desired replicas");
        }
        for command in out {
            match command {
                Command::Start { index } => self.start_replica(index, now).await,
                Command::Drain { index } => {
                    if let Some(r) = replicas.iter().find(|r| r.order == index) {
                        self.clone().begin_stop(r.clone(), decided.reason);
                    }
                }
                other => self.apply(other),
            }
        }
        if let Ok(mut state) = self.reporting.lock() {
            let latency = report
                .scale_up_latency
                .or(state.report.and_then(|r| r.scale_up_latency));
            report.scale_up_latency = latency;
            state.report = Some(report);
            export_replica_seconds(&self.name, &state.exported, &accounted);
            export_cost(&self.name, &config, &accounted);
            state.exported = accounted;
        }
    }

    /// The cluster this deployment's decisions are shared with: only a Kubernetes-backed
    /// deployment in `[cluster] mode = "kubernetes"` (a process backend is per instance).
    fn cluster(&self) -> Option<&'static Arc<crate::cluster::ClusterView>> {
        crate::cluster::current().filter(|_| self.backend.kind() == "kubernetes")
    }

    /// This instance's counters for the deployment, as the other instances read them (its
    /// cluster's leader sums them).
    pub fn local_load(&self) -> Option<crate::cluster::peers::DeploymentLoad> {
        self.cluster()?;
        Some(crate::cluster::peers::DeploymentLoad {
            in_flight: self.pool.in_flight(),
            waiting: self.pool.waiting(),
            external: self.pool.external(),
            arrivals: self.arrivals.load(Ordering::Acquire),
        })
    }

    /// The pool counters (plus the other instances' in a cluster) and, for metrics that need
    /// them, the ready replicas' last scrapes.
    fn load_inputs(
        &self,
        replicas: &[Arc<Replica>],
        peers: &crate::cluster::peers::DeploymentLoad,
    ) -> LoadInputs {
        let scraped = self.scraped.lock().ok();
        LoadInputs {
            in_flight: self.pool.in_flight() + peers.in_flight,
            waiting: self.pool.waiting() + peers.waiting,
            external: self.pool.external() + peers.external,
            ready_replicas: replicas
                .iter()
                .filter(|r| r.state() == ReplicaState::Ready)
                .map(|r| {
                    scraped
                        .as_ref()
                        .and_then(|m| m.get(&r.id).copied())
                        .unwrap_or(Scraped::Pending)
                })
                .collect(),
        }
    }

    /// Stops the deployment: no more decisions, waiting requests are answered, every replica is
    /// drained (up to `drain_timeout`) and stopped.
    pub async fn shutdown(&self) {
        let _ = self.stopping.send(true);
        self.pool.close();
        let replicas = self.pool.replicas();
        if let Ok(mut core) = self.core.lock() {
            core.drain_all(self.at(Instant::now()));
        }
        let mut stops = Vec::new();
        for replica in replicas.iter() {
            replica.set_state(ReplicaState::Draining);
            stops.push(self.finish_stop(replica.clone()));
        }
        futures_util::future::join_all(stops).await;
    }
}

impl ControllerHandle {
    /// Shuts the deployment down and ends its tasks.
    pub async fn shutdown(self) {
        self.controller.shutdown().await;
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Publishes what the replicas cost so far: `infergate_gpu_seconds_total{deployment}` (replica
/// seconds, asleep excluded, × `gpus_per_replica`) and, with `gpu_hour_price`,
/// `infergate_cost_usd_total{deployment}` (running totals, exported as gauges).
fn export_cost(name: &str, config: &DeploymentConfig, seconds: &ReplicaSeconds) {
    let gpus = config.gpus_per_replica();
    metrics::gauge!("infergate_gpu_seconds_total", "deployment" => name.to_string())
        .set(seconds.gpu_seconds(gpus));
    if let Some(price) = config.gpu_hour_price {
        metrics::gauge!("infergate_cost_usd_total", "deployment" => name.to_string())
            .set(seconds.cost_usd(gpus, price));
    }
}

/// Publishes the replica-seconds so far as `infergate_replica_seconds_total{deployment,state}`:
/// a running total (exported as a gauge because the `metrics` counters only count whole units).
fn export_replica_seconds(name: &str, before: &ReplicaSeconds, now: &ReplicaSeconds) {
    for (state, old, new) in [
        ("starting", before.starting, now.starting),
        ("ready", before.ready, now.ready),
        ("draining", before.draining, now.draining),
        ("sleeping", before.sleeping, now.sleeping),
    ] {
        if new != old || new == 0.0 {
            metrics::gauge!("infergate_replica_seconds_total", "deployment" => name.to_string(), "state" => state)
                .set(new);
        }
    }
}
