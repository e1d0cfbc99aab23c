//! Several infergate instances behind one Service (SPEC §8): `[cluster] mode = "kubernetes"`
//! elects one leader with a `coordination.k8s.io/v1` Lease; every instance routes, queues and
//! counts, and only the leader decides, on the sum of every instance's load (read from their
//! admin listeners, found in the EndpointSlices of infergate's own Service).

use crate::duration::HumanDuration;
use crate::PortRef;
use serde::{Deserialize, Serialize};

/// How instances coordinate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// One instance decides alone (the default).
    #[default]
    Single,
    /// Leader election through a Lease; decisions on the summed load.
    Kubernetes,
}

/// The `[cluster]` table.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `single` or `kubernetes`.
    pub mode: ClusterMode,
    /// Namespace of the Lease and of infergate's Service (default: the client's namespace).
    pub namespace: Option<String>,
    /// The Lease the instances compete for.
    pub lease_name: String,
    /// How long a leader holds the Lease without renewing it (a new leader takes over within it).
    pub lease_duration: HumanDuration,
    /// infergate's own Service: its EndpointSlices list the instances.
    pub service: String,
    /// The admin listener's port in that Service, by name or number.
    pub admin_port: PortRef,
    /// This instance's name in the Lease (default: `$POD_NAME`, else `$HOSTNAME`).
    pub identity: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            mode: ClusterMode::Single,
            namespace: None,
            lease_name: "infergate".to_string(),
            lease_duration: HumanDuration::secs(15),
            service: "infergate".to_string(),
            admin_port: PortRef::Name("admin".to_string()),
            identity: None,
        }
    }
}

impl ClusterConfig {
    /// This instance's identity: the configured one, else `$POD_NAME` (the downward API), else
    /// `$HOSTNAME` (a pod's name), else the process id.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok().filter(|v| !v.is_empty()))
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| format!("infergate-{}", std::process::id()))
    }
}
