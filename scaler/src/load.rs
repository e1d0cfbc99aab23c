//! Load signals: what "load" means for each `metric`, and the per-deployment history the policy
//! averages over.
//!
//! The controller samples the pool's atomic counters (and the replicas' scraped metrics) off the
//! request path; the data plane only bumps atomics. Both pieces here are pure so they can be tested
//! and replayed like the policy.

use crate::policy::LoadSample;
use infergate_config::Metric;
use std::collections::VecDeque;
use std::time::Duration;

/// Granularity of the history: one sample per second, the latest observation of that second.
const BUCKET: Duration = Duration::from_secs(1);

/// A ring of load samples, one per second, covering at least the autoscaling window.
///
/// Within a second the newest observation replaces the previous one, so deciding on every demand
/// signal does not weigh bursts more than quiet seconds, while the last sample is always the load
/// right now (what the policy scales up on).
#[derive(Debug, Default)]
pub struct LoadHistory {
    samples: VecDeque<LoadSample>,
}

impl LoadHistory {
    /// Records the load observed at `at`, forgetting samples older than `keep`.
    ///
    /// Seconds with no observation between the last sample and `at` are filled with the last
    /// load (load only changes when something is observed), so a caller that decides only on
    /// events — the simulator — sees the same window as one that samples every tick.
    pub fn record(&mut self, at: Duration, load: f64, keep: Duration) {
        let bucket = |d: Duration| d.as_secs() / BUCKET.as_secs();
        if let Some(last) = self.samples.back().copied() {
            let (from, to) = (bucket(last.at) + 1, bucket(at));
            let from = from.max(to.saturating_sub(keep.as_secs() + 1));
            for second in from..to {
                self.samples.push_back(LoadSample {
                    at: Duration::from_secs(second * BUCKET.as_secs()),
                    load: last.load,
                });
            }
        }
        match self.samples.back_mut() {
            Some(last) if bucket(last.at) == bucket(at) => *last = LoadSample { at, load },
            _ => self.samples.push_back(LoadSample { at, load }),
        }
        let oldest = at.saturating_sub(keep);
        while self.samples.front().is_some_and(|s| s.at < oldest) {
            self.samples.pop_front();
        }
    }

    /// Whether every sample kept equals the latest: then the windowed average cannot change
    /// until the load does, and a caller need not decide again just because time passes.
    pub fn settled(&self) -> bool {
        match self.samples.back() {
            None => true,
            Some(last) => self.samples.iter().all(|s| s.load == last.load),
        }
    }

    /// The first whole second after `now` at which the windowed average, with the load staying
    /// at its latest value, falls to a level `wants(average)` below `current` — when a scale-down
    /// countdown would start without any new observation. `None` if it never does within one
    /// window (then the latest load itself keeps `current`).
    pub fn first_drop_below(
        &self,
        now: Duration,
        window: Duration,
        current: u32,
        wants: impl Fn(f64) -> u32,
    ) -> Option<Duration> {
        let last = self.samples.back()?;
        if wants(last.load) >= current {
            return None;
        }
        let last_second = last.at.as_secs();
        // Seconds after the last sample (all of the future) carry its load.
        let carried = |second: u64, start: Duration| {
            second.saturating_sub(last_second.max(start.as_secs().saturating_sub(1)))
        };
        let exact = |second: u64| {
            let start = Duration::from_secs(second).saturating_sub(window);
            let (mut sum, mut n) = (0.0, 0u64);
            for s in self.samples.iter().filter(|s| s.at >= start) {
                sum += s.load;
                n += 1;
            }
            let c = carried(second, start);
            (sum + last.load * c as f64, n + c)
        };
        // One pass: a sliding sum of the samples still in the window finds the candidate
        // second; the exact sum (what the policy will compute then) confirms it.
        let first = now.as_secs() + 1;
        let (mut sum, mut n, mut dropped) = (0.0, 0u64, 0usize);
        let first_start = Duration::from_secs(first).saturating_sub(window);
        for s in self.samples.iter() {
            if s.at >= first_start {
                sum += s.load;
                n += 1;
            } else {
                dropped += 1;
            }
        }
        for second in first..=first + window.as_secs() + 1 {
            let start = Duration::from_secs(second).saturating_sub(window);
            while let Some(s) = self.samples.get(dropped).filter(|s| s.at < start) {
                sum -= s.load;
                n -= 1;
                dropped += 1;
            }
            let c = carried(second, start);
            let total = n + c;
            let average = (sum + last.load * c as f64) / total.max(1) as f64;
            if total > 0 && wants(average * (1.0 - 1e-12)) < current {
                let (es, en) = exact(second);
                if en > 0 && wants(es / en as f64) < current {
                    return Some(Duration::from_secs(second));
                }
            }
        }
        None
    }

