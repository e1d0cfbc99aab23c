//! The waiting side of the pool: requests that found no free slot wait in arrival order, one
//! dispatcher task hands them slots as capacity appears, and a request whose replica refused the
//! connection goes back in line ahead of everyone who arrived after it.

use crate::pool::{uncount, AcquireError, Acquired, ReplicaPool, Waiter, WaitingGuard};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

impl ReplicaPool {
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
        if let Some(why) = self.unavailable() {
            return Err(AcquireError::Unavailable(why));
        }
        self.wait_in_line(max_wait, Some(max_waiting), false).await
    }

    /// Gets a slot for a request whose connect was refused (nothing was sent; the caller has
    /// ejected that replica): another replica at once if one is free, else at the front of the
    /// queue (it arrived before the requests waiting now), for up to `max_wait`. Never refused
    /// for a full queue: the request was admitted already.
    pub async fn acquire_again(
        self: &Arc<Self>,
        max_wait: Duration,
    ) -> Result<Acquired, AcquireError> {
        if self.is_closed() {
            return Err(AcquireError::Closed);
        }
        if let Some(slot) = self.try_acquire() {
            return Ok(Acquired { slot, queued: None });
        }
        if let Some(why) = self.unavailable() {
            return Err(AcquireError::Unavailable(why));
        }
        self.wait_in_line(max_wait, None, true).await
    }

    async fn wait_in_line(
        self: &Arc<Self>,
        max_wait: Duration,
        max_waiting: Option<u64>,
        retry: bool,
    ) -> Result<Acquired, AcquireError> {
        let before = self.waiting.fetch_add(1, Ordering::AcqRel);
        let counted = Arc::new(AtomicBool::new(true));
        let _guard = WaitingGuard {
            waiting: &self.waiting,
            counted: counted.clone(),
        };
        if max_waiting.is_some_and(|max| before >= max) {
            return Err(AcquireError::QueueFull { waiting: before });
        }
        let since = Instant::now();
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter { tx, counted, retry };
        let line = if retry {
            &self.retry_tx
        } else {
            &self.queue_tx
        };
        if line.send(waiter).is_err() {
            return Err(AcquireError::Closed);
        }
        self.signal_demand(since);
        match tokio::time::timeout(max_wait, rx).await {
            Ok(Ok(slot)) => Ok(Acquired {
                slot,
                queued: Some(since.elapsed()),
            }),
            // Dropped by the dispatcher: the deployment closed, or nothing can answer.
            Ok(Err(_)) => Err(self
                .unavailable()
                .map_or(AcquireError::Closed, AcquireError::Unavailable)),
            Err(_) => Err(AcquireError::Timeout(max_wait)),
        }
    }

    /// Runs the dispatcher: hands slots to waiting requests in arrival order as capacity appears
    /// (retried requests first). Spawn once per pool. After `close`, queued requests are
    /// answered `Closed`.
    pub async fn run_dispatcher(self: Arc<Self>) {
        let taken = |m: &std::sync::Mutex<Option<_>>| m.lock().ok().and_then(|mut g| g.take());
        let (Some(mut rx), Some(mut retry_rx)) = (taken(&self.queue_rx), taken(&self.retry_rx))
        else {
            return;
        };
        // Waiters taken off the channels, in the order they are served; the first `retries`
        // of them are retried requests.
        let mut line: VecDeque<Waiter> = VecDeque::new();
        let mut retries = 0usize;
        let take_retry = |line: &mut VecDeque<Waiter>, retries: &mut usize, w: Waiter| {
            line.insert(*retries, w);
            *retries += 1;
        };
        loop {
            while let Ok(w) = retry_rx.try_recv() {
                take_retry(&mut line, &mut retries, w);
            }
            let mut waiter = match line.pop_front() {
                Some(w) => {
                    retries = retries.saturating_sub(usize::from(w.retry));
                    w
                }
                None => tokio::select! {
                    biased;
                    Some(w) = retry_rx.recv() => w,
                    w = rx.recv() => match w {
                        Some(w) => w,
                        None => return,
                    },
                },
            };
            if waiter.tx.is_closed() || self.is_closed() || self.is_unavailable() {
                // The client left while waiting, the pool closed, or nothing can answer: out of
                // the count if it was put back in it, then dropped (the receiver sees why).
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
            let arrived = tokio::select! {
                _ = self.capacity_changed.notified() => None,
                _ = waiter.tx.closed() => None,
                w = retry_rx.recv() => w,
            };
            retries += usize::from(waiter.retry);
            line.push_front(waiter);
            if let Some(w) = arrived {
                take_retry(&mut line, &mut retries, w);
            }
        }
    }
}
