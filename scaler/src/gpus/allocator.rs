//! Which GPU ids are free and who holds the others: one allocator per deployment for its own
//! `gpus` list, or one for the whole box (`[gpus] devices`) shared by every deployment. GPUs freed
//! by an eviction are reserved for the deployment they were freed for, so another one waiting
//! cannot take them first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long GPUs freed for a deployment stay reserved for it (its replica launches within a
/// retry or two; past this they go to whoever asks).
const RESERVATION: Duration = Duration::from_secs(60);

/// Not enough GPUs for one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short {
    /// GPUs one replica needs.
    pub needed: usize,
    /// GPUs this deployment could take now.
    pub free: usize,
}

/// GPUs freed (or being freed) for `deployment`, held for it until `until`.
#[derive(Debug, Clone)]
struct Reservation {
    deployment: String,
    gpus: usize,
    until: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Free ids, in the configured order (the lowest are handed out first).
    free: Vec<String>,
    /// Ids by the replica holding them, with its deployment.
    held: HashMap<String, (String, Vec<String>)>,
    reservations: Vec<Reservation>,
}

/// A pool of GPU ids handed out to replicas (off the request path: launches and exits only).
#[derive(Debug)]
pub struct GpuAllocator {
    devices: Vec<String>,
    state: Mutex<State>,
}

impl GpuAllocator {
    /// A pool of these GPU ids, all free.
    pub fn new(devices: Vec<String>) -> Self {
        GpuAllocator {
            state: Mutex::new(State {
                free: devices.clone(),
                ..State::default()
            }),
            devices,
        }
    }

    /// Every GPU id of the pool.
    pub fn devices(&self) -> &[String] {
        &self.devices
    }

    /// Takes `want` GPUs for replica `replica` of `deployment`, or says how many it could take.
    pub fn take(
        &self,
        deployment: &str,
        replica: &str,
        want: usize,
        now: Instant,
    ) -> Result<Vec<String>, Short> {
        let Ok(mut state) = self.state.lock() else {
            return Err(Short {
                needed: want,
                free: 0,
            });
        };
        state.reservations.retain(|r| r.until > now && r.gpus > 0);
        let free = available(&state, deployment);
        if free < want {
            return Err(Short { needed: want, free });
        }
        let mut taken = Vec::with_capacity(want);
        for _ in 0..want {
            let id = state.free.remove(0);
            taken.push(id);
        }
        let mut left = want;
        for r in state.reservations.iter_mut() {
            if r.deployment == deployment && left > 0 {
                let used = r.gpus.min(left);
                r.gpus -= used;
                left -= used;
            }
        }
        state
            .held
            .insert(replica.to_string(), (deployment.to_string(), taken.clone()));
        Ok(taken)
    }

    /// Replica `replica` ended: its GPUs are free again (in the configured order).
    pub fn release(&self, replica: &str) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Some((_, ids)) = state.held.remove(replica) {
            state.free.extend(ids);
            let order = &self.devices;
            state
                .free
                .sort_by_key(|id| order.iter().position(|d| d == id).unwrap_or(usize::MAX));
        }
    }

    /// GPUs `deployment` could take now (free, less what is reserved for others).
    pub fn free_for(&self, deployment: &str, now: Instant) -> usize {
        self.state.lock().map_or(0, |mut state| {
            state.reservations.retain(|r| r.until > now && r.gpus > 0);
            available(&state, deployment)
        })
    }

    /// GPUs reserved now for deployments other than `deployment`.
    pub fn reserved_for_others(&self, deployment: &str, now: Instant) -> usize {
        self.state.lock().map_or(0, |state| {
            state
                .reservations
                .iter()
                .filter(|r| r.deployment != deployment && r.until > now)
                .map(|r| r.gpus)
                .sum()
        })
    }

    /// Holds `gpus` GPUs, once freed, for `deployment` (an eviction made for it).
    pub fn reserve(&self, deployment: &str, gpus: usize, now: Instant) {
        if let Ok(mut state) = self.state.lock() {
            state.reservations.push(Reservation {
                deployment: deployment.to_string(),
                gpus,
                until: now + RESERVATION,
            });
        }
    }

    /// The GPU ids replica `replica` holds (empty when none).
    pub fn held_by(&self, replica: &str) -> Vec<String> {
        self.state
            .lock()
            .ok()
            .and_then(|state| state.held.get(replica).map(|(_, ids)| ids.clone()))
            .unwrap_or_default()
    }

    /// Who holds which GPUs: (replica, deployment, ids), sorted by replica.
    pub fn holders(&self) -> Vec<(String, String, Vec<String>)> {
        let mut out: Vec<_> = self.state.lock().map_or_else(
            |_| Vec::new(),
            |state| {
                state
                    .held
                    .iter()
                    .map(|(r, (d, ids))| (r.clone(), d.clone(), ids.clone()))
                    .collect()
            },
        );
        out.sort();
        out
    }
}

/// Free GPUs less those reserved for other deployments.
fn available(state: &State, deployment: &str) -> usize {
    let reserved: usize = state
        .reservations
        .iter()
        .filter(|r| r.deployment != deployment)
        .map(|r| r.gpus)
        .sum();
    state.free.len().saturating_sub(reserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_are_handed_out_in_order_and_come_back_on_release() {
        let pool = GpuAllocator::new(vec!["0".into(), "1".into(), "2".into()]);
        let now = Instant::now();
        assert_eq!(pool.take("a", "a-0", 2, now).unwrap(), ["0", "1"]);
        assert_eq!(
            pool.take("b", "b-0", 2, now),
            Err(Short { needed: 2, free: 1 })
        );
        pool.release("a-0");
        assert_eq!(pool.take("b", "b-0", 2, now).unwrap(), ["0", "1"]);
        assert_eq!(pool.holders()[0].1, "b");
    }

    #[test]
    fn gpus_freed_for_a_deployment_are_held_for_it() {
        let pool = GpuAllocator::new(vec!["0".into()]);
        let now = Instant::now();
        pool.take("a", "a-0", 1, now).unwrap();
        pool.reserve("b", 1, now);
        pool.release("a-0");
        assert_eq!(
            pool.take("a", "a-1", 1, now),
            Err(Short { needed: 1, free: 0 })
        );
        assert_eq!(pool.reserved_for_others("a", now), 1);
        assert_eq!(pool.take("b", "b-0", 1, now).unwrap(), ["0"]);
        pool.release("b-0");
        // Used: the reservation is gone.
        assert_eq!(pool.free_for("a", now), 1);
    }

    #[test]
    fn a_reservation_expires() {
        let pool = GpuAllocator::new(vec!["0".into()]);
        let now = Instant::now();
        pool.reserve("b", 1, now);
        assert_eq!(pool.free_for("a", now), 0);
        assert_eq!(pool.free_for("a", now + RESERVATION), 1);
    }
}
