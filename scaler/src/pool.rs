//! The replica pool of one deployment: the replicas the data plane may send to, the in-flight and
//! waiting counters the autoscaler reads, power-of-two-choices selection, and the FIFO that holds
//! requests while no replica has a free slot.
//!
//! The fast path (a ready replica with a free slot and nobody waiting) is lock-free: an `ArcSwap`
//! load and atomic compare-and-swaps. Requests that must wait go into an unbounded MPSC channel
//! drained by one dispatcher task, which hands out slots in arrival order as they free up.

use crate::replica::{Replica, ReplicaState};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};

/// A request that waits for a slot.
struct Waiter {
    tx: oneshot::Sender<Slot>,
    /// Shared with the waiting request's guard: whoever clears it takes the request out of the
    /// `waiting` count, so it is taken out exactly once.
    counted: Arc<AtomicBool>,
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
    /// No slot freed up within `queue.max_wait`.
    #[error("no replica could take the request within {0:?} (queue.max_wait)")]
    Timeout(Duration),
    /// The deployment is shutting down or was removed.
    #[error("the deployment is shutting down")]
    Closed,
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
    waiting: AtomicU64,
    limit: AtomicU32,
    closed: AtomicBool,
    /// Signalled when capacity may have appeared (slot freed, replica ready, settings changed).
    capacity_changed: Notify,
    /// Signalled when a request found no replica able to serve it: the controller acts at once.
    demand: Arc<Notify>,
    /// Microseconds after `epoch` of the oldest demand signal the controller has not taken yet
    /// (0 = none), to measure how fast a scale-up follows the request that asked for it.
    demand_at_us: AtomicU64,
    epoch: Instant,
    queue_tx: mpsc::UnboundedSender<Waiter>,
    queue_rx: Mutex<Option<mpsc::UnboundedReceiver<Waiter>>>,
    requests_total: AtomicU64,
    /// Requests answered elsewhere (the fallback) for lack of a replica: demand all the same.
    external: AtomicU64,
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
}

impl Slot {
    /// The replica this request goes to.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
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
struct WaitingGuard<'a> {
    waiting: &'a AtomicU64,
    counted: Arc<AtomicBool>,
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        uncount(self.waiting, &self.counted);
    }
}

