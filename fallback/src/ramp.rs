//! Ramp-back: once our replicas are ready after the fallback carried a deployment's traffic, the
//! share sent to the replicas grows linearly from 0 to 1 over `ramp_back`, so a cold cache is not
//! hit by all traffic at once. The split is deterministic (a counter), not random.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Per-deployment ramp-back state; all atomics, read on the request path.
#[derive(Debug, Default)]
pub struct RampBack {
    /// The fallback carried traffic because no replica could (cold start, hibernation…).
    engaged: AtomicBool,
    /// Milliseconds after the epoch when replicas were first seen ready after the fallback was
    /// engaged (0 = not yet).
    ready_since_ms: AtomicU64,
    /// Requests split so far during the ramp.
    counter: AtomicU64,
}

/// Share of traffic for our replicas `elapsed` into a ramp of length `ramp`.
pub fn replica_share(elapsed: Duration, ramp: Duration) -> f64 {
    if ramp.is_zero() {
        return 1.0;
    }
    (elapsed.as_secs_f64() / ramp.as_secs_f64()).clamp(0.0, 1.0)
}

/// Whether the `n`-th request goes to the replicas when they get `share` of the traffic: exactly
/// floor(N × share) of N consecutive requests do, spread evenly.
pub fn nth_goes_to_replicas(n: u64, share: f64) -> bool {
    let before = (n as f64 * share).floor();
    let after = ((n + 1) as f64 * share).floor();
    after > before
}

impl RampBack {
    /// The fallback is carrying traffic for lack of replicas; true when it was not already.
    pub fn engage(&self) -> bool {
        self.ready_since_ms.store(0, Ordering::Release);
        !self.engaged.swap(true, Ordering::AcqRel)
    }

    /// Whether the fallback has been carrying traffic (and the ramp has not finished).
    pub fn is_engaged(&self) -> bool {
        self.engaged.load(Ordering::Acquire)
    }

    /// Whether the fallback still carries (part of) the traffic at `now`: engaged, and the ramp
    /// (if it started) not yet over — true to the present even when no request has come since.
    pub fn is_engaged_at(&self, now: Duration, ramp: Duration) -> bool {
        if !self.is_engaged() {
            return false;
        }
        match self.ready_since_ms.load(Ordering::Acquire) {
            0 => true,
            since => (now.as_millis() as u64).saturating_sub(since) < ramp.as_millis() as u64,
        }
    }

    /// Decides for one request when replicas are ready: `.0` true = replicas, false = fallback;
    /// `.1` true when this request ended the ramp (all traffic is back on the replicas).
    /// `now` is the time since the caller's epoch.
    pub fn to_replicas(&self, now: Duration, ramp: Duration) -> (bool, bool) {
        if !self.engaged.load(Ordering::Acquire) {
            return (true, false);
        }
        let now_ms = (now.as_millis() as u64).max(1);
        let since = match self.ready_since_ms.compare_exchange(
            0,
            now_ms,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => now_ms,
            Err(existing) => existing,
        };
        let share = replica_share(Duration::from_millis(now_ms.saturating_sub(since)), ramp);
        if share >= 1.0 {
            let released = self.engaged.swap(false, Ordering::AcqRel);
            return (true, released);
        }
        let n = self.counter.fetch_add(1, Ordering::AcqRel);
        (nth_goes_to_replicas(n, share), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn share_grows_linearly_over_the_ramp() {
        assert_eq!(replica_share(Duration::ZERO, 30 * S), 0.0);
        assert_eq!(replica_share(15 * S, 30 * S), 0.5);
        assert_eq!(replica_share(45 * S, 30 * S), 1.0);
        assert_eq!(replica_share(Duration::ZERO, Duration::ZERO), 1.0);
    }

    #[test]
    fn split_is_exact_and_even() {
        let to_replicas = (0..100).filter(|&n| nth_goes_to_replicas(n, 0.25)).count();
        assert_eq!(to_replicas, 25);
        assert!(!(0..100).any(|n| nth_goes_to_replicas(n, 0.0)));
        assert!((0..100).all(|n| nth_goes_to_replicas(n, 1.0)));
    }

    #[test]
    fn ramp_starts_when_replicas_are_first_seen_ready_and_ends() {
        let r = RampBack::default();
        assert_eq!(r.to_replicas(S, 30 * S), (true, false), "never engaged");
        assert!(r.engage(), "newly engaged");
        assert!(!r.engage(), "already engaged");
        assert!(!r.to_replicas(100 * S, 30 * S).0, "share 0 at the start");
        let mid: usize = (0..1000)
            .filter(|_| r.to_replicas(115 * S, 30 * S).0)
            .count();
        assert!((495..=505).contains(&mid), "{mid}");
        assert_eq!(
            r.to_replicas(130 * S, 30 * S),
            (true, true),
            "the ramp ends"
        );
        assert!(!r.is_engaged(), "the ramp is over");
        assert_eq!(r.to_replicas(131 * S, 30 * S), (true, false));
    }
}
