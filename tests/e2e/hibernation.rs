//! Hibernation and deactivation through the real binary: sleeping when idle (whatever
//! min_replicas says) and by hand, waking by requests and by hand (with the fallback answering
//! meanwhile, or requests waiting), deactivation with a clear 503 until an explicit activate.

use crate::fallback::{ask, fake_saas, provider, start};
use crate::harness::{chat, sim_deployment, Proxy};
use serde_json::Value;
use std::time::Duration;

fn ready(s: &Value) -> usize {
    s["replicas"]
        .as_array()
        .map_or(0, |r| r.iter().filter(|r| r["state"] == "ready").count())
}

async fn act(proxy: &Proxy, deployment: &str, action: &str) -> reqwest::Response {
    proxy
        .admin_post(&format!("/admin/v1/deployments/{deployment}/{action}"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_deployment_hibernates_and_a_request_wakes_it_while_the_fallback_answers() {
    let saas = fake_saas("");
    let proxy = start(&format!(
        "{}{}",
        sim_deployment(
            "sleepy",
            "min_replicas = 1\nhibernation = { idle_after = \"2s\" }\n\
             fallback = { providers = [\"saas\"], ramp_back = \"0s\" }",
            "--cold-start 1s --ttft 1ms"
        ),
        provider("saas", &saas, ""),
    ));
    proxy.wait_ready("sleepy", 1).await;
    // No traffic for idle_after: hibernated at zero replicas although min_replicas is 1.
    let state = proxy
        .wait_state("sleepy", Duration::from_secs(20), |s| {
            s["serving"] == "hibernated" && s["replicas"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(state["replicas_stopped_total"], 1, "{state:#}");

    // The first request wakes it and is answered by the provider meanwhile.
    let (status, route, reason, _) = ask(&proxy, "sleepy").await;
    assert_eq!(
        (status, route.as_str(), reason.as_str()),
        (200, "fallback/saas", "hibernated")
    );
    let mut routes = vec![route];
    let state = proxy
        .wait_state("sleepy", Duration::from_secs(20), |s| {
            s["serving"] != "hibernated"
        })
        .await;
    assert!(state["serving"] == "waking" || state["serving"] == "active");
    // Requests while it wakes go to the provider; then to the new replica. None fails.
    loop {
        let (status, route, reason, body) = ask(&proxy, "sleepy").await;
        assert_eq!(status, 200, "{body}");
        if route.starts_with("fallback/") {
            assert!(reason == "waking" || reason == "hibernated", "{reason}");
        }
        let done = route == "replica/sleepy-1";
        routes.push(route);
        if done {
            break;
        }
        assert!(routes.len() < 2000, "never moved back to a replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = proxy
        .wait_state("sleepy", Duration::from_secs(5), |s| {
            s["serving"] == "active"
        })
        .await;
    assert_eq!(ready(&state), 1);
    eprintln!(
        "while waking: {} requests answered by the provider, then the replica",
        routes.len() - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hibernate_and_resume_by_hand_and_wake_after_three_requests_without_a_fallback() {
    let proxy = Proxy::start(&sim_deployment(
        "manual",
        "min_replicas = 1\nhibernation = { idle_after = \"1h\", wake_after_requests = 3 }",
        "--cold-start 300ms --ttft 1ms",
    ));
    proxy.wait_ready("manual", 1).await;
    let r = act(&proxy, "manual", "hibernate").await;
    assert_eq!(r.status(), 200);
    proxy
        .wait_state("manual", Duration::from_secs(10), |s| {
            s["serving"] == "hibernated" && s["replicas"].as_array().unwrap().is_empty()
        })
        .await;

    // Two requests wait (no fallback); they do not wake it yet.
    let send = || {
        let url = proxy.url("/v1/chat/completions");
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .json(&chat("manual", false, 2))
                .send()
                .await
                .unwrap()
        })
    };
    let waiting = vec![send(), send()];
    proxy
        .wait_state("manual", Duration::from_secs(5), |s| s["waiting"] == 2)
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let state = proxy.state("manual").await;
    assert_eq!(state["serving"], "hibernated", "{state:#}");
    assert!(state["replicas"].as_array().unwrap().is_empty());
    // The third wakes it; all three are answered by the new replica.
    let mut all = waiting;
    all.push(send());
    for r in all {
        let r = r.await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-infergate-route"], "replica/manual-1");
    }
    let state = proxy
        .wait_state("manual", Duration::from_secs(5), |s| {
            s["serving"] == "active"
        })
        .await;
    assert_eq!(ready(&state), 1);

    // By hand again: hibernate, then resume.
    assert_eq!(act(&proxy, "manual", "hibernate").await.status(), 200);
    proxy
        .wait_state("manual", Duration::from_secs(10), |s| {
            s["serving"] == "hibernated" && s["replicas"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(act(&proxy, "manual", "resume").await.status(), 200);
    let state = proxy
        .wait_state("manual", Duration::from_secs(10), |s| {
            s["serving"] == "active" && ready(s) == 1
        })
        .await;
    assert_eq!(state["replicas"][0]["id"], "manual-2");
    assert_eq!(proxy.chat("manual", false, 2).await.status(), 200);
    // Activating an active deployment is refused with a reason.
    let r = act(&proxy, "manual", "activate").await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_without_traffic_is_deactivated_and_only_activate_brings_it_back() {
    let proxy = Proxy::start(&sim_deployment(
        "old",
        "min_replicas = 1\ndeactivate_after = \"1m\"",
        "--cold-start 200ms --ttft 1ms",
    ));
    proxy.wait_ready("old", 1).await;
    let state = proxy
        .wait_state("old", Duration::from_secs(90), |s| {
            s["serving"] == "deactivated" && s["replicas"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(state["replicas_stopped_total"], 1);
    // Requests get a clear 503 saying how to activate, and do not wake it.
    let r = proxy.chat("old", false, 2).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "deployment_deactivated");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("infergate activate old"), "{message}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(proxy.state("old").await["serving"], "deactivated");
    // activate: it starts again and serves.
    assert_eq!(act(&proxy, "old", "activate").await.status(), 200);
    let r = proxy.chat("old", false, 2).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-infergate-route"], "replica/old-1");
    proxy
        .wait_state("old", Duration::from_secs(5), |s| s["serving"] == "active")
        .await;
}
