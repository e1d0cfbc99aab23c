//! The `static` backend: a fixed list of replica URLs someone else runs (edge gateway, sidecar).

use super::{Backend, BackendError, Launched};
use async_trait::async_trait;
use infergate_config::{parse_http_url, StaticBackendConfig};
use std::net::{SocketAddr, ToSocketAddrs};

/// Fixed replicas: routed to, counted and health-checked, never started or stopped.
pub struct StaticBackend {
    addrs: Vec<SocketAddr>,
}

impl StaticBackend {
    /// Resolves the configured URLs once (validation already checked their form).
    pub fn new(config: &StaticBackendConfig) -> Self {
        let addrs = config
            .urls
            .iter()
            .filter_map(|u| parse_http_url(u))
            .filter_map(|authority| {
                let resolved = authority.to_socket_addrs().ok()?.next();
                if resolved.is_none() {
                    tracing::warn!(url = authority, "static replica address does not resolve");
                }
                resolved
            })
            .collect();
        StaticBackend { addrs }
    }
}

#[async_trait]
impl Backend for StaticBackend {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn fixed_replicas(&self) -> Option<Vec<SocketAddr>> {
        Some(self.addrs.clone())
    }

    async fn launch(&self, _model: &str, _index: u64) -> Result<Launched, BackendError> {
        Err(BackendError::Fixed)
    }
}
