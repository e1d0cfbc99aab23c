//! One replica's life as the shell runs it: launch (the core decides when, and handles back-off
//! and GPU waits), readiness polling, crash detection, draining and stopping.

use super::*;

impl Controller {
    /// Launches replica `index`, asked for by the decision taken at `decided`, unless a failure
    /// or a GPU wait earlier in the same batch cancelled it.
    pub(super) async fn start_replica(self: &Arc<Self>, index: u64, decided: Instant) {
        if !self.core.lock().is_ok_and(|core| core.wants_launch(index)) {
            return;
        }
        let config = self.config.load_full();
        match self.backend.launch(&self.name, index).await {
            Ok(launched) => {
                if let Ok(mut core) = self.core.lock() {
                    core.launched(index);
                }
                self.stats.replicas_started.fetch_add(1, Ordering::Relaxed);
                let id = format!("{}-{index}", self.name);
                let replica = Arc::new(match launched.addr {
                    Some(addr) => Replica::asked_for(id, addr, index, decided),
                    None => Replica::without_address(id, index, decided),
                });
                let handle: Arc<dyn ReplicaHandle> = Arc::from(launched.handle);
                if let Ok(mut h) = self.handles.lock() {
                    h.insert(replica.id.clone(), handle.clone());
                }
                self.pool.add_replica(replica.clone());
                let on = if replica.has_addr() {
                    format!("on {}", replica.addr())
                } else {
                    format!(
                        "({}: its address comes when it is ready)",
                        self.backend.kind()
                    )
                };
                tracing::info!(deployment = %self.name, replica = %replica.id, addr = %replica.addr(), "replica starting");
                self.events.emit(
                    &self.name,
                    EventKind::ReplicaStarted,
                    "backend",
                    format!("{} launched {on}", replica.id),
                    Numbers::default(),
                );
                tokio::spawn(self.clone().run_replica(replica, handle, config));
            }
            Err(BackendError::WaitingForGpus { needed, free }) => {
                // Not a failure: the GPUs come back when the replica holding them stops.
                let mut out = Vec::new();
                let at = self.at(Instant::now());
                if let Ok(mut core) = self.core.lock() {
                    core.waiting_for_gpus(index, needed as u32, free as u32, at, &mut out);
                }
                if !out.is_empty() {
                    tracing::warn!(deployment = %self.name, needed, free, "replica waits for GPUs held by other replicas; it will not start unpinned");
                }
                self.apply_all(out);
                if let Some(shared) = &self.gpus {
                    // Another deployment's idle replica may give its GPUs up.
                    shared.evict_for(&self.name, needed as u32);
                }
                self.wake_after(crate::lifecycle::GPU_RETRY);
            }
            Err(e) => {
                tracing::error!(deployment = %self.name, error = %e, "cannot start replica");
                self.record_failure(index, &format!("{}-{index}", self.name), &e.to_string());
            }
        }
    }

    /// Polls readiness until ready or exited (the core fails a replica past its startup
    /// deadline and the replica then leaves `starting`); then watches for a crash.
    pub(super) async fn run_replica(
        self: Arc<Self>,
        replica: Arc<Replica>,
        handle: Arc<dyn ReplicaHandle>,
        config: Arc<DeploymentConfig>,
    ) {
        let interval = config.health.interval.get();
        let probe_timeout = interval.max(Duration::from_millis(500));
        let failure = loop {
            if replica.state() != ReplicaState::Starting {
                return; // asked to stop, or failed by the core, while starting
            }
            if !replica.has_addr() {
                if let Some(addr) = handle.assigned_addr() {
                    tracing::info!(deployment = %self.name, replica = %replica.id, %addr, "replica has an address");
                    replica.set_addr(addr);
                }
            }
            if replica.has_addr()
                && health::probe(replica.addr(), &config.health.path, probe_timeout).await
            {
                break None;
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
            if replica.state() != ReplicaState::Starting {
                return;
            }
            let why = commands::with_output_tail(why, handle.output_tail());
            replica.set_state(ReplicaState::Failed);
            self.pool.remove_replica(&replica.id);
            handle.terminate(config.stop.kill_grace.get()).await;
            self.forget(&replica.id);
            self.record_failure(replica.order, &replica.id, &why);
            return;
        }
        let mut out = Vec::new();
        let at = self.at(Instant::now());
        let still_wanted = self
            .core
            .lock()
            .ok()
            .and_then(|mut core| core.replica_ready(replica.order, at, &mut out))
            .is_some();
        if !still_wanted || replica.state() != ReplicaState::Starting {
            return;
        }
        let cold_start = replica.mark_ready();
        metrics::histogram!("infergate_cold_start_seconds", "deployment" => self.name.clone())
            .record(cold_start.as_secs_f64());
        self.apply_all(out);
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
        if status.removed && replica.state() == ReplicaState::Ready {
            // The pod goes on the leader's decision: let in-flight requests finish, then stop.
            tracing::info!(deployment = %self.name, replica = %replica.id, exit = %status.description, "replica removed by the cluster's leader");
            self.clone()
                .begin_stop(replica, "removed by the cluster's leader");
            return;
        }
        if replica.state() == ReplicaState::Ready {
            tracing::warn!(deployment = %self.name, replica = %replica.id, exit = %status.description, in_flight = replica.in_flight(), "replica crashed; it will be replaced");
            replica.set_state(ReplicaState::Failed);
            self.pool.remove_replica(&replica.id);
            self.forget(&replica.id);
            self.record_failure(
                replica.order,
                &replica.id,
                &format!("crashed ({})", status.description),
            );
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
        if !matches!(
            was,
            ReplicaState::Ready | ReplicaState::Starting | ReplicaState::Sleeping
        ) {
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
        if let Ok(mut core) = self.core.lock() {
            core.replica_stopped(replica.order, self.at(Instant::now()));
        }
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
