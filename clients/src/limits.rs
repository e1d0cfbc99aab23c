//! One client's limits, as OpenAI applies them: requests per minute and tokens per minute (GCRA
//! through `governor`: the budget refills continuously, a full minute's worth at most), and
//! requests in flight at once. Completion tokens are known only once the response is through:
//! they are taken from the token budget then, and what the budget cannot cover yet is owed by the
//! client's next request.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// One per-minute budget.
struct Budget {
    limit: NonZeroU32,
    limiter: Limiter,
}

impl Budget {
    fn per_minute(limit: u32) -> Option<Budget> {
        let limit = NonZeroU32::new(limit)?;
        Some(Budget {
            limit,
            limiter: RateLimiter::direct(Quota::per_minute(limit))
                .with_middleware::<StateInformationMiddleware>(),
        })
    }

    /// Time for `used` units of the budget to refill.
    fn refill(&self, used: u32) -> Duration {
        Duration::from_secs(60).mul_f64(f64::from(used) / f64::from(self.limit.get()))
    }

    /// Takes `n` units now: the window's state after, or how long until it could.
    fn take(&self, n: u32, clock: &DefaultClock) -> Result<Window, Duration> {
        let n = NonZeroU32::new(n.min(self.limit.get())).unwrap_or(NonZeroU32::MIN);
        match self.limiter.check_n(n) {
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity();
                Ok(Window {
                    limit: self.limit.get(),
                    remaining,
                    reset: self.refill(self.limit.get() - remaining.min(self.limit.get())),
                })
            }
            Ok(Err(not_until)) => Err(not_until.wait_time_from(clock.now())),
            Err(_) => Err(self.refill(n.get())),
        }
    }

    /// The state of a budget that just refused: nothing left until `wait` has passed.
    fn empty_for(&self, wait: Duration) -> Window {
        Window {
            limit: self.limit.get(),
            remaining: 0,
            reset: wait,
        }
    }
}

/// One budget's state, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// The per-minute limit.
    pub limit: u32,
    /// What is left of it now.
    pub remaining: u32,
    /// Until it is whole again.
    pub reset: Duration,
}

/// The headers a response carries (on every response of a limited client, as OpenAI's do).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateHeaders {
    /// `x-ratelimit-*-requests`.
    pub requests: Option<Window>,
    /// `x-ratelimit-*-tokens`.
    pub tokens: Option<Window>,
}

impl RateHeaders {
    /// (name, value) pairs: `x-ratelimit-limit-requests`, `-remaining-`, `-reset-`, and the
    /// `-tokens` trio, with OpenAI's duration format (`1s`, `6m0s`, `20ms`).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut add = |w: Option<Window>, names: [&'static str; 3]| {
            if let Some(w) = w {
                out.push((names[0], w.limit.to_string()));
                out.push((names[1], w.remaining.to_string()));
                out.push((names[2], openai_duration(w.reset)));
            }
        };
        add(
            self.requests,
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
        );
        add(
            self.tokens,
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        );
        out
    }
}

/// `20ms`, `1.5s`, `6m0s`, as OpenAI writes its reset times.
pub fn openai_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = format!("{:.3}", d.as_secs_f64());
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// `requests_per_minute`.
    Requests,
    /// `tokens_per_minute`.
    Tokens,
    /// `max_concurrency`.
    Concurrency,
}

impl LimitKind {
    /// The setting's name (a metric label).
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests_per_minute",
            LimitKind::Tokens => "tokens_per_minute",
            LimitKind::Concurrency => "max_concurrency",
        }
    }
}

/// A request over one of its client's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// Which.
    pub kind: LimitKind,
    /// The limit's value.
    pub limit: u32,
    /// When to try again (`Retry-After`).
    pub retry_after: Duration,
    /// The budgets' state.
    pub headers: RateHeaders,
}

/// A client's limits and their state.
pub struct Limits {
    requests: Option<Budget>,
    tokens: Option<Budget>,
    max_concurrency: Option<u32>,
    in_flight: Arc<AtomicU32>,
    /// Completion tokens the budget could not cover yet: the next request pays them first.
    owed: AtomicU64,
    clock: DefaultClock,
}

