//! Carrying out the lifecycle core's commands (all but `Start` and `Drain`, which need the
//! replica tasks), and feeding it the failures the shell observes.

use super::*;
use crate::lifecycle::Failure;

impl Controller {
    /// Carries out every command in order (`Start` and `Drain` are not expected here: they come
    /// only from a decision round, which carries them out itself).
    pub(super) fn apply_all(self: &Arc<Self>, commands: Vec<Command>) {
        for command in commands {
            self.apply(command);
        }
    }

    /// Carries out one command of the core.
    pub(super) fn apply(self: &Arc<Self>, command: Command) {
        match command {
            Command::Start { index } => {
                tracing::error!(deployment = %self.name, index, "start asked for outside a decision round; ignored");
            }
            Command::Drain { index } => {
                if let Some(r) = self.replica_by_index(index) {
                    self.clone().begin_stop(r, "scale_down");
                }
            }
            Command::Fail {
                index,
                why,
                failure,
            } => self.fail_starting(index, why, failure),
            Command::Sleep { index } => self.sleep_replica(index),
            Command::WakeUp { index } => self.wake_replica(index),
            Command::Serving { from, to, reason } => {
                self.serving.store(to as u8, Ordering::Release);
                tracing::info!(deployment = %self.name, from = from.name(), to = to.name(), reason, "serving state changed");
            }
            Command::Unavailable(why) => self.mark_unavailable(why),
            Command::Available { ready } => {
                let what = match ready {
                    Some(index) => format!("{}-{index} is ready", self.name),
                    None => "no replica is wanted now; the next request starts one afresh".into(),
                };
                self.mark_available(&what);
            }
            Command::Event {
                kind,
                component,
                message,
                numbers,
            } => self
                .events
                .emit(&self.name, kind, component, message, numbers),
        }
    }

    /// The pool's replica launched as number `index`.
    pub(super) fn replica_by_index(&self, index: u64) -> Option<Arc<Replica>> {
        self.pool
            .replicas()
            .iter()
            .find(|r| r.order == index)
            .cloned()
    }

    /// A starting replica missed its deadline (the core has counted the failure): stop it.
    fn fail_starting(self: &Arc<Self>, index: u64, why: String, failure: Failure) {
        let Some(replica) = self.replica_by_index(index) else {
            return;
        };
        let config = self.config.load_full();
        tracing::warn!(deployment = %self.name, replica = %replica.id, timeout = ?config.startup_timeout.get(), "replica not ready within startup_timeout");
        replica.set_state(ReplicaState::Failed);
        self.pool.remove_replica(&replica.id);
        let handle = self
            .handles
            .lock()
            .ok()
            .and_then(|mut h| h.remove(&replica.id));
        let this = self.clone();
        tokio::spawn(async move {
            let mut why = why;
            if let Some(handle) = handle {
                why = with_output_tail(why, handle.output_tail());
                handle.terminate(config.stop.kill_grace.get()).await;
            }
            this.note_failure(&replica.id, &why, failure);
        });
    }

    /// Counts a failure the shell observed (launch error, exit while starting, crash) in the
    /// core, and carries out what follows (events, back-off, fast failure).
    pub(super) fn record_failure(self: &Arc<Self>, index: u64, replica: &str, why: &str) {
        self.count_failure(index, replica, why, LifecycleCore::replica_failed);
    }

    /// A ready replica that stays unhealthy: counted as a failure and drained.
    pub(super) fn record_replacement(self: &Arc<Self>, index: u64, replica: &str, why: &str) {
        self.count_failure(index, replica, why, LifecycleCore::replica_replaced);
    }

    fn count_failure(
        self: &Arc<Self>,
        index: u64,
        replica: &str,
        why: &str,
        count: fn(&mut LifecycleCore, u64, &str, Duration, &mut Vec<Command>) -> Failure,
    ) {
        let mut out = Vec::new();
        let at = self.at(Instant::now());
        let Ok(failure) = self
            .core
            .lock()
            .map(|mut core| count(&mut core, index, why, at, &mut out))
        else {
            return;
        };
        self.note_failure(replica, why, failure);
        self.apply_all(out);
    }

    /// The event, counter and log of a failure, and a decision again once the back-off is over.
    fn note_failure(&self, replica: &str, why: &str, failure: Failure) {
        self.stats.replicas_failed.fetch_add(1, Ordering::Relaxed);
        self.events.emit(
            &self.name,
            EventKind::ReplicaFailed,
            "backend",
            format!("{replica}: {why}"),
            Numbers::default(),
        );
        tracing::warn!(deployment = %self.name, consecutive_failures = failure.consecutive, backoff_ms = failure.backoff.as_millis() as u64, "replica failed; next start after back-off");
        self.wake_after(failure.backoff);
    }

    /// Decides again after `delay` (a back-off or a GPU wait is over).
    pub(super) fn wake_after(&self, delay: Duration) {
        let demand = self.pool.demand();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            demand.notify_one();
        });
    }
}

/// `why` with the last lines the model server printed, when it printed any.
pub(super) fn with_output_tail(why: String, tail: Vec<String>) -> String {
    match tail.len() {
        0 => why,
        n => format!(
            "{why}; last output: {}",
            tail[n.saturating_sub(5)..].join(" | ")
        ),
    }
}
