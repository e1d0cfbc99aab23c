//! Tiny traces whose results can be worked out by hand, asserted exactly.

mod common;

use common::{config, jsonl, run};
use infergate_simulate::PolicyKind;

const BASE: &str = "min_replicas = 0\nmax_replicas = 10\nautoscaling_window = \"10s\"\nscale_down_delay = \"60s\"\nreplica_concurrency = 1";

#[test]
fn one_request_at_zero_pays_cold_start_service_window_and_delay() {
    // t = 0: the request asks for one replica (load 1 / (1 × 100 %)); ready at 30 s; served
    // 30 → 31 s (100 tokens at 100 tokens/s). The last sample of load 1 (t = 30 s) leaves the
    // 10 s window at 41 s; 60 s of scale_down_delay later (101 s) the replica goes:
    // GPU-seconds = 30 (starting) + 1 (service) + 10 (window) + 60 (delay) = 101.
    let settings = format!("{BASE}\nconcurrency_target = 1\ntarget_utilization = 100");
    let report = run(
        jsonl(&[(0.0, 0, 100)]),
        config(&settings),
        &[PolicyKind::Infergate],
    );
    let r = report.total("infergate").unwrap();
    assert_eq!(r.cold_starts, 1);
    assert_eq!(r.wait_ms.p50, 30_000.0);
    assert_eq!(r.wait_ms.max, 30_000.0);
    assert_eq!(r.ttft_ms.p50, 30_000.0);
    assert_eq!(r.gpu_seconds, 101.0);
    assert_eq!(
        (
            r.served,
            r.timed_out,
            r.refused,
            r.over_scale,
            r.peak_replicas
        ),
        (1, 0, 0, 0, 1)
    );
    assert!(
        (r.cost_usd - 101.0 / 3600.0 * 2.0).abs() < 1e-4,
        "default $2 per GPU-hour"
    );
}

fn burst() -> std::path::PathBuf {
    jsonl(&[(0.0, 0, 100); 10])
}

#[test]
fn a_burst_during_a_cold_start_asks_for_at_most_ceil_n_over_target() {
    // 10 requests at zero, t × u = 2 × 100 %: ceil(10 / 2) = 5 replicas, never more. They are
    // ready at 30 s and serve two rounds of five: waits of 30 s and 31 s.
    let settings = format!("{BASE}\nconcurrency_target = 2\ntarget_utilization = 100");
    let report = run(burst(), config(&settings), &[PolicyKind::Infergate]);
    let r = report.total("infergate").unwrap();
    assert_eq!((r.cold_starts, r.peak_replicas, r.over_scale), (5, 5, 0));
    assert_eq!((r.wait_ms.p50, r.wait_ms.max), (30_000.0, 31_000.0));
    assert_eq!(r.served, 10);
}

#[test]
fn knative_panics_on_the_same_burst_and_over_scales() {
    // KPA: the activator's poke at t = 0 asks for one pod. At the 2 s tick the 6 s panic window
    // averages 10 requests; target 2 × 70 % = 1.4 → ceil(10 / 1.4) = 8 pods, 8 / max(1 ready) ≥
    // 200 %: panic mode, 8 pods — against infergate's 5 for the same burst.
    let settings = format!("{BASE}\nconcurrency_target = 2\ntarget_utilization = 100");
    let report = run(burst(), config(&settings), &[PolicyKind::Knative]);
    let r = report.total("knative").unwrap();
    assert_eq!((r.cold_starts, r.peak_replicas), (8, 8));
    // The poked pod is ready at 30 s and serves two requests (30 s, 31 s); the 7 panic pods
    // are ready at 32 s and take the other 8: each of the 8 served.
    assert_eq!(r.over_scale, 0);
    assert_eq!(r.wait_ms.max, 32_000.0);
}

#[test]
fn keda_releases_every_waiting_request_to_the_first_ready_replica() {
    // KEDA activates one replica for the first request; the HPA (target 100 pending) sees 10
    // pending → still 1. At 30 s the interceptor releases all 10 to it: served one after the
    // other, waits 30, 31, … 39 s.
    let settings = format!("{BASE}\nconcurrency_target = 2\ntarget_utilization = 100");
    let report = run(burst(), config(&settings), &[PolicyKind::KedaHttp]);
    let r = report.total("keda-http").unwrap();
    assert_eq!((r.cold_starts, r.peak_replicas), (1, 1));
    assert_eq!((r.wait_ms.p50, r.wait_ms.max), (34_000.0, 39_000.0));
    assert_eq!(r.served, 10);
}

#[test]
fn fixed_peak_is_sized_for_the_busiest_minute_and_never_cold_starts() {
    // Busiest minute: 10 × 1 s of work = 10 / 60 concurrent → ceil(0.17 / 2) = 1 replica, ready
    // from the start; the burst is served one per second: waits 0 … 9 s.
    let settings = format!("{BASE}\nconcurrency_target = 2\ntarget_utilization = 100");
    let report = run(burst(), config(&settings), &[PolicyKind::FixedPeak]);
    let r = report.total("fixed-peak").unwrap();
    assert_eq!((r.cold_starts, r.peak_replicas), (0, 1));
    assert_eq!((r.wait_ms.p50, r.wait_ms.max), (4_000.0, 9_000.0));
}

