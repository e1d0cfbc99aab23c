//! The Grafana dashboard (issue 17 item 3), `deploy/grafana/infergate.json`: every PromQL
//! expression in it names only metrics that a running infergate exports. A run that exercises
//! each — a cold start bridged by a provider, a sleeping replica woken, a client over its limit,
//! a malformed request, GPU-seconds priced — then `/metrics` must hold every name.

use crate::harness::{sim_deployment, Proxy, SimServer};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::Duration;

const KEY: &str = "sk-dashboard-client";

fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/infergate.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every PromQL expression of the dashboard: panel targets and template queries.
fn expressions(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for var in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"]["query"].as_str() {
            out.push(q.to_string());
        }
    }
    out
}

/// The metric names an expression reads (a histogram's `_bucket` series by its own name).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("infergate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        names.push(name.strip_suffix("_bucket").unwrap_or(name).to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_exists_after_a_run() {
    let d = dashboard();
    let exprs = expressions(&d);
    assert!(exprs.len() >= 25, "{exprs:#?}");
    let wanted: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for must in [
        "infergate_replicas",
        "infergate_desired_replicas",
        "infergate_in_flight_requests",
        "infergate_waiting_requests",
        "infergate_queue_wait_seconds",
        "infergate_cold_start_seconds",
        "infergate_time_to_first_byte_seconds",
        "infergate_fallback_requests_total",
        "infergate_scaling_events_total",
        "infergate_gpu_seconds_total",
        "infergate_cost_usd_total",
    ] {
        assert!(wanted.contains(must), "the dashboard lacks {must}");
    }

    let saas = SimServer::start("--model gpt-4o-mini --ttft 1ms --api-key saas-key");
    let sha = {
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(KEY.as_bytes())
            .unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()[..64].to_string()
    };
    let config = format!(
        "[auth]\nrequired = true\n[clients.dash]\nkey_sha256 = \"{sha}\"\nrequests_per_minute = 4\n\
         [providers.saas]\nbase_url = \"{}/v1\"\napi_key_env = \"DASH_SAAS_KEY\"\n{}{}",
        saas.url,
        sim_deployment(
            "bridged",
            "min_replicas = 0\ngpu_hour_price = 2.5\nfallback = { providers = [\"saas\"], ramp_back = \"1s\" }",
            "--cold-start 1500ms --ttft 1ms",
        ),
        sim_deployment(
            "sleepy",
            "min_replicas = 1\nhibernation = { mode = \"sleep\", sleep_after = \"1s\", idle_after = \"1h\" }",
            "--wake-time 200ms --ttft 1ms",
        ),
    );
    let proxy = Proxy::start_with_env("", &config, &[("DASH_SAAS_KEY", "saas-key")]);
    proxy.wait_ready("sleepy", 1).await;
    let ask = |model: &'static str| {
        let url = proxy.url("/v1/chat/completions");
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(KEY)
                .json(&crate::harness::chat(model, false, 2))
                .send()
                .await
                .unwrap()
        }
    };
    // The provider answers while `bridged` cold-starts from zero.
    let first = ask("bridged").await;
    assert_eq!(first.status(), 200);
    assert!(first.headers()["x-infergate-route"]
        .to_str()
        .unwrap()
        .starts_with("fallback/"));
    proxy.wait_ready("bridged", 1).await;
    // `sleepy` fell asleep; a request wakes it.
    proxy
        .wait_state("sleepy", Duration::from_secs(20), |s| {
            s["serving"] == "sleeping"
        })
        .await;
    assert_eq!(ask("sleepy").await.status(), 200);
    // Over the client's limit.
    let mut limited = false;
    for _ in 0..4 {
        limited |= ask("bridged").await.status() == 429;
    }
    assert!(limited);
    // A malformed request closes its connection.
    let addr = proxy.base.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    let _ = conn.read(&mut [0u8; 512]);
    // Replica-seconds and costs are exported on the next decision round.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let metrics = proxy.metrics().await;
    let exported: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            n.strip_suffix("_bucket")
                .or_else(|| n.strip_suffix("_sum"))
                .or_else(|| n.strip_suffix("_count"))
                .unwrap_or(n)
        })
        .collect();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "queried by the dashboard, absent from /metrics: {missing:?}\n{metrics}"
    );
}
