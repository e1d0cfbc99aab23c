//! The replica lifecycle controller of one deployment: it observes the pool, asks the policy what to
//! do, and actuates through the backend — starting replicas, polling their readiness, replacing
//! crashed ones with back-off, and draining replicas before stopping them.

use crate::backend::{self, Backend, ReplicaHandle};
use crate::health;
use crate::policy::{self, Observation, ReplicaView};
use crate::pool::ReplicaPool;
use crate::replica::{Replica, ReplicaState};
use arc_swap::ArcSwap;
use infergate_config::DeploymentConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the controller re-evaluates without a demand signal.
const TICK: Duration = Duration::from_millis(200);
/// First back-off after a failed replica; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Back-off ceiling.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

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
}

/// One deployment's controller.
pub struct Controller {
    name: String,
    config: ArcSwap<DeploymentConfig>,
    pool: Arc<ReplicaPool>,
    backend: Arc<dyn Backend>,
    next_index: AtomicU64,
    handles: Mutex<HashMap<String, Arc<dyn ReplicaHandle>>>,
    consecutive_failures: AtomicU32,
    backoff_until: Mutex<Option<Instant>>,
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
    /// Creates the pool and starts the dispatcher and control loop for one deployment.
    pub fn spawn(name: &str, config: DeploymentConfig) -> ControllerHandle {
        let backend = backend::from_config(&config);
        Self::spawn_with_backend(name, config, backend)
    }

