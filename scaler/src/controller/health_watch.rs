//! The controller's watch over replicas once they can take requests: static replicas until they
//! first answer, then every ready replica every `health.interval_ready`, carrying out what the
//! pure [`ReadyHealth`] machine (`crate::ejection`) decides.

use super::Controller;
use crate::ejection::{EjectionSettings, HealthCommand, ReadyHealth};
use crate::events::{EventKind, Numbers};
use crate::health;
use crate::replica::{Replica, ReplicaState};
use std::sync::Arc;

impl Controller {
    /// Health-checks a fixed (static) replica for as long as the controller runs: polled every
    /// `health.interval` until it first answers, then watched like any ready replica.
    pub(super) async fn watch_fixed_replica(self: Arc<Self>, replica: Arc<Replica>) {
        let mut stopping = self.stopping.subscribe();
        while replica.state() == ReplicaState::Starting {
            let config = self.config.load_full();
            let interval = config.health.interval.get();
            if health::probe(
                replica.addr,
                &config.health.path,
                config.health.timeout.get(),
            )
            .await
            {
                replica.mark_ready();
                tracing::info!(deployment = %self.name, replica = %replica.id, "static replica healthy");
                self.pool.notify_capacity();
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopping.changed() => return,
            }
        }
        tokio::select! {
            _ = self.clone().watch_ready_replica(replica, false) => {}
            _ = stopping.changed() => {}
        }
    }

    /// Keeps checking a ready replica every `health.interval_ready` and carries out what the
    /// pure [`ReadyHealth`] machine decides: eject, readmit, or (when `replaceable`, the process
    /// backend) drain and replace a replica that stays unhealthy — a hung model server is
    /// noticed, not kept `ready` forever. Returns once the replica leaves `ready`.
    pub(super) async fn watch_ready_replica(
        self: Arc<Self>,
        replica: Arc<Replica>,
        replaceable: bool,
    ) {
        let mut health = ReadyHealth::default();
        loop {
            let config = self.config.load_full();
            tokio::time::sleep(config.health.interval_ready.get()).await;
            if replica.state() != ReplicaState::Ready {
                return;
            }
            if replica.is_ejected() && !health.ejected {
                // Ejected by the data plane after a refused connect.
                health.connect_failed();
            }
            let healthy = health::probe(
                replica.addr,
                &config.health.path,
                config.health.timeout.get(),
            )
            .await;
            if replica.state() != ReplicaState::Ready {
                return;
            }
            let settings = EjectionSettings {
                failures_to_eject: config.health.failures_to_eject,
                replaceable,
            };
            let failures = health.consecutive_failures + 1;
            match health.check(healthy, settings) {
                HealthCommand::Keep => {}
                HealthCommand::Eject => {
                    replica.eject();
                    tracing::warn!(deployment = %self.name, replica = %replica.id, failures, "replica failed its health checks; no new requests until it passes one");
                    self.emit_health(&replica, EventKind::ReplicaEjected, format!("failed {failures} health checks in a row; no new requests until one passes"));
                }
                HealthCommand::Readmit => {
                    replica.readmit();
                    tracing::info!(deployment = %self.name, replica = %replica.id, "replica healthy again; back in rotation");
                    self.emit_health(
                        &replica,
                        EventKind::ReplicaReadmitted,
                        "healthy again; back in rotation".into(),
                    );
                    self.pool.notify_capacity();
                }
                HealthCommand::Replace => {
                    replica.eject();
                    tracing::warn!(deployment = %self.name, replica = %replica.id, failures, in_flight = replica.in_flight(), "replica unhealthy; draining and replacing it");
                    self.emit_health(
                        &replica,
                        EventKind::ReplicaEjected,
                        format!("failed {failures} health checks in a row; replaced"),
                    );
                    self.record_failure(
                        &replica.id,
                        &format!("unhealthy: {failures} failed health checks in a row"),
                    );
                    self.clone().begin_stop(replica.clone(), "unhealthy");
                    self.pool.demand().notify_one();
                    return;
                }
            }
        }
    }

    fn emit_health(&self, replica: &Replica, kind: EventKind, what: String) {
        self.events.emit(
            &self.name,
            kind,
            "backend",
            format!("{}: {what}", replica.id),
            Numbers::default(),
        );
    }

    /// For a static deployment (which has no control loop): notices, every tick, when no replica
    /// has been healthy for `health.unhealthy_fail_after`, and when one is again.
    pub(super) async fn static_health_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        loop {
            let config = self.config.load_full();
            self.check_static_health(&config, std::time::Instant::now());
            tokio::select! {
                _ = tokio::time::sleep(super::TICK) => {}
                _ = stopping.changed() => return,
            }
        }
    }
}
