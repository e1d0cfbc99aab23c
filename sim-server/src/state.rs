//! Counters and settings of one simulated model server.

use super::SimOptions;
use hyper::Request;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

/// Shared state of the simulated server.
pub(crate) struct SimState {
    pub opts: SimOptions,
    started: Instant,
    pub slots: Option<Semaphore>,
    pub running: AtomicU64,
    pub waiting: AtomicU64,
    pub max_running: AtomicU64,
    pub requests: AtomicU64,
    pub completed: AtomicU64,
    pub cancelled: AtomicU64,
    pub failed: AtomicU64,
    pub seq: AtomicU64,
    /// Sleep mode: the model's GPU memory is freed (`POST /sleep`).
    pub sleeping: AtomicBool,
    /// `POST /sleep` calls that put it to sleep.
    pub sleeps: AtomicU64,
    /// `POST /wake_up` calls that woke it.
    pub wake_ups: AtomicU64,
    /// The modelled prefix cache.
    pub prefix_cache: crate::prefix_cache::PrefixCache,
}

impl SimState {
    pub fn new(opts: SimOptions) -> Self {
        let slots =
            (opts.max_concurrency > 0).then(|| Semaphore::new(opts.max_concurrency as usize));
        SimState {
            started: Instant::now(),
            slots,
            running: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            max_running: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            sleeping: AtomicBool::new(false),
            sleeps: AtomicU64::new(0),
            wake_ups: AtomicU64::new(0),
            prefix_cache: crate::prefix_cache::PrefixCache::new(opts.prefix_cache_size),
            opts,
        }
    }

    /// Time to first token of a request with this body: shorter when its prefix is cached.
    pub fn ttft_for(&self, body: &serde_json::Value) -> std::time::Duration {
        let text = crate::prefix_cache::prefix_text(body, self.opts.prefix_bytes);
        if self.prefix_cache.lookup(&text) {
            self.opts
                .ttft
                .mul_f64(self.opts.prefix_hit_ttft_factor.clamp(0.0, 1.0))
        } else {
            self.opts.ttft
        }
    }

    /// Whether the simulated model finished loading.
    pub fn loaded(&self) -> bool {
        self.started.elapsed() >= self.opts.cold_start
    }

