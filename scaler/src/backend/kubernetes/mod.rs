//! Replicas as the pods of a Kubernetes Deployment or StatefulSet (SPEC §8), the way KEDA,
//! Knative and the llm-d autoscaler drive a cluster: the count through the scale subresource
//! only (`PATCH …/scale`, never the workload's spec), the pods' addresses from a watch on the
//! EndpointSlices of the workload's Service, and, before a scale-down, the chosen pod marked
//! with `controller.kubernetes.io/pod-deletion-cost` so the ReplicaSet removes that one.
//!
//! A launch raises the scale by one and returns at once with no address; the replica takes the
//! next ready endpoint no other replica has ([`endpoints::PodState`]), and the controller's
//! own health check must then pass, as for a process. The startup deadline runs from the
//! decision, so a pod stuck in Pending fails the replica with the state of the workload.

pub mod access;
mod api;
pub(crate) use api::endpoints_of;
pub(crate) mod endpoints;
mod pod_status;
mod workload;

use super::{Backend, BackendError, ExitStatus, Launched, ReplicaHandle};
use async_trait::async_trait;
use endpoints::{PodOf, PodState};
use infergate_config::KubernetesBackendConfig;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OnceCell};

/// A deployment's replicas as pods.
pub struct KubernetesBackend {
    shared: Arc<Shared>,
}

/// What the backend and its replicas' handles share.
struct Shared {
    config: KubernetesBackendConfig,
    /// The API client and the watch, made on first use (inside the runtime).
    api: OnceCell<api::Cluster>,
    state: Mutex<PodState>,
    /// Woken whenever the endpoints change.
    changed: Notify,
    /// What the scale poll last read (`workload.rs`).
    observed: Mutex<Observed>,
}

/// What the scale poll learnt.
#[derive(Debug, Default)]
struct Observed {
    /// `spec.replicas` as last read.
    replicas: Option<u32>,
    /// Why the workload's pods are not ready, one line per pod (while a replica waits).
    unready: Vec<String>,
    /// Changes made outside infergate, not yet reported as events.
    notices: Vec<String>,
}

impl KubernetesBackend {
    /// A backend for the workload `config` names; it connects on first launch.
    pub fn new(config: KubernetesBackendConfig) -> Self {
        KubernetesBackend {
            shared: Arc::new(Shared {
                config,
                api: OnceCell::new(),
                state: Mutex::new(PodState::default()),
                changed: Notify::new(),
                observed: Mutex::new(Observed::default()),
            }),
        }
    }
}

impl Shared {
    /// The connected cluster (client from `$KUBECONFIG`, `~/.kube/config` or the in-cluster
    /// service account), with the EndpointSlice watch running.
    async fn cluster(self: &Arc<Self>) -> Result<&api::Cluster, BackendError> {
        self.api
            .get_or_try_init(|| api::Cluster::connect(self.clone()))
            .await
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut PodState) -> T) -> T {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn with_observed<T>(&self, f: impl FnOnce(&mut Observed) -> T) -> T {
        match self.observed.lock() {
            Ok(mut o) => f(&mut o),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

#[async_trait]
impl Backend for KubernetesBackend {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn fixed_replicas(&self) -> Option<Vec<SocketAddr>> {
        None
    }

    async fn prepare(&self) {
        if let Err(e) = self.shared.cluster().await {
            tracing::warn!(error = %e, "cannot reach the Kubernetes API yet; trying again at the first launch");
        }
    }

    fn observed_scale(&self) -> Option<u32> {
        self.shared.with_observed(|o| o.replicas)
    }

    fn take_notices(&self) -> Vec<String> {
        self.shared
            .with_observed(|o| std::mem::take(&mut o.notices))
    }

    async fn launch(&self, _model: &str, index: u64) -> Result<Launched, BackendError> {
        let cluster = self.shared.cluster().await?;
        self.shared.with_state(|s| s.add_replica(index));
        if !crate::cluster::may_actuate() {
            // A follower: the leader has raised the scale; this replica waits for its pod.
        } else if let Err(e) = cluster.scale_to_desired().await {
            self.shared.with_state(|s| s.undo_add(index));
            return Err(e);
        }
        Ok(Launched {
            addr: None,
            handle: Box::new(PodHandle {
                shared: self.shared.clone(),
                index,
            }),
        })
    }
}

/// One replica: a pod of the workload, once one is ready for it.
struct PodHandle {
    shared: Arc<Shared>,
    index: u64,
}

#[async_trait]
impl ReplicaHandle for PodHandle {
    async fn exited(&self) -> ExitStatus {
        loop {
            let changed = self.shared.changed.notified();
            if let PodOf::Gone(pod) = self.shared.with_state(|s| s.pod_of(self.index)) {
                // A follower's pods go when the leader scales down: that is no failure.
                let removed = !crate::cluster::may_actuate();
                return ExitStatus {
                    description: format!("pod {pod} is terminating or was deleted"),
                    removed,
                };
            }
            changed.await;
        }
    }

    async fn terminate(&self, _grace: Duration) {
        let (pod, desired) = self.shared.with_state(|s| s.remove_replica(self.index));
        let Some(cluster) = self.shared.api.get() else {
            return;
        };
        if !crate::cluster::may_actuate() {
            return; // the leader scales the workload; this instance only lets the pod go
        }
        // The pod this replica is goes first; a replica still waiting for a pod lowers the
        // count, and the ReplicaSet removes a pod that is not ready, as it prefers to.
        if let Some(pod) = &pod {
            cluster.mark_for_deletion(pod).await;
        }
        if let Err(e) = cluster.scale_to_desired().await {
            tracing::warn!(error = %e, desired, "cannot lower the workload's scale");
        }
    }

    fn output_tail(&self) -> Vec<String> {
        let mut lines = vec![self.shared.with_state(|s| s.summary())];
        lines.extend(self.shared.with_observed(|o| o.unready.clone()));
        lines
    }

    fn assigned_addr(&self) -> Option<SocketAddr> {
        match self.shared.with_state(|s| s.pod_of(self.index)) {
            PodOf::Ready(_, addr) => Some(addr),
            _ => None,
        }
    }
}
