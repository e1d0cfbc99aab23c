//! Scraping ready replicas' Prometheus metrics for the `queue_depth` and `kv_cache_usage`
//! metrics, off the request path.

use super::Controller;
use crate::load::Scraped;
use crate::replica::ReplicaState;
use crate::scrape;
use infergate_config::Metric;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often replicas' metrics are scraped when the metric needs them.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest a scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(800);

impl Controller {
    /// What replica `id`'s metrics said at the last scrape (`None`: not scraped, or unreadable).
    pub fn replica_metrics(&self, id: &str) -> Option<crate::load::ReplicaMetrics> {
        match self.scraped.lock().ok()?.get(id)? {
            Scraped::Read(m) => Some(*m),
            _ => None,
        }
    }

    /// Scrapes every ready replica's metrics once a second while the metric needs them. A replica
    /// that cannot be read is logged once (and once more when it recovers), not on every scrape.
    pub(super) async fn scrape_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        let mut failing: HashMap<String, String> = HashMap::new();
        loop {
            let config = self.config.load_full();
            if config.metric != Metric::Concurrency {
                let path = config.metrics.path.as_str();
                let replicas = self.pool.replicas();
                let ready: Vec<_> = replicas
                    .iter()
                    .filter(|r| r.state() == ReplicaState::Ready)
                    .collect();
                let results = futures_util::future::join_all(
                    ready
                        .iter()
                        .map(|r| scrape::scrape(r.addr(), path, SCRAPE_TIMEOUT)),
                )
                .await;
                let mut fresh = HashMap::new();
                for (replica, result) in ready.iter().zip(results) {
                    match result {
                        Ok(m) => {
                            if failing.remove(&replica.id).is_some() {
                                tracing::info!(deployment = %self.name, replica = %replica.id, "replica metrics readable again");
                            }
                            fresh.insert(replica.id.clone(), Scraped::Read(m));
                        }
                        Err(e) => {
                            let e = e.to_string();
                            if failing.insert(replica.id.clone(), e.clone()).is_none() {
                                tracing::warn!(deployment = %self.name, replica = %replica.id, error = %e, "cannot read replica metrics; counting it as fully loaded at its target until it can be read");
                            }
                            fresh.insert(replica.id.clone(), Scraped::Unreadable);
                        }
                    }
                }
                failing.retain(|id, _| fresh.contains_key(id));
                if let Ok(mut m) = self.scraped.lock() {
                    *m = fresh;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(SCRAPE_INTERVAL) => {}
                _ = stopping.changed() => return,
            }
        }
    }
}
