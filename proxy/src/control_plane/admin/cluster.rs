//! `GET /admin/v1/cluster/load` (what the cluster's leader reads from every instance) and
//! `GET /admin/v1/cluster` (the election and the instances, for people).

use crate::data_plane::routing::RouteTable;
use infergate_scaler::cluster::peers::LoadReport;
use serde_json::{json, Value};
use std::time::Duration;

/// This instance's counters for each of its Kubernetes-backed deployments.
pub fn load(table: &RouteTable) -> Value {
    let Some(view) = infergate_scaler::cluster::current() else {
        return json!(LoadReport::default());
    };
    let report = LoadReport {
        instance: view.identity.clone(),
        leader: view.is_leader(),
        deployments: table
            .deployments
            .iter()
            .filter_map(|d| Some((d.name.clone(), d.controller.local_load()?)))
            .collect(),
    };
    json!(report)
}

/// The mode, this instance's identity and role, the Lease holder, and the instances read
/// within the last 10 s.
pub fn status() -> Value {
    let Some(view) = infergate_scaler::cluster::current() else {
        return json!({ "mode": "single", "leader": true });
    };
    let peers: Vec<Value> = view
        .peers(Duration::from_secs(10))
        .into_iter()
        .map(|(instance, age)| json!({ "instance": instance, "read_ms_ago": age.as_millis() as u64 }))
        .collect();
    json!({
        "mode": "kubernetes",
        "identity": view.identity,
        "leader": view.is_leader(),
        "holder": view.holder(),
        "peers": peers,
    })
}
