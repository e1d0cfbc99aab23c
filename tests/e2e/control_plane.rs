//! The control plane through the real binary: the admin API's token, each endpoint, settings
//! changes observed end to end, the event log listed and streamed, and `/metrics` parsed by the
//! official Prometheus Python parser.

use crate::clients::{python, run_python};
use crate::harness::{sim_deployment, Proxy, ADMIN_TOKEN};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_token_and_settings_changes_take_effect() {
    let proxy = Proxy::start(&sim_deployment(
        "api",
        "min_replicas = 1\nmax_replicas = 3",
        "--ttft 1ms --cold-start 200ms",
    ));
    proxy.wait_ready("api", 1).await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", proxy.admin);

    // No token: 401; wrong token: 403; both OpenAI-style.
    let r = client
        .get(url("/admin/v1/deployments"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "missing_token"
    );
    let r = client
        .get(url("/admin/v1/deployments"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_token"
    );
    let r = client
        .patch(url("/admin/v1/deployments/api"))
        .json(&json!({"min_replicas": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "mutations need the token too");

    // With it: list, get, OpenAPI.
    let list: Value = proxy
        .admin_get("/admin/v1/deployments")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["deployments"][0]["name"], "api");
    let openapi: Value = proxy
        .admin_get("/admin/v1/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(openapi["paths"]["/admin/v1/deployments/{name}"]["patch"].is_object());
    assert_eq!(
        proxy.admin_get("/admin/v1/deployments/nope").await.status(),
        404
    );

    // Live event stream, opened before the change.
    let stream = client
        .get(url("/admin/v1/events/stream?deployment=api&type=scaled_up"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut stream = stream.bytes_stream();

    // Out of range: 400 naming the field and the range; nothing changes.
    let r = client
        .patch(url("/admin/v1/deployments/api"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"target_utilization": 150}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_settings");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "deployments.api.target_utilization: must be between 1 and 100 (percent), got 150"
        ),
        "{message}"
    );
    let r = client
        .patch(url("/admin/v1/deployments/api"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"min_replicas": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "min above max is refused");

    // A valid change: the next decision starts two more replicas.
    let r = client
        .patch(url("/admin/v1/deployments/api"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"min_replicas": 3, "scale_down_delay": "5m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let state: Value = r.json().await.unwrap();
    assert_eq!(state["settings"]["min_replicas"], 3);
    assert_eq!(state["settings"]["scale_down_delay"], "5m");
    proxy.wait_ready("api", 3).await;

    // The scale-up arrived on the stream as it happened (after the kept first-deploy one).
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let event = loop {
        let found = seen
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|e| e["desired"] == 3);
        if let Some(e) = found {
            break e;
        }
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("no scaled_up event to 3 on the stream")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    };
    assert!(seen.contains("event: scaled_up"));
    assert_eq!(event["type"], "scaled_up");
    assert_eq!(event["deployment"], "api");
    assert_eq!(event["current"], 1);
    assert_eq!(event["component"], "autoscaler");
    assert!(event["time"].as_str().unwrap().ends_with('Z'));

    // The list has the rejected and accepted changes and the replicas that came.
    let kinds = proxy.event_types("deployment=api").await;
    for kind in [
        "scaled_up",
        "replica_started",
        "replica_ready",
        "config_rejected",
        "settings_changed",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing: {kinds:?}");
    }
}

const PARSE_METRICS: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
families = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
for name in sorted(families):
    print(name, families[name].type, len(families[name].samples))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_hold_every_family() {
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let proxy = Proxy::start(&sim_deployment(
        "m",
        "min_replicas = 1\nreplica_concurrency = 1",
        "--ttft 1ms --tokens-per-s 100 --cold-start 300ms",
    ));
    // Traffic: one request waits for the cold start (queue wait), the others are served.
    for _ in 0..3 {
        assert_eq!(proxy.chat("m", false, 3).await.status(), 200);
    }
    assert_eq!(proxy.chat("unknown-model", false, 3).await.status(), 404);
    // Metrics need no token (scrapers).
    let text = proxy.metrics().await;
    let out = run_python(py, PARSE_METRICS, &[], Some(text)).await;
    let parsed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (family, kind) in [
        ("infergate_requests", "counter"),
        ("infergate_in_flight_requests", "gauge"),
        ("infergate_waiting_requests", "gauge"),
        ("infergate_replicas", "gauge"),
        ("infergate_desired_replicas", "gauge"),
        ("infergate_cold_start_seconds", "histogram"),
        ("infergate_queue_wait_seconds", "histogram"),
        ("infergate_time_to_first_byte_seconds", "histogram"),
        ("infergate_scaling_events", "counter"),
        ("infergate_fallback_in_flight_requests", "gauge"),
    ] {
        assert!(
            parsed
                .lines()
                .any(|l| l.starts_with(&format!("{family} {kind} "))),
            "{family} ({kind}) missing:\n{parsed}"
        );
    }
    let raw = proxy.metrics().await;
    assert!(
        raw.contains(r#"infergate_requests_total{deployment="m",route="replica",status="200"} 3"#),
        "{raw}"
    );
    assert!(
        raw.contains(r#"infergate_requests_total{deployment="none",route="proxy",status="404"} 1"#),
        "{raw}"
    );
    assert!(!raw.contains("request_id"), "no request ids in labels");
}

/// Runs `infergate <args>` against the proxy's admin API.
pub fn cli(proxy: &Proxy, args: &[&str]) -> std::process::Output {
    Command::new(crate::harness::BIN)
        .env("INFERGATE_ADMIN_URL", &proxy.admin)
        .env("INFERGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_scale_then_status_and_events_follow_prints_a_scale_up_as_it_happens() {
    let proxy = Proxy::start(&sim_deployment(
        "cli-model",
        "min_replicas = 1\nmax_replicas = 4",
        "--ttft 1ms --cold-start 200ms",
    ));
    proxy.wait_ready("cli-model", 1).await;

    // events --follow in the background, started before the change.
    let mut follow = Command::new(crate::harness::BIN)
        .env("INFERGATE_ADMIN_URL", &proxy.admin)
        .env("INFERGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .args([
            "events",
            "--follow",
            "--deployment",
            "cli-model",
            "--type",
            "scaled_up",
            "--limit",
            "0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let out = cli(
        &proxy,
        &[
            "scale",
            "cli-model",
            "--min-replicas",
            "2",
            "--max-replicas",
            "3",
            "--scale-down-delay",
            "10m",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&proxy, &["status"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let row = table
        .lines()
        .find(|l| l.starts_with("cli-model"))
        .unwrap_or_default();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols.get(7..9),
        Some(&["2", "3"][..]),
        "MIN and MAX columns:\n{table}"
    );
    let out = cli(&proxy, &["status", "cli-model", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["settings"]["scale_down_delay"], "10m");

    // The scale-up to 2 is printed by the follower as it happens.
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("events --follow printed nothing");
    assert!(
        line.contains("cli-model") && line.contains("scaled_up") && line.contains("desired=2"),
        "{line}"
    );
    let _ = follow.kill();
    let _ = follow.wait();

    // Errors: out of range names the field; a wrong token and an unreachable proxy say so.
    let out = cli(
        &proxy,
        &["scale", "cli-model", "--target-utilization", "150"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("deployments.cli-model.target_utilization: must be between 1 and 100"));
    let out = Command::new(crate::harness::BIN)
        .args(["status", "--admin", &proxy.admin, "--token", "wrong"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the token"));
    let out = Command::new(crate::harness::BIN)
        .args(["status", "--admin", "http://127.0.0.1:9", "--token", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the infergate admin API"));
    // hibernate / resume through the CLI.
    let out = cli(&proxy, &["hibernate", "cli-model"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "cli-model: hibernated"
    );
    let out = cli(&proxy, &["resume", "cli-model"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "cli-model: waking"
    );
}
