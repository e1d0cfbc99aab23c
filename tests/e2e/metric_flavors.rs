//! Each model server's own metric names (issue 17 item 2): a sim-server exporting vLLM's,
//! SGLang's, llama.cpp's, TGI's or TEI's names (`--metrics-flavor`) — one on a non-default
//! `metrics.path` — is scraped, and the requests waiting inside it (and its KV-cache use, where
//! the server reports one) show in the admin API and feed `queue_depth` scaling.

use crate::harness::{sim_deployment, Proxy};
use serde_json::Value;
use std::time::Duration;

const FLAVORS: [(&str, bool); 5] = [
    ("vllm", true),
    ("sglang", true),
    ("llamacpp", true),
    ("tgi", false),
    ("tei", false),
];

fn config() -> String {
    FLAVORS
        .iter()
        .map(|(flavor, _)| {
            let (path, args) = if *flavor == "sglang" {
                ("/prom", " --metrics-path /prom")
            } else {
                ("/metrics", "")
            };
            sim_deployment(
                flavor,
                &format!(
                    "min_replicas = 1\nmax_replicas = 1\nmetric = \"queue_depth\"\nmetrics = {{ server = \"{flavor}\", path = \"{path}\" }}"
                ),
                &format!("--ttft 1ms --tokens-per-s 4 --max-concurrency 1 --metrics-flavor {flavor}{args}"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_and_kv_cache_of_every_server_naming_are_read() {
    let proxy = Proxy::start(&config());
    for (flavor, _) in FLAVORS {
        proxy.wait_ready(flavor, 1).await;
    }
    // Three slow requests each: the server runs one and queues two.
    let mut streams = Vec::new();
    for (flavor, _) in FLAVORS {
        for _ in 0..3 {
            let url = proxy.url("/v1/chat/completions");
            streams.push(tokio::spawn(async move {
                reqwest::Client::new()
                    .post(url)
                    .json(&crate::harness::chat(flavor, true, 40))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            }));
        }
    }
    for (flavor, has_kv) in FLAVORS {
        let state = proxy
            .wait_state(flavor, Duration::from_secs(20), |s| {
                s["replicas"][0]["metrics"]["waiting"] == 2.0
            })
            .await;
        let metrics: &Value = &state["replicas"][0]["metrics"];
        if has_kv {
            assert_eq!(metrics["kv_cache_usage"], 1.0, "{flavor}: {metrics}");
        } else {
            assert!(metrics["kv_cache_usage"].is_null(), "{flavor}: {metrics}");
        }
        assert_eq!(state["settings"]["metric"], "queue_depth");
    }
    assert!(
        !proxy.log().contains("cannot read replica metrics"),
        "{}",
        proxy.log()
    );
    for s in streams {
        s.abort();
    }
}
