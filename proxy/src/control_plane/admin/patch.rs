//! `PATCH /admin/v1/deployments/NAME`: a partial change of a deployment's autoscaling settings,
//! validated with the config file's messages and applied on the next decision.

use infergate_config::{DeploymentConfig, HumanDuration, Metric};
use serde::Deserialize;

/// The settings an operator may change live (FlexAI's `scale`, Baseten's autoscaling API).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscalingPatch {
    /// Floor of replicas.
    pub min_replicas: Option<u32>,
    /// Ceiling of replicas.
    pub max_replicas: Option<u32>,
    /// Averaging window, e.g. `"60s"`.
    pub autoscaling_window: Option<HumanDuration>,
    /// Delay before scaling down, e.g. `"15m"`.
    pub scale_down_delay: Option<HumanDuration>,
    /// Requests one replica should carry.
    pub concurrency_target: Option<u32>,
    /// Headroom in percent.
    pub target_utilization: Option<u32>,
    /// What load means.
    pub metric: Option<Metric>,
    /// KV-cache fraction per replica.
    pub kv_cache_target: Option<f64>,
    /// Most requests one replica may carry at once.
    pub replica_concurrency: Option<u32>,
}

impl AutoscalingPatch {
    /// The current settings with this patch applied (not validated yet).
    pub fn apply(&self, current: &DeploymentConfig) -> DeploymentConfig {
        let mut next = current.clone();
        macro_rules! set {
            ($($field:ident),*) => {
                $(if let Some(v) = self.$field { next.$field = v; })*
            };
        }
        set!(
            min_replicas,
            max_replicas,
            autoscaling_window,
            scale_down_delay,
            concurrency_target,
            target_utilization,
            metric,
            kv_cache_target,
            replica_concurrency
        );
        next
    }
}
