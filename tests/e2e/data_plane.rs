//! Routing, error bodies, big prompts, and the in-flight counters returning to exactly zero after
//! every kind of ending: completion, client disconnect, replica killed mid-stream, connect failure,
//! timeout.

use crate::harness::{chat, kill, sim_deployment, Proxy, SimServer};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

async fn assert_error(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(body["error"]["type"].as_str().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_style_errors_and_big_prompts_route_by_model() {
    let proxy = Proxy::start_with_server(
        "listeners = [{ address = \"127.0.0.1:0\" }]\nmax_body_size = 4194304",
        &format!(
            "{}{}",
            sim_deployment(
                "small",
                "min_replicas = 1\nroute = { path_prefix = \"/small\" }",
                "--ttft 1ms"
            ),
            sim_deployment(
                "other",
                "aliases = [\"alias-of-other\"]\nmin_replicas = 1",
                "--ttft 1ms"
            ),
        ),
    );
    for d in ["small", "other"] {
        proxy.wait_ready(d, 1).await;
    }
    let client = reqwest::Client::new();
    let post = |body: String| {
        client
            .post(proxy.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_error(
        post(json!({"model": "nope", "messages": []}).to_string())
            .await
            .unwrap(),
        404,
        "model_not_found",
    )
    .await;
    assert_error(
        post("{\"model\": \"small\", ".into()).await.unwrap(),
        400,
        "invalid_json",
    )
    .await;
    assert_error(
        post(json!({"messages": []}).to_string()).await.unwrap(),
        400,
        "model_required",
    )
    .await;
    let huge = "x".repeat(5 << 20);
    assert_error(
        post(json!({"model": "small", "prompt": huge}).to_string())
            .await
            .unwrap(),
        413,
        "request_too_large",
    )
    .await;
    assert_error(
        client.get(proxy.url("/nothing-here")).send().await.unwrap(),
        404,
        "unknown_url",
    )
    .await;

    // A 2 MiB prompt with `model` at the very end is routed by model and replayed whole.
    let prompt = "word ".repeat((2 << 20) / 5);
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":"{prompt}"}}],"max_tokens":2,"model":"alias-of-other"}}"#
    );
    let response = post(body).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-infergate-route"], "replica/other-0");
    let parsed: Value = response.json().await.unwrap();
    assert_eq!(
        parsed["usage"]["prompt_tokens"],
        (2 << 20) / 5,
        "the replica got the whole prompt"
    );

    // Header and path-prefix routing when the body names no model.
    let by_header = client
        .post(proxy.url("/v1/embeddings"))
        .header("x-infergate-deployment", "other")
        .json(&json!({"input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.headers()["x-infergate-route"], "replica/other-0");
    let by_prefix = client
        .post(proxy.url("/small/v1/embeddings"))
        .json(&json!({"input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_prefix.status(), 200);
    assert_eq!(by_prefix.headers()["x-infergate-route"], "replica/small-0");

    let models: Value = client
        .get(proxy.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "other");
    assert_eq!(models["data"][0]["aliases"][0], "alias-of-other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_return_to_zero_after_completions_disconnects_kills_connect_failures_and_timeouts()
{
    let gone = SimServer::start("--ttft 1ms");
    let gone_table = format!(
        "[deployments.gone]\nhealth = {{ interval = \"60s\" }}\nqueue = {{ max_wait = \"1s\" }}\n[deployments.gone.backend]\ntype = \"static\"\nurls = [\"{}\"]\n",
        gone.url
    );
    let proxy = Proxy::start(
        &[
            sim_deployment(
                "mix",
                "min_replicas = 1\nroute = { passthrough = [\"/sim/stats\"] }",
                "--ttft 10ms --tokens-per-s 40",
            ),
            sim_deployment(
                "sluggish",
                "min_replicas = 1\nupstream = { response_timeout = \"300ms\" }",
                "--ttft 5s",
            ),
            gone_table,
        ]
        .concat(),
    );
    for d in ["mix", "sluggish", "gone"] {
        proxy.wait_ready(d, 1).await;
    }
    let client = reqwest::Client::new();
    let stream = |tokens: u32| {
        client
            .post(proxy.url("/v1/chat/completions"))
            .json(&chat("mix", true, tokens))
            .send()
    };

    // Completed streams.
    for _ in 0..3 {
        let text = stream(4).await.unwrap().text().await.unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }
    // Clients that disconnect mid-stream: the replica sees a cancellation.
    for _ in 0..3 {
        let response = stream(400).await.unwrap();
        let mut body = response.bytes_stream();
        let first = body.next().await.unwrap().unwrap();
        assert!(first.starts_with(b"data: "));
        drop(body);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats = proxy.sim_stats("mix").await;
        if stats["cancelled"] == 3 {
            assert_eq!(stats["completed"], 3);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica never saw the cancellations: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A replica killed mid-stream: the client's stream ends in an error, not a clean end.
    let pid = proxy.sim_stats("mix").await["pid"].as_u64().unwrap() as u32;
    let response = stream(400).await.unwrap();
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    kill(pid, 9);
    let mut saw_error = false;
    while let Some(chunk) = body.next().await {
        if chunk.is_err() {
            saw_error = true;
        }
    }
    assert!(
        saw_error,
        "a stream cut by a dead replica must not look complete"
    );
    // Response timeout: 504 with an OpenAI-style body.
    let slow = proxy.chat("sluggish", false, 1).await;
    assert_error(slow, 504, "upstream_timeout").await;
    // Connect failure: the static replica went away (health re-check is a minute off). The
    // request goes back in line (nothing was sent) and waits for a replica up to queue.max_wait.
    drop(gone);
    let refused = proxy.chat("gone", false, 1).await;
    assert_error(refused, 504, "queue_timeout").await;

    for d in ["mix", "sluggish", "gone"] {
        let state = proxy
            .wait_state(d, Duration::from_secs(10), |s| {
                s["in_flight"] == 0
                    && s["waiting"] == 0
                    && s["replicas"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|r| r["in_flight"] == 0)
            })
            .await;
        assert_eq!(state["in_flight"], 0, "{d}: {state:#}");
    }
    // The killed replica is replaced and serves again.
    let state = proxy
        .wait_state("mix", Duration::from_secs(30), |s| {
            s["replicas_started_total"] == 2
                && s["replicas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["state"] == "ready")
        })
        .await;
    assert_eq!(state["replicas_failed_total"], 1);
    let ok = stream(2).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-infergate-route"], "replica/mix-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_on_another_ready_replica() {
    let live = SimServer::start("--ttft 1ms");
    let dead = SimServer::start("--ttft 1ms");
    let proxy = Proxy::start(&format!(
        "[deployments.pair]\nhealth = {{ interval = \"60s\" }}\n[deployments.pair.backend]\ntype = \"static\"\nurls = [\"{}\", \"{}\"]\n",
        live.url, dead.url
    ));
    proxy.wait_ready("pair", 2).await;
    // The second replica dies; the proxy still believes it ready (next health check is a minute away).
    drop(dead);
    for _ in 0..10 {
        let response = proxy.chat("pair", false, 1).await;
        assert_eq!(
            response.status(),
            200,
            "a refused connection must move to the live replica"
        );
        assert_eq!(response.headers()["x-infergate-route"], "replica/pair-0");
    }
    assert!(proxy
        .log()
        .contains("connect to replica failed; ejecting it and trying another"));
    let state = proxy.state("pair").await;
    assert_eq!(state["in_flight"], 0);
}
