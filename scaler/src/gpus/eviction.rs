//! Which replicas to evict when a replica needs GPUs of the shared pool and too few are free: a
//! pure function of what every deployment sharing the pool looks like now, so it is tested (and
//! could be replayed) without processes or a clock.
//!
//! The rules (issue 16): only another deployment's replicas; only idle ones (ready with nothing in
//! flight, or asleep); never below that deployment's `min_replicas` (the scheduled window's, if
//! one holds); never one resident for less than `min_residency`, so two models taking turns on the
//! same GPUs do not thrash; the least recently used first; and none at all when evicting every
//! candidate would still not free enough, or when GPUs already being freed will do.

use crate::replica::ReplicaState;
use std::time::Duration;

/// One replica of a deployment sharing the pool, as the shell sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Resident {
    /// Launch number within its deployment.
    pub index: u64,
    /// Its state.
    pub state: ReplicaState,
    /// Requests in flight on it.
    pub in_flight: u32,
    /// Time since it became ready (zero while starting).
    pub resident_for: Duration,
    /// Time since it last finished a request (since ready when it has served none).
    pub idle_for: Duration,
}

/// A deployment sharing the pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// Its name.
    pub deployment: String,
    /// Replicas it keeps whatever happens (its `min_replicas` in force).
    pub min_replicas: u32,
    /// GPUs each of its replicas holds.
    pub gpus_per_replica: u32,
    /// Its replicas that hold GPUs.
    pub replicas: Vec<Resident>,
}

/// What the replica waiting for GPUs needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Need<'a> {
    /// The deployment whose replica waits.
    pub deployment: &'a str,
    /// GPUs one of its replicas needs.
    pub gpus: u32,
    /// GPUs it could take now.
    pub free: u32,
    /// GPUs being freed that are promised to other deployments.
    pub reserved_for_others: u32,
}

/// A replica to evict.
#[derive(Debug, Clone, PartialEq)]
pub struct Victim {
    /// Its deployment.
    pub deployment: String,
    /// Its launch number.
    pub index: u64,
    /// GPUs it frees.
    pub gpus: u32,
    /// How long it had been idle.
    pub idle_for: Duration,
}

