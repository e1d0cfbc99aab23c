//! The sleep tier in the shell (`hibernation.mode = "sleep"`): putting an idle replica to sleep
//! with vLLM's `POST /sleep?level=1` and waking it with `POST /wake_up` then its health check,
//! as the lifecycle core's `Sleep` and `WakeUp` commands ask.

use super::*;

/// Longest a `/sleep` call may take (it frees GPU memory; vLLM answers within seconds).
const SLEEP_CALL: Duration = Duration::from_secs(60);

impl Controller {
    /// `Command::Sleep`: no new requests; once idle (or after `stop.drain_timeout`), `/sleep`.
    pub(super) fn sleep_replica(self: &Arc<Self>, index: u64) {
        let Some(replica) = self.replica_by_index(index) else {
            return;
        };
        replica.set_state(ReplicaState::Sleeping);
        let this = self.clone();
        tokio::spawn(async move {
            let drain = this.config.load().stop.drain_timeout.get();
            let deadline = Instant::now() + drain;
            while replica.in_flight() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let why = match health::post_empty(replica.addr(), "/sleep?level=1", SLEEP_CALL).await {
                Ok(status) if (200..300).contains(&status) => {
                    tracing::info!(deployment = %this.name, replica = %replica.id, "replica asleep");
                    return;
                }
                Ok(404) => "the server answered 404 to POST /sleep (no sleep mode)".to_string(),
                Ok(status) => format!("the server answered {status} to POST /sleep"),
                Err(e) => format!("POST /sleep failed: {e}"),
            };
            tracing::warn!(deployment = %this.name, replica = %replica.id, why, "replica cannot sleep");
            if replica.state() == ReplicaState::Sleeping {
                replica.set_state(ReplicaState::Ready);
                this.pool.notify_capacity();
            }
            let mut out = Vec::new();
            let at = this.at(Instant::now());
            if let Ok(mut core) = this.core.lock() {
                core.sleep_refused(index, &why, at, &mut out);
            }
            this.apply_all(out);
        });
    }

    /// `Command::WakeUp`: `/wake_up`, then the health check until it passes; then ready, as
    /// after a cold start. The core's startup deadline covers a wake that never finishes.
    pub(super) fn wake_replica(self: &Arc<Self>, index: u64) {
        let Some(replica) = self.replica_by_index(index) else {
            return;
        };
        replica.set_state(ReplicaState::Starting);
        let this = self.clone();
        tokio::spawn(async move {
            let config = this.config.load_full();
            let asked = Instant::now();
            let limit = config.startup_timeout.get();
            match health::post_empty(replica.addr(), "/wake_up", limit).await {
                Ok(status) if (200..300).contains(&status) => {}
                Ok(status) => {
                    tracing::warn!(deployment = %this.name, replica = %replica.id, status, "POST /wake_up refused; waiting for its health check")
                }
                Err(e) => {
                    tracing::warn!(deployment = %this.name, replica = %replica.id, error = %e, "POST /wake_up failed; waiting for its health check")
                }
            }
            let (path, timeout) = (config.health.path.clone(), config.health.timeout.get());
            while !health::probe(replica.addr(), &path, timeout).await {
                if replica.state() != ReplicaState::Starting {
                    return; // failed by its startup deadline meanwhile
                }
                tokio::time::sleep(config.health.interval.get()).await;
            }
            let mut out = Vec::new();
            let at = this.at(Instant::now());
            let woken = this
                .core
                .lock()
                .ok()
                .and_then(|mut core| core.replica_ready(index, at, &mut out))
                .is_some();
            if !woken || replica.state() != ReplicaState::Starting {
                return;
            }
            replica.set_state(ReplicaState::Ready);
            this.apply_all(out);
            let took = asked.elapsed();
            metrics::histogram!("infergate_wake_seconds", "deployment" => this.name.clone())
                .record(took.as_secs_f64());
            tracing::info!(deployment = %this.name, replica = %replica.id, wake_ms = took.as_millis() as u64, "replica awake");
            this.events.emit(
                &this.name,
                EventKind::ReplicaReady,
                "backend",
                format!(
                    "{} awake after {:.1} s (woken from sleep)",
                    replica.id,
                    took.as_secs_f64()
                ),
                Numbers::default(),
            );
            this.pool.notify_capacity();
            this.pool.demand().notify_one();
        });
    }
}