/// A request in flight for a client; dropping it ends it.
pub struct InFlight {
    counter: Arc<AtomicU32>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limits {
    /// The limits a client's settings ask for.
    pub fn new(rpm: Option<u32>, tpm: Option<u32>, max_concurrency: Option<u32>) -> Self {
        Limits {
            requests: rpm.and_then(Budget::per_minute),
            tokens: tpm.and_then(Budget::per_minute),
            max_concurrency,
            in_flight: Arc::new(AtomicU32::new(0)),
            owed: AtomicU64::new(0),
            clock: DefaultClock::default(),
        }
    }

    /// Whether any limit is set (no headers, no bookkeeping otherwise).
    pub fn any(&self) -> bool {
        self.requests.is_some() || self.tokens.is_some() || self.max_concurrency.is_some()
    }

    /// Requests of this client in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Admits a request estimated at `prompt_tokens`, or says which limit it is over.
    pub fn admit(&self, prompt_tokens: u32) -> Result<(InFlight, RateHeaders), Refused> {
        let mut headers = RateHeaders::default();
        let taken = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = InFlight {
            counter: self.in_flight.clone(),
        };
        if let Some(max) = self.max_concurrency.filter(|max| taken >= *max) {
            return Err(Refused {
                kind: LimitKind::Concurrency,
                limit: max,
                retry_after: Duration::from_secs(1),
                headers,
            });
        }
        if let Some(budget) = &self.tokens {
            let owed = self.owed.swap(0, Ordering::AcqRel);
            let need = u64::from(prompt_tokens) + owed;
            match budget.take(u32::try_from(need).unwrap_or(u32::MAX), &self.clock) {
                Ok(window) => headers.tokens = Some(window),
                Err(wait) => {
                    self.owed.fetch_add(owed, Ordering::AcqRel);
                    headers.tokens = Some(budget.empty_for(wait));
                    return Err(Refused {
                        kind: LimitKind::Tokens,
                        limit: budget.limit.get(),
                        retry_after: wait,
                        headers,
                    });
                }
            }
        }
        if let Some(budget) = &self.requests {
            match budget.take(1, &self.clock) {
                Ok(window) => headers.requests = Some(window),
                Err(wait) => {
                    headers.requests = Some(budget.empty_for(wait));
                    return Err(Refused {
                        kind: LimitKind::Requests,
                        limit: budget.limit.get(),
                        retry_after: wait,
                        headers,
                    });
                }
            }
        }
        Ok((slot, headers))
    }

    /// The response reported `tokens` completion tokens: they come off the token budget (what
    /// it cannot cover now is owed by the next request).
    pub fn completion_tokens(&self, tokens: u32) {
        let Some(budget) = &self.tokens else { return };
        if tokens == 0 {
            return;
        }
        if budget.take(tokens, &self.clock).is_err() {
            self.owed.fetch_add(u64::from(tokens), Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_per_minute_refuses_past_the_budget_with_a_retry_time() {
        let limits = Limits::new(Some(2), None, None);
        let (_a, h) = limits.admit(1).unwrap();
        assert_eq!(h.requests.unwrap().remaining, 1);
        let (_b, h) = limits.admit(1).unwrap();
        assert_eq!(h.requests.unwrap().remaining, 0);
        let refused = limits.admit(1).err().unwrap();
        assert_eq!(refused.kind, LimitKind::Requests);
        // One request refills in 30 s at 2 per minute.
        assert!(refused.retry_after > Duration::from_secs(25), "{refused:?}");
        assert!(refused.retry_after <= Duration::from_secs(30));
    }

    #[test]
    fn concurrency_counts_requests_in_flight_until_they_end() {
        let limits = Limits::new(None, None, Some(1));
        let first = limits.admit(1).unwrap();
        assert_eq!(limits.admit(1).err().unwrap().kind, LimitKind::Concurrency);
        drop(first);
        assert!(limits.admit(1).is_ok());
        assert_eq!(limits.in_flight(), 0);
    }

    #[test]
    fn completion_tokens_are_owed_by_the_next_request() {
        let limits = Limits::new(None, Some(100), None);
        let (_a, h) = limits.admit(40).unwrap();
        assert_eq!(h.tokens.unwrap().remaining, 60);
        limits.completion_tokens(50);
        let (_b, h) = limits.admit(5).unwrap();
        assert_eq!(h.tokens.unwrap().remaining, 5);
        limits.completion_tokens(30); // over what is left: owed
        let refused = limits.admit(1).err().unwrap();
        assert_eq!(refused.kind, LimitKind::Tokens);
        assert_eq!(refused.limit, 100);
    }

    #[test]
    fn reset_times_are_written_as_openai_writes_them() {
        assert_eq!(openai_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(openai_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(openai_duration(Duration::from_secs(1)), "1s");
        assert_eq!(openai_duration(Duration::from_secs(360)), "6m0s");
    }
}
