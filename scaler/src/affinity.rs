//! Key-affine replica choice for `routing = "prefix"` and `"session"`: consistent hashing with
//! bounded loads (CHWBL, as KubeAI's PrefixHash and the Vimeo paper do), in its rendezvous form —
//! each replica's place in a key's order is a hash of (key, replica id), so no ring has to be kept
//! and rebuilt: adding or removing a replica moves only the keys that must move. A key goes to the
//! first replica of its order unless that one is above `load_factor` × the mean in-flight (or
//! full); then to the next one.

use crate::replica::Replica;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Which policy picked a request's replica (`x-infergate-route-reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteReason {
    /// Power of two choices on requests in flight.
    LeastLoaded,
    /// The replica its prompt prefix maps to.
    Prefix,
    /// The replica its session maps to.
    Session,
    /// Its key's replica was above the load bound (or full): the next one of its order, or the
    /// least loaded.
    Overflow,
}

impl RouteReason {
    /// The header value.
    pub fn name(self) -> &'static str {
        match self {
            RouteReason::LeastLoaded => "least_loaded",
            RouteReason::Prefix => "prefix",
            RouteReason::Session => "session",
            RouteReason::Overflow => "overflow",
        }
    }
}

/// A request's routing key and how strictly it is bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affinity {
    /// The hash of its prefix or session.
    pub key: u64,
    /// `Prefix` or `Session`: what a hit is reported as.
    pub reason: RouteReason,
    /// The load bound: × the mean in-flight.
    pub load_factor: f64,
}

/// A replica's place in `key`'s order (higher first).
pub fn score(key: u64, replica: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    replica.hash(&mut h);
    h.finish()
}

/// The most requests in flight a replica may hold and still take a key of its own: CHWBL's
/// ⌈factor × (in flight + 1) / replicas⌉.
pub fn load_bound(total_in_flight: u64, replicas: usize, factor: f64) -> u64 {
    let mean = (total_in_flight + 1) as f64 / replicas.max(1) as f64;
    (factor * mean).ceil().max(1.0) as u64
}

/// Picks the replica for `affinity` among `replicas`: `usable` says which may take a request
/// now (ready, a free slot). Returns it with why; `None` when none is usable.
pub fn choose<'a>(
    replicas: &'a [Arc<Replica>],
    affinity: &Affinity,
    usable: impl Fn(&Replica) -> bool,
) -> Option<(&'a Arc<Replica>, RouteReason)> {
    let (i, reason) = pick(
        replicas,
        affinity,
        |r| &r.id,
        |r| r.in_flight(),
        |r| r.in_rotation(),
        |r| usable(r),
    )?;
    Some((&replicas[i], reason))
}

