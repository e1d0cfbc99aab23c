//! The Kubernetes backend through the real binary against the fake API server
//! (`fake_kube`): scale from zero through the scale subresource, autoscaling 0 → N → 0 with the
//! idle pods chosen for removal, a watch that expires mid-way (410 Gone), and a pod stuck in
//! Pending hitting `startup_timeout`.

use crate::autoscaling::{stream_to_end, Load};
use crate::fake_kube::FakeCluster;
use crate::harness::{chat, Proxy};
use std::time::{Duration, Instant};

const NAMESPACE: &str = "models";

/// A deployment table whose replicas are the pods of Deployment `name` in the fake cluster.
fn kube_deployment(name: &str, settings: &str) -> String {
    format!(
        "[deployments.{name}]\n{settings}\n[deployments.{name}.backend]\ntype = \"kubernetes\"\nkind = \"Deployment\"\nname = \"{name}\"\nport = \"http\"\n"
    )
}

fn start_proxy(cluster: &FakeCluster, deployments: &str) -> Proxy {
    let kubeconfig = cluster.kubeconfig.to_string_lossy().to_string();
    Proxy::start_with_env(
        "listeners = [{ address = \"127.0.0.1:0\" }]",
        deployments,
        &[("KUBECONFIG", kubeconfig.as_str())],
    )
}

