//! The replica pool of one deployment: the replicas the data plane may send to, the in-flight and
//! waiting counters the autoscaler reads, power-of-two-choices selection, and the FIFO that holds
//! requests while no replica has a free slot.
//!
//! The fast path (a ready replica with a free slot and nobody waiting) is lock-free: an `ArcSwap`
//! load and atomic compare-and-swaps. Requests that must wait go into an unbounded MPSC channel
//! drained by one dispatcher task, which hands out slots in arrival order as they free up.

use crate::affinity::{self, Affinity, RouteReason};
use crate::replica::Replica;
use arc_swap::ArcSwap;
use infergate_config::Priority;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};

/// What a request brings to the pool besides itself: its routing key, and its band and client
/// for the queue's order.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ticket {
    /// Its prefix or session key (`routing = "prefix"` / `"session"`); none: least loaded.
    pub affinity: Option<Affinity>,
    /// Its priority band while it waits.
    pub priority: Priority,
    /// Its client (API key, else `user` field; 0: the shared client).
    pub client: u64,
}

/// A request that waits for a slot.
pub(crate) struct Waiter {
    pub(crate) tx: oneshot::Sender<Slot>,
    /// Shared with the waiting request's guard: whoever clears it takes the request out of the
    /// `waiting` count, so it is taken out exactly once.
    pub(crate) counted: Arc<AtomicBool>,
    /// Back in line after its replica refused the connection: served before the others.
    pub(crate) retry: bool,
    /// Its key, band and client.
    pub(crate) ticket: Ticket,
}

impl crate::fair_line::InLine for Waiter {
    fn band(&self) -> usize {
        self.ticket.priority.band()
    }
    fn client(&self) -> u64 {
        self.ticket.client
    }
}

/// Why a request could not get a slot.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AcquireError {
    /// `queue.max_waiting` requests are already waiting.
    #[error("{waiting} requests are already waiting for this deployment (queue.max_waiting)")]
    QueueFull {
        /// How many were waiting.
        waiting: u64,
    },
    /// This client already holds its share of the queue (`queue.max_waiting_per_client`).
    #[error("this client already has {waiting} requests waiting (queue.max_waiting_per_client)")]
    ClientShareFull {
        /// How many of its requests were waiting.
        waiting: u64,
    },
    /// No slot freed up within `queue.max_wait`.
    #[error("no replica could take the request within {0:?} (queue.max_wait)")]
    Timeout(Duration),
    /// The deployment is shutting down or was removed.
    #[error("the deployment is shutting down")]
    Closed,
    /// Nothing can answer now (replicas keep failing to start, or no static replica is
    /// healthy); the controller keeps trying in the background.
    #[error("{}", .0.reason)]
    Unavailable(Unavailable),
}

/// Why a deployment cannot answer now, for the 503 its waiting requests get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// What failed last (exit code, output tail, health or connect error).
    pub reason: String,
    /// Seconds a client should wait before retrying.
    pub retry_after_secs: u64,
}

/// A granted slot plus how long the request waited for it.
pub struct Acquired {
    /// The slot on a ready replica.
    pub slot: Slot,
    /// Time spent in the queue; `None` when a slot was free at once.
    pub queued: Option<Duration>,
}

/// Shared state of one deployment's replicas.
pub struct ReplicaPool {
    /// Deployment name, for logs.
    pub name: String,
    replicas: ArcSwap<Vec<Arc<Replica>>>,
    in_flight: AtomicU64,
    pub(crate) waiting: AtomicU64,
    limit: AtomicU32,
    closed: AtomicBool,
    /// Signalled when capacity may have appeared (slot freed, replica ready, settings changed).
    pub(crate) capacity_changed: Notify,
    /// Signalled when a request found no replica able to serve it: the controller acts at once.
    demand: Arc<Notify>,
    /// Microseconds after `epoch` of the oldest demand signal the controller has not taken yet
    /// (0 = none), to measure how fast a scale-up follows the request that asked for it.
    demand_at_us: AtomicU64,
    epoch: Instant,
    pub(crate) queue_tx: mpsc::UnboundedSender<Waiter>,
    pub(crate) queue_rx: Mutex<Option<mpsc::UnboundedReceiver<Waiter>>>,
    /// Requests whose replica refused the connection: they arrived before everyone in the
    /// queue, so they go first.
    pub(crate) retry_tx: mpsc::UnboundedSender<Waiter>,
    pub(crate) retry_rx: Mutex<Option<mpsc::UnboundedReceiver<Waiter>>>,
    requests_total: AtomicU64,
    /// Requests answered elsewhere (the fallback) for lack of a replica: demand all the same.
    external: AtomicU64,
    /// Set while nothing can answer: waiting requests get it at once instead of `max_wait` later.
    unavailable: ArcSwap<Option<Unavailable>>,
    /// `queue.max_waiting_per_client` (0: none).
    per_client_cap: AtomicU32,
    /// Requests waiting per identified client, kept only while a cap is set (the waiting path).
    pub(crate) per_client: Mutex<HashMap<u64, u32>>,
}

