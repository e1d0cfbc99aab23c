//! Backends: where replicas come from. The controller talks to every backend through [`Backend`],
//! so a Kubernetes backend can be added without touching the controller or the data plane.

pub mod kubernetes;
mod process;
mod static_urls;

pub use kubernetes::KubernetesBackend;
pub use process::ProcessBackend;
pub use static_urls::StaticBackend;

use async_trait::async_trait;
use infergate_config::{BackendConfig, DeploymentConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why a replica could not be launched.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The model server process could not be spawned.
    #[error("cannot start {program:?}: {reason}")]
    Spawn {
        /// The program from the command template.
        program: String,
        /// The OS error.
        reason: String,
    },
    /// No free port was available.
    #[error("no capacity to start a replica: {0}")]
    NoCapacity(String),
    /// Every GPU of the pool is held by other replicas (e.g. one still draining); the replica
    /// waits rather than start unpinned.
    #[error("waiting for {needed} GPU(s): {free} of the pool free")]
    WaitingForGpus {
        /// GPUs one replica needs.
        needed: usize,
        /// GPUs free now.
        free: usize,
    },
    /// The Kubernetes API refused or failed a request.
    #[error("kubernetes: {0}")]
    Kubernetes(String),
    /// This backend does not start replicas (static URLs).
    #[error("this backend has a fixed set of replicas")]
    Fixed,
}

/// How a replica ended.
#[derive(Debug, Clone)]
pub struct ExitStatus {
    /// Human-readable description ("exit code 1", "signal 9").
    pub description: String,
    /// Removed on purpose by someone else's decision (a pod the cluster leader scaled away):
    /// the replica drains and stops; it is not a failure and is not replaced.
    pub removed: bool,
}

/// A launched replica that the controller owns until it is stopped.
#[async_trait]
pub trait ReplicaHandle: Send + Sync {
    /// Resolves when the replica ends on its own (crash, exit). Pending forever for replicas that
    /// cannot end (static URLs).
    async fn exited(&self) -> ExitStatus;
    /// Stops the replica: a polite signal, then force after `grace`.
    async fn terminate(&self, grace: Duration);
    /// The last lines the model server printed (stdout and stderr), to explain a failure.
    fn output_tail(&self) -> Vec<String> {
        Vec::new()
    }
    /// For a replica launched without an address: its address once the backend knows it (a
    /// Kubernetes pod's, when its endpoint is ready). Polled while the replica starts.
    fn assigned_addr(&self) -> Option<SocketAddr> {
        None
    }
}

/// A replica as launched: where it listens and how to stop it.
pub struct Launched {
    /// Address the model server will listen on; `None` when the backend learns it later
    /// ([`ReplicaHandle::assigned_addr`]).
    pub addr: Option<SocketAddr>,
    /// Control over the replica's life.
    pub handle: Box<dyn ReplicaHandle>,
}

/// A source of replicas.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Short name for logs ("process", "static").
    fn kind(&self) -> &'static str;
    /// Fixed replica addresses for backends that do not actuate; `None` for those that do.
    fn fixed_replicas(&self) -> Option<Vec<SocketAddr>>;
    /// Connects to what the backend drives, before the first decision (a follower in a cluster
    /// must read the workload's scale before it launches anything).
    async fn prepare(&self) {}
    /// The replica count the workload has now, as read from it (Kubernetes `spec.replicas`),
    /// for an instance that follows the cluster's leader.
    fn observed_scale(&self) -> Option<u32> {
        None
    }
    /// Things the backend saw that people should know (a workload scaled outside infergate),
    /// each returned once, for the event log.
    fn take_notices(&self) -> Vec<String> {
        Vec::new()
    }
    /// The GPU ids replica `replica` holds (its `CUDA_VISIBLE_DEVICES`), for status.
    fn gpus_of(&self, _replica: &str) -> Vec<String> {
        Vec::new()
    }
    /// Starts replica number `index` of deployment `model`.
    async fn launch(&self, model: &str, index: u64) -> Result<Launched, BackendError>;
}

/// Builds the backend a deployment's config asks for; a process backend takes its GPUs from
/// `shared` (the box's pool) when given, else from its own `gpus` list.
pub fn from_config(
    config: &DeploymentConfig,
    shared: Option<&Arc<crate::gpus::GpuAllocator>>,
) -> Arc<dyn Backend> {
    match &config.backend {
        BackendConfig::Process(p) => Arc::new(match shared {
            Some(gpus) => ProcessBackend::sharing(p.clone(), gpus.clone()),
            None => ProcessBackend::new(p.clone()),
        }),
        BackendConfig::Static(s) => Arc::new(StaticBackend::new(s)),
        BackendConfig::Kubernetes(k) => Arc::new(KubernetesBackend::new(k.clone())),
    }
}