/// Waits until `check` holds for the fake cluster.
async fn until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_scales_a_deployment_from_zero_through_the_scale_subresource_only() {
    let cluster = FakeCluster::start(NAMESPACE);
    cluster.add_deployment("chat", "chat", "--cold-start 500ms --ttft 5ms");
    let proxy = start_proxy(
        &cluster,
        &kube_deployment(
            "chat",
            "min_replicas = 0\nmax_replicas = 2\nscale_down_delay = \"1s\"\nautoscaling_window = \"10s\"",
        ),
    );
    // The first deploy brings one pod up, then idles the Deployment back to zero.
    let state = proxy
        .wait_state("chat", Duration::from_secs(40), |s| {
            s["replicas_stopped_total"] == 1 && s["replicas"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(state["replicas_failed_total"], 0, "{state:#}");
    until("the pod to go", Duration::from_secs(10), || {
        cluster.pods().is_empty()
    })
    .await;
    assert_eq!(cluster.scale_history("chat"), vec![1, 0]);

    // Zero pods: a request is held while the Deployment scales to 1 and its pod starts.
    let response = proxy.chat("chat", false, 4).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["model"], "chat");
    assert_eq!(cluster.scale_history("chat")[..3], [1, 0, 1]);
    let pods = cluster.pods();
    assert!(pods.iter().any(|p| p.ready), "{pods:?}");

    // Only the scale subresource is written: the Deployment's spec never is.
    let requests = cluster.requests();
    let writes: Vec<&String> = requests.iter().filter(|r| !r.starts_with("GET ")).collect();
    assert!(!writes.is_empty());
    for w in &writes {
        assert!(
            w.ends_with("/deployments/chat/scale") || w.contains("/pods/"),
            "unexpected write {w}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_expires_mid_way_loses_no_replica_and_still_sees_new_pods() {
    let cluster = FakeCluster::start(NAMESPACE);
    cluster.add_deployment("chat", "chat", "--ttft 5ms");
    let proxy = start_proxy(
        &cluster,
        &kube_deployment("chat", "min_replicas = 2\nmax_replicas = 3"),
    );
    proxy.wait_ready("chat", 2).await;
    // The watch ends and its resourceVersion is compacted away: the watcher must list again.
    cluster.expire_watches();
    let before = cluster.requests().len();
    until(
        "a fresh list after the 410",
        Duration::from_secs(20),
        || {
            cluster.requests()[before..]
                .iter()
                .filter(|r| r.starts_with("GET /apis/discovery.k8s.io"))
                .count()
                >= 2
        },
    )
    .await;
    // Meanwhile, and after, both replicas serve.
    for _ in 0..10 {
        let response = proxy.chat("chat", false, 2).await;
        assert_eq!(response.status(), 200);
    }
    let state = proxy.state("chat").await;
    assert_eq!(state["replicas_failed_total"], 0, "{state:#}");
    assert_eq!(state["replicas"].as_array().unwrap().len(), 2, "{state:#}");
    // A pod that appears after the re-list still becomes a replica.
    let settings = serde_json::json!({ "min_replicas": 3 });
    let response = reqwest::Client::new()
        .patch(format!("{}/admin/v1/deployments/chat", proxy.admin))
        .bearer_auth(crate::harness::ADMIN_TOKEN)
        .json(&settings)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    proxy.wait_ready("chat", 3).await;
    assert_eq!(cluster.replicas("chat"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_stuck_in_pending_hits_startup_timeout_and_says_so() {
    let cluster = FakeCluster::start(NAMESPACE);
    cluster.add_deployment("chat", "chat", "");
    cluster.set_pending(true);
    let proxy = start_proxy(
        &cluster,
        &kube_deployment(
            "chat",
            "min_replicas = 1\nstartup_timeout = \"2s\"\nstartup_failures_to_give_up = 1",
        ),
    );
    let events = proxy
        .wait_state("chat", Duration::from_secs(30), |s| {
            s["replicas_failed_total"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(events["replicas_failed_total"], 1);
    let log = proxy.admin_get("/admin/v1/events?deployment=chat").await;
    let log: serde_json::Value = log.json().await.unwrap();
    let failed: Vec<&serde_json::Value> = log["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{log:#}"))
        .iter()
        .filter(|e| e["type"] == "replica_failed")
        .collect();
    assert!(!failed.is_empty(), "{log:#}");
    let message = failed[0]["description"].as_str().unwrap();
    assert!(message.contains("startup_timeout"), "{message}");
    assert!(message.contains("Pending"), "{message}");
    // A request meanwhile is not lost: it gets a clear 503, not a hang or a reset.
    let response = proxy.chat("chat", false, 2).await;
    assert_eq!(response.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_scales_pods_0_to_n_and_back_to_zero_removing_the_idle_pods_it_chose() {
    let cluster = FakeCluster::start(NAMESPACE);
    cluster.add_deployment(
        "chat",
        "chat",
        "--cold-start 300ms --ttft 5ms --tokens-per-s 40",
    );
    let settings = "min_replicas = 0\nmax_replicas = 4\nconcurrency_target = 1\n\
                    target_utilization = 100\nautoscaling_window = \"10s\"\nscale_down_delay = \"2s\"";
    let proxy = start_proxy(&cluster, &kube_deployment("chat", settings));
    proxy
        .wait_state("chat", Duration::from_secs(40), |s| {
            s["replicas_stopped_total"] == 1 && s["replicas"].as_array().unwrap().is_empty()
        })
        .await;

    // 3 closed-loop streams: 3 pods.
    let load = Load::start(&proxy, "chat", 3, 20);
    proxy
        .wait_state("chat", Duration::from_secs(30), |s| {
            s["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["state"] == "ready")
                .count()
                == 3
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = cluster.replicas("chat");
    assert_eq!(peak, 3);
    // The load drops to one 10 s stream: the other pods are idle and are the ones removed.
    let long = tokio::spawn({
        let url = proxy.url("/v1/chat/completions");
        async move { stream_to_end(&reqwest::Client::new(), &url, &chat("chat", true, 400)).await }
    });
    let (ok, failed) = load.finish().await;
    assert!(failed.is_empty(), "lost requests: {failed:?}");
    assert!(ok > 5, "{ok}");
    until(
        "the idle pods to be removed",
        Duration::from_secs(30),
        || cluster.deleted_pods().len() >= 2,
    )
    .await;
    let long = long.await.unwrap();
    assert!(long.is_ok(), "the stream on the busy pod was cut: {long:?}");
    // Then to zero, each pod marked before the scale went down.
    until("zero pods", Duration::from_secs(60), || {
        cluster.pods().is_empty()
    })
    .await;
    let deleted = cluster.deleted_pods();
    assert!(deleted.len() >= 4, "{deleted:?}");
    for (pod, cost) in &deleted {
        assert_eq!(
            *cost, -1000,
            "{pod} was removed without infergate choosing it: {deleted:?}"
        );
    }
    let history = cluster.scale_history("chat");
    let most = history.iter().copied().max().unwrap();
    let top = history.iter().position(|r| *r == most).unwrap();
    assert!(
        history[top..].windows(2).all(|w| w[1] <= w[0]) && history.last() == Some(&0),
        "{history:?}"
    );
    let state = proxy.state("chat").await;
    assert_eq!(state["replicas_failed_total"], 0, "{state:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_scaling_the_deployment_is_reported_once_and_not_fought() {
    let cluster = FakeCluster::start(NAMESPACE);
    cluster.add_deployment("chat", "chat", "--ttft 5ms");
    let proxy = start_proxy(
        &cluster,
        &kube_deployment("chat", "min_replicas = 1\nmax_replicas = 3"),
    );
    proxy.wait_ready("chat", 1).await;
    assert_eq!(cluster.scale_history("chat"), vec![1]);
    cluster.scale_by_hand("chat", 3);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let kinds = proxy
            .event_types("deployment=chat&type=scaled_outside")
            .await;
        if !kinds.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no scaled_outside event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing changes infergate's count, so it does not write the scale back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cluster.scale_history("chat"), vec![1]);
    assert_eq!(cluster.replicas("chat"), 3);
    let events: serde_json::Value = proxy
        .admin_get("/admin/v1/events?type=scaled_outside")
        .await
        .json()
        .await
        .unwrap();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "reported once: {events:?}");
    let text = events[0]["description"].as_str().unwrap();
    assert!(text.contains("from 1 to 3"), "{text}");
    // Requests are still served.
    assert_eq!(proxy.chat("chat", false, 2).await.status(), 200);
}