/// The replicas to evict so that `need` can start, least recently used first; empty when none
/// need to go (enough is free or already being freed) or when not enough can go.
pub fn choose_victims(need: Need<'_>, tenants: &[Tenant], min_residency: Duration) -> Vec<Victim> {
    let freeing: u32 = tenants
        .iter()
        .map(|t| {
            t.replicas
                .iter()
                .filter(|r| r.state == ReplicaState::Draining)
                .count() as u32
                * t.gpus_per_replica
        })
        .sum();
    let coming = need.free + freeing.saturating_sub(need.reserved_for_others);
    let Some(mut shortfall) = need.gpus.checked_sub(coming).filter(|s| *s > 0) else {
        return Vec::new();
    };
    let mut eligible: Vec<(&Tenant, &Resident)> = Vec::new();
    for t in tenants.iter().filter(|t| t.deployment != need.deployment) {
        for r in &t.replicas {
            let idle = match r.state {
                ReplicaState::Ready => r.in_flight == 0,
                ReplicaState::Sleeping => true,
                _ => false,
            };
            if idle && r.resident_for >= min_residency {
                eligible.push((t, r));
            }
        }
    }
    // Least recently used first; ties in a fixed order (deployment, then oldest launch).
    eligible.sort_by(|(ta, a), (tb, b)| {
        b.idle_for
            .cmp(&a.idle_for)
            .then_with(|| ta.deployment.cmp(&tb.deployment))
            .then_with(|| a.index.cmp(&b.index))
    });
    let mut victims: Vec<Victim> = Vec::new();
    for (t, r) in eligible {
        let live = t
            .replicas
            .iter()
            .filter(|r| {
                matches!(
                    r.state,
                    ReplicaState::Ready | ReplicaState::Starting | ReplicaState::Sleeping
                )
            })
            .count() as u32;
        let taken = victims
            .iter()
            .filter(|v| v.deployment == t.deployment)
            .count() as u32;
        if live.saturating_sub(taken) <= t.min_replicas || t.gpus_per_replica == 0 {
            continue;
        }
        victims.push(Victim {
            deployment: t.deployment.clone(),
            index: r.index,
            gpus: t.gpus_per_replica,
            idle_for: r.idle_for,
        });
        shortfall = shortfall.saturating_sub(t.gpus_per_replica);
        if shortfall == 0 {
            return victims;
        }
    }
    // Evicting everything allowed would not free enough: evict nothing.
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn idle(index: u64, idle_secs: u64) -> Resident {
        Resident {
            index,
            state: ReplicaState::Ready,
            in_flight: 0,
            resident_for: Duration::from_secs(3600),
            idle_for: Duration::from_secs(idle_secs),
        }
    }

    fn tenant(name: &str, min: u32, replicas: Vec<Resident>) -> Tenant {
        Tenant {
            deployment: name.into(),
            min_replicas: min,
            gpus_per_replica: 1,
            replicas,
        }
    }

    fn need(free: u32) -> Need<'static> {
        Need {
            deployment: "b",
            gpus: 1,
            free,
            reserved_for_others: 0,
        }
    }

    fn chosen(victims: &[Victim]) -> Vec<(String, u64)> {
        victims
            .iter()
            .map(|v| (v.deployment.clone(), v.index))
            .collect()
    }

    #[test]
    fn the_least_recently_used_idle_replica_of_another_deployment_goes() {
        let tenants = [
            tenant("a", 0, vec![idle(0, 10), idle(1, 300)]),
            tenant("b", 0, vec![]),
        ];
        let v = choose_victims(need(0), &tenants, MINUTE);
        assert_eq!(chosen(&v), [("a".to_string(), 1)]);
        assert_eq!(v[0].idle_for, Duration::from_secs(300));
    }

    #[test]
    fn a_replica_with_requests_in_flight_is_never_evicted() {
        let mut busy = idle(0, 900);
        busy.in_flight = 1;
        let tenants = [tenant("a", 0, vec![busy, idle(1, 5)])];
        assert_eq!(
            chosen(&choose_victims(need(0), &tenants, MINUTE)),
            [("a".to_string(), 1)]
        );
        let mut busy_too = idle(1, 5);
        busy_too.in_flight = 2;
        let mut busy = idle(0, 900);
        busy.in_flight = 1;
        assert!(
            choose_victims(need(0), &[tenant("a", 0, vec![busy, busy_too])], MINUTE).is_empty()
        );
    }

    #[test]
    fn a_replica_younger_than_min_residency_is_never_evicted() {
        let mut young = idle(0, 50);
        young.resident_for = Duration::from_secs(50);
        assert!(choose_victims(need(0), &[tenant("a", 0, vec![young.clone()])], MINUTE).is_empty());
        young.resident_for = MINUTE;
        assert_eq!(
            choose_victims(need(0), &[tenant("a", 0, vec![young])], MINUTE).len(),
            1
        );
    }

    #[test]
    fn min_replicas_is_kept() {
        let tenants = [tenant("a", 1, vec![idle(0, 100), idle(1, 50)])];
        assert_eq!(
            chosen(&choose_victims(need(0), &tenants, MINUTE)),
            [("a".to_string(), 0)]
        );
        let two = Need { gpus: 2, ..need(0) };
        assert!(
            choose_victims(two, &tenants, MINUTE).is_empty(),
            "would go below min_replicas"
        );
    }

    #[test]
    fn nothing_goes_when_enough_is_free_or_already_being_freed() {
        let mut draining = idle(1, 0);
        draining.state = ReplicaState::Draining;
        let tenants = [tenant("a", 0, vec![idle(0, 100), draining])];
        assert!(choose_victims(need(1), &tenants, MINUTE).is_empty());
        assert!(choose_victims(need(0), &tenants, MINUTE).is_empty());
        // Unless what is being freed is promised to someone else.
        let promised = Need {
            reserved_for_others: 1,
            ..need(0)
        };
        assert_eq!(
            chosen(&choose_victims(promised, &tenants, MINUTE)),
            [("a".to_string(), 0)]
        );
    }

    #[test]
    fn the_requesting_deployment_never_evicts_its_own_replicas() {
        let tenants = [tenant("b", 0, vec![idle(0, 1000)])];
        assert!(choose_victims(need(0), &tenants, MINUTE).is_empty());
    }

    #[test]
    fn sleeping_replicas_are_idle_and_replicas_are_taken_until_enough_is_free() {
        let mut asleep = idle(0, 2000);
        asleep.state = ReplicaState::Sleeping;
        let tenants = [
            tenant("a", 0, vec![asleep, idle(1, 10)]),
            tenant("c", 0, vec![idle(0, 500)]),
        ];
        let two = Need { gpus: 2, ..need(0) };
        assert_eq!(
            chosen(&choose_victims(two, &tenants, MINUTE)),
            [("a".to_string(), 0), ("c".to_string(), 0)]
        );
    }
}
