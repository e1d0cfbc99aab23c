//! Holding requests: scale from zero in arrival order, per-replica concurrency limits, a full
//! queue (503 + Retry-After), the maximum wait (504), and clients leaving the queue.

use crate::harness::{chat, sim_deployment, Proxy};
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_from_zero_holds_20_requests_and_serves_them_in_arrival_order() {
    let proxy = Proxy::start(&sim_deployment(
        "cold",
        "min_replicas = 0\nmax_replicas = 1\nreplica_concurrency = 1\nscale_down_delay = \"0s\"",
        "--cold-start 3s --ttft 1ms --tokens-per-s 1000",
    ));
    // A new deployment starts with max(1, min) replicas; with no load and no delay it then
    // scales to zero.
    let state = proxy
        .wait_state("cold", Duration::from_secs(30), |s| {
            s["replicas_stopped_total"] == 1 && s["replicas"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(state["replicas_started_total"], 1, "{state:#}");
    assert!(state["replicas_stopped_total"] == 1);

    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let request = client
            .post(proxy.url("/v1/chat/completions"))
            .json(&chat("cold", false, 2));
        tasks.push(tokio::spawn(
            async move { (i, request.send().await.unwrap()) },
        ));
        // Each request is in the queue before the next one is sent: arrival order is known.
        proxy
            .wait_state("cold", Duration::from_secs(10), |s| s["waiting"] == i + 1)
            .await;
    }
    for task in tasks {
        let (i, response) = task.await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers().contains_key("x-infergate-queued-ms"),
            "request {i} has no queued-ms header"
        );
        assert_eq!(response.headers()["x-infergate-route"], "replica/cold-1");
        let seq: u64 = response.headers()["x-sim-seq"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(seq, i, "request {i} reached the replica as number {seq}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
    }
    let state = proxy.state("cold").await;
    assert_eq!(
        state["replicas_started_total"], 2,
        "exactly one replica was started for the burst: {state:#}"
    );
    // Decision latency: the first waiting request → scale-up issued (measured, not asserted).
    let latency = &state["decision"]["scale_up_latency_us"];
    assert!(latency.is_u64(), "scale-up latency not measured: {state:#}");
    eprintln!("scale-up decision latency: {latency} µs");
    assert_eq!(state["in_flight"], 0);
    assert_eq!(state["waiting"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_concurrency_two_is_never_exceeded() {
    let proxy = Proxy::start(&sim_deployment(
        "limited",
        "min_replicas = 1\nreplica_concurrency = 2\nroute = { passthrough = [\"/sim/stats\"] }",
        "--ttft 150ms --tokens-per-s 200",
    ));
    proxy.wait_ready("limited", 1).await;
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let request = client.post(proxy.url("/v1/chat/completions")).json(&chat(
                "limited",
                i % 2 == 0,
                4,
            ));
            tokio::spawn(async move {
                let r = request.send().await.unwrap();
                let status = r.status();
                let text = r.text().await.unwrap();
                (status, text)
            })
        })
        .collect();
    for task in tasks {
        let (status, text) = task.await.unwrap();
        assert_eq!(status, 200, "{text}");
    }
    let stats = proxy.sim_stats("limited").await;
    assert_eq!(
        stats["max_running"], 2,
        "the replica saw {} requests at once",
        stats["max_running"]
    );
    assert_eq!(stats["completed"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_gets_503_with_retry_after_and_max_wait_gets_504() {
    let proxy = Proxy::start(&format!(
        "{}{}",
        sim_deployment(
            "slow",
            "queue = { max_waiting = 2, max_wait = \"60s\" }",
            "--cold-start 120s"
        ),
        sim_deployment(
            "impatient",
            "queue = { max_wait = \"300ms\" }",
            "--cold-start 120s"
        ),
    ));
    let client = reqwest::Client::new();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let request = client
                .post(proxy.url("/v1/chat/completions"))
                .json(&chat("slow", false, 1));
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    proxy
        .wait_state("slow", Duration::from_secs(10), |s| s["waiting"] == 2)
        .await;

    let full = proxy.chat("slow", false, 1).await;
    assert_eq!(full.status(), 503);
    assert_eq!(full.headers()["retry-after"], "5");
    let body: Value = full.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_full");
    assert_eq!(body["error"]["type"], "server_error");

    let late = proxy.chat("impatient", false, 1).await;
    assert_eq!(late.status(), 504);
    let body: Value = late.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_timeout");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("queue.max_wait"));

    // Clients that give up leave the queue at once.
    for task in held {
        task.abort();
    }
    proxy
        .wait_state("slow", Duration::from_secs(10), |s| s["waiting"] == 0)
        .await;
    let state = proxy.state("impatient").await;
    assert_eq!(state["waiting"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_run_with_queueing_logs_no_error() {
    let proxy = Proxy::start(&sim_deployment(
        "busy",
        "min_replicas = 2\nmax_replicas = 2\nreplica_concurrency = 1",
        "--ttft 5ms --tokens-per-s 2000",
    ));
    proxy.wait_ready("busy", 2).await;
    // Eight clients on two one-slot replicas: most requests queue and get a slot freed a moment
    // before, on a pooled upstream connection released a moment before.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let url = proxy.url("/v1/chat/completions");
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for _ in 0..6 {
                    let r = client
                        .post(&url)
                        .json(&crate::harness::chat("busy", false, 2))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    let _ = r.bytes().await.unwrap();
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let log = proxy.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "a healthy run logged errors:\n{}",
        errors.join("\n")
    );
}
