//! The data plane: a pingora HTTP application that reads a request, routes it to a deployment,
//! holds it while no replica can take it, forwards it to the chosen replica over a pooled upstream
//! connection, and streams the response back as it arrives.
//!
//! Why not pingora's `ProxyHttp` phases: they pick the upstream before the body is read and replay
//! at most 64 KiB of a body read early. Routing on the JSON `model` field of multi-megabyte prompts
//! needs the whole body first, so this app drives pingora's server and client sessions directly,
//! keeping pingora's listeners, TLS, HTTP/1.1 + HTTP/2 codecs and upstream connection pool.

use crate::connection::{self, ConnectionLimits};
use crate::errors::ProxyError;
use crate::fallback_route::{overload_wait, FallbackResult};
use crate::request_body::{decode, is_json, model_of, read_bounded, BodyLimits};
use crate::routing::{DeploymentEntry, RouteTable};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::{header, Method, StatusCode};
use infergate_config::FallbackWhen;
use infergate_fallback::headers::connection_tokens;
use infergate_fallback::{
    forwarded_by_us, marker_value, FORWARDED_MARKER, HOP_BY_HOP_REQUEST_HEADERS,
};
use infergate_scaler::{AcquireError, Acquired, EventKind, Numbers, Replica, Serving};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::upstreams::peer::HttpPeer;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// How long an idle upstream connection stays pooled; below uvicorn's (vLLM's) 5 s keep-alive.
const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(4);

/// Most connects one request tries (each refused one ejects a replica) before it gets a 502.
const MAX_CONNECT_ATTEMPTS: u32 = 8;

/// How long an error answer waits for the unread rest of a refused request body.
const LINGER: Duration = Duration::from_secs(2);

/// Settings the data plane reads on every request; swapped whole on reload.
pub struct DataPlaneSettings {
    /// Request body size and pace limits.
    pub body: BodyLimits,
    /// Connection count and idle limits.
    pub connections: ConnectionLimits,
}

impl DataPlaneSettings {
    /// The data-plane part of the `[server]` settings.
    pub fn from_config(server: &infergate_config::ServerConfig) -> Self {
        DataPlaneSettings {
            body: BodyLimits {
                max_size: server.max_body_size,
                read_timeout: server.body_read_timeout.get(),
                min_rate: server.min_body_rate,
            },
            connections: ConnectionLimits {
                header_read_timeout: server.header_read_timeout.get(),
                keepalive_idle: server.keepalive_idle_timeout.get(),
                max_connections: server.max_connections.into(),
            },
        }
    }
}

/// The infergate HTTP application served by pingora's listeners.
pub struct ProxyApp {
    router: Arc<ArcSwap<RouteTable>>,
    settings: Arc<ArcSwap<DataPlaneSettings>>,
    connector: Connector,
    server_options: HttpServerOptions,
    next_request_id: AtomicU64,
}

/// What `forward` sends to the replica and how it treats the answer.
struct Forwarding {
    /// When the request arrived (for time to first byte).
    started: Instant,
    /// The request body, read whole.
    body: Bytes,
    /// Length of the route's path prefix to strip.
    strip_prefix: usize,
    /// Our request id (sent as `x-request-id` if the client sent none).
    request_id: u64,
    /// Keep a 5xx from the replica from the client (the fallback answers instead).
    hold_server_errors: bool,
}

/// How a request ended, for the access log.
struct Outcome {
    status: u16,
    route: String,
    queued: Option<Duration>,
    reusable: bool,
}

impl Outcome {
    fn client_gone(route: String, status: u16, queued: Option<Duration>) -> Self {
        Outcome {
            status,
            route,
            queued,
            reusable: false,
        }
    }
}

impl ProxyApp {
    /// Builds the app over a routing table and settings that the caller may swap at any time.
    pub fn new(
        router: Arc<ArcSwap<RouteTable>>,
        settings: Arc<ArcSwap<DataPlaneSettings>>,
        h2c: bool,
    ) -> Self {
        let mut server_options = HttpServerOptions::default();
        server_options.h2c = h2c;
        server_options.h2_idle_timeout = Some(settings.load().connections.keepalive_idle);
        ProxyApp {
            router,
            settings,
            connector: Connector::new(None),
            server_options,
            next_request_id: AtomicU64::new(1),
        }
    }

