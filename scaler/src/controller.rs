//! The replica lifecycle controller of one deployment: it samples the load, asks the policy what
//! to do, and actuates through the backend — starting replicas, polling their readiness, replacing
//! failed ones with back-off, and draining replicas before stopping them.
//!
//! The policy (`crate::policy`) is pure; everything with a clock, a socket or a process lives here.
//! Starting, watching and stopping one replica is `controller/lifecycle.rs`; watching replicas'
//! health (and a static deployment's availability) is `controller/health_watch.rs`; scraping
//! their metrics is `controller/scraping.rs`; maintenance is `controller/maintenance.rs`.

mod health_watch;
mod lifecycle;
mod maintenance;
mod scraping;
mod settings_diff;

pub use settings_diff::changed_fields;

use crate::backend::{self, Backend, BackendError, ReplicaHandle};
use crate::events::{EventKind, EventSink, Numbers};
use crate::health;
use crate::hibernation::{self, HibernationMemory, HibernationSettings, Serving};
use crate::load::{self, LoadHistory, LoadInputs, Scraped};
use crate::policy::{self, PolicyMemory, ReplicaCounts, Settings};
use crate::pool::{ReplicaPool, Unavailable};
use crate::replica::{Replica, ReplicaState};
use crate::scale_down::{choose_replicas_to_stop, Candidate};
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
/// First back-off after a failed replica; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Back-off ceiling.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often a replica waiting for GPUs tries again.
const GPU_RETRY: Duration = Duration::from_millis(250);

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

/// What the control loop carries between decisions (touched only by the control loop and by
/// readers of the report; never by the request path).
#[derive(Debug, Default)]
struct AutoscalingState {
    history: LoadHistory,
    memory: PolicyMemory,
    report: Option<DecisionReport>,
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
    /// Since when a static deployment has had no healthy replica.
    no_healthy_since: Mutex<Option<Instant>>,
    /// A start is waiting for GPUs (logged and evented once per wait).
    waiting_for_gpus: std::sync::atomic::AtomicBool,
    autoscaling: Mutex<AutoscalingState>,
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
    /// `Serving` as u8: read by the data plane on every request, lock-free.
    serving: std::sync::atomic::AtomicU8,
    /// Requests that arrived for this deployment (any state, any route).
    arrivals: AtomicU64,
    hibernation: Mutex<HibernationMemory>,
    events: EventSink,
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
    /// deployment, which starts with max(1, min_replicas) replicas.
    pub fn spawn(name: &str, config: DeploymentConfig, events: EventSink) -> ControllerHandle {
        let backend = backend::from_config(&config);
        Self::spawn_with_backend(name, config, backend, events)
    }