    /// Same as [`Controller::spawn`] with an explicit backend (tests, other backends).
    pub fn spawn_with_backend(
        name: &str,
        config: DeploymentConfig,
        backend: Arc<dyn Backend>,
    ) -> ControllerHandle {
        let pool = ReplicaPool::new(name, config.replica_concurrency);
        let (stopping, _) = watch::channel(false);
        let controller = Arc::new(Controller {
            name: name.to_string(),
            config: ArcSwap::from_pointee(config),
            pool: pool.clone(),
            backend,
            next_index: AtomicU64::new(0),
            handles: Mutex::new(HashMap::new()),
            consecutive_failures: AtomicU32::new(0),
            backoff_until: Mutex::new(None),
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
        } else {
            tasks.push(tokio::spawn(controller.clone().control_loop()));
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

    /// Swaps in new settings; they take effect on the next decision. In-flight and waiting
    /// requests are untouched.
    pub fn update_config(&self, config: DeploymentConfig) {
        self.pool
            .set_replica_concurrency(config.replica_concurrency);
        self.config.store(Arc::new(config));
        self.pool.demand().notify_one();
    }

    async fn control_loop(self: Arc<Self>) {
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

    /// One observe → decide → actuate round.
    async fn reconcile(self: &Arc<Self>) {
        let config = self.config.load_full();
        let now = Instant::now();
        let replicas = self.pool.replicas();
        let obs = Observation {
            replicas: replicas
                .iter()
                .map(|r| ReplicaView {
                    state: r.state(),
                    in_flight: r.in_flight(),
                    idle_for: r.idle_for(now),
                })
                .collect(),
            waiting: self.pool.waiting(),
            in_flight: self.pool.in_flight(),
        };
        let decision = policy::decide(&config, &obs);
        let previous = self.stats.desired.swap(decision.desired, Ordering::AcqRel);
        if previous != decision.desired {
            tracing::info!(
                deployment = %self.name,
                desired = decision.desired,
                previous,
                waiting = obs.waiting,
                in_flight = obs.in_flight,
                reason = decision.reason,
                "scaling decision"
            );
        }
        for index in &decision.stop {
            if let Some(replica) = replicas.get(*index) {
                self.clone()
                    .begin_stop(replica.clone(), "idle for scale_down_delay");
            }
        }
        for _ in 0..decision.start {
            if self.in_backoff(now) {
                break;
            }
            self.start_replica(&config).await;
        }
    }

    fn in_backoff(&self, now: Instant) -> bool {
        self.backoff_until
            .lock()
            .ok()
            .and_then(|g| *g)
            .is_some_and(|until| now < until)
    }

    fn record_failure(&self) {
        self.stats.replicas_failed.fetch_add(1, Ordering::Relaxed);
        let n = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let delay = BACKOFF_BASE
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(BACKOFF_MAX);
        if let Ok(mut g) = self.backoff_until.lock() {
            *g = Some(Instant::now() + delay);
        }
        tracing::warn!(deployment = %self.name, consecutive_failures = n, backoff_ms = delay.as_millis() as u64, "replica failed; next start after back-off");
        let demand = self.pool.demand();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            demand.notify_one();
        });
    }

    async fn start_replica(self: &Arc<Self>, config: &DeploymentConfig) {
        let index = self.next_index.fetch_add(1, Ordering::AcqRel);
        match self.backend.launch(&self.name, index).await {
            Ok(launched) => {
                self.stats.replicas_started.fetch_add(1, Ordering::Relaxed);
                let replica = Arc::new(Replica::new(
                    format!("{}-{index}", self.name),
                    launched.addr,
                ));
                let handle: Arc<dyn ReplicaHandle> = Arc::from(launched.handle);
                if let Ok(mut h) = self.handles.lock() {
                    h.insert(replica.id.clone(), handle.clone());
                }
                self.pool.add_replica(replica.clone());
                tracing::info!(deployment = %self.name, replica = %replica.id, addr = %replica.addr, "replica starting");
                tokio::spawn(self.clone().run_replica(replica, handle, config.clone()));
            }
            Err(e) => {
                tracing::error!(deployment = %self.name, error = %e, "cannot start replica");
                self.record_failure();
            }
        }
    }

    /// Polls readiness until ready, failed or timed out; then watches for a crash.
    async fn run_replica(
        self: Arc<Self>,
        replica: Arc<Replica>,
        handle: Arc<dyn ReplicaHandle>,
        config: DeploymentConfig,
    ) {
        let deadline = replica.created + config.startup_timeout.get();
        let interval = config.health.interval.get();
        let probe_timeout = interval.max(Duration::from_millis(500));
        let ready = loop {
            if replica.state() != ReplicaState::Starting {
                return; // asked to stop while starting
            }
            if health::probe(replica.addr, &config.health.path, probe_timeout).await {
                break true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(deployment = %self.name, replica = %replica.id, timeout = ?config.startup_timeout.get(), "replica not ready within startup_timeout");
                break false;
            }
            tokio::select! {
                status = handle.exited() => {
                    tracing::warn!(deployment = %self.name, replica = %replica.id, exit = %status.description, "replica exited while starting");
                    break false;
                }
                _ = tokio::time::sleep(interval) => {}
            }
        };
        if !ready {
            replica.set_state(ReplicaState::Failed);
            self.pool.remove_replica(&replica.id);
            handle.terminate(config.stop.kill_grace.get()).await;
            self.forget(&replica.id);
            self.record_failure();
            return;
        }
        if replica.state() != ReplicaState::Starting {
            return;
        }
        replica.set_state(ReplicaState::Ready);
        replica.touch();
        self.consecutive_failures.store(0, Ordering::Release);
        tracing::info!(
            deployment = %self.name,
            replica = %replica.id,
            cold_start_ms = replica.created.elapsed().as_millis() as u64,
            "replica ready"
        );
        self.pool.notify_capacity();

        let status = handle.exited().await;
        if replica.state() == ReplicaState::Ready {
            tracing::warn!(deployment = %self.name, replica = %replica.id, exit = %status.description, in_flight = replica.in_flight(), "replica crashed; it will be replaced");
            replica.set_state(ReplicaState::Failed);
            self.pool.remove_replica(&replica.id);
            self.forget(&replica.id);
            self.record_failure();
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut h) = self.handles.lock() {
            h.remove(id);
        }
    }

    /// Marks a replica draining (no new requests) and stops it once idle or after the drain timeout.
    fn begin_stop(self: Arc<Self>, replica: Arc<Replica>, why: &'static str) {
        let was = replica.state();
        if !matches!(was, ReplicaState::Ready | ReplicaState::Starting) {
            return;
        }
        replica.set_state(ReplicaState::Draining);
        tracing::info!(deployment = %self.name, replica = %replica.id, reason = why, "replica draining");
        tokio::spawn(async move { self.finish_stop(replica).await });
    }

    async fn finish_stop(&self, replica: Arc<Replica>) {
        let config = self.config.load_full();
        let deadline = Instant::now() + config.stop.drain_timeout.get();
        while replica.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let handle = self
            .handles
            .lock()
            .ok()
            .and_then(|mut h| h.remove(&replica.id));
        if let Some(handle) = handle {
            handle.terminate(config.stop.kill_grace.get()).await;
        }
        replica.set_state(ReplicaState::Stopped);
        self.pool.remove_replica(&replica.id);
        self.stats.replicas_stopped.fetch_add(1, Ordering::Relaxed);
        tracing::info!(deployment = %self.name, replica = %replica.id, "replica stopped");
    }

    /// Health-checks a fixed (static) replica for as long as the controller runs.
    async fn watch_fixed_replica(self: Arc<Self>, replica: Arc<Replica>) {
        let mut stopping = self.stopping.subscribe();
        loop {
            let config = self.config.load_full();
            let interval = config.health.interval.get();
            let healthy = health::probe(
                replica.addr,
                &config.health.path,
                interval.max(Duration::from_millis(500)),
            )
            .await;
            match (replica.state(), healthy) {
                (ReplicaState::Starting, true) => {
                    replica.set_state(ReplicaState::Ready);
                    tracing::info!(deployment = %self.name, replica = %replica.id, "static replica healthy");
                    self.pool.notify_capacity();
                }
                (ReplicaState::Ready, false) => {
                    replica.set_state(ReplicaState::Starting);
                    tracing::warn!(deployment = %self.name, replica = %replica.id, "static replica unhealthy");
                }
                _ => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopping.changed() => return,
            }
        }
    }

    /// Stops the deployment: no more decisions, waiting requests are answered, every replica is
    /// drained (up to `drain_timeout`) and stopped.
    pub async fn shutdown(&self) {
        let _ = self.stopping.send(true);
        self.pool.close();
        let replicas = self.pool.replicas();
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
