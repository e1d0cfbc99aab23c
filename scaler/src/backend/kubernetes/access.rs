//! Every Kubernetes API call infergate makes, as RBAC rules: what `deploy/kubernetes/role.yaml`
//! must grant, no more (a test compares the two; the end-to-end tests' fake API server refuses
//! whatever that Role does not allow).

/// One rule: API group, resources, verbs.
pub type Access = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

/// What the backend (`api.rs`, `workload.rs`) and the cluster mode (`crate::cluster`) call.
pub const API_ACCESS: &[Access] = &[
    // `scale_to_desired` (patch) and `poll_scale` (get): the only access to the workloads.
    (
        "apps",
        &["deployments/scale", "statefulsets/scale"],
        &["get", "patch"],
    ),
    // The backend's EndpointSlice watcher (list + watch); the cluster's instance list (list).
    ("discovery.k8s.io", &["endpointslices"], &["list", "watch"]),
    // `poll_scale` lists the pods to say why they are not ready; `mark_for_deletion` patches
    // the pod-deletion-cost annotation.
    ("", &["pods"], &["list", "patch"]),
    // The election: read, create the first time, update to renew or take over.
    (
        "coordination.k8s.io",
        &["leases"],
        &["get", "create", "update"],
    ),
];
