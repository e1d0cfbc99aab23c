//! What the caller reports about one replica — launched, waiting for GPUs, failed, replaced,
//! ready, stopped — and what the core decides in return (back-off, fast failure, availability).

use super::{Command, Failure, LifecycleCore, Tracked, BACKOFF_BASE, BACKOFF_MAX, GPU_RETRY};
use crate::events::{EventKind, Numbers};
use crate::pool::Unavailable;
use crate::replica::ReplicaState;
use std::time::Duration;

impl LifecycleCore {
    /// Whether replica `index` is still wanted (not cancelled by a failure or a GPU wait earlier
    /// in the same batch); the caller launches it only then.
    pub fn wants_launch(&self, index: u64) -> bool {
        self.replicas
            .iter()
            .any(|r| r.index == index && r.state == ReplicaState::Starting && !r.launched)
    }

    /// Replica `index` was launched; its startup deadline runs from when it was asked for.
    pub fn launched(&mut self, index: u64) {
        self.waiting_for_gpus = false;
        if let Some(r) = self.replicas.iter_mut().find(|r| r.index == index) {
            r.launched = true;
        }
    }

    /// Replica `index` could not launch because its GPUs are still held: not a failure; starts
    /// pause for [`GPU_RETRY`] and the index is used again for the replica that will start.
    pub fn waiting_for_gpus(
        &mut self,
        index: u64,
        needed: u32,
        free: u32,
        now: Duration,
        out: &mut Vec<Command>,
    ) {
        self.cancel_unlaunched();
        self.next_index = self.next_index.min(index);
        self.backoff_until = Some(now + GPU_RETRY);
        if !std::mem::replace(&mut self.waiting_for_gpus, true) {
            out.push(Command::Event {
                kind: EventKind::ReplicaWaiting,
                component: "backend",
                message: format!(
                    "{}-{index} waits for {needed} GPU(s), {free} free: held by other replicas",
                    self.name
                ),
                numbers: Numbers::default(),
            });
        }
        self.account(now);
    }

    /// Replica `index` failed (launch error, exit while starting, crash, or unhealthy): it no
    /// longer counts as capacity, and the next start waits out an exponential back-off. After
    /// `startup_failures_to_give_up` in a row, waiting requests are refused until one succeeds.
    pub fn replica_failed(
        &mut self,
        index: u64,
        why: &str,
        now: Duration,
        out: &mut Vec<Command>,
    ) -> Failure {
        self.replicas.retain(|r| r.index != index);
        self.cancel_unlaunched();
        self.consecutive_failures += 1;
        let n = self.consecutive_failures;
        let backoff = BACKOFF_BASE
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(BACKOFF_MAX);
        self.backoff_until = Some(now + backoff);
        let give_up = self.settings.startup_failures_to_give_up;
        if n >= give_up {
            self.unavailable = true;
            out.push(Command::Unavailable(Unavailable {
                reason: format!("{n} replica starts in a row failed (startup_failures_to_give_up = {give_up}); the last: {}-{index}: {why}. Retrying in the background.", self.name),
                retry_after_secs: backoff.as_secs().max(1),
            }));
        }
        self.account(now);
        Failure {
            consecutive: n,
            backoff,
        }
    }

    /// A ready replica stays unhealthy and is replaced: counted as a failure, and drained (it
    /// still costs until [`LifecycleCore::replica_stopped`]).
    pub fn replica_replaced(
        &mut self,
        index: u64,
        why: &str,
        now: Duration,
        out: &mut Vec<Command>,
    ) -> Failure {
        let failure = self.replica_failed(index, why, now, out);
        self.replicas.push(Tracked {
            index,
            state: ReplicaState::Draining,
            asked_at: now,
            launched: true,
        });
        self.account(now);
        failure
    }

    /// Replica `index` passed its readiness check; returns its cold start (asked for → ready).
    pub fn replica_ready(
        &mut self,
        index: u64,
        now: Duration,
        out: &mut Vec<Command>,
    ) -> Option<Duration> {
        let r = self
            .replicas
            .iter_mut()
            .find(|r| r.index == index && r.state == ReplicaState::Starting)?;
        r.state = ReplicaState::Ready;
        let cold_start = now.saturating_sub(r.asked_at);
        self.last_cold_start = Some(cold_start);
        if self.serving == crate::hibernation::Serving::Sleeping {
            // Finished loading while the others sleep: it sleeps too.
            r.state = ReplicaState::Sleeping;
            out.push(Command::Sleep { index });
        }
        self.consecutive_failures = 0;
        if std::mem::replace(&mut self.unavailable, false) {
            out.push(Command::Available { ready: Some(index) });
        }
        self.account(now);
        Some(cold_start)
    }

    /// Replica `index` (idle: ready or asleep) is evicted to give its GPUs to another deployment:
    /// it drains and no longer counts, so the policy decides from the replicas left rather than
    /// start another in its place. False when it is not idle any more.
    pub fn evict(&mut self, index: u64, now: Duration) -> bool {
        let Some(r) = self.replicas.iter_mut().find(|r| {
            r.index == index && matches!(r.state, ReplicaState::Ready | ReplicaState::Sleeping)
        }) else {
            return false;
        };
        r.state = ReplicaState::Draining;
        self.account(now);
        true
    }

    /// Replica `index` is gone (stopped after draining, or by the caller at shutdown).
    pub fn replica_stopped(&mut self, index: u64, now: Duration) {
        self.replicas.retain(|r| r.index != index);
        self.account(now);
    }

    /// Shutdown: every replica drains; returns their indices.
    pub fn drain_all(&mut self, now: Duration) -> Vec<u64> {
        for r in &mut self.replicas {
            r.state = ReplicaState::Draining;
        }
        self.account(now);
        self.replicas.iter().map(|r| r.index).collect()
    }
}
