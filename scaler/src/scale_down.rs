//! Which replicas go when the policy asks for fewer: a pure choice, so it is tested on its own.
//!
//! Starting replicas go first, newest first (they serve nobody yet and the newest is furthest
//! from ready); then ready replicas with the fewest requests in flight (least work to drain),
//! newest first among equals (the oldest keep their warm caches).

use crate::replica::ReplicaState;

/// What the choice needs to know of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Lifecycle state; only starting and ready replicas are candidates.
    pub state: ReplicaState,
    /// Requests in flight on it.
    pub in_flight: u32,
    /// Launch order (higher = newer).
    pub order: u64,
}

/// Indices into `replicas` of the `count` replicas to drain and stop.
pub fn choose_replicas_to_stop(replicas: &[Candidate], count: usize) -> Vec<usize> {
    let mut ranked: Vec<usize> = (0..replicas.len())
        .filter(|&i| {
            matches!(
                replicas[i].state,
                ReplicaState::Starting | ReplicaState::Ready
            )
        })
        .collect();
    ranked.sort_by_key(|&i| {
        let r = &replicas[i];
        let ready = r.state == ReplicaState::Ready;
        (ready, r.in_flight, std::cmp::Reverse(r.order))
    });
    ranked.truncate(count);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReplicaState::*;

    fn c(state: ReplicaState, in_flight: u32, order: u64) -> Candidate {
        Candidate {
            state,
            in_flight,
            order,
        }
    }

    #[test]
    fn starting_newest_first_then_least_busy_ready() {
        let replicas = [
            c(Ready, 3, 0),
            c(Starting, 0, 1),
            c(Ready, 1, 2),
            c(Draining, 0, 3),
            c(Starting, 0, 4),
            c(Ready, 1, 5),
        ];
        assert_eq!(choose_replicas_to_stop(&replicas, 1), vec![4]);
        assert_eq!(choose_replicas_to_stop(&replicas, 3), vec![4, 1, 5]);
        assert_eq!(
            choose_replicas_to_stop(&replicas, 10),
            vec![4, 1, 5, 2, 0],
            "draining replicas are never chosen again"
        );
    }
}
