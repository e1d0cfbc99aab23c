//! The report: per policy and deployment, and totals per policy — as a terminal table and as the
//! JSON that scripts rely on (field names are an interface; keep them).

use crate::engine::{Measured, PassResult, Series};
use crate::policies::PolicyKind;
use crate::setup::Plan;
use serde::Serialize;
use std::fmt::Write as _;

/// Queue-wait percentiles, ms.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WaitMs {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Longest.
    pub max: f64,
}

/// Time-to-first-token percentiles, ms.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TtftMs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// One policy on one deployment (or, in `totals`, on all of them).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunResult {
    /// Policy name.
    pub policy: &'static str,
    /// Deployment name (`all` in totals).
    pub deployment: String,
    /// GPU-seconds of replicas starting, ready or draining.
    pub gpu_seconds: f64,
    /// GPU-seconds at the GPU-hour price.
    pub cost_usd: f64,
    /// Replicas started.
    pub cold_starts: u64,
    /// Sleeping replicas woken.
    pub wake_ups: u64,
    /// Replica-seconds asleep (not in `gpu_seconds`).
    pub sleeping_seconds: f64,
    /// Queue wait.
    pub wait_ms: WaitMs,
    /// Time to first token.
    pub ttft_ms: TtftMs,
    /// Requests answered.
    pub served: u64,
    /// Requests that waited past `queue.max_wait`.
    pub timed_out: u64,
    /// Requests refused (queue full).
    pub refused: u64,
    /// Replicas started that never served a request.
    pub over_scale: u64,
    /// Share of requests answered by the fallback.
    pub fallback_share: f64,
    /// Dollars paid to the fallback.
    pub fallback_cost_usd: f64,
    /// Most replicas at once.
    pub peak_replicas: u32,
    /// Share of the requests with a prompt prefix (`prefix_hash` / `hash_ids`) whose replica
    /// held it in its prefix cache; absent when the trace has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_hit_rate: Option<f64>,
    /// (seconds, desired replicas) at every change (`--timeline`; not in totals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_timeline: Option<Vec<(f64, u32)>>,
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn result(
    policy: PolicyKind,
    deployment: String,
    m: &Measured,
    gpu_seconds: f64,
    cost: f64,
) -> RunResult {
    let [w50, w95, w99] = m
        .wait
        .clone()
        .quantiles([0.5, 0.95, 0.99])
        .map(|v| round(v, 1));
    let [t50, t99] = m.ttft.clone().quantiles([0.5, 0.99]).map(|v| round(v, 1));
    RunResult {
        policy: policy.name(),
        deployment,
        gpu_seconds: round(gpu_seconds, 1),
        cost_usd: round(cost, 4),
        cold_starts: m.cold_starts,
        wake_ups: m.wake_ups,
        sleeping_seconds: round(m.replica_seconds.sleeping, 1),
        wait_ms: WaitMs {
            p50: w50,
            p95: w95,
            p99: w99,
            max: round(m.wait.max(), 1),
        },
        ttft_ms: TtftMs { p50: t50, p99: t99 },
        served: m.served,
        timed_out: m.timed_out,
        refused: m.refused,
        over_scale: m.over_scale,
        fallback_share: if m.served == 0 {
            0.0
        } else {
            round(m.fallback as f64 / m.served as f64, 4)
        },
        fallback_cost_usd: round(m.fallback_cost, 4),
        peak_replicas: m.peak_replicas,
        prefix_hit_rate: (m.prefix_queries > 0)
            .then(|| round(m.prefix_hits as f64 / m.prefix_queries as f64, 4)),
        desired_timeline: m.desired_timeline.clone(),
    }
}