/// A request of this deployment being answered by the fallback; counts as load until dropped.
pub struct ExternalDemand {
    pool: Arc<ReplicaPool>,
}

impl Drop for ExternalDemand {
    fn drop(&mut self) {
        self.pool.external.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One in-flight request on one replica. Dropping it returns the slot: every increment is matched by
/// exactly one decrement on every path (success, error, timeout, disconnect, panic).
pub struct Slot {
    pool: Arc<ReplicaPool>,
    replica: Arc<Replica>,
    reason: RouteReason,
}

impl Slot {
    /// The replica this request goes to.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    /// Which policy picked it (`x-infergate-route-reason`).
    pub fn reason(&self) -> RouteReason {
        self.reason
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.replica.give_back();
        self.pool.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.pool.capacity_changed.notify_one();
    }
}

/// Takes a waiting request out of the `waiting` count when it leaves the queue for any reason,
/// unless the dispatcher already did when it handed the request a slot.
pub(crate) struct WaitingGuard<'a> {
    pub(crate) waiting: &'a AtomicU64,
    pub(crate) counted: Arc<AtomicBool>,
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        uncount(self.waiting, &self.counted);
    }
}

/// Removes one request from `waiting` if it is still counted there; true when it was.
pub(crate) fn uncount(waiting: &AtomicU64, counted: &AtomicBool) -> bool {
    let was = counted.swap(false, Ordering::AcqRel);
    if was {
        waiting.fetch_sub(1, Ordering::AcqRel);
    }
    was
}

impl ReplicaPool {
    /// An empty pool; `replica_concurrency` of 0 means unlimited.
    pub fn new(name: &str, replica_concurrency: u32) -> Arc<Self> {
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        Arc::new(ReplicaPool {
            name: name.to_string(),
            replicas: ArcSwap::from_pointee(Vec::new()),
            in_flight: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            limit: AtomicU32::new(replica_concurrency),
            closed: AtomicBool::new(false),
            capacity_changed: Notify::new(),
            demand: Arc::new(Notify::new()),
            demand_at_us: AtomicU64::new(0),
            epoch: Instant::now(),
            queue_tx,
            queue_rx: Mutex::new(Some(queue_rx)),
            retry_tx,
            retry_rx: Mutex::new(Some(retry_rx)),
            requests_total: AtomicU64::new(0),
            external: AtomicU64::new(0),
            unavailable: ArcSwap::from_pointee(None),
            per_client_cap: AtomicU32::new(0),
            per_client: Mutex::new(HashMap::new()),
        })
    }

    /// `queue.max_waiting_per_client` (0: no per-client share).
    pub fn max_waiting_per_client(&self) -> u32 {
        self.per_client_cap.load(Ordering::Acquire)
    }

    /// Changes `queue.max_waiting_per_client` (config reload).
    pub fn set_max_waiting_per_client(&self, cap: u32) {
        self.per_client_cap.store(cap, Ordering::Release);
    }