#[test]
fn ttl_starts_one_replica_and_stops_it_a_ttl_after_the_last_request() {
    // One replica for the burst, ready at 30 s, busy until 40 s, stopped 60 s (the TTL =
    // scale_down_delay) later: 100 GPU-seconds.
    let settings = format!("{BASE}\nconcurrency_target = 2\ntarget_utilization = 100");
    let report = run(burst(), config(&settings), &[PolicyKind::Ttl]);
    let r = report.total("ttl").unwrap();
    assert_eq!((r.cold_starts, r.peak_replicas), (1, 1));
    assert_eq!(r.gpu_seconds, 100.0);
}

#[test]
fn requests_that_wait_past_max_wait_time_out_and_a_full_queue_refuses() {
    let settings = format!("{BASE}\nconcurrency_target = 2\ntarget_utilization = 100\nqueue = {{ max_wait = \"10s\", max_waiting = 4 }}");
    let report = run(burst(), config(&settings), &[PolicyKind::Infergate]);
    let r = report.total("infergate").unwrap();
    assert_eq!(
        (r.refused, r.timed_out, r.served),
        (6, 4, 0),
        "4 held (then 10 s < 30 s cold start), 6 refused"
    );
    // The 4 held requests asked for ceil(4 / 2) = 2 replicas; they time out before either is
    // ready, so both are over-scale: started, never served.
    assert_eq!((r.cold_starts, r.over_scale), (2, 2));
}

#[test]
fn the_fallback_answers_while_nothing_is_ready_at_its_latency_and_price() {
    // Two requests at zero with a cold-start fallback: both go to the provider at once (no wait,
    // TTFT = its 400 ms), each costing (100 + 900 tokens) / 1e6 × $2 = $0.002; a third request
    // after the replica is ready is served by it.
    let text = format!(
        "[deployments.m]\n{BASE}\nconcurrency_target = 1\ntarget_utilization = 100\n\
         fallback = {{ providers = [\"saas\"], when = [\"cold_start\"] }}\n\
         [deployments.m.simulate]\ncold_start = \"30s\"\ndecode_tps = 100.0\nprefill_tps = 1e12\nbatching_slowdown = 0.0\n\
         provider_latency = \"400ms\"\nprovider_price_per_mtok = 2.0\n\
         [deployments.m.backend]\ntype = \"process\"\ncommand = [\"x\", \"{{port}}\"]\n\
         [providers.saas]\nbase_url = \"https://api.example.com/v1\"\n"
    );
    let config = infergate_config::Config::from_toml_str(&text).unwrap();
    let trace = jsonl(&[(0.0, 100, 900), (1000.0, 100, 900), (60_000.0, 0, 100)]);
    let report = run(trace, config, &[PolicyKind::Infergate]);
    let r = report.total("infergate").unwrap();
    assert_eq!(r.served, 3);
    assert_eq!(r.fallback_share, round4(2.0 / 3.0));
    assert_eq!(r.fallback_cost_usd, 0.004);
    assert_eq!((r.wait_ms.max, r.ttft_ms.p50), (0.0, 400.0));
    // Requests at the provider count as load (as live): two in flight there ask for two replicas.
    assert_eq!(r.cold_starts, 2);
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

#[test]
fn a_floor_above_zero_is_already_running_when_the_trace_starts() {
    // min_replicas = 1: the deployment was up before the trace, so the first request waits for
    // nothing and no replica is started; the floor is charged for the whole replay.
    let settings = "min_replicas = 1\nmax_replicas = 10\nautoscaling_window = \"10s\"\nscale_down_delay = \"60s\"\nreplica_concurrency = 1\nconcurrency_target = 1\ntarget_utilization = 100";
    let report = run(
        jsonl(&[(0.0, 0, 100)]),
        config(settings),
        &[PolicyKind::Infergate, PolicyKind::Knative],
    );
    let r = report.total("infergate").unwrap();
    assert_eq!((r.cold_starts, r.wait_ms.max, r.peak_replicas), (0, 0.0, 1));
    // Books close 315 s after the last arrival (KEDA's cooldown + one HPA sync dominate this
    // config's own wind-down of 60 s + 10 s × 6).
    assert_eq!(r.gpu_seconds, 315.0);
    // Knative's pod is up too (no wait), but its own 70 % target asks for a second for load 1.
    let k = report.total("knative").unwrap();
    assert_eq!((k.cold_starts, k.wait_ms.max, k.peak_replicas), (1, 0.0, 2));
}

#[test]
fn the_recommender_finds_the_floor_a_wait_target_needs() {
    // A request every 2 minutes, each alone: at min_replicas 0 every one waits for a 30 s cold
    // start (the deployment is back at zero after 10 s + 60 s); only a floor of one replica keeps
    // the p99 wait at 0.
    let settings = format!("{BASE}\nconcurrency_target = 1\ntarget_utilization = 100");
    let requests: Vec<(f64, u32, u32)> = (0..10)
        .map(|i| (f64::from(i) * 120_000.0, 0, 100))
        .collect();
    let mut o = infergate_simulate::SimOptions::new(jsonl(&requests));
    o.config = Some(config(&settings));
    let r =
        infergate_simulate::recommend::recommend(&o, std::time::Duration::from_secs(1)).unwrap();
    assert_eq!(r.current.1.wait_ms.p99, 30_000.0);
    let (best, result) = r.best.clone().expect("a setting meets 1 s");
    assert!(best.min_replicas >= 1, "{best:?}");
    assert_eq!((result.wait_ms.p99, result.timed_out), (0.0, 0));
    assert!(r
        .render()
        .contains(&format!("min_replicas = {}", best.min_replicas)));
}
