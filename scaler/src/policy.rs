//! The scaling policy: a pure function of (settings, observed load, replica states). No clocks,
//! sockets or sleeps: time enters only through the observation (`idle_for`), so every rule can be
//! tested exactly and replayed by a simulator.
//!
//! This is the data-plane issue's minimal rule (start on demand, stop when idle, keep the floor);
//! the windowed Baseten-style policy replaces `decide` behind the same signature.

use crate::replica::ReplicaState;
use infergate_config::DeploymentConfig;
use std::time::Duration;

/// What the policy sees of one replica.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaView {
    /// Lifecycle state.
    pub state: ReplicaState,
    /// Requests in flight on it.
    pub in_flight: u32,
    /// How long it has had no request in flight.
    pub idle_for: Duration,
}

/// What the policy sees of a deployment at one instant.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Every replica the deployment has (any state).
    pub replicas: Vec<ReplicaView>,
    /// Requests held in the deployment queue.
    pub waiting: u64,
    /// Requests in flight on all replicas.
    pub in_flight: u64,
}

/// What to do now, and why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Replicas the deployment should have (starting + ready).
    pub desired: u32,
    /// How many new replicas to start.
    pub start: u32,
    /// Indices (into `Observation::replicas`) of replicas to drain and stop.
    pub stop: Vec<usize>,
    /// Short human-readable reason, for logs and events.
    pub reason: &'static str,
}

/// Decides how many replicas to start or stop.
pub fn decide(config: &DeploymentConfig, obs: &Observation) -> Decision {
    let max = config.effective_max_replicas();
    let floor = config.min_replicas.min(max);
    let active = obs
        .replicas
        .iter()
        .filter(|r| matches!(r.state, ReplicaState::Starting | ReplicaState::Ready))
        .count() as u32;
    let starting = obs
        .replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Starting)
        .count() as u32;
    let load = obs.waiting + obs.in_flight;

    let mut desired = active.max(floor);
    let mut reason = "steady";
    if active < floor {
        reason = "below min_replicas";
    }
    if load > 0 && active == 0 {
        desired = desired.max(1);
        reason = "first request at zero replicas";
    } else if obs.waiting > 0 && starting == 0 && active < max {
        desired = desired.max(active + 1);
        reason = "requests waiting and every replica busy";
    }
    desired = desired.min(max);

    let mut stop = Vec::new();
    if desired <= active && obs.waiting == 0 {
        let delay = config.scale_down_delay.get();
        let mut idle: Vec<(usize, Duration)> = obs
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.state == ReplicaState::Ready && r.in_flight == 0 && r.idle_for >= delay
            })
            .map(|(i, r)| (i, r.idle_for))
            .collect();
        idle.sort_by_key(|(_, idle_for)| std::cmp::Reverse(*idle_for));
        let removable = active.saturating_sub(floor) as usize;
        stop = idle.into_iter().take(removable).map(|(i, _)| i).collect();
        if !stop.is_empty() {
            desired = active - stop.len() as u32;
            reason = "idle for scale_down_delay";
        }
    }
    Decision {
        desired,
        start: desired.saturating_sub(active),
        stop,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infergate_config::Config;

    fn config(extra: &str) -> DeploymentConfig {
        let text = format!(
            "[deployments.d]\n{extra}\n[deployments.d.backend]\ntype = \"process\"\ncommand = [\"x\"]\n"
        );
        Config::from_toml_str(&text).unwrap().deployments["d"].clone()
    }

    fn view(state: ReplicaState, in_flight: u32, idle_secs: u64) -> ReplicaView {
        ReplicaView {
            state,
            in_flight,
            idle_for: Duration::from_secs(idle_secs),
        }
    }

    #[test]
    fn first_request_at_zero_starts_one_replica() {
        let d = decide(
            &config(""),
            &Observation {
                waiting: 20,
                ..Default::default()
            },
        );
        assert_eq!((d.desired, d.start), (1, 1));
    }

    #[test]
    fn no_load_at_zero_starts_nothing() {
        let d = decide(&config(""), &Observation::default());
        assert_eq!((d.desired, d.start), (0, 0));
    }

    #[test]
    fn min_replicas_are_kept_up() {
        let d = decide(
            &config("min_replicas = 2\nmax_replicas = 3"),
            &Observation::default(),
        );
        assert_eq!((d.desired, d.start), (2, 2));
    }

    #[test]
    fn waiting_during_cold_start_does_not_start_more() {
        let obs = Observation {
            replicas: vec![view(ReplicaState::Starting, 0, 0)],
            waiting: 50,
            in_flight: 0,
        };
        let d = decide(&config("max_replicas = 4"), &obs);
        assert_eq!(d.start, 0);
    }

    #[test]
    fn idle_replica_stops_only_after_scale_down_delay_and_not_below_min() {
        let c = config("scale_down_delay = \"60s\"\nmin_replicas = 1\nmax_replicas = 3");
        let mut obs = Observation {
            replicas: vec![
                view(ReplicaState::Ready, 0, 59),
                view(ReplicaState::Ready, 0, 120),
            ],
            ..Default::default()
        };
        assert_eq!(decide(&c, &obs).stop, vec![1]);
        obs.replicas[0].idle_for = Duration::from_secs(61);
        // Both idle long enough, but min_replicas = 1 keeps one.
        assert_eq!(decide(&c, &obs).stop, vec![1]);
        obs.replicas[1].idle_for = Duration::from_secs(10);
        assert_eq!(decide(&c, &obs).stop, vec![0]);
    }

    #[test]
    fn busy_replicas_and_waiting_requests_block_scale_down() {
        let c = config("scale_down_delay = \"0s\"");
        let obs = Observation {
            replicas: vec![view(ReplicaState::Ready, 1, 0)],
            in_flight: 1,
            ..Default::default()
        };
        assert!(decide(&c, &obs).stop.is_empty());
        let obs = Observation {
            replicas: vec![view(ReplicaState::Ready, 0, 100)],
            waiting: 1,
            ..Default::default()
        };
        assert!(decide(&c, &obs).stop.is_empty());
    }

    #[test]
    fn never_more_than_max() {
        let obs = Observation {
            replicas: vec![view(ReplicaState::Ready, 5, 0)],
            waiting: 100,
            in_flight: 5,
        };
        let d = decide(&config("max_replicas = 1"), &obs);
        assert_eq!((d.desired, d.start), (1, 0));
    }
}
