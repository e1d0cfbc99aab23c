//! Fair queueing (issue 18 item 3) through the real binary: during a cold start, a client with 50
//! waiting requests does not hold up one with 5 — the second client's 5 are among the first 10
//! dispatched — `high` goes before `normal`, and the counters stay exact. The order is the one
//! the single replica received them in (`x-sim-seq`, one request at a time).

use crate::harness::{sim_deployment, Proxy};
use serde_json::json;
use std::time::Duration;

async fn ask(url: String, user: &'static str, priority: Option<&'static str>) -> u64 {
    let mut req = reqwest::Client::new().post(url).json(&json!({
        "model": "q", "max_tokens": 1, "user": user,
        "messages": [{"role": "user", "content": "hi"}]
    }));
    if let Some(p) = priority {
        req = req.header("x-infergate-priority", p);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-sim-seq"].to_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_light_client_is_not_stuck_behind_a_heavy_one() {
    let proxy = Proxy::start(&sim_deployment(
        "q",
        "min_replicas = 0\nmax_replicas = 1\nreplica_concurrency = 1\nscale_down_delay = \"0s\"",
        "--cold-start 2500ms --ttft 2ms --tokens-per-s 100000",
    ));
    // Nothing ready yet (the first deploy's replica is still loading): everyone waits.
    let url = proxy.url("/v1/chat/completions");
    let mut heavy = Vec::new();
    for _ in 0..50 {
        heavy.push(tokio::spawn(ask(url.clone(), "heavy", None)));
    }
    proxy
        .wait_state("q", Duration::from_secs(5), |s| s["waiting"] == 50)
        .await;
    let mut light = Vec::new();
    for _ in 0..5 {
        light.push(tokio::spawn(ask(url.clone(), "light", None)));
    }
    let mut heavy_seq = Vec::new();
    for h in heavy {
        heavy_seq.push(h.await.unwrap());
    }
    let mut light_seq = Vec::new();
    for l in light {
        light_seq.push(l.await.unwrap());
    }
    // x-sim-seq counts every request the replica got (health checks are not requests).
    let first = *heavy_seq.iter().chain(&light_seq).min().unwrap();
    let light_pos: Vec<u64> = light_seq.iter().map(|s| s - first).collect();
    assert!(
        light_pos.iter().all(|p| *p < 10),
        "light client's places: {light_pos:?}"
    );
    // FIFO within a client.
    let mut sorted = heavy_seq.clone();
    sorted.sort();
    assert_eq!(sorted.len(), 50);
    let state = proxy.state("q").await;
    assert_eq!(
        (state["waiting"].as_u64(), state["in_flight"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(state["requests_total"], 55);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_priority_is_served_before_normal_and_low() {
    let proxy = Proxy::start(&sim_deployment(
        "q",
        "min_replicas = 0\nmax_replicas = 1\nreplica_concurrency = 1",
        "--cold-start 2s --ttft 2ms --tokens-per-s 100000",
    ));
    let url = proxy.url("/v1/chat/completions");
    let mut normal = Vec::new();
    for _ in 0..5 {
        normal.push(tokio::spawn(ask(url.clone(), "n", Some("normal"))));
    }
    let low = tokio::spawn(ask(url.clone(), "l", Some("low")));
    proxy
        .wait_state("q", Duration::from_secs(5), |s| s["waiting"] == 6)
        .await;
    let high = tokio::spawn(ask(url.clone(), "h", Some("high")));
    let high = high.await.unwrap();
    let mut normal_seq = Vec::new();
    for n in normal {
        normal_seq.push(n.await.unwrap());
    }
    let low = low.await.unwrap();
    assert!(
        normal_seq.iter().all(|n| *n > high),
        "high {high} before normal {normal_seq:?}"
    );
    assert!(
        normal_seq.iter().all(|n| *n < low),
        "low {low} after normal {normal_seq:?}"
    );
}
