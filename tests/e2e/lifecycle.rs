//! Replica lifecycle through the process backend: scale down when idle, crash restart (covered with
//! counters in data_plane), no orphans on SIGTERM, and config validation through the CLI.

use crate::harness::{alive, children, scratch_dir, sim_deployment, Proxy, BIN};
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_replica_stops_after_scale_down_delay_and_min_replicas_stay() {
    let proxy = Proxy::start(&format!(
        "{}{}",
        sim_deployment(
            "scales",
            "min_replicas = 0\nscale_down_delay = \"1s\"",
            "--ttft 1ms --cold-start 200ms"
        ),
        sim_deployment(
            "floor",
            "min_replicas = 1\nscale_down_delay = \"0s\"",
            "--ttft 1ms"
        ),
    ));
    let r = proxy.chat("scales", false, 1).await;
    assert_eq!(r.status(), 200);
    let state = proxy
        .wait_state("scales", Duration::from_secs(20), |s| {
            s["replicas"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(state["replicas_stopped_total"], 1);
    assert_eq!(
        state["replicas_started_total"], 1,
        "the first-deploy replica served the request: {state:#}"
    );
    let floor = proxy.wait_ready("floor", 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let floor_after = proxy.state("floor").await;
    assert_eq!(
        floor_after["replicas"][0]["id"], floor["replicas"][0]["id"],
        "min_replicas keeps its replica"
    );
    assert_eq!(floor_after["replicas_stopped_total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_every_replica_process() {
    let mut proxy = Proxy::start(&sim_deployment(
        "pair",
        "min_replicas = 2\nmax_replicas = 2",
        "--ttft 1ms",
    ));
    proxy.wait_ready("pair", 2).await;
    let kids = children(proxy.child.id());
    assert_eq!(
        kids.len(),
        2,
        "two replica processes expected, found {kids:?}"
    );
    let status = proxy.terminate();
    assert!(status.success(), "infergate exited with {status}");
    for pid in kids {
        assert!(!alive(pid), "replica process {pid} outlived infergate");
    }
}

#[test]
fn validate_names_the_field_and_range_and_exits_non_zero() {
    let dir = scratch_dir();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[deployments.llama]\nmin_replicas = 2\nmax_replicas = 1\ntarget_utilization = 150\n[deployments.llama.backend]\ntype = \"static\"\nurls = [\"http://127.0.0.1:9\"]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("deployments.llama.max_replicas: must be ≥ min_replicas (2), got 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "deployments.llama.target_utilization: must be between 1 and 100 (percent), got 150"
        ),
        "{stderr}"
    );

    let good = dir.join("good.toml");
    std::fs::write(&good, infergate_demo_config()).unwrap();
    let out = Command::new(BIN)
        .env("INFERGATE_DEMO_PROVIDER_KEY", "demo-key")
        .arg("validate")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn infergate_demo_config() -> &'static str {
    include_str!("../../config/src/demo.toml")
}

/// The demo's deployments (and provider) under the harness' own listeners.
fn demo_deployments() -> String {
    let demo = infergate_demo_config();
    demo[demo.find("[deployments.").unwrap()..].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_demo_one_request_asks_for_one_replica() {
    let proxy = Proxy::start_with_env(
        "listeners = [{ address = \"127.0.0.1:0\" }]",
        &demo_deployments(),
        &[("INFERGATE_DEMO_PROVIDER_KEY", "demo-key")],
    );
    // Two requests at once while the first replica cold-starts: ceil(2 / (8 × 0.7)) = 1.
    let (a, b) = tokio::join!(proxy.chat("llama", true, 4), proxy.chat("llama", true, 4));
    for r in [a, b] {
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("data: [DONE]"));
    }
    let state = proxy.state("llama-3.1-8b-instruct").await;
    assert_eq!(state["peak_desired_replicas"], 1, "{state:#}");
    assert_eq!(state["replicas_started_total"], 1, "{state:#}");
}
