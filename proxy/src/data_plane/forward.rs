//! Forwarding one request to a replica of its deployment: connect (a refused connect ejects the
//! replica and moves the request on without losing its place), write the request as the replica
//! must see it, and stream the answer back chunk by chunk — aborting, never ending cleanly, when
//! the replica fails or goes silent mid-response.

use crate::data_plane::app::{Outcome, ProxyApp};
use crate::data_plane::deployment::DeploymentEntry;
use crate::data_plane::errors::ProxyError;
use crate::data_plane::upstream;
use bytes::Bytes;
use http::{header, Method};
use infergate_fallback::headers::connection_tokens;
use infergate_fallback::{marker_value, FORWARDED_MARKER, HOP_BY_HOP_REQUEST_HEADERS};
use infergate_scaler::{AcquireError, Acquired, EventKind, Numbers, Replica};
use pingora::http::RequestHeader;
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
}

impl ProxyApp {
    pub(crate) async fn forward(
        &self,
        session: &mut ServerSession,
        deployment: &DeploymentEntry,
        acquired: Acquired,
        plan: Forwarding,
    ) -> Result<Outcome, ProxyError> {
        let Forwarding {
            started,
            body,
            strip_prefix,
            request_id,
            hold_server_errors,
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
            let error = match upstream::connect(replica.addr, config.upstream.connect_timeout.get())
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
        let route = format!("replica/{}", replica.id);

        let request = upstream_request(
            session.req_header(),
            &body,
            strip_prefix,
            &config.upstream.strip_headers,
            &replica,
            request_id,
        )
        .map_err(|reason| ProxyError::UpstreamFailed {
            deployment: deployment.name.clone(),
            reason,
        })?;
        let upstream_failed = |e: Box<pingora::Error>| ProxyError::UpstreamFailed {
            deployment: deployment.name.clone(),
            reason: e.to_string(),
        };
        // From here on bytes may have reached the model: no retries. The head waits for the
        // body; both leave with the flush that finishes the body.
        upstream.hold_writes();
        upstream
            .session
            .write_request_header(Box::new(request))
            .await
            .map_err(upstream_failed)?;
        if !body.is_empty() {
            upstream
                .session
                .write_body(&body)
                .await
                .map_err(upstream_failed)?;
        }
        upstream.release_writes();
        upstream
            .session
            .finish_body()
            .await
            .map_err(upstream_failed)?;

        let header = tokio::select! {
            r = fast_timeout(config.upstream.response_timeout.get(), upstream.session.read_response()) => r,
            _ = session.read_body_or_idle(true) => {
                tracing::info!(replica = %replica.id, "client left before the response started; cancelling upstream");
                return Ok(Outcome::client_gone(route, 499, queued));
            }
        };
        match header {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(upstream_failed(e)),
            Err(_) => return Err(ProxyError::UpstreamTimeout(deployment.name.clone())),
        }
        let Some(upstream_header) = upstream.session.resp_header() else {
            return Err(ProxyError::UpstreamFailed {
                deployment: deployment.name.clone(),
                reason: "no response header".into(),
            });
        };
        let status = upstream_header.status.as_u16();
        if hold_server_errors && status >= 500 {
            // Nothing reached the client yet: the fallback answers instead.
            return Err(ProxyError::ReplicaStatus {
                deployment: deployment.name.clone(),
                status,
            });
        }
        let mut response = upstream_header.clone();
        for name in ["connection", "keep-alive", "proxy-connection"] {
            response.remove_header(name);
        }
        let _ = response.insert_header("x-infergate-route", route.as_str());
        if let Some(q) = queued {
            let _ = response.insert_header("x-infergate-queued-ms", q.as_millis().to_string());
        }
        if session
            .write_response_header(Box::new(response))
            .await
            .is_err()
        {
            return Ok(Outcome::client_gone(route, 499, queued));
        }
        deployment
            .metrics
            .time_to_first_byte(&route, started.elapsed());

        let idle = config.upstream.idle_timeout.get();
        loop {
            tokio::select! {
                // Upstream first: once the last byte is written the client may send its next
                // request on this connection, which the idle probe must not mistake for a
                // disconnect; a finished upstream body resolves at once and ends the loop.
                biased;
                chunk = fast_timeout(idle, upstream.session.read_body_bytes()) => match chunk {
                    Ok(Ok(Some(data))) => {
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
        if upstream.session.is_body_done() {
            upstream.release().await;
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

/// The request as sent to the replica: one-hop headers removed, body framed by Content-Length,
/// the deployment's path prefix stripped, HTTP/1.1.
fn upstream_request(
    downstream: &RequestHeader,
    body: &Bytes,
    strip_prefix: usize,
    strip_headers: &[String],
    replica: &Replica,
    request_id: u64,
) -> Result<RequestHeader, String> {
    let mut req = downstream.clone();
    if strip_prefix > 0 {
        let path_and_query = downstream.uri.path_and_query().map_or("/", |p| p.as_str());
        let rest = path_and_query.get(strip_prefix..).unwrap_or("/");
        // `/prefix?x=1` leaves `?x=1`: the upstream path is `/`.
        let rest = if rest.is_empty() || rest.starts_with('?') {
            format!("/{rest}")
        } else {
            rest.to_string()
        };
        let uri = rest.parse::<http::Uri>().map_err(|e| e.to_string())?;
        req.set_uri(uri);
    } else if downstream.uri.authority().is_some() {
        // HTTP/2 and absolute-form requests: origin-form upstream.
        let pq = downstream.uri.path_and_query().map_or("/", |p| p.as_str());
        req.set_uri(pq.parse::<http::Uri>().map_err(|e| e.to_string())?);
    }
    for name in HOP_BY_HOP_REQUEST_HEADERS {
        req.remove_header(name);
    }
    // Headers the client named in `Connection` are one-hop too (RFC 9110 §7.6.1).
    for name in connection_tokens(&downstream.headers) {
        req.remove_header(&name);
    }
    for name in strip_headers {
        req.remove_header(name.as_str());
    }
    req.set_version(http::Version::HTTP_11);
    if !body.is_empty() || downstream.method == Method::POST || downstream.method == Method::PUT {
        req.insert_header(header::CONTENT_LENGTH, body.len().to_string())
            .map_err(|e| e.to_string())?;
    }
    if req.headers.get(header::HOST).is_none() {
        let host = downstream
            .uri
            .authority()
            .map_or_else(|| replica.addr.to_string(), |a| a.to_string());
        req.insert_header(header::HOST, host)
            .map_err(|e| e.to_string())?;
    }
    // Marked, so a replica URL that leads back here (through any number of hops) is cut: 508.
    req.insert_header(FORWARDED_MARKER, marker_value(&downstream.headers))
        .map_err(|e| e.to_string())?;
    if req.headers.get("x-request-id").is_none() {
        req.insert_header("x-request-id", format!("infergate-{request_id}"))
            .map_err(|e| e.to_string())?;
    }
    Ok(req)
}
