//! GPUs handed to replicas: an [`allocator`] per deployment for its own `gpus` list, or one for
//! the whole box (`[gpus] devices`) that every process-backend deployment setting
//! `gpus_per_replica` without a list of its own shares — [`SharedGpus`].
//!
//! When a replica of a sharing deployment finds too few GPUs free, the least-recently-used idle
//! replica of another deployment is evicted ([`eviction`], a pure function): its deployment's
//! lifecycle core is told (it counts the replica as draining, so it does not start another in its
//! place at once), the replica drains and stops, its GPUs are reserved for the deployment they
//! were freed for, and the waiting replica takes them on its next try. The request that asked
//! waits in the queue meanwhile, as it does for any cold start. llama-swap swaps models on a
//! shared GPU set; this is that, behind the same autoscaler, with `min_residency` against thrash.

pub mod allocator;
pub mod eviction;

pub use allocator::GpuAllocator;

use crate::controller::Controller;
use crate::events::EventKind;
use eviction::{choose_victims, Need};
use infergate_config::GpusConfig;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The box's GPU pool and the deployments that share it.
pub struct SharedGpus {
    allocator: Arc<GpuAllocator>,
    min_residency: Duration,
    /// The sharing deployments' controllers; one eviction decided at a time.
    members: Mutex<Vec<Weak<Controller>>>,
}

impl SharedGpus {
    /// The pool `[gpus]` describes; `None` when it lists no device.
    pub fn from_config(config: &GpusConfig) -> Option<Arc<SharedGpus>> {
        if config.devices.is_empty() {
            return None;
        }
        Some(Arc::new(SharedGpus {
            allocator: Arc::new(GpuAllocator::new(config.devices.clone())),
            min_residency: config.min_residency.get(),
            members: Mutex::new(Vec::new()),
        }))
    }

    /// The allocator the sharing deployments' backends take GPUs from.
    pub fn allocator(&self) -> &Arc<GpuAllocator> {
        &self.allocator
    }

    /// Adds a sharing deployment (its replicas may be evicted, and it may evict).
    pub(crate) fn join(&self, controller: &Arc<Controller>) {
        if let Ok(mut members) = self.members.lock() {
            members.retain(|m| m.strong_count() > 0);
            members.push(Arc::downgrade(controller));
        }
    }

    /// A replica of `deployment` needs `needed` GPUs and too few are free: evicts the
    /// least-recently-used idle replicas of other deployments that free enough, if the rules
    /// allow (see [`eviction`]); their GPUs are then reserved for `deployment`.
    pub(crate) fn evict_for(&self, deployment: &str, needed: u32) {
        let Ok(members) = self.members.lock() else {
            return;
        };
        let now = Instant::now();
        let controllers: Vec<Arc<Controller>> = members.iter().filter_map(Weak::upgrade).collect();
        let tenants: Vec<_> = controllers.iter().map(|c| c.gpu_tenant(now)).collect();
        let need = Need {
            deployment,
            gpus: needed,
            free: self.allocator.free_for(deployment, now) as u32,
            reserved_for_others: self.allocator.reserved_for_others(deployment, now) as u32,
        };
        for victim in choose_victims(need, &tenants, self.min_residency) {
            let Some(owner) = controllers.iter().find(|c| c.name() == victim.deployment) else {
                continue;
            };
            if !owner.evict(victim.index, deployment) {
                continue; // it changed since (a request took it, or it stopped)
            }
            self.allocator
                .reserve(deployment, victim.gpus as usize, now);
            let id = format!("{}-{}", victim.deployment, victim.index);
            tracing::info!(deployment = %victim.deployment, replica = %id, for_deployment = deployment, gpus = victim.gpus, idle_s = victim.idle_for.as_secs(), "replica evicted: its GPUs go to another deployment");
            owner.events().emit_for(
                &victim.deployment,
                deployment,
                EventKind::ReplicaEvicted,
                "autoscaler",
                format!(
                    "{id} evicted: its {} GPU(s) go to deployment {deployment} (idle {:.0} s, least recently used)",
                    victim.gpus,
                    victim.idle_for.as_secs_f64()
                ),
            );
        }
    }
}