/// The same choice over any replica type (the live pool's, the simulator's): each replica's
/// `id`, requests `in_flight`, whether it is `in_rotation` (counts for the mean) and `usable`.
/// Returns its index and why.
pub fn pick<T>(
    items: &[T],
    affinity: &Affinity,
    id: impl Fn(&T) -> &str,
    in_flight: impl Fn(&T) -> u32,
    in_rotation: impl Fn(&T) -> bool,
    usable: impl Fn(&T) -> bool,
) -> Option<(usize, RouteReason)> {
    let rotation = || items.iter().enumerate().filter(|(_, r)| in_rotation(r));
    let count = rotation().count();
    if count == 0 {
        return None;
    }
    let total: u64 = rotation().map(|(_, r)| u64::from(in_flight(r))).sum();
    let bound = load_bound(total, count, affinity.load_factor);
    let fits = |r: &T| usable(r) && u64::from(in_flight(r)) < bound;
    // The common case without allocating: the key's own replica.
    let (first, own) = rotation().max_by_key(|(_, r)| score(affinity.key, id(r)))?;
    if fits(own) {
        return Some((first, affinity.reason));
    }
    let mut order: Vec<(usize, &T)> = rotation().collect();
    order.sort_by_key(|(_, r)| std::cmp::Reverse(score(affinity.key, id(r))));
    if let Some((next, _)) = order.iter().skip(1).find(|(_, r)| fits(r)) {
        return Some((*next, RouteReason::Overflow));
    }
    order
        .into_iter()
        .filter(|(_, r)| usable(r))
        .min_by_key(|(_, r)| in_flight(r))
        .map(|(i, _)| (i, RouteReason::Overflow))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::ReplicaState;

    fn replicas(n: usize) -> Vec<Arc<Replica>> {
        (0..n)
            .map(|i| {
                let r = Arc::new(Replica::new(
                    format!("m-{i}"),
                    ([127, 0, 0, 1], 9000 + i as u16).into(),
                ));
                r.set_state(ReplicaState::Ready);
                r
            })
            .collect()
    }

    fn affinity(key: u64) -> Affinity {
        Affinity {
            key,
            reason: RouteReason::Prefix,
            load_factor: 1.25,
        }
    }

    fn owner(rs: &[Arc<Replica>], key: u64) -> String {
        choose(rs, &affinity(key), |_| true).unwrap().0.id.clone()
    }

    #[test]
    fn a_key_always_goes_to_the_same_replica_and_keys_spread() {
        let rs = replicas(4);
        let mut per = std::collections::HashMap::new();
        for key in 0..4000u64 {
            let a = owner(&rs, key);
            assert_eq!(a, owner(&rs, key));
            *per.entry(a).or_insert(0) += 1;
        }
        assert_eq!(per.len(), 4);
        assert!(per.values().all(|&n| n > 700), "{per:?}");
    }

    #[test]
    fn adding_or_removing_a_replica_moves_only_the_keys_that_must_move() {
        // Property over many keys and every removal: a key moves only if its replica left, and
        // on an addition only to the new replica.
        let four = replicas(4);
        for gone in 0..4 {
            let three: Vec<_> = four
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != gone)
                .map(|(_, r)| r.clone())
                .collect();
            for key in 0..2000u64 {
                let before = owner(&four, key);
                let after = owner(&three, key);
                if before != four[gone].id {
                    assert_eq!(before, after, "key {key} moved though its replica stayed");
                }
            }
        }
        let five = replicas(5);
        let mut moved = 0;
        for key in 0..2000u64 {
            let (before, after) = (owner(&four, key), owner(&five, key));
            if before != after {
                assert_eq!(
                    after, "m-4",
                    "a key moved between replicas that both stayed"
                );
                moved += 1;
            }
        }
        assert!(
            (250..=550).contains(&moved),
            "about a fifth of the keys move to the new replica: {moved}"
        );
    }

    #[test]
    fn a_busy_replica_passes_its_keys_to_the_next_one_of_their_order() {
        let rs = replicas(3);
        let key = 42;
        let own = choose(&rs, &affinity(key), |_| true).unwrap().0.clone();
        // 6 in flight on it, none elsewhere: bound = ceil(1.25 × 7 / 3) = 3.
        for _ in 0..6 {
            assert!(own.try_take(0));
        }
        let (next, why) = choose(&rs, &affinity(key), |_| true).unwrap();
        assert_ne!(next.id, own.id);
        assert_eq!(why, RouteReason::Overflow);
        // Full (no free slot) also overflows, whatever the load.
        let idle = replicas(3);
        let own = owner(&idle, key);
        let (next, why) = choose(&idle, &affinity(key), |r| r.id != own).unwrap();
        assert_ne!(next.id, own);
        assert_eq!(why, RouteReason::Overflow);
    }

    #[test]
    fn the_load_bound_is_chwbls() {
        assert_eq!(load_bound(0, 3, 1.25), 1);
        assert_eq!(load_bound(6, 3, 1.25), 3);
        assert_eq!(load_bound(99, 4, 1.25), 32);
    }
}
