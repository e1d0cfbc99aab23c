//! What goes in and out of the lifecycle core: the commands a caller carries out, the outcome
//! of a decision round, a counted failure, and what is observed at a round.

use crate::events::{EventKind, Numbers};
use crate::hibernation::Serving;
use crate::policy::ReplicaCounts;
use crate::pool::Unavailable;
use std::time::Duration;

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Launch replica number `index` (check [`LifecycleCore::wants_launch`] just before).
    Start {
        /// Launch number within the deployment; the replica's id is `<deployment>-<index>`.
        index: u64,
    },
    /// Send replica `index` no new requests; stop it once idle (or after the drain timeout) and
    /// report [`LifecycleCore::replica_stopped`].
    Drain {
        /// Which replica.
        index: u64,
    },
    /// Replica `index` missed its startup deadline: stop it (the failure is already counted).
    Fail {
        /// Which replica.
        index: u64,
        /// Why, for its `replica_failed` event.
        why: String,
        /// The back-off that follows.
        failure: Failure,
    },
    /// Put replica `index` to sleep (`POST /sleep?level=1` once it is idle); it gets no new
    /// requests. Report [`LifecycleCore::sleep_refused`] if the server has no sleep mode.
    Sleep {
        /// Which replica.
        index: u64,
    },
    /// Wake sleeping replica `index` (`POST /wake_up`, then its health check); report
    /// [`LifecycleCore::replica_ready`].
    WakeUp {
        /// Which replica.
        index: u64,
    },
    /// The serving state changed (the data plane reads it on every request).
    Serving {
        /// Previous state.
        from: Serving,
        /// New state.
        to: Serving,
        /// Why.
        reason: &'static str,
    },
    /// Nothing can answer: waiting requests get 503 at once.
    Unavailable(Unavailable),
    /// Requests may wait again; `ready` names the replica that made it so, if one did.
    Available {
        /// The replica that became ready, or `None` when no replica is wanted any more.
        ready: Option<u64>,
    },
    /// Record an event in the deployment's log.
    Event {
        /// What happened.
        kind: EventKind,
        /// Who did it (`autoscaler`, `api`, `backend`).
        component: &'static str,
        /// One line for people.
        message: String,
        /// The numbers behind it.
        numbers: Numbers,
    },
}

/// A counted failure and the back-off it set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Failures in a row, this one included.
    pub consecutive: u32,
    /// No start before this much time has passed.
    pub backoff: Duration,
}

/// The outcome of one decision round, for logs, events and the admin API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decided {
    /// Replicas the deployment should have.
    pub desired: u32,
    /// The desired count of the round before.
    pub previous: u32,
    /// Why (the policy's reason, or the serving state holding it at zero).
    pub reason: &'static str,
    /// Load averaged over the window.
    pub average_load: f64,
    /// Load at this instant.
    pub current_load: f64,
    /// Replicas starting and ready when it was taken.
    pub replicas: ReplicaCounts,
    /// Whether starts are held by a back-off.
    pub in_backoff: bool,
}

/// What the core observes at a decision round.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// The deployment's load in its metric (`crate::load::measure`).
    pub load: f64,
    /// Requests that arrived for the deployment since start (any route).
    pub arrivals: u64,
    /// Another instance leads (`[cluster] mode = "kubernetes"`): the replica count it set, which
    /// this one follows instead of its own policy (still run, so its memory is current the
    /// moment this instance takes over).
    pub follow: Option<u32>,
}
