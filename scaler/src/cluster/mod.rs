//! Several infergate instances with one scaling brain (SPEC §8, `[cluster] mode =
//! "kubernetes"`): a Lease elects the leader (`election`), every instance reads every other
//! one's load from its admin listener (`peers`), and the controllers of Kubernetes-backed
//! deployments decide only on the leader — on the sum — while the others follow the workload's
//! scale. As Knative's autoscaler scrapes its activators and client-go elects a leader.
//!
//! This module holds the state the controllers read ([`ClusterView`]) and the two loops that
//! keep it current (`runner`); the decisions are the sans-I/O [`election::Election`] and
//! [`peers::PeerBook`].

pub mod election;
pub mod peers;
mod runner;

use infergate_config::{ClusterConfig, ClusterMode};
use peers::{DeploymentLoad, PeerBook};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

static CURRENT: OnceLock<Arc<ClusterView>> = OnceLock::new();

/// What the controllers read of the cluster: leadership and the other instances' load.
#[derive(Debug)]
pub struct ClusterView {
    /// This instance's name in the Lease.
    pub identity: String,
    config: ClusterConfig,
    leader: AtomicBool,
    holder: Mutex<Option<String>>,
    peers: Mutex<PeerBook>,
    epoch: Instant,
}

/// The cluster this process is part of, if `[cluster] mode = "kubernetes"`.
pub fn current() -> Option<&'static Arc<ClusterView>> {
    CURRENT.get()
}

/// Whether this instance may actuate Kubernetes workloads: always alone, only as leader in a
/// cluster.
pub fn may_actuate() -> bool {
    current().is_none_or(|c| c.is_leader())
}

/// Sets up the cluster view for `config` (before any controller starts, so none acts as leader
/// before the election); nothing is done in `single` mode. Call [`ClusterView::start`] once the
/// admin token is known.
pub fn install(config: &ClusterConfig) -> Option<Arc<ClusterView>> {
    if config.mode != ClusterMode::Kubernetes {
        return None;
    }
    let view = CURRENT.get_or_init(|| {
        Arc::new(ClusterView {
            identity: config.identity(),
            config: config.clone(),
            leader: AtomicBool::new(false),
            holder: Mutex::new(None),
            peers: Mutex::new(PeerBook::default()),
            epoch: Instant::now(),
        })
    });
    Some(view.clone())
}

impl ClusterView {
    /// Starts the election and the peer readings; `admin_token` is the token every instance's
    /// admin listener takes (they share it).
    pub fn start(self: &Arc<Self>, admin_token: String) {
        tokio::spawn(runner::run(self.clone(), admin_token));
    }

    /// Whether this instance leads now.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Who holds the Lease, as last read.
    pub fn holder(&self) -> Option<String> {
        self.holder.lock().ok().and_then(|h| h.clone())
    }

    /// The other instances' load on `deployment`, each counted while its reading is no older
    /// than `window`.
    pub fn peer_load(&self, deployment: &str, window: Duration) -> DeploymentLoad {
        let now = self.epoch.elapsed();
        self.peers
            .lock()
            .map(|p| p.sum(deployment, now, window))
            .unwrap_or_default()
    }

    /// The instances read within `window`, with the age of their reading.
    pub fn peers(&self, window: Duration) -> Vec<(String, Duration)> {
        let now = self.epoch.elapsed();
        self.peers
            .lock()
            .map(|p| p.peers(now, window))
            .unwrap_or_default()
    }

    fn set_leader(&self, leader: bool, holder: Option<String>) {
        let was = self.leader.swap(leader, Ordering::AcqRel);
        if was != leader {
            if leader {
                tracing::info!(identity = %self.identity, "this instance leads: it runs the scaling policy");
            } else {
                tracing::info!(identity = %self.identity, holder = ?holder, "this instance follows: the leader scales");
            }
        }
        if let Ok(mut h) = self.holder.lock() {
            *h = holder;
        }
    }
}
