//! The fake cluster's ReplicaSet controller and kubelet: pods as real `infergate sim-server`
//! processes, created and deleted as a Deployment's `replicas` changes.

use super::objects::{self, EndpointView};
use super::{Cluster, PodView};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long a deleted pod keeps serving (terminating) before it is killed: its grace period.
const GRACE: Duration = Duration::from_secs(3);

/// One pod.
pub struct Pod {
    pub name: String,
    pub workload: String,
    pub seq: u64,
    pub addr: Option<SocketAddr>,
    pub ready: bool,
    pub terminating: bool,
    pub deletion_cost: i64,
    pub child: Option<tokio::process::Child>,
}

impl Pod {
    /// The pod as the API returns it, with the status the kubelet and scheduler would give it.
    pub fn to_json(&self, namespace: &str) -> serde_json::Value {
        let status = if self.ready {
            serde_json::json!({ "phase": "Running",
                "conditions": [{ "type": "Ready", "status": "True" }] })
        } else if self.addr.is_some() || self.child.is_some() {
            serde_json::json!({ "phase": "Running",
                "conditions": [{ "type": "Ready", "status": "False" }] })
        } else {
            serde_json::json!({ "phase": "Pending",
                "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu." }] })
        };
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": namespace,
                "labels": { "app": self.workload },
                "annotations": { "controller.kubernetes.io/pod-deletion-cost": self.deletion_cost.to_string() },
            },
            "status": status,
        })
    }

    pub fn view(&self) -> PodView {
        PodView {
            name: self.name.clone(),
            workload: self.workload.clone(),
            addr: self.addr,
            ready: self.ready,
            terminating: self.terminating,
            deletion_cost: self.deletion_cost,
        }
    }
}

/// Sets a Deployment's `replicas` and creates or deletes pods to match. `api` marks a change
/// made through the scale subresource (recorded in its history).
pub fn set_replicas(cluster: &Arc<Cluster>, workload: &str, replicas: u32, api: bool) {
    let (create, delete) = {
        let mut s = cluster.state.lock().unwrap();
        let Some(w) = s.workloads.get_mut(workload) else {
            return;
        };
        w.replicas = replicas;
        if api {
            w.scale_history.push(replicas);
        }
        let mut live: Vec<&Pod> = s
            .pods
            .values()
            .filter(|p| p.workload == workload && !p.terminating)
            .collect();
        let have = live.len() as u32;
        let mut create = Vec::new();
        let mut delete = Vec::new();
        if replicas > have {
            for _ in have..replicas {
                s.next_pod += 1;
                let seq = s.next_pod;
                let name = format!("{workload}-{seq:05}");
                s.pods.insert(
                    name.clone(),
                    Pod {
                        name: name.clone(),
                        workload: workload.to_string(),
                        seq,
                        addr: None,
                        ready: false,
                        terminating: false,
                        deletion_cost: 0,
                        child: None,
                    },
                );
                create.push(name);
            }
            if s.pending {
                create.clear();
            }
        } else {
            // As the ReplicaSet controller ranks them: not ready first, then the lowest
            // deletion cost, then the newest.
            live.sort_by_key(|p| (p.ready, p.deletion_cost, std::cmp::Reverse(p.seq)));
            delete = live
                .iter()
                .take((have - replicas) as usize)
                .map(|p| p.name.clone())
                .collect();
        }
        (create, delete)
    };
    for pod in create {
        cluster.runtime.spawn(run_pod(cluster.clone(), pod));
    }
    for pod in delete {
        cluster.runtime.spawn(delete_pod(cluster.clone(), pod));
    }
}

/// Starts the pod's sim-server, publishes its endpoint (not ready), then ready once its
/// `/health` answers.
async fn run_pod(cluster: Arc<Cluster>, pod: String) {
    let (model, args) = {
        let s = cluster.state.lock().unwrap();
        let Some(p) = s.pods.get(&pod) else { return };
        let w = &s.workloads[&p.workload];
        (w.model.clone(), w.sim_args.clone())
    };
    let mut child = tokio::process::Command::new(crate::harness::BIN)
        .args(["sim-server", "--port", "0", "--model", &model])
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next_line().await.ok().flatten().unwrap_or_default();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr: SocketAddr = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|a| a.parse().ok())
        .unwrap();
    {
        let mut s = cluster.state.lock().unwrap();
        let Some(p) = s.pods.get_mut(&pod) else {
            return;
        };
        p.addr = Some(addr);
        p.child = Some(child);
    }
    publish_pod(&cluster, &pod, "ADDED");
    let health = format!("http://{addr}/health");
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(&health).send().await {
            if r.status().is_success() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let mut s = cluster.state.lock().unwrap();
        let Some(p) = s.pods.get_mut(&pod) else {
            return;
        };
        if p.terminating {
            return;
        }
        p.ready = true;
    }
    publish_pod(&cluster, &pod, "MODIFIED");
}

/// Marks the pod terminating, keeps it serving for its grace period, then kills it and removes
/// its endpoint.
async fn delete_pod(cluster: Arc<Cluster>, pod: String) {
    {
        let mut s = cluster.state.lock().unwrap();
        let Some(p) = s.pods.get_mut(&pod) else {
            return;
        };
        p.terminating = true;
        p.ready = false;
        let cost = p.deletion_cost;
        s.deleted.push((pod.clone(), cost));
    }
    publish_pod(&cluster, &pod, "MODIFIED");
    tokio::time::sleep(GRACE).await;
    let removed = cluster.state.lock().unwrap().pods.remove(&pod);
    if let Some(mut p) = removed {
        if let Some(mut child) = p.child.take() {
            let _ = child.kill().await;
        }
        if let Some(addr) = p.addr {
            let service = service_of(&cluster, &p.workload);
            let slice = objects::endpoint_slice(
                &service,
                &format!("{service}-{pod}"),
                &[],
                "http",
                addr.port(),
            );
            objects::publish(&cluster, "DELETED", &service, slice, false);
        }
    }
}

fn service_of(cluster: &Cluster, workload: &str) -> String {
    let s = cluster.state.lock().unwrap();
    s.workloads
        .get(workload)
        .map_or_else(|| workload.to_string(), |w| w.service.clone())
}

/// Publishes the pod's slice as it stands.
fn publish_pod(cluster: &Cluster, pod: &str, kind: &'static str) {
    let (service, slice) = {
        let s = cluster.state.lock().unwrap();
        let Some(p) = s.pods.get(pod) else { return };
        let Some(addr) = p.addr else { return };
        let service = s
            .workloads
            .get(&p.workload)
            .map_or_else(|| p.workload.clone(), |w| w.service.clone());
        let slice = objects::endpoint_slice(
            &service,
            &format!("{service}-{pod}"),
            &[EndpointView {
                pod,
                addr,
                ready: p.ready,
                terminating: p.terminating,
            }],
            "http",
            addr.port(),
        );
        (service, slice)
    };
    objects::publish(cluster, kind, &service, slice, false);
}
