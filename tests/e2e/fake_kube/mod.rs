//! A fake Kubernetes API server for the tests: real TLS on a real socket on 127.0.0.1, speaking
//! the Kubernetes JSON API for the subset infergate uses — the scale subresource of Deployments,
//! list + watch of EndpointSlices (resourceVersion, bookmarks, 410 Gone), PATCH of pods, and
//! Leases (get/create/update with 409 conflicts). It plays the cluster too: when a Deployment's
//! `replicas` rises it "schedules pods" by starting real `infergate sim-server` processes and
//! publishes each one's address as an endpoint, ready once its `/health` answers; when it falls
//! it removes the pods the ReplicaSet controller would (not ready first, then the lowest
//! `controller.kubernetes.io/pod-deletion-cost`, then the newest). infergate reaches it through a
//! kubeconfig, as it would a real API server.

mod http;
mod objects;
mod pods;

use objects::Change;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// The bearer token the fake accepts (and the kubeconfig carries).
pub const TOKEN: &str = "fake-cluster-token";

/// A pod as the test sees it (all of it shown in assertion messages).
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct PodView {
    pub name: String,
    pub workload: String,
    pub addr: Option<SocketAddr>,
    pub ready: bool,
    pub terminating: bool,
    pub deletion_cost: i64,
}

/// A running fake cluster; its pods are stopped when it is dropped.
pub struct FakeCluster {
    pub kubeconfig: PathBuf,
    cluster: Arc<Cluster>,
    /// Dropped to stop the server's runtime (on its own thread).
    stop: Option<std::sync::mpsc::Sender<()>>,
}

/// What the server's handlers share.
pub(crate) struct Cluster {
    pub state: Mutex<State>,
    pub changes: broadcast::Sender<Change>,
    pub runtime: tokio::runtime::Handle,
}

/// Everything the fake API server holds.
#[derive(Default)]
pub(crate) struct State {
    pub namespace: String,
    /// The last resourceVersion handed out.
    pub rv: u64,
    /// Watches resuming from below this get 410 Gone (history compacted).
    pub compacted_below: u64,
    /// EndpointSlice changes, oldest first.
    pub history: Vec<Change>,
    pub workloads: BTreeMap<String, Workload>,
    pub pods: BTreeMap<String, pods::Pod>,
    pub next_pod: u64,
    pub leases: BTreeMap<String, Value>,
    /// Slices the test publishes itself (infergate's own Service), by name.
    pub static_slices: BTreeMap<String, Value>,
    /// Pods deleted, in order, with their deletion cost when they were chosen.
    pub deleted: Vec<(String, i64)>,
    /// Every request, as "METHOD path".
    pub requests: Vec<String>,
    /// New pods stay Pending (never scheduled).
    pub pending: bool,
}

/// One Deployment and its Service.
pub(crate) struct Workload {
    pub service: String,
    pub model: String,
    pub sim_args: Vec<String>,
    pub replicas: u32,
    /// Every `replicas` value set through the scale subresource, in order.
    pub scale_history: Vec<u32>,
}

impl FakeCluster {
    /// Starts the API server in namespace `namespace` and writes a kubeconfig for it.
    pub fn start(namespace: &str) -> FakeCluster {
        let dir = crate::harness::scratch_dir();
        let cert = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        let ca = dir.join("fake-cluster-ca.pem");
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let (cert, key) = (cert.cert.der().to_vec(), cert.key_pair.serialize_der());
        // Its own runtime on its own thread, so a test blocking its thread never stalls the API.
        let (started, on_start) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let ns = namespace.to_string();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let (changes, _) = broadcast::channel(1024);
            let cluster = Arc::new(Cluster {
                state: Mutex::new(State {
                    namespace: ns,
                    ..State::default()
                }),
                changes,
                runtime: runtime.handle().clone(),
            });
            let addr = runtime.block_on(http::serve(cluster.clone(), cert, key));
            started.send((addr, cluster)).unwrap();
            let _ = stopped.recv();
            runtime.shutdown_background();
        });
        let (addr, cluster) = on_start.recv().unwrap();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: {namespace}\ncurrent-context: fake\nusers:\n- name: tester\n  user:\n    token: {TOKEN}\n",
                addr.port(),
                ca.display()
            ),
        )
        .unwrap();
        FakeCluster {
            kubeconfig,
            cluster,
            stop: Some(stop),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.cluster.state.lock().unwrap())
    }

    /// Adds a Deployment `name` at 0 replicas, with a Service of the same name, whose pods run
    /// `infergate sim-server --model <model> <sim_args>`.
    pub fn add_deployment(&self, name: &str, model: &str, sim_args: &str) {
        self.with(|s| {
            s.workloads.insert(
                name.to_string(),
                Workload {
                    service: name.to_string(),
                    model: model.to_string(),
                    sim_args: sim_args.split_whitespace().map(str::to_string).collect(),
                    replicas: 0,
                    scale_history: Vec::new(),
                },
            )
        });
    }

    /// From now on new pods stay Pending (or are scheduled again, with `false`).
    pub fn set_pending(&self, pending: bool) {
        self.with(|s| s.pending = pending);
    }

    /// `spec.replicas` of a Deployment now.
    pub fn replicas(&self, name: &str) -> u32 {
        self.with(|s| s.workloads.get(name).map_or(0, |w| w.replicas))
    }

    /// Every value the scale subresource was set to, in order.
    pub fn scale_history(&self, name: &str) -> Vec<u32> {
        self.with(|s| {
            s.workloads
                .get(name)
                .map(|w| w.scale_history.clone())
                .unwrap_or_default()
        })
    }

    /// Sets `spec.replicas` as a person with kubectl would.
    pub fn scale_by_hand(&self, name: &str, replicas: u32) {
        pods::set_replicas(&self.cluster, name, replicas, false);
    }

    /// The pods that exist now.
    pub fn pods(&self) -> Vec<PodView> {
        self.with(|s| s.pods.values().map(pods::Pod::view).collect())
    }

    /// Pods deleted so far, in order, with the deletion cost they had.
    pub fn deleted_pods(&self) -> Vec<(String, i64)> {
        self.with(|s| s.deleted.clone())
    }

    /// Requests seen so far, as "METHOD path".
    pub fn requests(&self) -> Vec<String> {
        self.with(|s| s.requests.clone())
    }

    /// The Lease `name`, if it exists.
    pub fn lease(&self, name: &str) -> Option<Value> {
        self.with(|s| s.leases.get(name).cloned())
    }

    /// Ends every open watch and compacts the history, so a watcher resuming from where it
    /// was gets 410 Gone and must list again.
    pub fn expire_watches(&self) {
        self.with(|s| s.compacted_below = s.rv + 1);
        let _ = self.cluster.changes.send(Change::expire());
    }

    /// Publishes `addr` as the ready endpoint of pod `pod` in Service `service`, on a port named
    /// `port_name` (infergate's own instances behind their Service).
    pub fn add_endpoint(&self, service: &str, pod: &str, addr: SocketAddr, port_name: &str) {
        let slice = objects::endpoint_slice(
            service,
            &format!("{service}-{pod}"),
            &[objects::EndpointView {
                pod,
                addr,
                ready: true,
                terminating: false,
            }],
            port_name,
            addr.port(),
        );
        objects::publish(&self.cluster, "ADDED", service, slice, true);
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        let children: Vec<_> =
            self.with(|s| s.pods.values_mut().filter_map(|p| p.child.take()).collect());
        for mut child in children {
            let _ = child.start_kill();
        }
        drop(self.stop.take());
    }
}