    /// Whether the request carries the API key, when one is required.
    pub fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(key) = &self.opts.api_key else {
            return true;
        };
        req.headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|v| v == key)
    }

    pub fn now_unix() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    pub fn models_json(&self) -> serde_json::Value {
        json!({"object": "list", "data": [{
            "id": self.opts.model, "object": "model", "created": Self::now_unix(), "owned_by": "infergate-sim"
        }]})
    }

    pub fn stats_json(&self) -> serde_json::Value {
        json!({
            "pid": std::process::id(),
            "model": self.opts.model,
            "loaded": self.loaded(),
            "requests": self.requests.load(Ordering::Acquire),
            "running": self.running.load(Ordering::Acquire),
            "waiting": self.waiting.load(Ordering::Acquire),
            "max_running": self.max_running.load(Ordering::Acquire),
            "completed": self.completed.load(Ordering::Acquire),
            "cancelled": self.cancelled.load(Ordering::Acquire),
            "failed": self.failed.load(Ordering::Acquire),
            "sleeping": self.sleeping.load(Ordering::Acquire),
            "sleeps": self.sleeps.load(Ordering::Acquire),
            "wake_ups": self.wake_ups.load(Ordering::Acquire),
            "prefix_cache_hits": self.prefix_cache.hits.load(Ordering::Acquire),
            "prefix_cache_queries": self.prefix_cache.queries.load(Ordering::Acquire),
            // The GPUs it was given, as a model server would use them (null when unset).
            "cuda_visible_devices": std::env::var("CUDA_VISIBLE_DEVICES").ok(),
        })
    }

    /// The prefix cache's counters under vLLM's names.
    fn prefix_counters(&self, labels: &str) -> String {
        let hits = self.prefix_cache.hits.load(Ordering::Acquire);
        let queries = self.prefix_cache.queries.load(Ordering::Acquire);
        format!(
            "# HELP vllm:prefix_cache_queries_total Prefix cache lookups.\n# TYPE vllm:prefix_cache_queries_total counter\n\
             vllm:prefix_cache_queries_total{labels} {queries}\n\
             # HELP vllm:prefix_cache_hits_total Prefix cache hits.\n# TYPE vllm:prefix_cache_hits_total counter\n\
             vllm:prefix_cache_hits_total{labels} {hits}\n"
        )
    }

    /// The queue and KV-cache gauges under the names of `--metrics-flavor`'s server, so
    /// autoscaling on `queue_depth` / `kv_cache_usage` can be tested against each naming.
    pub fn prometheus(&self) -> String {
        let running = self.running.load(Ordering::Acquire);
        let waiting = self.waiting.load(Ordering::Acquire);
        let kv = match self.opts.max_concurrency {
            0 => (running as f64 / 64.0).min(1.0),
            n => running as f64 / n as f64,
        };
        let m = &self.opts.model;
        let gauge = |name: &str, help: &str, labels: &str, value: String| {
            format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {value}\n")
        };
        let vllm = format!("{{model_name=\"{m}\"}}");
        match self.opts.metrics_flavor.as_str() {
            "sglang" => [
                gauge(
                    "sglang:num_running_reqs",
                    "The number of running requests.",
                    &vllm,
                    running.to_string(),
                ),
                gauge(
                    "sglang:num_queue_reqs",
                    "The number of requests in the waiting queue.",
                    &vllm,
                    waiting.to_string(),
                ),
                gauge(
                    "sglang:token_usage",
                    "The token usage.",
                    &vllm,
                    kv.to_string(),
                ),
            ]
            .concat(),
            "llamacpp" => [
                gauge(
                    "llamacpp:requests_processing",
                    "Number of requests processing.",
                    "",
                    running.to_string(),
                ),
                gauge(
                    "llamacpp:requests_deferred",
                    "Number of requests deferred.",
                    "",
                    waiting.to_string(),
                ),
                gauge(
                    "llamacpp:kv_cache_usage_ratio",
                    "KV-cache usage. 1 means 100 percent usage.",
                    "",
                    kv.to_string(),
                ),
            ]
            .concat(),
            "tgi" => gauge(
                "tgi_queue_size",
                "Current queue size.",
                "",
                waiting.to_string(),
            ),
            "tei" => gauge(
                "te_queue_size",
                "Current queue size.",
                "",
                waiting.to_string(),
            ),
            _ => [
                gauge(
                    "vllm:num_requests_running",
                    "Number of requests currently running on GPU.",
                    &vllm,
                    running.to_string(),
                ),
                gauge(
                    "vllm:num_requests_waiting",
                    "Number of requests waiting to be processed.",
                    &vllm,
                    waiting.to_string(),
                ),
                gauge(
                    "vllm:kv_cache_usage_perc",
                    "KV-cache usage. 1 means 100 percent usage.",
                    &vllm,
                    kv.to_string(),
                ),
                gauge(
                    "vllm:gpu_cache_usage_perc",
                    "GPU KV-cache usage. 1 means 100 percent usage.",
                    &vllm,
                    kv.to_string(),
                ),
                self.prefix_counters(&vllm),
            ]
            .concat(),
        }
    }
}

/// Counts one request as running while it lives; a request dropped before `finish` was cancelled.
pub(crate) struct RunGuard {
    state: Arc<SimState>,
    finished: bool,
}

impl RunGuard {
    pub fn new(state: Arc<SimState>) -> Self {
        let now = state.running.fetch_add(1, Ordering::AcqRel) + 1;
        state.max_running.fetch_max(now, Ordering::AcqRel);
        RunGuard {
            state,
            finished: false,
        }
    }

    pub fn finish(mut self) {
        self.finished = true;
        self.state.completed.fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.state.running.fetch_sub(1, Ordering::AcqRel);
        if !self.finished {
            self.state.cancelled.fetch_add(1, Ordering::AcqRel);
            tracing::info!("client went away before the response finished (cancelled)");
        }
    }
}