    /// The samples, oldest first.
    pub fn samples(&mut self) -> &[LoadSample] {
        self.samples.make_contiguous()
    }
}

/// What one replica's own metrics endpoint reported (vLLM names).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReplicaMetrics {
    /// `vllm:num_requests_waiting`: requests queued inside the model server.
    pub num_requests_waiting: Option<f64>,
    /// `vllm:kv_cache_usage_perc` (or the older `vllm:gpu_cache_usage_perc`), 0–1.
    pub kv_cache_usage: Option<f64>,
}

/// What is known of one ready replica's own metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scraped {
    /// Not scraped since it became ready (it has just started: empty queue, empty cache).
    Pending,
    /// The last scrape failed.
    Unreadable,
    /// The last scrape.
    Read(ReplicaMetrics),
}

/// Everything the load of one deployment is computed from, at one instant.
#[derive(Debug, Clone, Default)]
pub struct LoadInputs {
    /// Requests in flight on our replicas (pool counter).
    pub in_flight: u64,
    /// Requests held in our queue (pool counter).
    pub waiting: u64,
    /// Requests answered by the fallback for lack of a replica: they wait for capacity too.
    pub external: u64,
    /// One entry per ready replica: what its metrics endpoint last said.
    pub ready_replicas: Vec<Scraped>,
}

