//! What one deployment measured under one policy: waits, time to first token, outcomes, cold
//! starts, over-scale and replica-seconds — everything the report is made of.

use crate::stats::Samples;
use infergate_scaler::lifecycle::accounting::ReplicaSeconds;

/// What one deployment measured under one policy.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Queue wait of every request served by a replica or the fallback, ms.
    pub wait: Samples,
    /// Time to first token, ms.
    pub ttft: Samples,
    /// Requests answered by a replica or the fallback.
    pub served: u64,
    /// Requests that waited longer than `queue.max_wait`.
    pub timed_out: u64,
    /// Requests refused because the queue was full.
    pub refused: u64,
    /// Replicas started (each one a cold start).
    pub cold_starts: u64,
    /// Sleeping replicas woken (`hibernation.mode = "sleep"`): each one a wake, not a cold start.
    pub wake_ups: u64,
    /// Replicas that stopped (or were still up at the end) without serving a request.
    pub over_scale: u64,
    /// Requests answered by the fallback.
    pub fallback: u64,
    /// Dollars paid to the fallback.
    pub fallback_cost: f64,
    /// Most replicas (starting + ready) at once.
    pub peak_replicas: u32,
    /// Replica-seconds by state.
    pub replica_seconds: ReplicaSeconds,
    /// Changes of the policy's desired replicas: (seconds, desired), when asked for.
    pub desired_timeline: Option<Vec<(f64, u32)>>,
    /// GPUs per replica (for GPU-seconds).
    pub gpus_per_replica: u32,
    /// Dollars per GPU-hour.
    pub gpu_hour_price: f64,
    /// Requests with a prompt prefix that reached a replica (looked up in its prefix cache).
    pub prefix_queries: u64,
    /// Of those, the ones whose replica held their prefix.
    pub prefix_hits: u64,
}
