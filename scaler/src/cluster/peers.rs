//! The other instances' load, without I/O: the last reading of each, summed per deployment for
//! the leader's policy.
//!
//! As Knative's autoscaler scrapes its activators: an instance that cannot be read counts as its
//! last reading for one autoscaling window (so a scrape that fails never looks like load gone,
//! and no scale-down happens on partial data), then is dropped. Arrivals are per-instance
//! counters since each started; their sum is kept monotonic by adding only increases.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// One instance's counters for one deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentLoad {
    /// Requests in flight on replicas.
    pub in_flight: u64,
    /// Requests waiting in its queue.
    pub waiting: u64,
    /// Requests its fallback answers for lack of a replica.
    pub external: u64,
    /// Requests that arrived since it started.
    pub arrivals: u64,
}

/// One instance's last reading.
#[derive(Debug, Clone)]
struct Reading {
    at: Duration,
    loads: HashMap<String, DeploymentLoad>,
}

/// What the other instances last reported.
#[derive(Debug, Default)]
pub struct PeerBook {
    readings: HashMap<String, Reading>,
    /// Per (instance, deployment): the arrivals counter last read.
    arrivals_seen: HashMap<(String, String), u64>,
    /// Per deployment: the increases of every peer's arrivals, added up.
    arrivals_total: HashMap<String, u64>,
}

impl PeerBook {
    /// A reading of instance `peer` at `now`.
    pub fn record(&mut self, peer: &str, now: Duration, loads: HashMap<String, DeploymentLoad>) {
        for (deployment, load) in &loads {
            let key = (peer.to_string(), deployment.clone());
            let before = self.arrivals_seen.insert(key, load.arrivals);
            // A restarted peer starts again from 0: everything it counts since is new.
            let new = match before {
                Some(b) if load.arrivals >= b => load.arrivals - b,
                Some(_) | None => load.arrivals,
            };
            *self.arrivals_total.entry(deployment.clone()).or_default() += new;
        }
        self.readings
            .insert(peer.to_string(), Reading { at: now, loads });
    }

    /// The other instances' load on `deployment` at `now`: each one's last reading if it is no
    /// older than `keep` (one autoscaling window); `arrivals` is the running total.
    pub fn sum(&self, deployment: &str, now: Duration, keep: Duration) -> DeploymentLoad {
        let mut total = DeploymentLoad {
            arrivals: self.arrivals_total.get(deployment).copied().unwrap_or(0),
            ..DeploymentLoad::default()
        };
        for r in self.readings.values() {
            if now.saturating_sub(r.at) > keep {
                continue;
            }
            if let Some(l) = r.loads.get(deployment) {
                total.in_flight += l.in_flight;
                total.waiting += l.waiting;
                total.external += l.external;
            }
        }
        total
    }

    /// Instances with a reading no older than `keep`, and how old it is.
    pub fn peers(&self, now: Duration, keep: Duration) -> Vec<(String, Duration)> {
        let mut out: Vec<(String, Duration)> = self
            .readings
            .iter()
            .map(|(id, r)| (id.clone(), now.saturating_sub(r.at)))
            .filter(|(_, age)| *age <= keep)
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn load(in_flight: u64, waiting: u64, arrivals: u64) -> HashMap<String, DeploymentLoad> {
        HashMap::from([(
            "chat".to_string(),
            DeploymentLoad {
                in_flight,
                waiting,
                external: 0,
                arrivals,
            },
        )])
    }

    #[test]
    fn loads_of_every_instance_are_summed() {
        let mut book = PeerBook::default();
        book.record("b", S, load(3, 1, 10));
        book.record("c", S, load(2, 0, 5));
        let sum = book.sum("chat", 2 * S, 10 * S);
        assert_eq!((sum.in_flight, sum.waiting, sum.arrivals), (5, 1, 15));
        assert_eq!(book.sum("other", 2 * S, 10 * S), DeploymentLoad::default());
    }

    #[test]
    fn an_unreadable_instance_counts_as_its_last_reading_for_one_window_then_is_dropped() {
        let mut book = PeerBook::default();
        book.record("b", S, load(4, 0, 1));
        assert_eq!(book.sum("chat", 11 * S, 10 * S).in_flight, 4);
        assert_eq!(book.sum("chat", 12 * S, 10 * S).in_flight, 0);
        assert!(book.peers(12 * S, 10 * S).is_empty());
    }

    #[test]
    fn the_arrivals_total_only_grows_even_when_a_peer_restarts() {
        let mut book = PeerBook::default();
        book.record("b", S, load(0, 0, 10));
        book.record("b", 2 * S, load(0, 0, 12));
        book.record("b", 3 * S, load(0, 0, 3)); // restarted: 3 new since
        assert_eq!(book.sum("chat", 3 * S, 10 * S).arrivals, 15);
    }
}

/// What `GET /admin/v1/cluster/load` answers: one instance's counters for each of its
/// Kubernetes-backed deployments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadReport {
    /// The instance's identity in the Lease.
    pub instance: String,
    /// Whether it leads.
    pub leader: bool,
    /// Its counters by deployment.
    pub deployments: HashMap<String, DeploymentLoad>,
}
