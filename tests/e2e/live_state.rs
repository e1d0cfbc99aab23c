//! Live state that reflects the present (issue 12 item 9): the reported scale-up latency never
//! comes from a stale demand signal, and `fallback_engaged` turns false once the ramp back is
//! over even if no request comes to notice.

use crate::fallback::{fake_saas, provider, start};
use crate::harness::{chat, sim_deployment, Proxy};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_up_latency_is_never_a_stale_signal() {
    let proxy = Proxy::start(&sim_deployment(
        "capped",
        "min_replicas = 1\nmax_replicas = 1\nreplica_concurrency = 1",
        "--ttft 1ms --tokens-per-s 20",
    ));
    proxy.wait_ready("capped", 1).await;
    // One stream holds the only slot; a second request queues (a demand signal) but max_replicas
    // forbids a scale-up.
    let first = {
        let url = proxy.url("/v1/chat/completions");
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .json(&chat("capped", true, 60))
                .send()
                .await
                .unwrap()
                .text()
                .await
        })
    };
    proxy
        .wait_state("capped", Duration::from_secs(10), |s| s["in_flight"] == 1)
        .await;
    let second = {
        let url = proxy.url("/v1/chat/completions");
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .json(&chat("capped", false, 2))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    proxy
        .wait_state("capped", Duration::from_secs(10), |s| s["waiting"] == 1)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Now a scale-up for another reason: the ceiling is raised.
    let r = reqwest::Client::new()
        .patch(format!("{}/admin/v1/deployments/capped", proxy.admin))
        .bearer_auth(crate::harness::ADMIN_TOKEN)
        .json(&serde_json::json!({"max_replicas": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let state = proxy
        .wait_state("capped", Duration::from_secs(20), |s| {
            s["decision"]["desired"] == 2
        })
        .await;
    let latency = &state["decision"]["scale_up_latency_us"];
    assert!(
        latency.is_null() || latency.as_u64().unwrap() < 3_000_000,
        "a signal from 3 s ago was reported as the scale-up latency: {latency}"
    );
    assert!(first.await.unwrap().is_ok());
    assert_eq!(second.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_engaged_turns_false_when_the_ramp_is_over_without_a_request() {
    let saas = fake_saas("");
    let proxy = start(&format!(
        "{}{}",
        sim_deployment(
            "chat",
            "fallback = { providers = [\"saas\"], ramp_back = \"1s\" }",
            "--ttft 1ms --cold-start 1s"
        ),
        provider("saas", &saas, "")
    ));
    let r = proxy.chat("chat", false, 2).await;
    assert_eq!(r.headers()["x-infergate-route"], "fallback/saas");
    proxy.wait_ready("chat", 1).await;
    // The first request after the replica is ready starts the 1 s ramp.
    let r = proxy.chat("chat", false, 2).await;
    assert_eq!(r.status(), 200);
    assert_eq!(proxy.state("chat").await["fallback_engaged"], true);
    proxy
        .wait_state("chat", Duration::from_secs(15), |s| {
            s["fallback_engaged"] == false
        })
        .await;
}
