//! The JSON objects the fake API server hands out, and the EndpointSlice change log its
//! watches replay.

use super::Cluster;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// One change to an EndpointSlice (or the signal that ends every watch).
#[derive(Clone, Debug)]
pub struct Change {
    pub rv: u64,
    /// ADDED, MODIFIED, DELETED; EXPIRE ends every watch.
    pub kind: &'static str,
    pub service: String,
    pub object: Value,
}

impl Change {
    /// Ends every open watch.
    pub fn expire() -> Change {
        Change {
            rv: 0,
            kind: "EXPIRE",
            service: String::new(),
            object: Value::Null,
        }
    }

    /// The line a watch sends for it.
    pub fn line(&self) -> String {
        format!("{}\n", json!({ "type": self.kind, "object": self.object }))
    }
}

/// One endpoint of a slice.
pub struct EndpointView<'a> {
    pub pod: &'a str,
    pub addr: SocketAddr,
    pub ready: bool,
    pub terminating: bool,
}

/// An EndpointSlice of Service `service` (its resourceVersion is set when published).
pub fn endpoint_slice(
    service: &str,
    name: &str,
    endpoints: &[EndpointView],
    port_name: &str,
    port: u16,
) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|e| {
            json!({
                "addresses": [e.addr.ip().to_string()],
                "conditions": {
                    "ready": e.ready,
                    "serving": e.ready || e.terminating,
                    "terminating": e.terminating,
                },
                "targetRef": { "kind": "Pod", "name": e.pod },
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "labels": { "kubernetes.io/service-name": service },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{ "name": port_name, "port": port, "protocol": "TCP" }],
    })
}

/// Records a slice change under the next resourceVersion and sends it to open watches.
/// `keep` also stores it as a slice the test published itself.
pub fn publish(cluster: &Cluster, kind: &'static str, service: &str, mut slice: Value, keep: bool) {
    let change = {
        let mut s = cluster.state.lock().unwrap();
        s.rv += 1;
        slice["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        let name = slice["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if keep {
            s.static_slices.insert(name, slice.clone());
        }
        let change = Change {
            rv: s.rv,
            kind,
            service: service.to_string(),
            object: slice,
        };
        s.history.push(change.clone());
        change
    };
    let _ = cluster.changes.send(change);
}

/// The slices that exist now (the latest version of each, deleted ones left out), for a list.
pub fn current_slices(history: &[Change], service: Option<&str>) -> Vec<Value> {
    let mut by_name: std::collections::BTreeMap<String, Option<Value>> = Default::default();
    for c in history {
        if service.is_some_and(|s| s != c.service) {
            continue;
        }
        let name = c.object["metadata"]["name"].as_str().unwrap_or_default();
        let value = (c.kind != "DELETED").then(|| c.object.clone());
        by_name.insert(name.to_string(), value);
    }
    by_name.into_values().flatten().collect()
}

/// A Scale (autoscaling/v1) of Deployment `name`.
pub fn scale(namespace: &str, name: &str, replicas: u32, ready: u32, rv: u64) -> Value {
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": { "name": name, "namespace": namespace, "resourceVersion": rv.to_string() },
        "spec": { "replicas": replicas },
        "status": { "replicas": ready, "selector": format!("app={name}") },
    })
}

/// A Status object (the body of every API error).
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}
