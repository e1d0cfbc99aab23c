//! Forwarding one request to a replica of its deployment: connect (a refused connect ejects the
//! replica and moves the request on without losing its place), write the request as the replica
//! must see it, and stream the answer back chunk by chunk — aborting, never ending cleanly, when
//! the replica fails or goes silent mid-response.

use crate::data_plane::app::{Outcome, ProxyApp, RouteName};
use crate::data_plane::deployment::DeploymentEntry;
use crate::data_plane::errors::ProxyError;
use crate::data_plane::upstream::{self, UpstreamError};
use bytes::Bytes;
use http::Method;
use infergate_scaler::{AcquireError, Acquired, EventKind, Numbers};
use pingora::protocols::http::ServerSession;
use pingora_timeout::fast_timeout::fast_timeout;
use std::time::Instant;

/// Most connects one request tries (each refused one ejects a replica) before it gets a 502.
const MAX_CONNECT_ATTEMPTS: u32 = 8;

/// What `forward` sends to the replica and how it treats the answer.
pub(crate) struct Forwarding {
    /// When the request arrived (for time to first byte).
    pub(crate) started: Instant,
    /// The request body, read whole.
    pub(crate) body: Bytes,
    /// Length of the route's path prefix to strip.
    pub(crate) strip_prefix: usize,
    /// Our request id (sent as `x-request-id` if the client sent none).
    pub(crate) request_id: u64,
    /// Keep a 5xx from the replica from the client (the fallback answers instead).
    pub(crate) hold_server_errors: bool,
    /// The request waited for a cold start (`x-infergate-cold-start: true`).
    pub(crate) cold_start: bool,
    /// A held stream's head already went out (`heartbeat`): the replica's head is not sent,
    /// and an error answer becomes an error event.
    pub(crate) head_sent: bool,
    /// The client authenticated with its own key (`[auth]`): its credentials are not forwarded.
    pub(crate) authenticated: bool,
    /// Its budgets (`x-ratelimit-*` on the response).
    pub(crate) rate_headers: Option<infergate_clients::limits::RateHeaders>,
}

