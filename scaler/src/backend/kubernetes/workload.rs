//! The workload's scale as the API server has it, read once a second: to notice a person (or
//! another controller) changing `spec.replicas` — logged and reported once, and not fought: the
//! count is asserted again only by infergate's next decision that changes it — and, while a
//! replica waits for a pod, to say why the workload's pods are not ready.

use super::pod_status::describe_unready;
use super::Shared;
use crate::backend::BackendError;
use infergate_config::WorkloadKind;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use std::sync::Weak;
use std::time::Duration;

/// How often the scale is read.
const POLL: Duration = Duration::from_secs(1);

/// What infergate wrote to the scale subresource and what it last read there.
#[derive(Debug, Default)]
pub struct ScaleBook {
    /// The count infergate last set (`None` before its first write).
    pub written: Option<u32>,
    /// The count last read, to report a change made elsewhere once.
    pub seen: Option<u32>,
}

impl ScaleBook {
    /// A read of `spec.replicas`: a change made outside infergate, if this is the first read
    /// that shows it, as (ours, theirs).
    pub fn observe(&mut self, replicas: u32) -> Option<(u32, u32)> {
        let previous = self.seen.replace(replicas);
        let ours = self.written?;
        (replicas != ours && previous != Some(replicas)).then_some((ours, replicas))
    }
}

/// Reads the workload's scale subresource.
pub(super) async fn get_scale(
    client: &kube::Client,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> Result<Scale, BackendError> {
    let result = match kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(client.clone(), namespace)
                .get_scale(name)
                .await
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client.clone(), namespace)
                .get_scale(name)
                .await
        }
    };
    result.map_err(|e| {
        BackendError::Kubernetes(format!(
            "GET {}/{name}/scale in namespace {namespace}: {e}",
            kind.plural()
        ))
    })
}

/// Reads the scale every [`POLL`] until the backend is dropped.
pub(super) async fn poll_scale(client: kube::Client, namespace: String, shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(POLL).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let Some(cluster) = shared.api.get() else {
            continue;
        };
        let config = &shared.config;
        let scale = {
            // Not while a write is under way, so our own write is never mistaken for another's.
            let mut book = cluster.scaling.lock().await;
            match get_scale(&client, &namespace, config.kind, &config.name).await {
                Ok(scale) => {
                    let replicas = scale
                        .spec
                        .as_ref()
                        .and_then(|s| s.replicas)
                        .unwrap_or(0)
                        .max(0) as u32;
                    shared.with_observed(|o| o.replicas = Some(replicas));
                    if let Some((ours, theirs)) = book.observe(replicas) {
                        let notice = format!(
                            "spec.replicas of {}/{} was changed outside infergate from {ours} to {theirs}; infergate sets it again only when its next decision changes the count",
                            config.kind.plural(),
                            config.name
                        );
                        tracing::warn!(workload = %config.name, ours, theirs, "{notice}");
                        shared.with_observed(|o| o.notices.push(notice));
                    }
                    scale
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the workload's scale");
                    continue;
                }
            }
        };
        if shared.with_state(|s| s.has_waiting()) {
            let selector = config
                .label_selector
                .clone()
                .or_else(|| scale.status.and_then(|s| s.selector))
                .unwrap_or_default();
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            match pods.list(&ListParams::default().labels(&selector)).await {
                Ok(list) => {
                    let unready = describe_unready(&list.items);
                    shared.with_observed(|o| o.unready = unready);
                }
                Err(e) => tracing::debug!(error = %e, selector, "cannot list the workload's pods"),
            }
        } else {
            shared.with_observed(|o| o.unready.clear());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ScaleBook;

    #[test]
    fn a_change_made_elsewhere_is_reported_once_and_our_own_count_never() {
        let mut book = ScaleBook::default();
        assert_eq!(
            book.observe(3),
            None,
            "nothing written yet: nothing to compare"
        );
        book.written = Some(2);
        assert_eq!(book.observe(2), None);
        assert_eq!(book.observe(5), Some((2, 5)));
        assert_eq!(book.observe(5), None, "reported once");
        assert_eq!(book.observe(6), Some((2, 6)));
        book.written = Some(6);
        assert_eq!(book.observe(6), None);
    }
}
