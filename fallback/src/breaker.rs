//! Circuit breaking: a provider that fails `threshold` times in a row is skipped for `cool_down`,
//! then gets one trial request; success closes the circuit, failure opens it again.
//!
//! Lock-free (atomics); time is passed in as a duration since the caller's epoch, so the rules
//! are tested exactly.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// One provider's circuit.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    consecutive_failures: AtomicU32,
    /// Milliseconds after the epoch until which the circuit is open (0 = closed).
    open_until_ms: AtomicU64,
    /// A trial request is under way after a cool-down.
    trial: AtomicBool,
}

impl CircuitBreaker {
    /// A closed circuit.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        CircuitBreaker {
            threshold: threshold.max(1),
            cool_down,
            consecutive_failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            trial: AtomicBool::new(false),
        }
    }

    /// Whether a request may go to the provider now. After a cool-down exactly one caller gets
    /// `true` (the trial) until it reports back.
    pub fn allows(&self, now: Duration) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if (now.as_millis() as u64) < until {
            return false;
        }
        self.trial
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the circuit is open (cooling down) at `now`.
    pub fn is_open(&self, now: Duration) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        until != 0 && (now.as_millis() as u64) < until
    }

    /// The provider answered: the circuit closes.
    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
        self.open_until_ms.store(0, Ordering::Release);
        self.trial.store(false, Ordering::Release);
    }

    /// The provider failed; returns true when this failure opened the circuit.
    pub fn record_failure(&self, now: Duration) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let was_trial = self.trial.swap(false, Ordering::AcqRel);
        if failures >= self.threshold || was_trial {
            let until = (now + self.cool_down).as_millis() as u64;
            self.open_until_ms.store(until.max(1), Ordering::Release);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn opens_after_threshold_failures_and_cools_down() {
        let b = CircuitBreaker::new(3, 30 * S);
        assert!(!b.record_failure(S));
        assert!(!b.record_failure(S));
        assert!(b.allows(S));
        assert!(b.record_failure(2 * S), "third failure opens the circuit");
        assert!(!b.allows(3 * S));
        assert!(b.is_open(31 * S));
        // After the cool-down: one trial.
        assert!(b.allows(33 * S));
        assert!(!b.allows(33 * S), "only one trial at a time");
        assert!(b.record_failure(34 * S), "a failed trial opens it again");
        assert!(!b.allows(40 * S));
        assert!(b.allows(70 * S));
        b.record_success();
        assert!(b.allows(70 * S) && b.allows(70 * S));
    }

    #[test]
    fn success_resets_the_count() {
        let b = CircuitBreaker::new(2, 10 * S);
        b.record_failure(S);
        b.record_success();
        assert!(!b.record_failure(S));
        assert!(b.allows(S));
    }
}
