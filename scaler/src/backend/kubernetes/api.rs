//! The backend's calls to the Kubernetes API: the scale subresource, the pod-deletion-cost
//! annotation, and the EndpointSlice watch that feeds [`super::endpoints::PodState`].

use super::endpoints::Endpoint;
use super::workload::{poll_scale, ScaleBook};
use super::Shared;
use crate::backend::BackendError;
use futures_util::StreamExt;
use infergate_config::{PortRef, WorkloadKind};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};

/// The annotation the ReplicaSet controller reads to pick which pods a scale-down removes.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The field manager our patches are recorded under.
const FIELD_MANAGER: &str = "infergate";

/// A connected cluster, for one workload.
pub struct Cluster {
    client: kube::Client,
    namespace: String,
    shared: Weak<Shared>,
    /// One scale request at a time, each sending the latest count (so two launches at once
    /// cannot leave the older count last); with what was written and read.
    pub(super) scaling: tokio::sync::Mutex<ScaleBook>,
}

impl Cluster {
    /// Connects (kubeconfig or service account) and starts the EndpointSlice watch.
    pub(super) async fn connect(shared: Arc<Shared>) -> Result<Cluster, BackendError> {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| BackendError::Kubernetes(format!("no cluster to talk to: {e}")))?;
        let namespace = shared
            .config
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        tokio::spawn(watch_endpoints(
            Api::namespaced(client.clone(), &namespace),
            shared.clone(),
        ));
        tokio::spawn(poll_scale(
            client.clone(),
            namespace.clone(),
            Arc::downgrade(&shared),
        ));
        Ok(Cluster {
            client,
            namespace,
            shared: Arc::downgrade(&shared),
            scaling: tokio::sync::Mutex::new(ScaleBook::default()),
        })
    }

    /// Sets the workload's `spec.replicas` through its scale subresource to the count the
    /// backend wants now.
    pub(super) async fn scale_to_desired(&self) -> Result<(), BackendError> {
        let mut book = self.scaling.lock().await;
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        let desired = shared.with_state(|s| s.desired);
        let name = shared.config.name.as_str();
        let patch = Patch::Merge(serde_json::json!({ "spec": { "replicas": desired } }));
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        let result = match shared.config.kind {
            WorkloadKind::Deployment => {
                Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
                    .patch_scale(name, &params, &patch)
                    .await
                    .map(|_| ())
            }
            WorkloadKind::StatefulSet => {
                Api::<StatefulSet>::namespaced(self.client.clone(), &self.namespace)
                    .patch_scale(name, &params, &patch)
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                book.written = Some(desired);
                book.seen = Some(desired);
                tracing::info!(
                    workload = name,
                    kind = shared.config.kind.plural(),
                    replicas = desired,
                    "scaled the workload"
                );
                Ok(())
            }
            Err(e) => Err(BackendError::Kubernetes(format!(
                "PATCH {}/{name}/scale to {desired} replicas in namespace {}: {e}",
                shared.config.kind.plural(),
                self.namespace
            ))),
        }
    }

    /// Marks `pod` as the cheapest to delete, so the next scale-down removes it.
    pub(super) async fn mark_for_deletion(&self, pod: &str) {
        let patch = Patch::Merge(serde_json::json!({
            "metadata": { "annotations": { POD_DELETION_COST: "-1000" } }
        }));
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        if let Err(e) = pods.patch(pod, &PatchParams::default(), &patch).await {
            tracing::warn!(pod, error = %e, "cannot set the pod's deletion cost; Kubernetes picks the pod to remove");
        }
    }
}

/// Keeps the backend's endpoints current from the watch on the Service's EndpointSlices,
/// through restarts (410 Gone, dropped connections: the watcher re-lists with back-off, and the
/// known endpoints stay until the new list is whole).
async fn watch_endpoints(slices: Api<EndpointSlice>, shared: Arc<Shared>) {
    let selector = format!(
        "kubernetes.io/service-name={}",
        shared.config.service_name()
    );
    let port = shared.config.port.clone();
    let mut stream = watcher(slices, watcher::Config::default().labels(&selector))
        .default_backoff()
        .boxed();
    let mut relisting: Option<BTreeMap<String, Vec<Endpoint>>> = None;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, selector, "EndpointSlice watch failed; retrying with back-off");
                continue;
            }
        };
        match event {
            watcher::Event::Init => relisting = Some(BTreeMap::new()),
            watcher::Event::InitApply(slice) => {
                if let Some(list) = relisting.as_mut() {
                    list.insert(slice_name(&slice), endpoints_of(&slice, &port));
                }
            }
            watcher::Event::InitDone => {
                if let Some(list) = relisting.take() {
                    shared.with_state(|s| s.replace_slices(list));
                }
            }
            watcher::Event::Apply(slice) => {
                let endpoints = endpoints_of(&slice, &port);
                shared.with_state(|s| s.apply_slice(&slice_name(&slice), endpoints));
            }
            watcher::Event::Delete(slice) => {
                shared.with_state(|s| s.delete_slice(&slice_name(&slice)));
            }
        }
        shared.changed.notify_waiters();
    }
}

fn slice_name(slice: &EndpointSlice) -> String {
    slice.metadata.name.clone().unwrap_or_default()
}

/// The endpoints of one slice on the model server's port (by name from the slice's ports, or
/// the number given).
pub(crate) fn endpoints_of(slice: &EndpointSlice, port: &PortRef) -> Vec<Endpoint> {
    let ports = slice.ports.as_deref().unwrap_or_default();
    let port = match port {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok()),
    };
    let Some(port) = port else {
        return Vec::new();
    };
    slice
        .endpoints
        .iter()
        .flatten()
        .filter_map(|e| {
            let ip: IpAddr = e.addresses.first()?.parse().ok()?;
            let addr = SocketAddr::new(ip, port);
            let conditions = e.conditions.as_ref();
            Some(Endpoint {
                pod: e
                    .target_ref
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .unwrap_or_else(|| addr.to_string()),
                addr,
                // Absent means ready (discovery.k8s.io/v1).
                ready: conditions.and_then(|c| c.ready).unwrap_or(true),
                terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
            })
        })
        .collect()
}