    async fn handle(&self, session: &mut ServerSession, request_id: u64) -> bool {
        let started = Instant::now();
        let mut deployment = None;
        let outcome = match self
            .route_and_proxy(session, request_id, started, &mut deployment)
            .await
        {
            Ok(outcome) => outcome,
            Err(err) => {
                let reusable = respond_error(session, &err).await;
                if err.status() >= 500 {
                    tracing::warn!(status = err.status(), code = err.code(), error = %err, "request failed");
                }
                Outcome {
                    status: err.status(),
                    route: "proxy".into(),
                    queued: None,
                    reusable,
                }
            }
        };
        match &deployment {
            Some(d) => {
                d.metrics.request(&outcome.route, outcome.status);
                if let Some(waited) = outcome.queued {
                    d.metrics.queue_wait(waited);
                }
            }
            None => crate::metrics::request_without_deployment(&outcome.route, outcome.status),
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
        outcome.reusable
    }

    async fn route_and_proxy(
        &self,
        session: &mut ServerSession,
        request_id: u64,
        started: Instant,
        routed_to: &mut Option<Arc<DeploymentEntry>>,
    ) -> Result<Outcome, ProxyError> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let table = self.router.load_full();

        if method == Method::GET && (path == "/v1/models" || path == "/models") {
            let ok = respond_json(session, 200, Bytes::from(table.models_json()), &[]).await;
            return Ok(Outcome {
                status: 200,
                route: "proxy".into(),
                queued: None,
                reusable: ok,
            });
        }
        if method == Method::GET {
            if let Some(id) = path.strip_prefix("/v1/models/") {
                let body = table
                    .model_json(id)
                    .ok_or_else(|| ProxyError::ModelNotFound(id.to_string()))?;
                let ok = respond_json(session, 200, Bytes::from(body), &[]).await;
                return Ok(Outcome {
                    status: 200,
                    route: "proxy".into(),
                    queued: None,
                    reusable: ok,
                });
            }
            if path == "/health" || path == "/healthz" {
                let ok = respond_json(session, 200, Bytes::from_static(br#"{"status":"ok"}"#), &[])
                    .await;
                return Ok(Outcome {
                    status: 200,
                    route: "proxy".into(),
                    queued: None,
                    reusable: ok,
                });
            }
        }

        if method == Method::CONNECT || method == Method::TRACE {
            return Err(ProxyError::MethodNotAllowed(method.to_string()));
        }
        let limits = self.settings.load().body;
        if expects_continue(session.req_header()) {
            // Answer `Expect: 100-continue` (curl waits a second for it before bodies > 1 MiB).
            if let Err(e) = session.write_continue_response().await {
                return Err(ProxyError::BadBody(e.to_string()));
            }
        }
        let body = if session.is_body_empty() {
            Bytes::new()
        } else {
            read_bounded(session, limits).await?
        };
        let encoding = session
            .req_header()
            .headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").to_string());
        let body = match encoding {
            Some(encoding) if !body.is_empty() => {
                let decoded = decode(body, Some(&encoding), limits.max_size)?;
                // Upstream gets the decoded body, framed by its own Content-Length.
                session
                    .req_header_mut()
                    .remove_header(&header::CONTENT_ENCODING);
                decoded
            }
            _ => body,
        };

        let header_str = |name: &str| {
            session
                .req_header()
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
        };
        let model = if !body.is_empty() && is_json(header_str("content-type")) {
            model_of(&body)?
        } else {
            None
        };
        let host = header_str("host").or_else(|| session.req_header().uri.host());
        let deployment_header = header_str("x-infergate-deployment");
        let (deployment, strip_prefix) = match model.as_deref().and_then(|m| table.by_model(m)) {
            Some(d) => {
                let strip = table
                    .prefix_route(&path)
                    .filter(|r| Arc::ptr_eq(r.deployment, d))
                    .map_or(0, |r| r.strip_prefix);
                (d.clone(), strip)
            }
            None => match table.by_request(deployment_header, host, &path) {
                Some(r) => (r.deployment.clone(), r.strip_prefix),
                None => {
                    return Err(match model {
                        Some(m) => ProxyError::ModelNotFound(m),
                        None if path.starts_with("/v1/") => ProxyError::ModelRequired,
                        None => ProxyError::NoRoute {
                            method: method.to_string(),
                            path,
                        },
                    })
                }
            },
        };
        drop(table);
        tracing::Span::current().record("deployment", deployment.name.as_str());
        *routed_to = Some(deployment.clone());
        let upstream_path = path
            .get(strip_prefix..)
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        if !deployment.config.route.allows_upstream_path(upstream_path) {
            return Err(ProxyError::PathNotForwarded {
                deployment: deployment.name.clone(),
                path: upstream_path.to_string(),
            });
        }
        if forwarded_by_us(&session.req_header().headers) {
            return Err(ProxyError::LoopDetected);
        }

        let controller = &deployment.controller;
        controller.note_request();
        let serving = controller.serving();
        if serving == Serving::Deactivated {
            return Err(ProxyError::Deactivated(deployment.name.clone()));
        }
        let fallback = deployment.fallback.as_ref();
        let model = model.as_deref();
        if let Some(fb) = fallback {
            let reason = fb.reason_before_queue(
                &deployment,
                serving,
                controller.maintenance(),
                controller.pool().has_ready(),
            );
            if let Some(reason) = reason {
                if let Some(outcome) = answered(
                    fb.serve(session, &deployment, &body, model, reason, started)
                        .await,
                ) {
                    return Ok(outcome);
                }
                tracing::warn!(deployment = %deployment.name, reason, "no fallback provider available; waiting for a replica");
            }
        }

        let max_wait = deployment.config.queue.max_wait.get();
        let acquired = match overload_wait(fallback, max_wait) {
            Some(wait) => match self.acquire(session, &deployment, wait).await {
                Err(ProxyError::QueueTimeout { .. }) => {
                    if let Some(fb) = fallback {
                        let served = fb
                            .serve(session, &deployment, &body, model, "overloaded", started)
                            .await;
                        if let Some(outcome) = answered(served) {
                            return Ok(outcome);
                        }
                    }
                    self.acquire(session, &deployment, max_wait.saturating_sub(wait))
                        .await?
                }
                other => other?,
            },
            None => self.acquire(session, &deployment, max_wait).await?,
        };
        let Some(acquired) = acquired else {
            tracing::info!(deployment = %deployment.name, "client left while waiting in the queue");
            return Ok(Outcome::client_gone("queue".into(), 499, None));
        };
        let on_replica_error = fallback.filter(|f| f.uses(FallbackWhen::ReplicaError));
        let plan = Forwarding {
            started,
            body: body.clone(),
            strip_prefix,
            request_id,
            hold_server_errors: on_replica_error.is_some(),
        };
        let forwarded = self.forward(session, &deployment, acquired, plan).await;
        match (forwarded, on_replica_error) {
            (Err(e), Some(fb)) if e.is_replica_error() => {
                tracing::warn!(deployment = %deployment.name, error = %e, "replica failed before answering; trying the fallback");
                let served = fb
                    .serve(session, &deployment, &body, model, "replica_error", started)
                    .await;
                answered(served).ok_or(e)
            }
            (result, _) => result,
        }
    }

    /// Waits up to `max_wait` for a slot; `Ok(None)` when the client went away while waiting.
    async fn acquire(
        &self,
        session: &mut ServerSession,
        deployment: &DeploymentEntry,
        max_wait: Duration,
    ) -> Result<Option<Acquired>, ProxyError> {
        let config = &deployment.config;
        let pool = deployment.controller.pool();
        let result = tokio::select! {
            r = pool.acquire(max_wait, config.queue.max_waiting.into()) => r,
            _ = session.read_body_or_idle(true) => return Ok(None),
        };
        result.map(Some).map_err(|e| match e {
            AcquireError::QueueFull { waiting } => ProxyError::QueueFull {
                deployment: deployment.name.clone(),
                waiting,
            },
            AcquireError::Timeout(waited) => ProxyError::QueueTimeout {
                deployment: deployment.name.clone(),
                waited,
            },
            AcquireError::Closed => ProxyError::ShuttingDown,
        })
    }

    async fn forward(
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
        let (mut upstream, peer) = loop {
            let replica = slot.replica().clone();
            let mut peer = HttpPeer::new(replica.addr, false, String::new());
            peer.options.connection_timeout = Some(config.upstream.connect_timeout.get());
            let error = match self.connector.get_http_session(&peer).await {
                Ok((up, _reused)) => break (up, peer),
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
                Err(AcquireError::Timeout(waited)) => {
                    return Err(ProxyError::QueueTimeout {
                        deployment: deployment.name.clone(),
                        waited,
                    })
                }
                Err(AcquireError::Closed) => return Err(ProxyError::ShuttingDown),
                Err(AcquireError::QueueFull { .. }) => {
                    return Err(ProxyError::UpstreamConnect(deployment.name.clone()))
                }
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
        // From here on bytes may have reached the model: no retries.
        upstream
            .write_request_header(Box::new(request))
            .await
            .map_err(upstream_failed)?;
        if !body.is_empty() {
            upstream
                .write_request_body(body, true)
                .await
                .map_err(upstream_failed)?;
        }
        upstream
            .finish_request_body()
            .await
            .map_err(upstream_failed)?;

        let header = tokio::select! {
            r = tokio::time::timeout(config.upstream.response_timeout.get(), upstream.read_response_header()) => r,
            _ = session.read_body_or_idle(true) => {
                tracing::info!(replica = %replica.id, "client left before the response started; cancelling upstream");
                return Ok(Outcome::client_gone(route, 499, queued));
            }
        };
        match header {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(upstream_failed(e)),
            Err(_) => return Err(ProxyError::UpstreamTimeout(deployment.name.clone())),
        }
        let Some(upstream_header) = upstream.response_header() else {
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
            return Ok(Outcome::client_gone(route, status, queued));
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
                chunk = tokio::time::timeout(idle, upstream.read_response_body()) => match chunk {
                    Ok(Ok(Some(data))) => {
                        if session.write_response_body(data, false).await.is_err() {
                            tracing::info!(replica = %replica.id, "client disconnected mid-response; cancelling upstream");
                            return Ok(Outcome::client_gone(route, status, queued));
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
                    return Ok(Outcome::client_gone(route, status, queued));
                }
            }
        }
        let finished = session.finish_body().await.is_ok();
        if upstream.response_done() {
            self.connector
                .release_http_session(upstream, &peer, Some(UPSTREAM_POOL_IDLE))
                .await;
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

/// The outcome of a request a provider answered; `None` when no provider could.
fn answered(result: FallbackResult) -> Option<Outcome> {
    match result {
        FallbackResult::Answered {
            status,
            route,
            reusable,
        } => Some(Outcome {
            status,
            route,
            queued: None,
            reusable,
        }),
        FallbackResult::Unavailable => None,
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

/// Whether the client waits for `100 Continue` before sending its body.
fn expects_continue(req: &RequestHeader) -> bool {
    req.headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Writes a complete JSON response; true when the connection can be reused.
async fn respond_json(
    session: &mut ServerSession,
    status: u16,
    body: Bytes,
    extra: &[(&'static str, String)],
) -> bool {
    let Ok(mut resp) = ResponseHeader::build(status, Some(4 + extra.len())) else {
        return false;
    };
    let _ = resp.insert_header(header::CONTENT_TYPE, "application/json");
    let _ = resp.insert_header(header::CONTENT_LENGTH, body.len().to_string());
    for (name, value) in extra {
        let _ = resp.insert_header(*name, value.as_str());
    }
    session.write_response_header(Box::new(resp)).await.is_ok()
        && session.write_response_body(body, true).await.is_ok()
        && session.finish_body().await.is_ok()
        && session.is_body_done()
}

/// Answers an error with an OpenAI-style body; true when the connection can be reused.
async fn respond_error(session: &mut ServerSession, err: &ProxyError) -> bool {
    if session.response_written().is_some() {
        return false;
    }
    let mut extra = Vec::new();
    if let Some(secs) = err.retry_after() {
        extra.push(("retry-after", secs.to_string()));
    }
    let unread_body = !session.is_body_done();
    if unread_body {
        // The body was not (fully) read: the connection cannot carry another request.
        session.set_keepalive(None);
    }
    let status = StatusCode::from_u16(err.status()).map_or(500, |s| s.as_u16());
    let reusable = respond_json(session, status, err.body(), &extra).await;
    if unread_body {
        // Lingering close: swallow what the client is still sending (bounded) so it reads our
        // answer instead of a connection reset.
        let _ = tokio::time::timeout(LINGER, session.drain_request_body()).await;
    }
    reusable && !unread_body
}

impl ProxyApp {
    /// The connection limits in force.
    pub fn connection_limits(&self) -> ConnectionLimits {
        self.settings.load().connections
    }

    /// Reads one request head (within `server.header_read_timeout`, plus the keep-alive idle time
    /// on a `kept_alive` connection), answers it, and hands back the connection when it can carry
    /// another request. A head that is not valid HTTP gets 400/431/505 and the connection closes.
    pub async fn serve_session(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
        kept_alive: bool,
    ) -> Option<ReusedHttpStream> {
        let limits = self.connection_limits();
        let budget = if kept_alive {
            limits.keepalive_idle + limits.header_read_timeout
        } else {
            limits.header_read_timeout
        };
        let mut shutdown_rx = shutdown.clone();
        let waiting_since = kept_alive.then(Instant::now);
        let read = tokio::select! {
            biased;
            r = tokio::time::timeout(budget, session.read_request()) => r,
            _ = shutdown_rx.wait_for(|stopping| *stopping) => return None,
        };
        let answer = match read {
            Ok(Ok(true)) => None,
            Ok(Ok(false)) => {
                // The client closed, or pingora's keep-alive timer did.
                if waiting_since.is_some_and(|t| t.elapsed() >= limits.keepalive_idle) {
                    crate::metrics::connection_closed("idle");
                }
                return None;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "could not read request");
                let answer = connection::malformed(&e)?;
                crate::metrics::connection_closed("malformed");
                Some(answer)
            }
            Err(_) if kept_alive => {
                // Idle (or trickling) between requests: close without an answer, which a client
                // reusing the connection just then would mistake for its own.
                crate::metrics::connection_closed("idle");
                return None;
            }
            Err(_) => {
                crate::metrics::connection_closed("header_timeout");
                Some(connection::header_timeout(limits.header_read_timeout))
            }
        };
        if session.get_keepalive().is_some() {
            // pingora makes every HTTP/1.1 connection keep-alive forever once a request is read;
            // bound the idle time by server.keepalive_idle_timeout.
            session.set_keepalive(Some(limits.keepalive_idle.as_secs().max(1)));
        }
        if let Some(answer) = answer {
            tracing::info!(
                status = answer.status,
                code = answer.code,
                "request head refused"
            );
            crate::metrics::request_without_deployment("proxy", answer.status);
            if let ServerSession::H1(h1) = session {
                let mut stream = h1.into_inner();
                connection::write_raw(&mut stream, &answer).await;
            }
            return None;
        }
        if *shutdown.borrow() {
            session.set_keepalive(None);
        }
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("request", request_id, deployment = tracing::field::Empty);
        if !self.handle(&mut session, request_id).instrument(span).await {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        session
            .finish()
            .await
            .ok()
            .flatten()
            .map(|s| ReusedHttpStream::from_reusable_stream(s, settings))
    }
}

#[async_trait]
impl HttpServerApp for ProxyApp {
    /// HTTP/2 streams (HTTP/1.x connections are run by [`connection::EdgeApp`]).
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        self.serve_session(session, shutdown, false).await
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.server_options)
    }
}
