//! The smaller things a new user tripped over (issue 12 item 10), each through the real binary.

use crate::control_plane::cli;
use crate::harness::{scratch_dir, sim_deployment, Proxy, ADMIN_TOKEN, BIN};
use futures_util::StreamExt;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_by_alias_cancelled_streams_499_and_every_changed_field_named() {
    let proxy = Proxy::start(&sim_deployment(
        "named",
        "aliases = [\"nick\"]\nmin_replicas = 1",
        "--ttft 1ms --tokens-per-s 20",
    ));
    proxy.wait_ready("named", 1).await;
    // Events by alias, through the CLI.
    let out = cli(&proxy, &["events", "--deployment", "nick", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains("replica_ready"),
        "{text}"
    );
    // A client that leaves mid-stream is counted 499, not 200.
    let r = proxy.chat("nick", true, 200).await;
    let mut body = r.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = proxy.metrics().await;
        if metrics.lines().any(|l| {
            l.starts_with("infergate_requests_total")
                && l.contains("deployment=\"named\"")
                && l.contains("status=\"499\"")
        }) {
            assert!(
                !metrics
                    .lines()
                    .any(|l| l.starts_with("infergate_requests_total")
                        && l.contains("deployment=\"named\"")
                        && l.contains("status=\"200\"")
                        && !l.ends_with(" 0")),
                "the cancelled stream was also counted 200:\n{metrics}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no 499 counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // settings_changed names every field that changed.
    let r = reqwest::Client::new()
        .patch(format!("{}/admin/v1/deployments/nick", proxy.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"replica_concurrency": 4, "scale_down_delay": "2m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events: serde_json::Value = proxy
        .admin_get("/admin/v1/events?deployment=nick&type=settings_changed")
        .await
        .json()
        .await
        .unwrap();
    let said = events["events"][0]["description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        said.contains("replica_concurrency: 0 → 4") && said.contains("scale_down_delay"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_stopped_events_at_shutdown_reach_the_event_file() {
    let dir = scratch_dir();
    let file = dir.join("events.jsonl");
    let mut proxy = Proxy::start(&format!(
        "[events]\nfile = {:?}\n{}",
        file.display().to_string(),
        sim_deployment("m", "min_replicas = 2\nmax_replicas = 2", "--ttft 1ms")
    ));
    proxy.wait_ready("m", 2).await;
    assert!(proxy.terminate().success());
    let lines = std::fs::read_to_string(&file).unwrap();
    let stopped = lines
        .lines()
        .filter(|l| l.contains("\"replica_stopped\""))
        .count();
    assert_eq!(stopped, 2, "{lines}");
}

#[test]
fn admin_flags_stay_out_of_serve_help_and_an_empty_token_is_refused() {
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success());
    assert!(text.contains("--config"));
    assert!(
        !text.contains("--admin") && !text.contains("--token"),
        "{text}"
    );
    let status_help = Command::new(BIN)
        .args(["status", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&status_help.stdout).contains("--admin"));

    let dir = scratch_dir();
    let config = dir.join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisteners = [{{ address = \"127.0.0.1:0\" }}]\n[admin]\naddress = \"127.0.0.1:0\"\n{}",
            sim_deployment("m", "", "")
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env("INFERGATE_ADMIN_TOKEN", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("$INFERGATE_ADMIN_TOKEN is set but empty"),
        "{err}"
    );
}