/// Per-deployment results of one pass, then its total (appended last, deployment `all`).
pub(crate) fn results_of(policy: PolicyKind, _plan: &Plan, pass: &PassResult) -> Vec<RunResult> {
    let mut out = Vec::new();
    let mut total = Measured::default();
    let (mut gpu_total, mut cost_total) = (0.0, 0.0);
    for (name, m) in &pass.deployments {
        let gpus = m.gpus_per_replica;
        let gpu_seconds = m.replica_seconds.gpu_seconds(gpus);
        let cost = m.replica_seconds.cost_usd(gpus, m.gpu_hour_price);
        gpu_total += gpu_seconds;
        cost_total += cost;
        out.push(result(policy, name.clone(), m, gpu_seconds, cost));
        total.wait.merge(&m.wait);
        total.ttft.merge(&m.ttft);
        total.served += m.served;
        total.timed_out += m.timed_out;
        total.refused += m.refused;
        total.cold_starts += m.cold_starts;
        total.wake_ups += m.wake_ups;
        total.replica_seconds.sleeping += m.replica_seconds.sleeping;
        total.over_scale += m.over_scale;
        total.fallback += m.fallback;
        total.fallback_cost += m.fallback_cost;
        total.peak_replicas += m.peak_replicas;
        total.prefix_queries += m.prefix_queries;
        total.prefix_hits += m.prefix_hits;
    }
    out.push(result(policy, "all".into(), &total, gpu_total, cost_total));
    out
}

/// Everything `simulate` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Trace requests (one pass).
    pub requests: u64,
    /// Wall time of all passes, seconds.
    pub wall_s: f64,
    /// Requests replayed per second of wall time, over all passes.
    pub requests_per_s: f64,
    /// Per policy and deployment.
    pub results: Vec<RunResult>,
    /// Per policy over all deployments (percentiles over all requests; peak = sum of peaks).
    pub totals: Vec<RunResult>,
    /// Replicas over time per policy (for `--plot`).
    #[serde(skip)]
    pub series: Vec<(PolicyKind, Series)>,
}

impl Report {
    pub(crate) fn new(
        requests: u64,
        replayed: u64,
        wall_s: f64,
        all: Vec<RunResult>,
        series: Vec<(PolicyKind, Series)>,
    ) -> Self {
        let (totals, results) = all.into_iter().partition(|r| r.deployment == "all");
        Report {
            requests,
            wall_s: round(wall_s, 3),
            requests_per_s: round(replayed as f64 / wall_s.max(1e-9), 0),
            results,
            totals,
            series,
        }
    }

    /// The total of `policy`, if it ran.
    pub fn total(&self, policy: &str) -> Option<&RunResult> {
        self.totals.iter().find(|r| r.policy == policy)
    }

    /// The JSON object of the interface.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The terminal table: totals per policy, then per deployment when there are several.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let header = format!(
            "{:<17} {:<18} {:>11} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>6} {:>6} {:>5} {:>6}\n",
            "policy", "deployment", "GPU-s", "$", "cold", "wait p50", "p95", "p99", "max", "TTFT p50", "p99", "t/o", "over", "peak", "fb %"
        );
        let row = |s: &mut String, r: &RunResult| {
            let _ = writeln!(
                s,
                "{:<17} {:<18} {:>11.0} {:>9.2} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>6} {:>6} {:>5} {:>6.1}",
                r.policy,
                truncate(&r.deployment, 18),
                r.gpu_seconds,
                r.cost_usd,
                r.cold_starts,
                ms(r.wait_ms.p50),
                ms(r.wait_ms.p95),
                ms(r.wait_ms.p99),
                ms(r.wait_ms.max),
                ms(r.ttft_ms.p50),
                ms(r.ttft_ms.p99),
                r.timed_out + r.refused,
                r.over_scale,
                r.peak_replicas,
                r.fallback_share * 100.0
            );
        };
        s.push_str(&header);
        for r in &self.totals {
            row(&mut s, r);
        }
        let deployments = self
            .results
            .iter()
            .filter(|r| r.policy == self.results[0].policy)
            .count();
        if deployments > 1 {
            s.push('\n');
            s.push_str(&header);
            for r in &self.results {
                row(&mut s, r);
            }
        }
        for r in self.totals.iter().filter(|r| r.prefix_hit_rate.is_some()) {
            let _ = writeln!(
                s,
                "prefix-cache hit rate under {}: {:.1} %",
                r.policy,
                r.prefix_hit_rate.unwrap_or_default() * 100.0
            );
        }
        let _ = writeln!(
            s,
            "\n{} requests, {:.2} s wall, {:.0} requests replayed per second",
            self.requests, self.wall_s, self.requests_per_s
        );
        s
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

/// Milliseconds for people: `850ms`, `12.3s`, `4.2m`.
fn ms(v: f64) -> String {
    if v < 1000.0 {
        format!("{v:.0}ms")
    } else if v < 120_000.0 {
        format!("{:.1}s", v / 1000.0)
    } else {
        format!("{:.1}m", v / 60_000.0)
    }
}
