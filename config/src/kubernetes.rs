//! The Kubernetes backend's settings: which workload infergate scales (through its scale
//! subresource) and where its pods' addresses come from (the EndpointSlices of its Service).

use serde::{Deserialize, Serialize};

/// The kind of workload whose scale subresource infergate drives.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment (the default).
    #[default]
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
}

impl WorkloadKind {
    /// The resource's plural name in API paths (`deployments`, `statefulsets`).
    pub fn plural(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
        }
    }
}

/// A container port: by name (`"http"`) or number (`8000`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum PortRef {
    /// The port's number.
    Number(u16),
    /// The port's name in the Service (and the EndpointSlice).
    Name(String),
}

/// Replicas are the pods of a Kubernetes workload (SPEC §8): the same policy as the process
/// backend, actuated through `PATCH …/scale`, addresses from EndpointSlices.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesBackendConfig {
    /// Namespace of the workload (default: the namespace infergate runs in, else `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// `Deployment` or `StatefulSet`.
    #[serde(default)]
    pub kind: WorkloadKind,
    /// The workload's name.
    pub name: String,
    /// The Service whose EndpointSlices list the pods (default: the workload's name).
    #[serde(default)]
    pub service: Option<String>,
    /// The model server's port, by name or number.
    pub port: PortRef,
    /// The workload's pods, as a label selector (`app=vllm,tier=gpu`), for saying why they are
    /// not ready (default: the selector the scale subresource reports).
    #[serde(default)]
    pub label_selector: Option<String>,
    /// Environment variable holding the key the model servers expect (`--api-key`): sent as
    /// `Authorization: Bearer …` to them instead of the client's, which never reaches a replica
    /// when `[auth]` is on.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

impl KubernetesBackendConfig {
    /// The Service whose EndpointSlices are watched.
    pub fn service_name(&self) -> &str {
        self.service.as_deref().unwrap_or(&self.name)
    }
}

/// Whether `name` is a Kubernetes object name (RFC 1123 label: lower-case alphanumerics and
/// `-`, starting and ending alphanumeric, at most 63 characters).
pub fn is_dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `name` is a DNS subdomain (RFC 1123: dot-separated labels, at most 253 characters),
/// what Deployment and Service names must be.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}
