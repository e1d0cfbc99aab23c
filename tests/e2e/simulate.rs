//! `infergate simulate` decides like the live proxy: one synthetic 90 s trace (a burst, a
//! pause, a second burst) replayed through the real binary with process-backend sim-servers and
//! through `simulate` with the same cold start and service time gives the same sequence of
//! desired replicas (each change within one sampling interval) and the same number of cold
//! starts. Also the simulator's command line: table, JSON, plot, recommendation, bad input.

use crate::harness::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// The deployment both runs use. Service: 100 ms + 19 tokens at 10 tokens/s = 2.0 s; the
/// simulator's cold start is the sim-server's 1 s plus the process start and first probe.
fn deployment() -> String {
    let settings = "min_replicas = 0\nmax_replicas = 4\nconcurrency_target = 1\ntarget_utilization = 100\n\
                    autoscaling_window = \"10s\"\nscale_down_delay = \"10s\"\nreplica_concurrency = 2\n\
                    health = { interval = \"50ms\" }\n\
                    simulate = { cold_start = \"1100ms\", decode_tps = 10.0, prefill_tps = 1e12, batching_slowdown = 0.0 }";
    sim_deployment(
        "live",
        settings,
        "--cold-start 1s --ttft 100ms --tokens-per-s 10",
    )
}

/// Arrival times (s): 3 per second for 8 s (load 6 > max 4), nothing until 55 s, then one per
/// second for 10 s (load 2).
fn arrivals() -> Vec<f64> {
    let first = (0..24).map(|i| f64::from(i) / 3.0);
    let second = (0..10).map(|i| 55.0 + f64::from(i));
    first.chain(second).collect()
}