impl ProxyApp {
    pub(crate) async fn forward(
        &self,
        session: &mut ServerSession,
        deployment: &DeploymentEntry,
        acquired: Acquired,
        plan: Forwarding,
        mut usage: Option<&mut infergate_clients::usage::UsageScanner>,
    ) -> Result<Outcome, ProxyError> {
        let Forwarding {
            started,
            body,
            strip_prefix,
            request_id,
            hold_server_errors,
            cold_start,
            head_sent,
            authenticated,
            rate_headers,
        } = plan;
        let config = &deployment.config;
        let pool = deployment.controller.pool();
        let mut queued = acquired.queued;
        let mut slot = acquired.slot;

        // Connect. A refused connect sent nothing: the replica is ejected (no more requests
        // until a health check passes) and the request moves to another ready replica, or —
        // unless the fallback answers replica errors — back to the front of the queue.
        let mut attempts = 0u32;
        let mut upstream = loop {
            let replica = slot.replica().clone();
            let error = match upstream::connect(
                replica.addr(),
                config.upstream.connect_timeout.get(),
            )
            .await
            {
                Ok((up, _reused)) => break up,
                Err(e) => e,
            };
            attempts += 1;
            tracing::warn!(deployment = %deployment.name, replica = %replica.id, error = %error, "connect to replica failed; ejecting it and trying another");
            if replica.eject() {
                deployment.controller.events().emit(
                    &deployment.name,
                    EventKind::ReplicaEjected,
                    "proxy",
                    format!(
                        "{}: connect failed ({error}); no new requests until a health check passes",
                        replica.id
                    ),
                    Numbers::default(),
                );
            }
            drop(slot);
            if let Some(next) = pool.try_acquire() {
                slot = next;
                continue;
            }
            if hold_server_errors || attempts >= MAX_CONNECT_ATTEMPTS {
                return Err(ProxyError::UpstreamConnect(deployment.name.clone()));
            }
            let left = config
                .queue
                .max_wait
                .get()
                .saturating_sub(started.elapsed());
            let again = tokio::select! {
                r = pool.acquire_again(left) => r,
                _ = session.read_body_or_idle(true) => {
                    tracing::info!(deployment = %deployment.name, "client left while waiting for another replica");
                    return Ok(Outcome::client_gone("queue".into(), 499, queued));
                }
            };
            match again {
                Ok(a) => {
                    queued = Some(queued.unwrap_or_default() + a.queued.unwrap_or_default());
                    slot = a.slot;
                }
                Err(AcquireError::QueueFull { .. }) => {
                    return Err(ProxyError::UpstreamConnect(deployment.name.clone()))
                }
                Err(e) => return Err(ProxyError::from_acquire(&deployment.name, e)),
            }
        };
        let replica = slot.replica().clone();
        let route = RouteName::Shared(replica.route().clone());

        let head = upstream::request::encode(
            session.req_header(),
            &upstream::request::HeadPlan {
                body_len: body.len(),
                strip_prefix,
                strip_headers: &config.upstream.strip_headers,
                replica: replica.addr(),
                request_id,
                drop_client_credentials: authenticated,
                replica_authorization: deployment.replica_authorization.as_deref(),
            },
        )
        .map_err(|reason| ProxyError::UpstreamFailed {
            deployment: deployment.name.clone(),
            reason,
        })?;
        let upstream_failed = |e: UpstreamError| ProxyError::UpstreamFailed {
            deployment: deployment.name.clone(),
            reason: e.to_string(),
        };
        // From here on bytes may have reached the model: no retries. Head and body leave in
        // one write.
        let response_timeout = config.upstream.response_timeout.get();
        let is_head = session.req_header().method == Method::HEAD;
        match fast_timeout(response_timeout, upstream.send(&head, &body, is_head)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(upstream_failed(e.into())),
            Err(_) => return Err(ProxyError::UpstreamTimeout(deployment.name.clone())),
        }
        drop(head);

        let header = tokio::select! {
            r = fast_timeout(response_timeout, upstream.read_head()) => r,
            _ = session.read_body_or_idle(true) => {
                tracing::info!(replica = %replica.id, "client left before the response started; cancelling upstream");
                return Ok(Outcome::client_gone(route, 499, queued));
            }
        };
        let mut response = match header {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return Err(upstream_failed(e)),
            Err(_) => return Err(ProxyError::UpstreamTimeout(deployment.name.clone())),
        };
        let status = response.status.as_u16();
        if hold_server_errors && status >= 500 {
            // Nothing reached the client yet: the fallback answers instead.
            return Err(ProxyError::ReplicaStatus {
                deployment: deployment.name.clone(),
                status,
            });
        }
        if head_sent {
            if !(200..300).contains(&status) {
                // The 200 is gone: the replica's error reaches the client as an error event.
                let body = read_error_body(&mut upstream, config.upstream.idle_timeout.get()).await;
                let body = crate::data_plane::heartbeat::replica_error_body(status, &body);
                let event = crate::data_plane::heartbeat::error_event(&body);
                let _ = session.write_response_body(event, false).await;
                return Ok(Outcome::client_gone(route, status, queued));
            }
        } else {
            let _ = response.insert_header("x-infergate-route", route.as_str());
            let _ = response.insert_header("x-infergate-route-reason", slot.reason().name());
            if let Some(q) = queued {
                let _ = response.insert_header("x-infergate-queued-ms", q.as_millis().to_string());
            }
            if cold_start {
                let _ = response.insert_header("x-infergate-cold-start", "true");
            }
            for (name, value) in rate_headers.iter().flat_map(|h| h.pairs()) {
                let _ = response.insert_header(name, value);
            }
            if session
                .write_response_header(Box::new(response))
                .await
                .is_err()
            {
                return Ok(Outcome::client_gone(route, 499, queued));
            }
        }
        deployment
            .metrics
            .time_to_first_byte(route.as_str(), started.elapsed());

        let idle = config.upstream.idle_timeout.get();
        loop {
            tokio::select! {
                // Upstream first: once the last byte is written the client may send its next
                // request on this connection, which the idle probe must not mistake for a
                // disconnect; a finished upstream body resolves at once and ends the loop.
                biased;
                chunk = fast_timeout(idle, upstream.read_body()) => match chunk {
                    Ok(Ok(Some(data))) => {
                        if let Some(scanner) = usage.as_deref_mut() {
                            scanner.feed(&data);
                        }
                        if session.write_response_body(data, false).await.is_err() {
                            tracing::info!(replica = %replica.id, "client disconnected mid-response; cancelling upstream");
                            return Ok(Outcome::client_gone(route, 499, queued));
                        }
                    }
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => {
                        tracing::warn!(replica = %replica.id, error = %e, "replica failed mid-response; aborting the response");
                        return Ok(Outcome::client_gone(route, 502, queued));
                    }
                    Err(_) => {
                        tracing::warn!(replica = %replica.id, idle_ms = idle.as_millis() as u64, "replica silent too long mid-response (upstream.idle_timeout); aborting");
                        return Ok(Outcome::client_gone(route, 504, queued));
                    }
                },
                _ = session.read_body_or_idle(true) => {
                    tracing::info!(replica = %replica.id, "client disconnected mid-response; cancelling upstream");
                    return Ok(Outcome::client_gone(route, 499, queued));
                }
            }
        }
        let finished = session.finish_body().await.is_ok();
        if upstream.is_body_done() {
            upstream.release();
        }
        drop(slot);
        Ok(Outcome {
            status,
            route,
            queued,
            reusable: finished,
        })
    }
}

/// Up to 64 KiB of a replica's error body (what an error event needs), within `idle` per read.
async fn read_error_body(upstream: &mut upstream::Upstream, idle: std::time::Duration) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < 64 * 1024 {
        match fast_timeout(idle, upstream.read_body()).await {
            Ok(Ok(Some(data))) => body.extend_from_slice(&data),
            _ => break,
        }
    }
    body
}
