//! Replica management for infergate: the shared replica pool the data plane draws from, the scaling
//! policy (a pure function), the lifecycle controller that actuates it, and the backends that start
//! and stop replicas.
//!
//! Nothing here speaks HTTP to clients; the proxy crate owns the data plane.

pub mod affinity;
pub mod backend;
pub mod cluster;
pub mod controller;
pub mod ejection;
pub mod events;
pub mod fair_line;
pub mod gpus;
pub mod health;
pub mod hibernation;
pub mod lifecycle;
pub mod load;
pub mod policy;
pub mod pool;
mod pool_queue;
pub mod replica;
pub mod scale_down;
pub mod schedule;
pub mod scrape;

pub use controller::{Controller, ControllerHandle};
pub use events::{EventKind, EventLog, EventSink, Numbers};
pub use hibernation::Serving;
pub use pool::{AcquireError, Acquired, ExternalDemand, ReplicaPool, Slot, Unavailable};
pub use replica::{Replica, ReplicaState};
