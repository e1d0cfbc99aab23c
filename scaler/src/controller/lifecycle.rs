//! One replica's life as the controller runs it: launch (with back-off after failures, and a wait
//! when its GPUs are still held), readiness polling up to `startup_timeout`, crash detection,
//! draining and stopping.

use super::*;

impl Controller {
    pub(super) fn in_backoff(&self, now: Instant) -> bool {
        self.backoff_until
            .lock()
            .ok()
            .and_then(|g| *g)
            .is_some_and(|until| now < until)
    }

    pub(super) fn record_failure(&self, replica: &str, why: &str) {
        self.stats.replicas_failed.fetch_add(1, Ordering::Relaxed);
        self.events.emit(
            &self.name,
            EventKind::ReplicaFailed,
            "backend",
            format!("{replica}: {why}"),
            Numbers::default(),
        );
        let n = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let delay = BACKOFF_BASE
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(BACKOFF_MAX);
        if let Ok(mut g) = self.backoff_until.lock() {
            *g = Some(Instant::now() + delay);
        }
        tracing::warn!(deployment = %self.name, consecutive_failures = n, backoff_ms = delay.as_millis() as u64, "replica failed; next start after back-off");
        let give_up = self.config.load().startup_failures_to_give_up;
        if n >= give_up {
            self.mark_unavailable(Unavailable {
                reason: format!("{n} replica starts in a row failed (startup_failures_to_give_up = {give_up}); the last: {replica}: {why}. Retrying in the background."),
                retry_after_secs: delay.as_secs().max(1),
            });
        }
        let demand = self.pool.demand();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            demand.notify_one();
        });
    }

    /// Holds further starts for `delay` (without counting a failure), then decides again.
    pub(super) fn retry_in(&self, delay: Duration) {
        if let Ok(mut g) = self.backoff_until.lock() {
            *g = Some(Instant::now() + delay);
        }
        let demand = self.pool.demand();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            demand.notify_one();
        });
    }

    /// Launches one replica asked for by the decision taken at `decided`.
    pub(super) async fn start_replica(self: &Arc<Self>, decided: Instant) {
        let config = self.config.load_full();
        let index = self.next_index.fetch_add(1, Ordering::AcqRel);
        match self.backend.launch(&self.name, index).await {
            Ok(launched) => {
                self.waiting_for_gpus.store(false, Ordering::Release);
                self.stats.replicas_started.fetch_add(1, Ordering::Relaxed);
                let replica = Arc::new(Replica::asked_for(
                    format!("{}-{index}", self.name),
                    launched.addr,
                    index,
                    decided,
                ));
                let handle: Arc<dyn ReplicaHandle> = Arc::from(launched.handle);
                if let Ok(mut h) = self.handles.lock() {
                    h.insert(replica.id.clone(), handle.clone());
                }
                self.pool.add_replica(replica.clone());
                tracing::info!(deployment = %self.name, replica = %replica.id, addr = %replica.addr, "replica starting");
                self.events.emit(
                    &self.name,
                    EventKind::ReplicaStarted,
                    "backend",
                    format!("{} launched on {}", replica.id, replica.addr),
                    Numbers::default(),
                );
                tokio::spawn(self.clone().run_replica(replica, handle, config));
            }
            Err(BackendError::WaitingForGpus { needed, free }) => {
                // Not a failure: the GPUs come back when the replica holding them stops. The
                // index is kept for the replica that will start (one control loop: no race).
                self.next_index.store(index, Ordering::Release);
                if !self.waiting_for_gpus.swap(true, Ordering::AcqRel) {
                    tracing::warn!(deployment = %self.name, needed, free, "replica waits for GPUs held by other replicas; it will not start unpinned");
                    self.events.emit(
                        &self.name,
                        EventKind::ReplicaWaiting,
                        "backend",
                        format!("{}-{index} waits for {needed} GPU(s), {free} free: held by other replicas", self.name),
                        Numbers::default(),
                    );
                }
                self.retry_in(GPU_RETRY);
            }
            Err(e) => {
                tracing::error!(deployment = %self.name, error = %e, "cannot start replica");
                self.record_failure(&format!("{}-{index}", self.name), &e.to_string());
            }
        }
    }

    /// Polls readiness until ready, failed or timed out; then watches for a crash.
    pub(super) async fn run_replica(
        self: Arc<Self>,
        replica: Arc<Replica>,
        handle: Arc<dyn ReplicaHandle>,
        config: Arc<DeploymentConfig>,
    ) {
        let deadline = replica.created + config.startup_timeout.get();
        let interval = config.health.interval.get();
        let probe_timeout = interval.max(Duration::from_millis(500));
        let failure = loop {
            if replica.state() != ReplicaState::Starting {
                return; // asked to stop while starting
            }
            if health::probe(replica.addr, &config.health.path, probe_timeout).await {
                break None;
            }
            if Instant::now() >= deadline {
                tracing::warn!(deployment = %self.name, replica = %replica.id, timeout = ?config.startup_timeout.get(), "replica not ready within startup_timeout");
                break Some(format!(
                    "not ready within startup_timeout ({})",
                    config.startup_timeout
                ));
            }
            tokio::select! {
                status = handle.exited() => {
                    tracing::warn!(deployment = %self.name, replica = %replica.id, exit = %status.description, "replica exited while starting");
                    break Some(format!("exited while starting ({})", status.description));
                }
                _ = tokio::time::sleep(interval) => {}
            }
        };
        if let Some(why) = failure {
            let tail = handle.output_tail();
            let why = match tail.len() {
                0 => why,
                n => format!(
                    "{why}; last output: {}",
                    tail[n.saturating_sub(5)..].join(" | ")
                ),
            };
            replica.set_state(ReplicaState::Failed);
            self.pool.remove_replica(&replica.id);
            handle.terminate(config.stop.kill_grace.get()).await;
            self.forget(&replica.id);
            self.record_failure(&replica.id, &why);
            return;
        }
        if replica.state() != ReplicaState::Starting {
            return;
        }
        let cold_start = replica.mark_ready();
        metrics::histogram!("infergate_cold_start_seconds", "deployment" => self.name.clone())
            .record(cold_start.as_secs_f64());
        self.consecutive_failures.store(0, Ordering::Release);
        self.mark_available(&format!("{} is ready", replica.id));
        tracing::info!(
            deployment = %self.name,
            replica = %replica.id,
            cold_start_ms = cold_start.as_millis() as u64,
            "replica ready"
        );
        self.events.emit(
            &self.name,
            EventKind::ReplicaReady,
            "backend",
            format!(
                "{} ready after a {:.1} s cold start",
                replica.id,
                cold_start.as_secs_f64()
            ),
            Numbers::default(),
        );
        self.pool.notify_capacity();
        // Decide again at once (a waking deployment becomes active now, not on the next tick).
        self.pool.demand().notify_one();

        let status = tokio::select! {
            status = handle.exited() => status,
            _ = self.clone().watch_ready_replica(replica.clone(), true) => handle.exited().await,
        };
        if replica.state() == ReplicaState::Ready {
            tracing::warn!(deployment = %self.name, replica = %replica.id, exit = %status.description, in_flight = replica.in_flight(), "replica crashed; it will be replaced");
            replica.set_state(ReplicaState::Failed);
            self.pool.remove_replica(&replica.id);
            self.forget(&replica.id);
            self.record_failure(&replica.id, &format!("crashed ({})", status.description));
        }
    }

    pub(super) fn forget(&self, id: &str) {
        if let Ok(mut h) = self.handles.lock() {
            h.remove(id);
        }
    }

    /// Marks a replica draining (no new requests) and stops it once idle or after the drain timeout.
    pub(super) fn begin_stop(self: Arc<Self>, replica: Arc<Replica>, why: &str) {
        let was = replica.state();
        if !matches!(was, ReplicaState::Ready | ReplicaState::Starting) {
            return;
        }
        replica.set_state(ReplicaState::Draining);
        tracing::info!(deployment = %self.name, replica = %replica.id, reason = why, "replica draining");
        tokio::spawn(async move { self.finish_stop(replica).await });
    }

    pub(super) async fn finish_stop(&self, replica: Arc<Replica>) {
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
        self.events.emit(
            &self.name,
            EventKind::ReplicaStopped,
            "backend",
            format!("{} stopped", replica.id),
            Numbers::default(),
        );
    }

    /// Nothing can answer: waiting requests get 503 with `why` at once (logged and evented on
    /// the change only).
    pub(super) fn mark_unavailable(&self, why: Unavailable) {
        let was = self.pool.is_unavailable();
        if !was {
            tracing::warn!(deployment = %self.name, reason = %why.reason, "deployment unavailable: waiting requests get 503 until it recovers");
            self.events.emit(
                &self.name,
                EventKind::DeploymentUnavailable,
                "autoscaler",
                why.reason.clone(),
                Numbers::default(),
            );
        }
        self.pool.set_unavailable(Some(why));
    }

    /// The deployment can answer again (`what` says why).
    pub(super) fn mark_available(&self, what: &str) {
        if self.pool.is_unavailable() {
            self.pool.set_unavailable(None);
            tracing::info!(deployment = %self.name, "deployment available again ({what})");
            self.events.emit(
                &self.name,
                EventKind::DeploymentAvailable,
                "autoscaler",
                format!("available again: {what}"),
                Numbers::default(),
            );
        }
    }
}
