//! One replica as the data plane and the controller share it: address, state and in-flight count,
//! all atomics so that the request path never takes a lock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Lifecycle state of a replica (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplicaState {
    /// Launched, not yet passing its readiness check.
    Starting = 0,
    /// Receives requests.
    Ready = 1,
    /// Finishing its in-flight requests; receives no new ones.
    Draining = 2,
    /// Gone.
    Stopped = 3,
    /// Crashed, failed its readiness check or timed out.
    Failed = 4,
    /// Asleep (`hibernation.mode = "sleep"`): kept, receives no requests until woken.
    Sleeping = 5,
}

impl ReplicaState {
    /// Stable lower-case name, used in logs and the admin API.
    pub fn name(&self) -> &'static str {
        match self {
            ReplicaState::Starting => "starting",
            ReplicaState::Ready => "ready",
            ReplicaState::Draining => "draining",
            ReplicaState::Stopped => "stopped",
            ReplicaState::Failed => "failed",
            ReplicaState::Sleeping => "sleeping",
        }
    }

    fn from_u8(v: u8) -> ReplicaState {
        match v {
            0 => ReplicaState::Starting,
            1 => ReplicaState::Ready,
            2 => ReplicaState::Draining,
            3 => ReplicaState::Stopped,
            5 => ReplicaState::Sleeping,
            _ => ReplicaState::Failed,
        }
    }
}

/// A replica: where it listens, what state it is in and how busy it is.
#[derive(Debug)]
pub struct Replica {
    /// Stable id, shown in `x-infergate-route: replica/<id>`.
    pub id: String,
    /// `replica/<id>`, made once: the route every request it answers is logged and labelled
    /// under (no string built per request).
    route: Arc<str>,
    /// Where the model server listens; set at launch, or later for backends that learn it
    /// once the replica exists (a Kubernetes pod's address comes with its endpoint).
    addr: OnceLock<SocketAddr>,
    state: AtomicU8,
    in_flight: AtomicU32,
    /// When the replica was asked for (scale-up decision), to measure cold starts.
    pub created: Instant,
    /// Launch order within the deployment (higher = newer).
    pub order: u64,
    /// Scale-up decision → ready, in milliseconds; 0 until ready.
    cold_start_ms: AtomicU64,
    /// Out of rotation after failed health checks or a connect failure (see `crate::ejection`).
    ejected: AtomicBool,
    /// When its last request ended, in milliseconds since `created` (0 = none yet): the
    /// least-recently-used idle replica is the one a shared GPU pool evicts first.
    last_used_ms: AtomicU64,
}

impl Replica {
    /// A replica in `Starting` state, asked for now.
    pub fn new(id: String, addr: SocketAddr) -> Self {
        Self::asked_for(id, addr, 0, Instant::now())
    }

    /// A replica in `Starting` state, the `order`-th of its deployment, asked for at `decided`
    /// (the scale-up decision, which its cold start is measured from).
    pub fn asked_for(id: String, addr: SocketAddr, order: u64, decided: Instant) -> Self {
        let replica = Self::without_address(id, order, decided);
        replica.set_addr(addr);
        replica
    }

    /// A replica in `Starting` state whose address is not known yet ([`Replica::set_addr`]).
    pub fn without_address(id: String, order: u64, decided: Instant) -> Self {
        Replica {
            route: Arc::from(format!("replica/{id}")),
            id,
            addr: OnceLock::new(),
            state: AtomicU8::new(ReplicaState::Starting as u8),
            in_flight: AtomicU32::new(0),
            created: decided,
            order,
            cold_start_ms: AtomicU64::new(0),
            ejected: AtomicBool::new(false),
            last_used_ms: AtomicU64::new(0),
        }
    }

    /// Where the model server listens (`0.0.0.0:0` until known; only a starting replica can
    /// lack one, and starting replicas get no requests).
    pub fn addr(&self) -> SocketAddr {
        self.addr
            .get()
            .copied()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Whether the replica's address is known.
    pub fn has_addr(&self) -> bool {
        self.addr.get().is_some()
    }

    /// Records the replica's address; the first one sticks (a replica does not move).
    pub fn set_addr(&self, addr: SocketAddr) {
        let _ = self.addr.set(addr);
    }

    /// `replica/<id>`, as `x-infergate-route` shows it.
    pub fn route(&self) -> &Arc<str> {
        &self.route
    }

    /// Marks the replica ready and records its cold start (decision → now).
    pub fn mark_ready(&self) -> Duration {
        let cold_start = self.created.elapsed();
        self.cold_start_ms
            .store((cold_start.as_millis() as u64).max(1), Ordering::Release);
        self.set_state(ReplicaState::Ready);
        cold_start
    }

    /// Scale-up decision → ready, once the replica has been ready.
    pub fn cold_start(&self) -> Option<Duration> {
        match self.cold_start_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Current lifecycle state.
    pub fn state(&self) -> ReplicaState {
        ReplicaState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves the replica to a new state.
    pub fn set_state(&self, state: ReplicaState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Whether the replica is out of rotation (ready, but sent no new requests).
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
    }

    /// Takes the replica out of rotation; true when it was in.
    pub fn eject(&self) -> bool {
        !self.ejected.swap(true, Ordering::AcqRel)
    }

    /// Puts an ejected replica back in rotation.
    pub fn readmit(&self) {
        self.ejected.store(false, Ordering::Release);
    }

    /// Whether new requests may go to this replica: ready and not ejected.
    pub fn in_rotation(&self) -> bool {
        self.state() == ReplicaState::Ready && !self.is_ejected()
    }

    /// Requests currently sent to this replica and not finished.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Takes one request slot if the replica is ready and under `limit` (0 = unlimited).
    pub(crate) fn try_take(&self, limit: u32) -> bool {
        if self.state() != ReplicaState::Ready {
            return false;
        }
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (limit == 0 || c < limit).then_some(c + 1)
            })
            .is_ok();
        if taken && self.state() != ReplicaState::Ready {
            // Lost a race with drain: give the slot back.
            self.give_back();
            return false;
        }
        taken
    }

    /// Returns one request slot (and notes the time: the replica was just used).
    pub(crate) fn give_back(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        let used = (self.created.elapsed().as_millis() as u64).max(1);
        self.last_used_ms.fetch_max(used, Ordering::AcqRel);
    }

    /// Time since the replica became ready, at `now` (`None` before).
    pub fn resident_for(&self, now: Instant) -> Option<Duration> {
        let ready_at = self.created + self.cold_start()?;
        Some(now.saturating_duration_since(ready_at))
    }

    /// Time since the replica last finished a request, or since it became ready if it has
    /// served none, at `now` (`None` before it is ready).
    pub fn idle_for(&self, now: Instant) -> Option<Duration> {
        let ready = self.cold_start()?;
        let used = Duration::from_millis(self.last_used_ms.load(Ordering::Acquire));
        Some(now.saturating_duration_since(self.created + ready.max(used)))
    }
}