    /// Requests sent to replicas and not finished.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests held in the queue.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Acquire)
    }

    /// Requests that were granted a slot since start.
    pub fn requests_total(&self) -> u64 {
        self.requests_total.load(Ordering::Relaxed)
    }

    /// The per-replica concurrency limit (0 = unlimited).
    pub fn replica_concurrency(&self) -> u32 {
        self.limit.load(Ordering::Acquire)
    }

    /// Changes the per-replica concurrency limit (config reload).
    pub fn set_replica_concurrency(&self, limit: u32) {
        self.limit.store(limit, Ordering::Release);
        self.capacity_changed.notify_one();
    }

    /// Snapshot of the replicas (any state).
    pub fn replicas(&self) -> Arc<Vec<Arc<Replica>>> {
        self.replicas.load_full()
    }

    /// Whether any replica is ready (a lock-free scan of the replica list).
    pub fn has_ready(&self) -> bool {
        self.replicas.load().iter().any(|r| r.in_rotation())
    }

    /// Requests of this deployment being answered by the fallback right now.
    pub fn external(&self) -> u64 {
        self.external.load(Ordering::Acquire)
    }

    /// Records a request answered by the fallback as demand (the autoscaler counts it and is
    /// woken at once) until the returned guard is dropped.
    pub fn external_demand(self: &Arc<Self>) -> ExternalDemand {
        self.external.fetch_add(1, Ordering::AcqRel);
        self.signal_demand(Instant::now());
        ExternalDemand { pool: self.clone() }
    }

    /// Wakes the controller because a request found no free replica at `at`.
    pub(crate) fn signal_demand(&self, at: Instant) {
        let us = (at.saturating_duration_since(self.epoch).as_micros() as u64).max(1);
        let _ = self
            .demand_at_us
            .compare_exchange(0, us, Ordering::AcqRel, Ordering::Acquire);
        self.demand.notify_one();
    }

    /// When the oldest demand signal not yet taken was raised; taking it clears it.
    pub fn take_demand_signal(&self) -> Option<Instant> {
        match self.demand_at_us.swap(0, Ordering::AcqRel) {
            0 => None,
            us => Some(self.epoch + Duration::from_micros(us)),
        }
    }

    /// The notifier the controller waits on to react to demand at once.
    pub fn demand(&self) -> Arc<Notify> {
        self.demand.clone()
    }

    /// Adds a replica (normally in `Starting` state).
    pub fn add_replica(&self, replica: Arc<Replica>) {
        self.replicas.rcu(|list| {
            let mut next = Vec::with_capacity(list.len() + 1);
            next.extend(list.iter().cloned());
            next.push(replica.clone());
            next
        });
    }

    /// Removes a replica from the pool (it gets no new requests; in-flight ones keep their slot).
    pub fn remove_replica(&self, id: &str) {
        self.replicas.rcu(|list| {
            list.iter()
                .filter(|r| r.id != id)
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    /// Tells the dispatcher that capacity may have appeared (a replica became ready).
    pub fn notify_capacity(&self) {
        self.capacity_changed.notify_one();
    }

    /// Stops handing out slots; waiting requests get `AcquireError::Closed`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.capacity_changed.notify_one();
    }

    /// Marks the deployment unable to answer (waiting requests are answered with it at once) or,
    /// with `None`, able again.
    pub fn set_unavailable(&self, why: Option<Unavailable>) {
        let failing = why.is_some();
        self.unavailable.store(Arc::new(why));
        if failing {
            // The dispatcher wakes, finds it set, and answers every waiting request.
            self.capacity_changed.notify_one();
        }
    }

    /// Whether the deployment cannot answer now (cheap: no copy of the reason).
    pub fn is_unavailable(&self) -> bool {
        self.unavailable.load().is_some()
    }

    /// Why the deployment cannot answer now, if it cannot.
    pub fn unavailable(&self) -> Option<Unavailable> {
        self.unavailable.load().as_ref().clone()
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Takes a slot on a ready replica with free capacity if there is one: power of two choices on
    /// least in-flight, then a scan for the least-loaded replica.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        self.try_acquire_excluding(&[])
    }

    /// Like [`ReplicaPool::try_acquire`], skipping replicas that just failed for this request.
    pub fn try_acquire_excluding(self: &Arc<Self>, exclude: &[Arc<Replica>]) -> Option<Slot> {
        self.try_acquire_for(None, exclude)
    }

    /// Takes a slot for a request with `affinity` (its key's replica, within the load bound;
    /// see `crate::affinity`), or least loaded without one; skips `exclude`.
    pub fn try_acquire_for(
        self: &Arc<Self>,
        affinity: Option<&Affinity>,
        exclude: &[Arc<Replica>],
    ) -> Option<Slot> {
        if self.is_closed() {
            return None;
        }
        let replicas = self.replicas.load();
        let limit = self.replica_concurrency();
        let n = replicas.len();
        if n == 0 {
            return None;
        }
        let eligible = |r: &Replica| {
            r.in_rotation()
                && (limit == 0 || r.in_flight() < limit)
                && !exclude.iter().any(|x| std::ptr::eq(x.as_ref(), r))
        };
        if let Some(affinity) = affinity {
            // Retry on a lost race: the choice is made again on the new counts.
            for _ in 0..n {
                let (r, reason) = affinity::choose(&replicas, affinity, eligible)?;
                if r.try_take(limit) {
                    return Some(self.grant(r.clone(), reason));
                }
            }
            return None;
        }
        if n >= 2 {
            let a = rand::random_range(0..n);
            let mut b = rand::random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (ra, rb) = (&replicas[a], &replicas[b]);
            // Both candidates usable: the less loaded wins. Otherwise fall through to the scan, so
            // an unready replica never skews the choice towards a busy one.
            if eligible(ra) && eligible(rb) {
                let r = if rb.in_flight() < ra.in_flight() {
                    rb
                } else {
                    ra
                };
                if r.try_take(limit) {
                    return Some(self.grant(r.clone(), RouteReason::LeastLoaded));
                }
            }
        }
        // Fallback: least-loaded eligible replica; retry on lost races.
        for _ in 0..n {
            let best = replicas
                .iter()
                .filter(|r| eligible(r))
                .min_by_key(|r| r.in_flight())?;
            if best.try_take(limit) {
                return Some(self.grant(best.clone(), RouteReason::LeastLoaded));
            }
        }
        None
    }

    fn grant(self: &Arc<Self>, replica: Arc<Replica>, reason: RouteReason) -> Slot {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        Slot {
            pool: self.clone(),
            replica,
            reason,
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
