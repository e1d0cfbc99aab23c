//! One GPU pool for the box (issue 16 item 4): two deployments share `[gpus] devices = ["0",
//! "1"]`, one GPU per replica. With deployment `a` idle on both GPUs, a request to `b` evicts
//! `a`'s idle replica — never the one with a request in flight, never before it has been resident
//! for `min_residency` — and `b`'s replica gets that GPU (read back from the sim-server's own
//! `CUDA_VISIBLE_DEVICES`). The eviction is a `replica_evicted` event naming both deployments.

use crate::harness::{sim_deployment, Proxy, ADMIN_TOKEN};
use serde_json::{json, Value};
use std::time::Duration;

const MIN_RESIDENCY_S: u64 = 8;

fn config() -> String {
    format!(
        "[gpus]\ndevices = [\"0\", \"1\"]\nmin_residency = \"{MIN_RESIDENCY_S}s\"\n{}gpus_per_replica = 1\n{}gpus_per_replica = 1\n",
        sim_deployment(
            "a",
            "min_replicas = 1\nmax_replicas = 2\nscale_down_delay = \"10m\"",
            "--ttft 1ms --tokens-per-s 20",
        ),
        sim_deployment(
            "b",
            "min_replicas = 0\nmax_replicas = 1\nscale_down_delay = \"0s\"\nroute = { passthrough = [\"/sim/stats\"] }",
            "--ttft 1ms",
        ),
    )
}

async fn patch(proxy: &Proxy, deployment: &str, body: Value) {
    let r = reqwest::Client::new()
        .patch(format!("{}/admin/v1/deployments/{deployment}", proxy.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

fn time_of(event: &Value) -> std::time::SystemTime {
    humantime::parse_rfc3339(event["time"].as_str().unwrap()).unwrap()
}

fn replicas(state: &Value) -> Vec<Value> {
    state["replicas"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_deployment_gives_its_least_recently_used_gpu_to_a_request_for_another() {
    let proxy = Proxy::start(&config());
    // Boot: a-0 and b-0 (each deployment's first replica) take one GPU each; b then scales to
    // zero (scale_down_delay 0) and gives its GPU back.
    proxy.wait_ready("a", 1).await;
    proxy
        .wait_state("b", Duration::from_secs(30), |s| {
            s["replicas"].as_array().unwrap().is_empty()
                && s["requests_total"] == 0
                && s["decision"]["desired"] == 0
        })
        .await;
    // a takes both GPUs, then may go to zero again: it stays at two, idle (counting down 10 min).
    patch(&proxy, "a", json!({"min_replicas": 2})).await;
    let state = proxy.wait_ready("a", 2).await;
    patch(&proxy, "a", json!({"min_replicas": 0})).await;
    let mut held: Vec<String> = replicas(&state)
        .iter()
        .map(|r| r["gpus"][0].as_str().unwrap().to_string())
        .collect();
    held.sort();
    assert_eq!(held, ["0", "1"], "a holds both GPUs: {state:#}");
    let status = crate::control_plane::cli(&proxy, &["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("a ") && (l.contains("GPUs 0,1") || l.contains("GPUs 1,0"))),
        "{status}"
    );

    // A long stream keeps one of a's replicas busy.
    let stream = tokio::spawn({
        let url = proxy.url("/v1/chat/completions");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&crate::harness::chat("a", true, 400))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    });
    let state = proxy
        .wait_state("a", Duration::from_secs(10), |s| s["in_flight"] == 1)
        .await;
    let all = replicas(&state);
    let busy = all.iter().find(|r| r["in_flight"] == 1).unwrap().clone();
    let idle = all.iter().find(|r| r["in_flight"] == 0).unwrap().clone();
    let idle_gpu = idle["gpus"][0].as_str().unwrap().to_string();

    // A request for b: no GPU is free; a's idle replica is evicted for it (once resident long
    // enough) and b's replica starts on its GPU. The request waits meanwhile and succeeds.
    let r = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .timeout(Duration::from_secs(90))
        .json(&crate::harness::chat("b", false, 4))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let stats = proxy.sim_stats("b").await;
    assert_eq!(
        stats["cuda_visible_devices"].as_str(),
        Some(idle_gpu.as_str()),
        "b's replica must run on the GPU a's evicted replica held: {stats}"
    );

    // The event names both deployments and shows in both logs; the busy replica was never
    // evicted and its stream ends whole.
    let evicted = proxy.events("type=replica_evicted").await;
    assert_eq!(evicted.len(), 1, "{evicted:#?}");
    let e = &evicted[0];
    assert_eq!(e["deployment"], "a");
    assert_eq!(e["for_deployment"], "b");
    let idle_id = idle["id"].as_str().unwrap();
    assert!(
        e["description"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{idle_id} evicted")),
        "{e}"
    );
    assert_eq!(
        proxy
            .events("deployment=b&type=replica_evicted")
            .await
            .len(),
        1
    );
    // Never before the evicted replica had been resident for min_residency.
    let ready = proxy.events("deployment=a&type=replica_ready").await;
    let ready_at = ready
        .iter()
        .find(|r| r["description"].as_str().unwrap().starts_with(idle_id))
        .map(time_of)
        .unwrap();
    let after = time_of(e).duration_since(ready_at).unwrap();
    assert!(
        after >= Duration::from_secs(MIN_RESIDENCY_S) - Duration::from_millis(50),
        "evicted {after:?} after it was ready"
    );
    let body = stream.await.unwrap();
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let a = proxy.state("a").await;
    assert!(
        replicas(&a)
            .iter()
            .any(|r| r["id"] == busy["id"] && r["state"] == "ready"),
        "{a:#}"
    );
    assert!(proxy
        .log()
        .contains("replica evicted: its GPUs go to another deployment"));
}
