//! `hibernation.mode = "sleep"` through the real binary: an idle replica is put to sleep after
//! `sleep_after` (the process stays), a request wakes it through `/wake_up` — no new process,
//! seconds instead of a cold start — and after `idle_after` it is stopped; a server without
//! sleep mode makes the deployment fall back to `stop` with one warning event.

use crate::harness::{sim_deployment, Proxy};
use serde_json::Value;
use std::time::Duration;

fn replica_addr(state: &Value) -> String {
    state["replicas"][0]["addr"].as_str().unwrap().to_string()
}

async fn sim_stats(addr: &str) -> Value {
    reqwest::get(format!("http://{addr}/sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_replica_sleeps_wakes_on_a_request_without_a_new_process_then_stops() {
    let proxy = Proxy::start(&sim_deployment(
        "chat",
        "min_replicas = 1\nhibernation = { mode = \"sleep\", sleep_after = \"2s\", idle_after = \"15s\" }",
        "--cold-start 2s --wake-time 300ms --ttft 5ms",
    ));
    let state = proxy.wait_ready("chat", 1).await;
    let addr = replica_addr(&state);
    let pid = sim_stats(&addr).await["pid"].clone();
    assert_eq!(proxy.chat("chat", false, 2).await.status(), 200);

    // Idle for sleep_after: asleep, the process kept.
    let asleep = proxy
        .wait_state("chat", Duration::from_secs(20), |s| {
            s["serving"] == "sleeping" && s["replicas"][0]["state"] == "sleeping"
        })
        .await;
    assert_eq!(replica_addr(&asleep), addr);
    let stats = sim_stats(&addr).await;
    assert_eq!(
        (stats["sleeping"].as_bool(), stats["sleeps"].as_u64()),
        (Some(true), Some(1))
    );

    // A request wakes it: /wake_up on the same process, answered, and counted as a cold start.
    let response = proxy.chat("chat", false, 2).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-infergate-cold-start"], "true");
    let stats = sim_stats(&addr).await;
    assert_eq!(stats["pid"], pid, "no new process");
    assert_eq!(stats["wake_ups"], 1);
    let state = proxy.state("chat").await;
    assert_eq!(state["replicas_started_total"], 1, "{state:#}");
    assert_eq!(state["serving"], "active");

    // Idle again: asleep, then stopped after idle_after.
    let gone = proxy
        .wait_state("chat", Duration::from_secs(40), |s| {
            s["serving"] == "hibernated" && s["replicas"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(gone["replicas_stopped_total"], 1, "{gone:#}");
    assert!(
        gone["cost"]["replica_seconds"]["sleeping"]
            .as_f64()
            .unwrap()
            > 1.0,
        "{gone:#}"
    );
    let kinds = proxy
        .event_types("deployment=chat&type=slept,woke,hibernated")
        .await;
    let log: Value = proxy
        .admin_get("/admin/v1/events?deployment=chat")
        .await
        .json()
        .await
        .unwrap();
    let log: Vec<String> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {} {}", e["time"], e["type"], e["description"]))
        .collect();
    assert_eq!(
        kinds,
        vec!["slept", "woke", "slept", "hibernated"],
        "{log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_sleep_mode_falls_back_to_stop_with_one_warning() {
    let proxy = Proxy::start(&sim_deployment(
        "chat",
        "min_replicas = 1\nhibernation = { mode = \"sleep\", sleep_after = \"1s\", idle_after = \"1h\" }",
        "--no-sleep-mode --ttft 5ms",
    ));
    proxy.wait_ready("chat", 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while proxy
        .event_types("deployment=chat&type=sleep_unsupported")
        .await
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no sleep_unsupported event"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = proxy.state("chat").await;
    assert_eq!(state["serving"], "active", "{state:#}");
    assert_eq!(state["replicas"][0]["state"], "ready", "{state:#}");
    assert_eq!(
        proxy
            .event_types("deployment=chat&type=sleep_unsupported")
            .await
            .len(),
        1
    );
    assert_eq!(proxy.chat("chat", false, 2).await.status(), 200);
}