fn write_trace(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("trace.jsonl");
    let text: String = arrivals()
        .iter()
        .map(|t| {
            format!(
                "{{\"t_ms\": {}, \"model\": \"live\", \"output_tokens\": 20}}\n",
                (t * 1000.0).round()
            )
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn rfc3339_secs(s: &str) -> f64 {
    humantime::parse_rfc3339(s)
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_decisions_match_the_live_proxy_on_the_same_trace() {
    let proxy = Proxy::start(&deployment());
    // The first deploy starts one replica; let it go back to zero so both runs start alike.
    proxy
        .wait_state("live", Duration::from_secs(90), |s| {
            s["desired_replicas"] == 0 && s["replicas"].as_array().is_some_and(|r| r.is_empty())
        })
        .await;
    // Events are stamped to the millisecond: keep the first deploy's last one well before t = 0.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let start_wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = Instant::now();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for t in arrivals() {
        let client = client.clone();
        let url = proxy.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until((start + Duration::from_secs_f64(t)).into()).await;
            let r = client
                .post(url)
                .json(&chat("live", false, 20))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    proxy
        .wait_state("live", Duration::from_secs(90), |s| {
            s["desired_replicas"] == 0 && s["replicas"].as_array().is_some_and(|r| r.is_empty())
        })
        .await;
    let events: Value = proxy
        .admin_get("/admin/v1/events?deployment=live&limit=1000")
        .await
        .json()
        .await
        .unwrap();
    let mut live = Vec::new();
    let mut live_starts = 0;
    for e in events["events"].as_array().unwrap() {
        let at = rfc3339_secs(e["time"].as_str().unwrap()) - start_wall;
        if at < -0.5 {
            continue; // the first deploy, before the replay
        }
        match e["type"].as_str().unwrap() {
            "scaled_up" | "scaled_down" => live.push((at, e["desired"].as_u64().unwrap())),
            "replica_started" => live_starts += 1,
            _ => {}
        }
    }

    let dir = scratch_dir();
    let out = Command::new(BIN)
        .args([
            "simulate",
            "--policies",
            "infergate",
            "--json",
            "--timeline",
            "--trace",
        ])
        .arg(write_trace(&dir))
        .arg("--config")
        .arg(&proxy.config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let result = &report["results"][0];
    let simulated: Vec<(f64, u64)> = result["desired_timeline"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1) // (0, 0): the state before the first arrival
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_u64().unwrap()))
        .collect();

    let values = |v: &[(f64, u64)]| v.iter().map(|p| p.1).collect::<Vec<_>>();
    assert_eq!(
        values(&live),
        values(&simulated),
        "live {live:?}\nsimulated {simulated:?}"
    );
    for (l, s) in live.iter().zip(&simulated) {
        assert!(
            (l.0 - s.0).abs() <= 1.5,
            "desired {} live at {:.2} s, simulated at {:.2} s (more than one 1 s sampling interval apart)\nlive {live:?}\nsimulated {simulated:?}",
            l.1,
            l.0,
            s.0
        );
    }
    assert_eq!(
        result["cold_starts"].as_u64().unwrap(),
        live_starts,
        "cold starts"
    );
    assert_eq!(result["served"], 34);
    assert_eq!(result["peak_replicas"], 4);
}

fn simulate(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("simulate")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_command_line_prints_a_table_json_a_plot_and_a_recommendation() {
    let dir = scratch_dir();
    let trace = dir.join("t.csv");
    let mut text = String::from("t_ms,model,input_tokens,output_tokens\n");
    for i in 0..300 {
        text += &format!("{},chat,500,50\n", i * 400);
    }
    std::fs::write(&trace, text).unwrap();
    let plot = dir.join("replicas.svg");
    let out = simulate(&[
        "--trace",
        trace.to_str().unwrap(),
        "--cold-start",
        "lognormal:median=20s,p99=60s",
        "--plot",
        plot.to_str().unwrap(),
        "--gpu-hour-price",
        "3.5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    for policy in [
        "infergate",
        "knative",
        "keda-http",
        "fixed-peak",
        "ttl",
        "hybrid-histogram",
    ] {
        assert!(
            table.lines().any(|l| l.starts_with(policy)),
            "{policy} missing:\n{table}"
        );
    }
    assert!(table.contains("300 requests"), "{table}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("keda-http") && svg.contains("<polyline"),
        "{}",
        &svg[..200.min(svg.len())]
    );

    let out = simulate(&[
        "--trace",
        trace.to_str().unwrap(),
        "--json",
        "--policies",
        "infergate,ttl",
        "--gpu-hour-price",
        "3.6",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["requests"], 300);
    let totals = report["totals"].as_array().unwrap();
    assert_eq!(totals.len(), 2);
    for t in totals {
        let gpu_s = t["gpu_seconds"].as_f64().unwrap();
        assert!(gpu_s > 0.0);
        assert!(
            (t["cost_usd"].as_f64().unwrap() - gpu_s / 1000.0).abs() < 0.01,
            "{t}"
        );
        for field in [
            "cold_starts",
            "wait_ms",
            "ttft_ms",
            "served",
            "timed_out",
            "refused",
            "over_scale",
            "fallback_share",
            "fallback_cost_usd",
            "peak_replicas",
        ] {
            assert!(!t[field].is_null(), "{field} missing in {t}");
        }
    }
    assert_eq!(report["results"][0]["deployment"], "chat");

    let out = simulate(&[
        "--trace",
        trace.to_str().unwrap(),
        "--recommend",
        "--max-p99-wait",
        "40s",
        "--policies",
        "infergate",
        "--cold-start",
        "20s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("recommendation for a p99 queue wait ≤ 40s"),
        "{text}"
    );
    assert!(
        text.contains("[deployments.chat]") || text.contains("already the cheapest"),
        "{text}"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code_2() {
    let dir = scratch_dir();
    let trace = dir.join("bad.jsonl");
    std::fs::write(&trace, "{\"t_ms\": 10}\n{\"t_ms\": 5}\n").unwrap();
    for (args, want) in [
        (
            vec!["--trace", trace.to_str().unwrap()],
            "bad.jsonl:2: arrivals must be sorted by time",
        ),
        (
            vec![
                "--trace",
                trace.to_str().unwrap(),
                "--policies",
                "infergate,hpa",
            ],
            "unknown policy \"hpa\"",
        ),
        (
            vec![
                "--trace",
                trace.to_str().unwrap(),
                "--cold-start",
                "lognormal:median=9s",
            ],
            "--cold-start: lognormal needs both median= and p99=",
        ),
        (
            vec!["--trace", "/nonexistent.csv"],
            "/nonexistent.csv: No such file",
        ),
        (
            vec!["--trace", trace.to_str().unwrap(), "--time-scale", "0"],
            "--time-scale must be a positive number",
        ),
    ] {
        let out = simulate(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_proxy_counts_gpu_seconds_and_dollars_with_the_simulators_accounting() {
    // Two GPUs per replica at $3.60 per GPU-hour: $0.002 per replica-second.
    let settings = "min_replicas = 1\nmax_replicas = 1\ngpu_hour_price = 3.6\nhealth = { interval = \"50ms\" }";
    let table = sim_deployment("costed", settings, "--cold-start 1s").replace(
        "type = \"process\"",
        "type = \"process\"\ngpus = [\"0\", \"1\"]\ngpus_per_replica = 2",
    );
    let proxy = Proxy::start(&table);
    proxy.wait_ready("costed", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = proxy.state("costed").await;
    let cost = &state["cost"];
    let seconds = &cost["replica_seconds"];
    let (starting, ready) = (
        seconds["starting"].as_f64().unwrap(),
        seconds["ready"].as_f64().unwrap(),
    );
    assert!(
        (1.0..3.0).contains(&starting),
        "the 1 s cold start is costed as starting: {cost}"
    );
    assert!(ready >= 2.0, "ready since: {cost}");
    assert_eq!(cost["gpus_per_replica"], 2);
    let gpu_seconds = cost["gpu_seconds"].as_f64().unwrap();
    assert!(
        (gpu_seconds - 2.0 * (starting + ready)).abs() < 0.01,
        "{cost}"
    );
    assert!(
        (cost["cost_usd"].as_f64().unwrap() - gpu_seconds / 1000.0).abs() < 0.001,
        "{cost}"
    );

    let metrics = proxy.metrics().await;
    let exported = |state: &str| -> f64 {
        let key =
            format!("infergate_replica_seconds_total{{deployment=\"costed\",state=\"{state}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("{key} missing:\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert!(exported("starting") >= 1.0, "{metrics}");
    assert!(exported("ready") > 1.0, "{metrics}");

    let out = crate::control_plane::cli(&proxy, &["status"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.lines().next().unwrap().contains("GPU-S") && table.contains("COST"),
        "{table}"
    );
    let row = table.lines().find(|l| l.starts_with("costed")).unwrap();
    assert!(row.contains(" $0.0"), "a cost column in dollars: {table}");
}