/// The load of a deployment under `metric`, in the unit the policy divides by `per_replica`.
///
/// A ready replica whose metrics cannot be read (or lack the gauge) is counted conservatively as
/// carrying exactly one replica's target: it keeps its own place (no scale-down on missing data)
/// without asking for more (no scale-up on missing data). One not scraped yet counts as empty.
pub fn measure(metric: Metric, per_replica: f64, inputs: &LoadInputs) -> f64 {
    let scraped = |field: fn(&ReplicaMetrics) -> Option<f64>| -> f64 {
        inputs
            .ready_replicas
            .iter()
            .map(|s| match s {
                Scraped::Pending => 0.0,
                Scraped::Unreadable => per_replica,
                Scraped::Read(m) => field(m).unwrap_or(per_replica),
            })
            .sum()
    };
    match metric {
        Metric::Concurrency => (inputs.in_flight + inputs.waiting + inputs.external) as f64,
        Metric::QueueDepth => {
            (inputs.waiting + inputs.external) as f64 + scraped(|m| m.num_requests_waiting)
        }
        Metric::KvCacheUsage => {
            let usage = scraped(|m| m.kv_cache_usage.map(|u| u.clamp(0.0, 1.0)));
            if inputs.ready_replicas.is_empty() && inputs.waiting + inputs.external > 0 {
                // No replica to read a KV cache from, yet requests wait: ask for one.
                usage.max(per_replica)
            } else {
                usage
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn history_keeps_one_sample_per_second_the_latest() {
        let mut h = LoadHistory::default();
        h.record(ms(100), 1.0, ms(60_000));
        h.record(ms(900), 5.0, ms(60_000));
        h.record(ms(1_200), 2.0, ms(60_000));
        let loads: Vec<f64> = h.samples().iter().map(|s| s.load).collect();
        assert_eq!(loads, vec![5.0, 2.0]);
        assert_eq!(h.samples()[1].at, ms(1_200));
    }

    #[test]
    fn history_forgets_samples_older_than_keep() {
        let mut h = LoadHistory::default();
        for s in 0..100 {
            h.record(Duration::from_secs(s), s as f64, Duration::from_secs(10));
        }
        let s = h.samples();
        assert_eq!(s.len(), 11);
        assert_eq!(s[0].at, Duration::from_secs(89));
    }

    #[test]
    fn seconds_without_an_observation_carry_the_last_load() {
        let mut h = LoadHistory::default();
        h.record(ms(500), 4.0, ms(60_000));
        h.record(ms(3_200), 1.0, ms(60_000));
        let loads: Vec<(u64, f64)> = h
            .samples()
            .iter()
            .map(|s| (s.at.as_millis() as u64, s.load))
            .collect();
        assert_eq!(
            loads,
            vec![(500, 4.0), (1_000, 4.0), (2_000, 4.0), (3_200, 1.0)]
        );
        assert!(!h.settled());
        h.record(ms(90_000), 1.0, ms(10_000));
        assert!(
            h.settled(),
            "after a long gap only the carried load is left"
        );
        assert_eq!(h.samples().len(), 11);
    }

    fn inputs(in_flight: u64, waiting: u64, ready: Vec<Scraped>) -> LoadInputs {
        LoadInputs {
            in_flight,
            waiting,
            external: 0,
            ready_replicas: ready,
        }
    }

    fn scraped(waiting: f64, kv: f64) -> Scraped {
        Scraped::Read(ReplicaMetrics {
            num_requests_waiting: Some(waiting),
            kv_cache_usage: Some(kv),
        })
    }

    #[test]
    fn concurrency_is_in_flight_plus_waiting() {
        let i = inputs(3, 4, vec![scraped(9.0, 0.9)]);
        assert_eq!(measure(Metric::Concurrency, 0.7, &i), 7.0);
    }

    #[test]
    fn requests_answered_by_the_fallback_count_as_waiting_demand() {
        let i = LoadInputs {
            external: 2,
            ..inputs(3, 4, vec![])
        };
        assert_eq!(measure(Metric::Concurrency, 0.7, &i), 9.0);
        assert_eq!(measure(Metric::QueueDepth, 0.7, &i), 6.0);
        assert_eq!(measure(Metric::KvCacheUsage, 0.8, &i), 0.8);
    }

    #[test]
    fn queue_depth_is_our_queue_plus_the_replicas_queues() {
        let i = inputs(3, 4, vec![scraped(2.0, 0.9), scraped(1.0, 0.1)]);
        assert_eq!(measure(Metric::QueueDepth, 0.7, &i), 7.0);
    }

    #[test]
    fn kv_cache_usage_sums_the_ready_replicas_fractions() {
        let i = inputs(3, 0, vec![scraped(0.0, 0.9), scraped(0.0, 0.6)]);
        assert!((measure(Metric::KvCacheUsage, 0.8, &i) - 1.5).abs() < 1e-9);
    }

    #[test]
    fn kv_cache_usage_at_zero_replicas_with_waiting_requests_asks_for_one() {
        assert_eq!(
            measure(Metric::KvCacheUsage, 0.8, &inputs(0, 5, vec![])),
            0.8
        );
        assert_eq!(
            measure(Metric::KvCacheUsage, 0.8, &inputs(0, 0, vec![])),
            0.0
        );
    }

    #[test]
    fn unreadable_replica_counts_as_exactly_its_target() {
        let i = inputs(0, 0, vec![Scraped::Unreadable, scraped(0.0, 0.0)]);
        assert_eq!(measure(Metric::KvCacheUsage, 0.8, &i), 0.8);
        assert_eq!(measure(Metric::QueueDepth, 0.7, &i), 0.7);
        let missing_gauge = Scraped::Read(ReplicaMetrics {
            num_requests_waiting: Some(2.0),
            kv_cache_usage: None,
        });
        assert_eq!(
            measure(
                Metric::KvCacheUsage,
                0.8,
                &inputs(0, 0, vec![missing_gauge])
            ),
            0.8
        );
    }

    #[test]
    fn replica_not_scraped_yet_counts_as_empty() {
        let i = inputs(0, 0, vec![Scraped::Pending, scraped(3.0, 0.5)]);
        assert_eq!(measure(Metric::QueueDepth, 1.0, &i), 3.0);
        assert_eq!(measure(Metric::KvCacheUsage, 0.8, &i), 0.5);
    }
}
