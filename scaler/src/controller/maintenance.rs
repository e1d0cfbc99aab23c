//! Maintenance switched by hand: the fallback answers new requests if configured for it, else
//! they are held here until maintenance is off (up to `queue.max_wait`); requests in flight finish.

use super::Controller;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

impl Controller {
    /// Switches maintenance on or off (operators, before touching a model server by hand).
    pub fn set_maintenance(&self, on: bool) {
        let was = self.maintenance.swap(on, Ordering::AcqRel);
        if was != on {
            tracing::info!(deployment = %self.name, maintenance = on, "maintenance switched");
        }
        if !on {
            self.maintenance_over.notify_waiters();
        }
    }

    /// Holds a request while maintenance is on (no fallback answers it), up to `max_wait`;
    /// false when maintenance was still on at the end.
    pub async fn wait_out_maintenance(&self, max_wait: Duration) -> bool {
        let _held = HeldGuard::new(&self.maintenance_held);
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let over = self.maintenance_over.notified();
            tokio::pin!(over);
            over.as_mut().enable();
            if !self.maintenance() {
                return true;
            }
            if tokio::time::timeout_at(deadline, over).await.is_err() {
                return !self.maintenance();
            }
        }
    }

    /// Requests held because of maintenance right now.
    pub fn maintenance_held(&self) -> u64 {
        self.maintenance_held.load(Ordering::Acquire)
    }

    /// Whether maintenance is on.
    pub fn maintenance(&self) -> bool {
        self.maintenance.load(Ordering::Acquire)
    }
}

/// Counts a held request in and, when dropped (answered, timed out or gone), out.
struct HeldGuard<'a>(&'a AtomicU64);

impl<'a> HeldGuard<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        HeldGuard(counter)
    }
}

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
