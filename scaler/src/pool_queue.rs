//! The waiting side of the pool: requests that found no free slot wait in line, one dispatcher
//! task hands them slots as capacity appears — by priority band, then round-robin across clients,
//! then arrival order (`crate::fair_line`; plain FIFO with one client) — and a request whose
//! replica refused the connection goes back in line ahead of everyone.

use crate::fair_line::FairLine;
use crate::pool::{uncount, AcquireError, Acquired, ReplicaPool, Ticket, Waiter, WaitingGuard};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Holds a client's place in `queue.max_waiting_per_client` while its request waits.
struct ClientShare<'a> {
    pool: &'a ReplicaPool,
    client: u64,
}

impl Drop for ClientShare<'_> {
    fn drop(&mut self) {
        if let Ok(mut per) = self.pool.per_client.lock() {
            if let Some(n) = per.get_mut(&self.client) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per.remove(&self.client);
                }
            }
        }
    }
}

impl ReplicaPool {
    /// Gets a slot, waiting in FIFO order for up to `max_wait` if none is free. Dropping the
    /// returned future (client gone) leaves the queue at once.
    pub async fn acquire(
        self: &Arc<Self>,
        max_wait: Duration,
        max_waiting: u64,
    ) -> Result<Acquired, AcquireError> {
        self.acquire_for(max_wait, max_waiting, Ticket::default())
            .await
    }

    /// Gets a slot for a request with `ticket` (its routing key, band and client), waiting for up
    /// to `max_wait` in the fair line if none is free.
    pub async fn acquire_for(
        self: &Arc<Self>,
        max_wait: Duration,
        max_waiting: u64,
        ticket: Ticket,
    ) -> Result<Acquired, AcquireError> {
        if self.is_closed() {
            return Err(AcquireError::Closed);
        }
        if self.waiting() == 0 {
            if let Some(slot) = self.try_acquire_for(ticket.affinity.as_ref(), &[]) {
                return Ok(Acquired { slot, queued: None });
            }
        }
        if let Some(why) = self.unavailable() {
            return Err(AcquireError::Unavailable(why));
        }
        self.wait_in_line(max_wait, Some(max_waiting), false, ticket)
            .await
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
        self.wait_in_line(max_wait, None, true, Ticket::default())
            .await
    }

    /// Takes a place of `client`'s share of the queue, or says the share is full.
    fn take_share(&self, client: u64) -> Result<Option<ClientShare<'_>>, AcquireError> {
        let cap = self.max_waiting_per_client();
        if cap == 0 || client == 0 {
            return Ok(None);
        }
        let Ok(mut per) = self.per_client.lock() else {
            return Ok(None);
        };
        let n = per.entry(client).or_insert(0);
        if *n >= cap {
            return Err(AcquireError::ClientShareFull {
                waiting: u64::from(*n),
            });
        }
        *n += 1;
        Ok(Some(ClientShare { pool: self, client }))
    }

    async fn wait_in_line(
        self: &Arc<Self>,
        max_wait: Duration,
        max_waiting: Option<u64>,
        retry: bool,
        ticket: Ticket,
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
        let _share = if retry {
            None
        } else {
            self.take_share(ticket.client)?
        };
        let since = Instant::now();
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter {
            tx,
            counted,
            retry,
            ticket,
        };
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

    /// Runs the dispatcher: hands slots to waiting requests as capacity appears — retried
    /// requests first, then the fair line's order. Spawn once per pool. After `close`, queued
    /// requests are answered `Closed`.
    pub async fn run_dispatcher(self: Arc<Self>) {
        let taken = |m: &std::sync::Mutex<Option<_>>| m.lock().ok().and_then(|mut g| g.take());
        let (Some(mut rx), Some(mut retry_rx)) = (taken(&self.queue_rx), taken(&self.retry_rx))
        else {
            return;
        };
        let mut retries: VecDeque<Waiter> = VecDeque::new();
        let mut line: FairLine<Waiter> = FairLine::default();
        loop {
            // Everyone who arrived so far is in line before the next one is chosen.
            while let Ok(w) = retry_rx.try_recv() {
                retries.push_back(w);
            }
            while let Ok(w) = rx.try_recv() {
                line.push(w);
            }
            let mut waiter = match retries.pop_front().or_else(|| line.pop()) {
                Some(w) => w,
                None => {
                    tokio::select! {
                        biased;
                        Some(w) = retry_rx.recv() => retries.push_back(w),
                        w = rx.recv() => match w {
                            Some(w) => line.push(w),
                            None => return,
                        },
                    }
                    continue;
                }
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
            if let Some(slot) = self.try_acquire_for(waiter.ticket.affinity.as_ref(), &[]) {
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
            if waiter.retry {
                retries.push_front(waiter);
            } else {
                line.unpop(waiter);
            }
            if let Some(w) = arrived {
                retries.push_back(w);
            }
        }
    }
}
