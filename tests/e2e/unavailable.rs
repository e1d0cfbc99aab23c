//! Fast failure when nothing can answer (issue 12 item 6): a model-server command that does not
//! exist or crash-loops, or a static deployment with no healthy replica, answers waiting requests
//! 503 `deployment_unavailable` with the last failure and `Retry-After` — long before
//! `queue.max_wait` — keeps retrying in the background, and recovers by itself.

use crate::harness::{chat, scratch_dir, Proxy, SimServer};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Sends a chat request with a client timeout far below the deployment's `queue.max_wait`.
async fn ask(proxy: &Proxy, model: &str) -> (u16, Option<String>, Value) {
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .post(proxy.url("/v1/chat/completions"))
        .json(&chat(model, false, 2))
        .send()
        .await
        .expect("answered before the client timeout (queue.max_wait is 10 minutes)");
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        retry,
        r.json().await.unwrap_or(Value::Null),
    )
}

async fn wait_event(proxy: &Proxy, deployment: &str, kind: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !proxy
        .event_types(&format!("deployment={deployment}"))
        .await
        .contains(&kind.to_string())
    {
        assert!(
            Instant::now() < deadline,
            "no {kind} event for {deployment}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_server_command_fails_fast_with_the_reason() {
    let proxy = Proxy::start(
        "[deployments.ghost]\nstartup_failures_to_give_up = 2\n[deployments.ghost.backend]\ntype = \"process\"\ncommand = [\"/nonexistent/model-server\", \"--port\", \"{port}\"]\n",
    );
    let (status, retry, body) = ask(&proxy, "ghost").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "deployment_unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/nonexistent/model-server") && message.contains("No such file"),
        "{message}"
    );
    assert!(retry.is_some(), "no Retry-After");
    wait_event(&proxy, "ghost", "deployment_unavailable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_model_server_fails_fast_then_recovers_by_itself() {
    let dir = scratch_dir();
    let count = dir.join("starts");
    // Fails its first four starts (printing to stderr, exit 3), then runs the simulated server.
    let script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}; if [ $n -ge 4 ]; then exec {{infergate}} sim-server --port {{port}} --model {{model}} --ttft 1ms; fi; echo model-server-boom-$n >&2; exit 3",
        c = count.display()
    );
    let proxy = Proxy::start(&format!(
        "[deployments.loop]\nstartup_failures_to_give_up = 3\n[deployments.loop.backend]\ntype = \"process\"\ncommand = [\"sh\", \"-c\", {script:?}]\n"
    ));
    wait_event(&proxy, "loop", "deployment_unavailable").await;
    let (status, retry, body) = ask(&proxy, "loop").await;
    if status == 503 {
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("exit code 3") && message.contains("model-server-boom"),
            "{message}"
        );
        assert!(retry.is_some());
    } else {
        // Recovered between the event and the request: it must then have been answered.
        assert_eq!(status, 200, "{body}");
    }
    wait_event(&proxy, "loop", "deployment_available").await;
    let (status, _, body) = ask(&proxy, "loop").await;
    assert_eq!(status, 200, "{body}");
    let log = proxy.log();
    assert!(
        log.contains("[loop-0] model-server-boom-0"),
        "model-server output is logged with its replica id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_deployment_with_no_healthy_replica_fails_fast_and_recovers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = Proxy::start(&format!(
        "[deployments.down]\nhealth = {{ interval = \"100ms\", unhealthy_fail_after = \"1s\" }}\n[deployments.down.backend]\ntype = \"static\"\nurls = [\"http://127.0.0.1:{port}\"]\n"
    ));
    let (status, retry, body) = ask(&proxy, "down").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "deployment_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no healthy replica"),
        "{body}"
    );
    assert!(retry.is_some());
    let _sim = SimServer::start(&format!("--port {port} --ttft 1ms"));
    proxy.wait_ready("down", 1).await;
    let (status, _, body) = ask(&proxy, "down").await;
    assert_eq!(status, 200, "{body}");
    wait_event(&proxy, "down", "deployment_available").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_no_replica_is_wanted_the_next_request_gets_a_fresh_try() {
    let dir = scratch_dir();
    let (count, fixed) = (dir.join("starts"), dir.join("fixed"));
    // The first start runs; later ones crash until the operator "fixes" it (a file appears).
    let script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}; if [ $n -eq 0 ] || [ -e {f} ]; then exec {{infergate}} sim-server --port {{port}} --model {{model}} --ttft 1ms; fi; echo boom >&2; exit 3",
        c = count.display(),
        f = fixed.display()
    );
    let proxy = Proxy::start(&format!(
        "[deployments.flap]\nautoscaling_window = \"10s\"\nscale_down_delay = \"1m\"\n[deployments.flap.backend]\ntype = \"process\"\ncommand = [\"sh\", \"-c\", {script:?}]\n"
    ));
    proxy.wait_ready("flap", 1).await;
    let pid = crate::harness::children(proxy.child.id())[0];
    crate::harness::kill(pid, 9);
    // A request asks for a replica; its starts keep failing: 503.
    let (status, _, body) = ask(&proxy, "flap").await;
    assert_eq!(status, 503, "{body}");
    // With no load left the policy wants no replica: the failure is not held against the next
    // request, which waits and asks for a replica afresh.
    wait_event(&proxy, "flap", "deployment_available").await;
    std::fs::write(&fixed, "").unwrap();
    let (status, _, body) = ask(&proxy, "flap").await;
    assert_eq!(status, 200, "{body}");
}
