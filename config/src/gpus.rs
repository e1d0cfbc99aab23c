//! The box's GPUs as one pool (`[gpus]`): every process-backend deployment that sets
//! `gpus_per_replica` without a `gpus` list of its own takes its replicas' GPUs from it, and a
//! replica that finds none free has the least-recently-used idle replica of another deployment
//! evicted (llama-swap swaps models on a shared GPU set the same way, one model at a time).

use crate::duration::HumanDuration;
use crate::validate::FieldError;
use crate::{BackendConfig, DeploymentConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// The `[gpus]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GpusConfig {
    /// GPU ids shared by the deployments (handed out through `CUDA_VISIBLE_DEVICES`).
    pub devices: Vec<String>,
    /// A replica younger than this (since it became ready) is never evicted, so two models
    /// that take turns on the same GPUs do not thrash.
    pub min_residency: HumanDuration,
}

impl Default for GpusConfig {
    fn default() -> Self {
        GpusConfig {
            devices: Vec::new(),
            min_residency: HumanDuration::secs(60),
        }
    }
}

impl GpusConfig {
    /// Whether deployment `d` takes its GPUs from this shared pool: a process backend with
    /// `gpus_per_replica` set and no `gpus` list of its own.
    pub fn shares(d: &DeploymentConfig) -> bool {
        matches!(&d.backend, BackendConfig::Process(p) if p.gpus.is_empty() && p.gpus_per_replica > 0)
    }

    /// What is wrong with the pool and with the deployments that use it, each naming its field.
    pub(crate) fn problems(
        &self,
        deployments: &BTreeMap<String, DeploymentConfig>,
    ) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut fail = |field: String, message: String| errors.push(FieldError { field, message });
        let mut seen = HashSet::new();
        for (i, id) in self.devices.iter().enumerate() {
            if id.trim().is_empty() || id.contains([',', ' ']) {
                fail(
                    format!("gpus.devices[{i}]"),
                    format!("must be a GPU id like \"0\" or \"GPU-5b1c…\" (no commas or spaces), got {id:?}"),
                );
            } else if !seen.insert(id.as_str()) {
                fail(
                    format!("gpus.devices[{i}]"),
                    format!("GPU {id:?} is listed twice"),
                );
            }
        }
        let residency = self.min_residency.get();
        if residency > Duration::from_secs(86400) {
            fail(
                "gpus.min_residency".into(),
                format!("must be between 0s and 1d, got {}", self.min_residency),
            );
        }
        for (name, d) in deployments {
            let BackendConfig::Process(p) = &d.backend else {
                continue;
            };
            let path = format!("deployments.{name}.backend");
            for (i, id) in p.gpus.iter().enumerate() {
                if seen.contains(id.as_str()) {
                    fail(
                        format!("{path}.gpus[{i}]"),
                        format!("GPU {id:?} is in the shared pool ([gpus] devices); a deployment's own list must not take it too — drop the list to share the pool, or the GPU from the pool"),
                    );
                }
            }
            if !Self::shares(d) {
                continue;
            }
            let per_replica = p.gpus_per_replica as usize;
            if self.devices.is_empty() {
                fail(
                    format!("{path}.gpus_per_replica"),
                    format!("asks for {per_replica} GPU(s) per replica but there is no GPU to take them from: list the box's GPUs in [gpus] devices (shared by every deployment) or this deployment's own in backend.gpus"),
                );
            } else if per_replica > self.devices.len() {
                fail(
                    format!("{path}.gpus_per_replica"),
                    format!(
                        "must be between 1 and {} (the GPUs in [gpus] devices), got {per_replica}",
                        self.devices.len()
                    ),
                );
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn errors(toml: &str) -> String {
        match Config::from_toml_str(toml) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const DEPLOYMENT: &str = "[deployments.a]\nbackend = { type = \"process\", command = [\"x\"], gpus_per_replica = 1 }\n";

    #[test]
    fn a_shared_pool_is_accepted_and_used_by_deployments_without_their_own_list() {
        let toml =
            format!("[gpus]\ndevices = [\"0\", \"1\"]\nmin_residency = \"30s\"\n{DEPLOYMENT}");
        let config = Config::from_toml_str(&toml).unwrap();
        assert_eq!(config.gpus.devices, ["0", "1"]);
        assert_eq!(config.gpus.min_residency.get().as_secs(), 30);
        assert!(super::GpusConfig::shares(&config.deployments["a"]));
    }

    #[test]
    fn gpus_per_replica_without_any_gpu_names_the_field() {
        let e = errors(DEPLOYMENT);
        assert!(e.contains("deployments.a.backend.gpus_per_replica"), "{e}");
        assert!(e.contains("[gpus] devices"), "{e}");
    }

    #[test]
    fn a_replica_larger_than_the_pool_is_refused() {
        let toml = format!(
            "[gpus]\ndevices = [\"0\"]\n{}",
            DEPLOYMENT.replace("= 1 }", "= 2 }")
        );
        let e = errors(&toml);
        assert!(e.contains("must be between 1 and 1"), "{e}");
    }

    #[test]
    fn duplicate_and_overlapping_gpus_are_refused() {
        let toml = "[gpus]\ndevices = [\"0\", \"0\", \"1\"]\n[deployments.b]\nbackend = { type = \"process\", command = [\"x\"], gpus = [\"1\"] }\n";
        let e = errors(toml);
        assert!(
            e.contains("gpus.devices[1]: GPU \"0\" is listed twice"),
            "{e}"
        );
        assert!(e.contains("deployments.b.backend.gpus[0]"), "{e}");
    }

    #[test]
    fn min_residency_has_a_range() {
        let toml = format!("[gpus]\ndevices = [\"0\"]\nmin_residency = \"2d\"\n{DEPLOYMENT}");
        assert!(errors(&toml).contains("gpus.min_residency"));
    }
}