    /// Same as [`Controller::spawn`] with an explicit backend (tests, other backends).
    pub fn spawn_with_backend(
        name: &str,
        config: DeploymentConfig,
        backend: Arc<dyn Backend>,
        events: EventSink,
    ) -> ControllerHandle {
        let pool = ReplicaPool::new(name, config.replica_concurrency);
        let (stopping, _) = watch::channel(false);
        let settings = Settings::from_config(&config);
        let controller = Arc::new(Controller {
            name: name.to_string(),
            config: ArcSwap::from_pointee(config),
            pool: pool.clone(),
            backend,
            next_index: AtomicU64::new(0),
            handles: Mutex::new(HashMap::new()),
            consecutive_failures: AtomicU32::new(0),
            backoff_until: Mutex::new(None),
            waiting_for_gpus: std::sync::atomic::AtomicBool::new(false),
            no_healthy_since: Mutex::new(None),
            autoscaling: Mutex::new(AutoscalingState {
                memory: PolicyMemory::first_deploy(&settings),
                ..AutoscalingState::default()
            }),
            scraped: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            maintenance: std::sync::atomic::AtomicBool::new(false),
            maintenance_over: tokio::sync::Notify::new(),
            maintenance_held: AtomicU64::new(0),
            serving: std::sync::atomic::AtomicU8::new(Serving::Active as u8),
            arrivals: AtomicU64::new(0),
            hibernation: Mutex::new(HibernationMemory::default()),
            events,
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
    /// controller is woken at once to count towards `wake_after_requests`.
    pub fn note_request(&self) {
        self.arrivals.fetch_add(1, Ordering::Relaxed);
        if self.serving() == Serving::Hibernated {
            self.pool.demand().notify_one();
        }
    }

    /// Hibernates by hand: zero replicas until requests wake it or `resume`.
    pub fn hibernate(&self) -> Result<(), String> {
        self.transition_by_hand(&[Serving::Active, Serving::Waking], Serving::Hibernated)
    }

    /// Wakes a hibernated deployment by hand.
    pub fn resume(&self) -> Result<(), String> {
        self.transition_by_hand(&[Serving::Hibernated], Serving::Waking)
    }

    /// Brings a deactivated deployment back.
    pub fn activate(&self) -> Result<(), String> {
        self.transition_by_hand(&[Serving::Deactivated], Serving::Waking)
    }

    fn transition_by_hand(&self, from: &[Serving], to: Serving) -> Result<(), String> {
        let now = self.epoch.elapsed();
        let current = self.serving();
        if current == to {
            return Ok(());
        }
        if !from.contains(&current) {
            return Err(format!(
                "deployment {} is {}; this applies to {}",
                self.name,
                current.name(),
                from.iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        }
        if let Ok(mut memory) = self.hibernation.lock() {
            hibernation::manual(&mut memory, to, self.arrivals.load(Ordering::Acquire), now);
        }
        self.enter(to, "by hand");
        self.pool.demand().notify_one();
        Ok(())
    }

    /// Switches the serving state; waking starts like a first deploy (max(1, min) replicas).
    fn enter(&self, to: Serving, reason: &str) {
        let from = Serving::from_u8(self.serving.swap(to as u8, Ordering::AcqRel));
        if from == to {
            return;
        }
        if to == Serving::Waking {
            let settings = Settings::from_config(&self.config.load());
            if let Ok(mut state) = self.autoscaling.lock() {
                state.memory = PolicyMemory::first_deploy(&settings);
            }
        }
        tracing::info!(deployment = %self.name, from = from.name(), to = to.name(), reason, "serving state changed");
        let kind = match (from, to) {
            (_, Serving::Hibernated) => EventKind::Hibernated,
            (_, Serving::Deactivated) => EventKind::Deactivated,
            (Serving::Deactivated, _) => EventKind::Activated,
            (Serving::Hibernated, _) => EventKind::Woke,
            _ => return, // waking → active is the replica_ready event
        };
        let component = if reason == "by hand" {
            "api"
        } else {
            "autoscaler"
        };
        self.events.emit(
            &self.name,
            kind,
            component,
            format!("{} → {}: {reason}", from.name(), to.name()),
            Numbers::default(),
        );
    }

    /// Runs the hibernation state machine; true when the deployment must be held at zero.
    fn step_hibernation(&self, config: &DeploymentConfig, ready: u32, now: Instant) -> bool {
        let settings = HibernationSettings::from_config(config);
        let at = now.saturating_duration_since(self.epoch);
        let total = self.arrivals.load(Ordering::Acquire);
        let transition = self.hibernation.lock().ok().and_then(|mut memory| {
            hibernation::step(&settings, self.serving(), total, ready, &mut memory, at)
        });
        if let Some(t) = transition {
            self.enter(t.to, t.reason);
        }
        self.serving().holds_at_zero()
    }

    /// Where this deployment's events go (the data plane reports fallback events here).
    pub fn events(&self) -> &EventSink {
        &self.events
    }

    /// The last scaling decision, if one was taken.
    pub fn last_decision(&self) -> Option<DecisionReport> {
        self.autoscaling.lock().ok().and_then(|s| s.report)
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
        tracing::info!(deployment = %self.name, min_replicas = config.min_replicas, max_replicas = config.effective_max_replicas(), "settings changed");
        self.events.emit(
            &self.name,
            EventKind::SettingsChanged,
            by,
            changed_fields(&self.config.load(), &config),
            Numbers::default(),
        );
        self.config.store(Arc::new(config));
        self.pool.demand().notify_one();
        Ok(())
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
        let settings = Settings::from_config(&config);
        let now = Instant::now();
        let replicas = self.pool.replicas();
        let counts = ReplicaCounts {
            starting: count_in(&replicas, ReplicaState::Starting),
            ready: count_in(&replicas, ReplicaState::Ready),
        };
        let load = load::measure(
            config.metric,
            settings.per_replica(),
            &self.load_inputs(&replicas),
        );
        let mut report = self.decide(&settings, counts, load, now);
        if self.step_hibernation(&config, counts.ready, now) {
            report.desired = 0;
            report.reason = self.serving().name();
        }
        let current = counts.current();
        if report.desired == 0 && current == 0 {
            // Nothing is being started any more (load is gone): the next request must get a
            // fresh try — waiting, and asking for a replica — not the 503 of the last attempt.
            self.mark_available("no replica is wanted now; the next request starts one afresh");
        }
        let previous = self.stats.desired.swap(report.desired, Ordering::AcqRel);
        self.stats
            .peak_desired
            .fetch_max(report.desired, Ordering::AcqRel);

        // Taken every round, so a signal that led to no scale-up (e.g. at max_replicas) cannot
        // be reported, much later, as the latency of an unrelated one.
        let signal = self.pool.take_demand_signal();
        if report.desired > current {
            report.scale_up_latency = signal.map(|at| now.saturating_duration_since(at));
            let acting = !self.in_backoff(now);
            if acting || previous != report.desired {
                tracing::info!(
                    deployment = %self.name,
                    desired = report.desired,
                    current,
                    ready = counts.ready,
                    average_load = report.average_load,
                    current_load = report.current_load,
                    reason = report.reason,
                    since_request_us = report.scale_up_latency.map(|d| d.as_micros() as u64),
                    in_backoff = !acting,
                    "scale up"
                );
            }
            if report.desired > previous {
                self.events.emit(
                    &self.name,
                    EventKind::ScaledUp,
                    "autoscaler",
                    format!(
                        "{current} → {} replicas ({})",
                        report.desired, report.reason
                    ),
                    numbers(&report, current),
                );
            }
            for _ in current..report.desired {
                if self.in_backoff(Instant::now()) {
                    break;
                }
                self.start_replica(now).await;
            }
        } else if report.desired < current {
            tracing::info!(
                deployment = %self.name,
                desired = report.desired,
                current,
                average_load = report.average_load,
                reason = report.reason,
                "scale down"
            );
            self.events.emit(
                &self.name,
                EventKind::ScaledDown,
                "autoscaler",
                format!(
                    "{current} → {} replicas ({})",
                    report.desired, report.reason
                ),
                numbers(&report, current),
            );
            let candidates: Vec<Candidate> = replicas
                .iter()
                .map(|r| Candidate {
                    state: r.state(),
                    in_flight: r.in_flight(),
                    order: r.order,
                })
                .collect();
            let excess = (current - report.desired) as usize;
            for i in choose_replicas_to_stop(&candidates, excess) {
                self.clone().begin_stop(replicas[i].clone(), report.reason);
            }
        } else if previous != report.desired {
            tracing::debug!(deployment = %self.name, desired = report.desired, reason = report.reason, "desired replicas");
        }
        if let Ok(mut state) = self.autoscaling.lock() {
            let latency = report
                .scale_up_latency
                .or(state.report.and_then(|r| r.scale_up_latency));
            report.scale_up_latency = latency;
            state.report = Some(report);
        }
    }

    /// Records the load and runs the pure policy.
    fn decide(
        &self,
        settings: &Settings,
        counts: ReplicaCounts,
        load: f64,
        now: Instant,
    ) -> DecisionReport {
        let at = now.saturating_duration_since(self.epoch);
        let Ok(mut state) = self.autoscaling.lock() else {
            // A panicked holder: keep what we have rather than act on nothing.
            return DecisionReport {
                desired: counts.current(),
                reason: "state unavailable",
                average_load: load,
                current_load: load,
                replicas: counts,
                scale_up_latency: None,
            };
        };
        let keep = settings.autoscaling_window + Duration::from_secs(1);
        state.history.record(at, load, keep);
        let memory = state.memory;
        let decision = policy::decide(settings, state.history.samples(), counts, memory, at);
        let report = DecisionReport {
            desired: decision.desired,
            reason: decision.reason.name(),
            average_load: decision.average_load,
            current_load: decision.current_load,
            replicas: counts,
            scale_up_latency: None,
        };
        state.memory = decision.memory;
        report
    }

    /// The pool counters and, for metrics that need them, the ready replicas' last scrapes.
    fn load_inputs(&self, replicas: &[Arc<Replica>]) -> LoadInputs {
        let scraped = self.scraped.lock().ok();
        LoadInputs {
            in_flight: self.pool.in_flight(),
            waiting: self.pool.waiting(),
            external: self.pool.external(),
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

fn count_in(replicas: &[Arc<Replica>], state: ReplicaState) -> u32 {
    replicas.iter().filter(|r| r.state() == state).count() as u32
}

/// The numbers behind a scaling decision, for its event.
fn numbers(report: &DecisionReport, current: u32) -> Numbers {
    Numbers {
        load: Some(report.average_load.max(report.current_load)),
        desired: Some(report.desired),
        current: Some(current),
    }
}
