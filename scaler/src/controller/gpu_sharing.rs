//! This deployment as a tenant of the box's shared GPU pool (`crate::gpus`): what its replicas
//! look like to the eviction rules, and carrying out an eviction decided for another deployment.

use super::*;
use crate::gpus::eviction::{Resident, Tenant};

impl Controller {
    /// The deployment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The GPU ids replica `id` holds, for status.
    pub fn replica_gpus(&self, id: &str) -> Vec<String> {
        self.backend.gpus_of(id)
    }

    /// This deployment's replicas as the eviction rules see them at `now`.
    pub(crate) fn gpu_tenant(&self, now: Instant) -> Tenant {
        let at = self.at(now);
        let min_replicas = self
            .core
            .lock()
            .map_or(u32::MAX, |core| core.min_replicas_in_force(at));
        let replicas = self
            .pool
            .replicas()
            .iter()
            .map(|r| Resident {
                index: r.order,
                state: r.state(),
                in_flight: r.in_flight(),
                resident_for: r.resident_for(now).unwrap_or_default(),
                idle_for: r.idle_for(now).unwrap_or_default(),
            })
            .collect();
        Tenant {
            deployment: self.name.clone(),
            min_replicas,
            gpus_per_replica: self.config.load().gpus_per_replica(),
            replicas,
        }
    }

    /// Evicts idle replica `index` to give its GPUs to deployment `to`: the core stops counting
    /// it, and it drains and stops. False when it is no longer idle or no longer here.
    pub(crate) fn evict(self: &Arc<Self>, index: u64, to: &str) -> bool {
        let Some(replica) = self.replica_by_index(index) else {
            return false;
        };
        if replica.in_flight() > 0 {
            return false;
        }
        let at = self.at(Instant::now());
        if !self.core.lock().is_ok_and(|mut core| core.evict(index, at)) {
            return false;
        }
        self.clone()
            .begin_stop(replica, &format!("evicted: its GPUs go to {to}"));
        true
    }
}
