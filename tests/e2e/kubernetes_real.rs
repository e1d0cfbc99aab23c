//! Against a real cluster — not run here (no cluster is reachable from this machine) and
//! `#[ignore]`d everywhere else. Run it from a machine that can reach pod IPs (a node, or kind /
//! minikube with a routable pod network), with an image that holds the `infergate` binary:
//!
//! ```sh
//! KUBECONFIG=~/.kube/config INFERGATE_IMAGE=infergate:latest INFERGATE_TEST_NAMESPACE=default \
//!   cargo test -p infergate --test e2e -- --ignored kubernetes_real
//! ```
//!
//! It creates a Deployment of `infergate sim-server` pods at 0 replicas and its Service, runs
//! the local infergate binary with the Kubernetes backend on it, and checks scale from zero and
//! back to zero. It deletes what it created.

use crate::harness::Proxy;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use std::time::{Duration, Instant};

const NAME: &str = "infergate-e2e-sim";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("set ${name} to run the real-cluster suite"))
}

async fn create_workload(client: &kube::Client, namespace: &str, image: &str) {
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": { "name": NAME, "labels": { "app": NAME } },
        "spec": {
            "replicas": 0,
            "selector": { "matchLabels": { "app": NAME } },
            "template": {
                "metadata": { "labels": { "app": NAME } },
                "spec": { "containers": [{
                    "name": "sim", "image": image,
                    "args": ["sim-server", "--host", "0.0.0.0", "--port", "8000", "--model", NAME,
                             "--cold-start", "2s"],
                    "ports": [{ "name": "http", "containerPort": 8000 }],
                    "readinessProbe": { "httpGet": { "path": "/health", "port": "http" }, "periodSeconds": 1 },
                }]},
            },
        },
    }))
    .unwrap();
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": { "name": NAME },
        "spec": { "selector": { "app": NAME }, "ports": [{ "name": "http", "port": 8000, "targetPort": "http" }] },
    }))
    .unwrap();
    let params = PostParams::default();
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .create(&params, &deployment)
        .await
        .unwrap();
    Api::<Service>::namespaced(client.clone(), namespace)
        .create(&params, &service)
        .await
        .unwrap();
}

async fn delete_workload(client: &kube::Client, namespace: &str) {
    let params = DeleteParams::default();
    let _ = Api::<Deployment>::namespaced(client.clone(), namespace)
        .delete(NAME, &params)
        .await;
    let _ = Api::<Service>::namespaced(client.clone(), namespace)
        .delete(NAME, &params)
        .await;
}

async fn spec_replicas(client: &kube::Client, namespace: &str) -> i32 {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .get_scale(NAME)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real cluster: KUBECONFIG, INFERGATE_IMAGE, INFERGATE_TEST_NAMESPACE"]
async fn a_real_deployment_scales_from_zero_and_back() {
    let (image, namespace) = (env("INFERGATE_IMAGE"), env("INFERGATE_TEST_NAMESPACE"));
    let client = kube::Client::try_default().await.unwrap();
    delete_workload(&client, &namespace).await;
    create_workload(&client, &namespace, &image).await;
    let config = format!(
        "[deployments.{NAME}]\nmin_replicas = 0\nmax_replicas = 2\nscale_down_delay = \"1s\"\n\
         autoscaling_window = \"10s\"\nstartup_timeout = \"5m\"\n\
         [deployments.{NAME}.backend]\ntype = \"kubernetes\"\nnamespace = \"{namespace}\"\n\
         name = \"{NAME}\"\nport = \"http\"\n"
    );
    let proxy = Proxy::start(&config);
    let response = proxy.chat(NAME, false, 4).await;
    assert_eq!(response.status(), 200);
    assert!(spec_replicas(&client, &namespace).await >= 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    while spec_replicas(&client, &namespace).await > 0 {
        assert!(Instant::now() < deadline, "never scaled back to zero");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(proxy);
    delete_workload(&client, &namespace).await;
}
