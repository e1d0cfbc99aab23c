//! What the backend knows of the workload's pods, without I/O: their endpoints as the
//! EndpointSlices say, which replica each pod is, and how many replicas infergate wants.
//!
//! A replica is asked for first (the scale goes up) and gets a pod later: the oldest replica
//! still waiting takes the next ready endpoint no replica has. A terminating endpoint gets no
//! replica; a claimed pod whose endpoint turns terminating or disappears has ended.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

/// One pod's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The pod's name (`targetRef.name`), or the address when the slice names none.
    pub pod: String,
    /// Pod IP and the model server's port.
    pub addr: SocketAddr,
    /// `conditions.ready` (absent means ready, as the API says).
    pub ready: bool,
    /// `conditions.terminating`.
    pub terminating: bool,
}

/// The backend's view of the workload.
#[derive(Debug, Default)]
pub struct PodState {
    /// Endpoints by EndpointSlice name (a Service may have several slices).
    slices: BTreeMap<String, Vec<Endpoint>>,
    /// Replica index by the pod it is.
    claims: HashMap<String, u64>,
    /// Replicas asked for that have no pod yet, oldest first.
    waiting: VecDeque<u64>,
    /// The replica count infergate last asked the scale subresource for.
    pub desired: u32,
}

/// How a replica's pod stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodOf {
    /// No pod yet.
    Waiting,
    /// Its pod, ready at this address.
    Ready(String, SocketAddr),
    /// Its pod ended (deleted, terminating, or gone from the slices).
    Gone(String),
    /// Not a replica of this backend (stopped).
    Unknown,
}

impl PodState {
    /// A replica asked for: it takes a ready pod no replica has, if there is one (a pod that
    /// outlived its replica, or that the cluster's leader asked for), else waits for one; the
    /// scale goes up by one.
    pub fn add_replica(&mut self, index: u64) -> u32 {
        self.waiting.push_back(index);
        self.desired += 1;
        self.assign();
        self.desired
    }

    /// A replica stopped: its pod (if it had one) is returned, and the scale goes down by one.
    pub fn remove_replica(&mut self, index: u64) -> (Option<String>, u32) {
        self.waiting.retain(|i| *i != index);
        let pod = self
            .claims
            .iter()
            .find(|(_, i)| **i == index)
            .map(|(p, _)| p.clone());
        if let Some(p) = &pod {
            self.claims.remove(p);
        }
        self.desired = self.desired.saturating_sub(1);
        (pod, self.desired)
    }

    /// A scale request failed: the count goes back.
    pub fn undo_add(&mut self, index: u64) {
        self.waiting.retain(|i| *i != index);
        self.desired = self.desired.saturating_sub(1);
    }

    /// One slice as the watch last saw it.
    pub fn apply_slice(&mut self, name: &str, endpoints: Vec<Endpoint>) {
        self.slices.insert(name.to_string(), endpoints);
        self.assign();
    }

    /// A slice deleted.
    pub fn delete_slice(&mut self, name: &str) {
        self.slices.remove(name);
    }

    /// Every slice at once (a watch's initial list, also after a restart): replaces what was
    /// known only now that the new list is whole, so a restart never empties the pool.
    pub fn replace_slices(&mut self, slices: BTreeMap<String, Vec<Endpoint>>) {
        self.slices = slices;
        self.assign();
    }

    /// Every endpoint known now.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.slices.values().flatten()
    }

    /// Gives the waiting replicas, oldest first, the ready endpoints no replica has.
    fn assign(&mut self) {
        let free: Vec<String> = self
            .endpoints()
            .filter(|e| e.ready && !e.terminating && !self.claims.contains_key(&e.pod))
            .map(|e| e.pod.clone())
            .collect();
        for pod in free {
            let Some(index) = self.waiting.pop_front() else {
                return;
            };
            self.claims.insert(pod, index);
        }
    }

    /// Whether a replica is still waiting for a pod.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Where replica `index`'s pod stands.
    pub fn pod_of(&self, index: u64) -> PodOf {
        if self.waiting.contains(&index) {
            return PodOf::Waiting;
        }
        let Some(pod) = self
            .claims
            .iter()
            .find(|(_, i)| **i == index)
            .map(|(p, _)| p)
        else {
            return PodOf::Unknown;
        };
        // A pod may be listed in more than one slice for a moment (moves between slices).
        match self.endpoints().find(|e| &e.pod == pod) {
            Some(e) if !e.terminating => PodOf::Ready(pod.clone(), e.addr),
            _ => PodOf::Gone(pod.clone()),
        }
    }

    /// Ready endpoints and replicas still waiting, for a starting replica's failure message.
    pub fn summary(&self) -> String {
        let ready = self
            .endpoints()
            .filter(|e| e.ready && !e.terminating)
            .count();
        format!(
            "asked for {} replica(s); {ready} ready endpoint(s); {} replica(s) waiting for a pod",
            self.desired,
            self.waiting.len()
        )
    }
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;