/// Removes one request from `waiting` if it is still counted there; true when it was.
fn uncount(waiting: &AtomicU64, counted: &AtomicBool) -> bool {
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
            requests_total: AtomicU64::new(0),
            external: AtomicU64::new(0),
        })
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
        self.replicas
            .load()
            .iter()
            .any(|r| r.state() == ReplicaState::Ready)
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
    fn signal_demand(&self, at: Instant) {
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
            r.state() == ReplicaState::Ready
                && (limit == 0 || r.in_flight() < limit)
                && !exclude.iter().any(|x| std::ptr::eq(x.as_ref(), r))
        };
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
                    return Some(self.grant(r.clone()));
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
                return Some(self.grant(best.clone()));
            }
        }
        None
    }

    fn grant(self: &Arc<Self>, replica: Arc<Replica>) -> Slot {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        Slot {
            pool: self.clone(),
            replica,
        }
    }

    /// Gets a slot, waiting in FIFO order for up to `max_wait` if none is free. Dropping the
    /// returned future (client gone) leaves the queue at once.
    pub async fn acquire(
        self: &Arc<Self>,
        max_wait: Duration,
        max_waiting: u64,
    ) -> Result<Acquired, AcquireError> {
        if self.is_closed() {
            return Err(AcquireError::Closed);
        }
        if self.waiting() == 0 {
            if let Some(slot) = self.try_acquire() {
                return Ok(Acquired { slot, queued: None });
            }
        }
        let before = self.waiting.fetch_add(1, Ordering::AcqRel);
        let counted = Arc::new(AtomicBool::new(true));
        let _guard = WaitingGuard {
            waiting: &self.waiting,
            counted: counted.clone(),
        };
        if before >= max_waiting {
            return Err(AcquireError::QueueFull { waiting: before });
        }
        let since = Instant::now();
        let (tx, rx) = oneshot::channel();
        if self.queue_tx.send(Waiter { tx, counted }).is_err() {
            return Err(AcquireError::Closed);
        }
        self.signal_demand(since);
        match tokio::time::timeout(max_wait, rx).await {
            Ok(Ok(slot)) => Ok(Acquired {
                slot,
                queued: Some(since.elapsed()),
            }),
            Ok(Err(_)) => Err(AcquireError::Closed),
            Err(_) => Err(AcquireError::Timeout(max_wait)),
        }
    }

    /// Runs the dispatcher: hands slots to waiting requests in arrival order as capacity appears.
    /// Spawn once per pool. After `close`, queued requests are answered `Closed`.
    pub async fn run_dispatcher(self: Arc<Self>) {
        let Some(mut rx) = self.queue_rx.lock().ok().and_then(|mut g| g.take()) else {
            return;
        };
        let mut head: Option<Waiter> = None;
        loop {
            let mut waiter = match head.take() {
                Some(w) => w,
                None => match rx.recv().await {
                    Some(w) => w,
                    None => return,
                },
            };
            if waiter.tx.is_closed() || self.is_closed() {
                // The client left while waiting (or the pool closed): out of the count if it
                // was put back in it, then dropped (the receiver sees `Closed`).
                uncount(&self.waiting, &waiter.counted);
                continue;
            }
            // Out of `waiting` before the slot counts it in flight, so the load the autoscaler
            // samples never counts a request twice during the hand-over.
            let was_counted = uncount(&self.waiting, &waiter.counted);
            if let Some(slot) = self.try_acquire() {
                // If the receiver just went away, the slot comes back to us and is released on drop.
                let _ = waiter.tx.send(slot);
                continue;
            }
            if was_counted && !waiter.tx.is_closed() {
                // Lost the race for the slot: back in the count, still first in line.
                self.waiting.fetch_add(1, Ordering::AcqRel);
                waiter.counted.store(true, Ordering::Release);
            }
            tokio::select! {
                _ = self.capacity_changed.notified() => {}
                _ = waiter.tx.closed() => {}
            }
            head = Some(waiter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(id: &str) -> Arc<Replica> {
        let r = Arc::new(Replica::new(id.into(), "127.0.0.1:1".parse().unwrap()));
        r.set_state(ReplicaState::Ready);
        r
    }

    #[test]
    fn slots_respect_the_replica_limit_and_are_returned_on_drop() {
        let pool = ReplicaPool::new("d", 2);
        pool.add_replica(ready("a"));
        let s1 = pool.try_acquire().unwrap();
        let s2 = pool.try_acquire().unwrap();
        assert!(pool.try_acquire().is_none());
        assert_eq!(pool.in_flight(), 2);
        drop(s1);
        assert_eq!(pool.in_flight(), 1);
        drop(s2);
        assert_eq!(pool.in_flight(), 0);
        assert_eq!(pool.replicas()[0].in_flight(), 0);
    }

    #[test]
    fn p2c_spreads_load_and_skips_unready_replicas() {
        let pool = ReplicaPool::new("d", 0);
        pool.add_replica(ready("a"));
        pool.add_replica(ready("b"));
        let starting = Arc::new(Replica::new("c".into(), "127.0.0.1:1".parse().unwrap()));
        pool.add_replica(starting.clone());
        let slots: Vec<_> = (0..10).map(|_| pool.try_acquire().unwrap()).collect();
        let reps = pool.replicas();
        assert_eq!(reps[0].in_flight() + reps[1].in_flight(), 10);
        assert!(reps[0].in_flight().abs_diff(reps[1].in_flight()) <= 1);
        assert_eq!(starting.in_flight(), 0);
        drop(slots);
    }

    #[tokio::test]
    async fn waiters_are_served_in_order_when_capacity_appears() {
        let pool = ReplicaPool::new("d", 1);
        tokio::spawn(pool.clone().run_dispatcher());
        let replica = Arc::new(Replica::new("a".into(), "127.0.0.1:1".parse().unwrap()));
        pool.add_replica(replica.clone());
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        for i in 0..5 {
            let p = pool.clone();
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                let got = p.acquire(Duration::from_secs(10), 100).await.unwrap();
                assert!(got.queued.is_some());
                done_tx.send(i).unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(got);
            });
            while pool.waiting() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        replica.set_state(ReplicaState::Ready);
        pool.notify_capacity();
        let mut order = vec![];
        for _ in 0..5 {
            order.push(done_rx.recv().await.unwrap());
        }
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn full_queue_and_timeout_are_reported_and_counters_return_to_zero() {
        let pool = ReplicaPool::new("d", 1);
        tokio::spawn(pool.clone().run_dispatcher());
        let err = pool.acquire(Duration::from_millis(20), 5).await.err();
        assert_eq!(err, Some(AcquireError::Timeout(Duration::from_millis(20))));
        let err = pool.acquire(Duration::from_millis(20), 0).await.err();
        assert_eq!(err, Some(AcquireError::QueueFull { waiting: 0 }));
        assert_eq!(pool.waiting(), 0);
    }
}
