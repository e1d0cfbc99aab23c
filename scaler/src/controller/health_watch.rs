//! The controller's watch over replicas once they can take requests: static replicas until they
//! first answer, then every ready replica every `health.interval_ready`, carrying out what the
//! pure [`ReadyHealth`] machine (`crate::ejection`) decides.

use super::Controller;
use crate::ejection::{EjectionSettings, HealthCommand, ReadyHealth};
use crate::events::{EventKind, Numbers};
use crate::health;
use crate::pool::Unavailable;
use crate::replica::{Replica, ReplicaState};
use infergate_config::DeploymentConfig;
use std::sync::Arc;
use std::time::Instant;

impl Controller {
    /// Health-checks a fixed (static) replica for as long as the controller runs: polled every
    /// `health.interval` until it first answers, then watched like any ready replica.
    pub(super) async fn watch_fixed_replica(self: Arc<Self>, replica: Arc<Replica>) {
        let mut stopping = self.stopping.subscribe();
        while replica.state() == ReplicaState::Starting {
            let config = self.config.load_full();
            let interval = config.health.interval.get();
            if health::probe(
                replica.addr(),
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
            match replica.state() {
                ReplicaState::Ready => {}
                // Asleep or being woken: watched again once it is ready.
                ReplicaState::Sleeping | ReplicaState::Starting => continue,
                _ => return,
            }
            if replica.is_ejected() && !health.ejected {
                // Ejected by the data plane after a refused connect.
                health.connect_failed();
            }
            let healthy = health::probe(
                replica.addr(),
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
                    self.record_replacement(
                        replica.order,
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

    /// A static deployment with no healthy replica for `health.unhealthy_fail_after` cannot
    /// answer: its waiting requests get 503 until a replica passes a check again.
    pub(super) fn check_static_health(&self, config: &DeploymentConfig, now: Instant) {
        let Some(addrs) = self.backend.fixed_replicas() else {
            return;
        };
        let Ok(mut since) = self.no_healthy_since.lock() else {
            return;
        };
        if self.pool.has_ready() {
            *since = None;
            drop(since);
            self.mark_available("a replica passed its health check");
            return;
        }
        let since = *since.get_or_insert(now);
        let limit = config.health.unhealthy_fail_after.get();
        if now.saturating_duration_since(since) >= limit && !self.pool.is_unavailable() {
            let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            self.mark_unavailable(Unavailable {
                reason: format!(
                    "no healthy replica for {} (health.unhealthy_fail_after): {} fail {} or refuse connections",
                    config.health.unhealthy_fail_after,
                    list.join(", "),
                    config.health.path
                ),
                retry_after_secs: config.health.interval_ready.get().as_secs().max(1),
            });
        }
    }
}
