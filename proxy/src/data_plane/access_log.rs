//! Phase 8, log: every answered request counted in Prometheus (by deployment, route kind and
//! status) and one access-log line at `info` (skipped cheaply when the level is off).

use crate::data_plane::app::Outcome;
use crate::data_plane::deployment::DeploymentEntry;
use pingora::protocols::http::ServerSession;
use std::time::Instant;

/// Records how a request ended.
pub(crate) fn record(
    session: &ServerSession,
    deployment: Option<&DeploymentEntry>,
    outcome: &Outcome,
    started: Instant,
) {
    match deployment {
        Some(d) => {
            d.metrics.request(outcome.route.as_str(), outcome.status);
            if let Some(waited) = outcome.queued {
                d.metrics.queue_wait(waited);
            }
        }
        None => crate::metrics::request_without_deployment(outcome.route.as_str(), outcome.status),
    }
    tracing::info!(
        method = %session.req_header().method,
        path = session.req_header().uri.path(),
        status = outcome.status,
        route = %outcome.route,
        queued_ms = outcome.queued.map(|d| d.as_millis() as u64),
        duration_ms = started.elapsed().as_millis() as u64,
        "request done"
    );
}
