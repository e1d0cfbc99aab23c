//! What a simulated replica costs and how fast it answers: cold start, prefill and decode speed,
//! batching, slots, GPUs and prices. The one stand-in for a GPU in `simulate`.
//!
//! Service time of a request admitted to a replica that then has `c` requests in flight:
//! `input_tokens / prefill_tps + output_tokens / decode_rate(c)`, with
//! `decode_rate(c) = decode_tps / (1 + batching_slowdown × (c − 1))` — the documented batching
//! model: a replica's total throughput still grows with concurrency, each request's own decode
//! rate falls (vLLM-style continuous batching, linearised). The rate is fixed when the request is
//! admitted. Time to first token = wait + prefill.

use rand::Rng;
use std::time::Duration;

/// How long a replica takes from being asked for to ready.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColdStart {
    /// Always this long.
    Fixed(Duration),
    /// Log-normal with this median and 99th percentile.
    LogNormal {
        /// Median.
        median: Duration,
        /// 99th percentile.
        p99: Duration,
    },
}

impl ColdStart {
    /// One draw.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        match *self {
            ColdStart::Fixed(d) => d,
            ColdStart::LogNormal { median, p99 } => {
                let mu = median.as_secs_f64().max(1e-6).ln();
                // z(0.99) = 2.3263
                let sigma = ((p99.as_secs_f64().max(1e-6)).ln() - mu).max(0.0) / 2.326_348;
                let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                Duration::from_secs_f64((mu + sigma * z).exp())
            }
        }
    }
}

impl std::str::FromStr for ColdStart {
    type Err = String;
    /// `90s`, `2m`, or `lognormal:median=90s,p99=300s` (the config's own parser).
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match infergate_config::parse_cold_start(s)? {
            (fixed, None) => ColdStart::Fixed(fixed),
            (median, Some(p99)) => ColdStart::LogNormal { median, p99 },
        })
    }
}

/// Everything the simulator needs to know about one deployment's replicas and fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaModel {
    /// Asked for → ready.
    pub cold_start: ColdStart,
    /// Asleep → ready again (`POST /wake_up`, `hibernation.mode = "sleep"`).
    pub wake_time: Duration,
    /// Prompt tokens per second (one request).
    pub prefill_tps: f64,
    /// Generated tokens per second for a request alone on a replica.
    pub decode_tps: f64,
    /// How much each extra request in flight slows every request's decode (0 = none).
    pub batching_slowdown: f64,
    /// Requests one replica serves at once (0 = unlimited, as in the live pool).
    pub replica_concurrency: u32,
    /// GPUs each replica holds.
    pub gpus_per_replica: u32,
    /// Dollars per GPU-hour.
    pub gpu_hour_price: f64,
    /// How requests are spread over ready replicas (`routing`; `prefix` uses a request's
    /// `prefix_hash` from the trace).
    pub routing: infergate_config::RoutingPolicy,
    /// `routing_load_factor`.
    pub routing_load_factor: f64,
    /// Prompt prefixes each replica's cache holds (an LRU; 0 = no prefix cache).
    pub prefix_cache_size: usize,
    /// A cached prefix's prefill time as a fraction of an uncached one.
    pub prefix_hit_factor: f64,
    /// Fallback provider: time to first token.
    pub provider_latency: Duration,
    /// Fallback provider: dollars per million tokens (prompt + generated).
    pub provider_price_per_mtok: f64,
}

impl Default for ReplicaModel {
    fn default() -> Self {
        ReplicaModel {
            cold_start: ColdStart::Fixed(Duration::from_secs(90)),
            wake_time: Duration::from_secs(2),
            prefill_tps: 5_000.0,
            decode_tps: 50.0,
            batching_slowdown: 0.05,
            replica_concurrency: 8,
            gpus_per_replica: 1,
            gpu_hour_price: 2.0,
            routing: infergate_config::RoutingPolicy::LeastLoaded,
            routing_load_factor: 1.25,
            prefix_cache_size: 256,
            prefix_hit_factor: 0.2,
            provider_latency: Duration::from_millis(500),
            provider_price_per_mtok: 1.0,
        }
    }
}

impl ReplicaModel {
    /// Prefill time of a request.
    pub fn prefill(&self, input_tokens: u32) -> Duration {
        Duration::from_secs_f64(f64::from(input_tokens) / self.prefill_tps.max(1e-9))
    }

    /// Decode time of a request admitted with `concurrency` requests in flight (itself included).
    pub fn decode(&self, output_tokens: u32, concurrency: u32) -> Duration {
        let slowdown = 1.0 + self.batching_slowdown * f64::from(concurrency.saturating_sub(1));
        let rate = self.decode_tps.max(1e-9) / slowdown;
        Duration::from_secs_f64(f64::from(output_tokens) / rate)
    }

    /// Dollars of a fallback request.
    pub fn provider_cost(&self, input_tokens: u32, output_tokens: u32) -> f64 {
        f64::from(input_tokens + output_tokens) / 1e6 * self.provider_price_per_mtok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn cold_start_parses_fixed_and_lognormal() {
        assert_eq!(
            "30s".parse::<ColdStart>().unwrap(),
            ColdStart::Fixed(Duration::from_secs(30))
        );
        let ln: ColdStart = "lognormal:median=90s,p99=300s".parse().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut draws: Vec<f64> = (0..20_000)
            .map(|_| ln.sample(&mut rng).as_secs_f64())
            .collect();
        draws.sort_by(f64::total_cmp);
        let (p50, p99) = (draws[10_000], draws[19_800]);
        assert!((p50 - 90.0).abs() < 5.0, "{p50}");
        assert!((p99 - 300.0).abs() < 30.0, "{p99}");
        assert!("lognormal:median=9s".parse::<ColdStart>().is_err());
    }

    #[test]
    fn decode_slows_down_with_batching() {
        let m = ReplicaModel {
            decode_tps: 100.0,
            batching_slowdown: 0.1,
            ..ReplicaModel::default()
        };
        assert_eq!(m.decode(100, 1), Duration::from_secs(1));
        assert_eq!(m.decode(100, 11), Duration::from_secs(2));
    }
}
