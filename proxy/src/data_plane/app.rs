//! The request path, phase by phase: `handle` runs `route_and_proxy` — answers of its own
//! (`/v1/models`, `/health`), read body, route, admit (the fallback before the queue, the
//! maintenance hold), acquire a replica slot, forward, the fallback after a replica error — then
//! logs. Connections and request heads are `connection`'s.
//!
//! Why not pingora's `ProxyHttp` phases: they pick the upstream before the body is read and replay
//! at most 64 KiB of a body read early. Routing on the JSON `model` field of multi-megabyte prompts
//! needs the whole body first, so this app drives pingora's server and client sessions directly,
//! keeping pingora's listeners, TLS and HTTP/1.1 + HTTP/2 codecs (upstream connections are
//! `upstream`'s).

use crate::data_plane::access_log;
use crate::data_plane::client_auth::{self, Admitted};
use crate::data_plane::connection::ConnectionLimits;
use crate::data_plane::deployment::DeploymentEntry;
use crate::data_plane::errors::ProxyError;
use crate::data_plane::fallback::{overload_wait, FallbackResult};
use crate::data_plane::forward::Forwarding;
use crate::data_plane::heartbeat::{acquire_with_heartbeats, Held};
use crate::data_plane::request_body::{read_request_body, BodyLimits};
use crate::data_plane::respond::{respond_error, respond_json};
use crate::data_plane::route::{check_forwardable, route, Routed};
use crate::data_plane::routing::RouteTable;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Method;
use infergate_config::FallbackWhen;
use infergate_scaler::{Acquired, Serving};
use pingora::apps::HttpServerOptions;
use pingora::protocols::http::ServerSession;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    pub(crate) settings: Arc<ArcSwap<DataPlaneSettings>>,
    pub(crate) server_options: HttpServerOptions,
    pub(crate) next_request_id: AtomicU64,
}

/// Where a request went (`x-infergate-route`, the access log, the metrics' `route` label):
/// proxy-level names are static and replica and provider names are shared, so naming the route
/// of a request allocates nothing.
#[derive(Debug, Clone)]
pub(crate) enum RouteName {
    /// The proxy itself (`proxy`, `queue`).
    Proxy(&'static str),
    /// `replica/<id>` or `fallback/<provider>`.
    Shared(Arc<str>),
}

impl RouteName {
    /// The name as text.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            RouteName::Proxy(s) => s,
            RouteName::Shared(s) => s,
        }
    }
}

impl From<&'static str> for RouteName {
    fn from(s: &'static str) -> Self {
        RouteName::Proxy(s)
    }
}

impl std::fmt::Display for RouteName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request ended, for the access log.
pub(crate) struct Outcome {
    pub(crate) status: u16,
    pub(crate) route: RouteName,
    pub(crate) queued: Option<Duration>,
    pub(crate) reusable: bool,
}

impl Outcome {
    /// The client went away (or the response was cut): the connection cannot be reused.
    pub(crate) fn client_gone(route: RouteName, status: u16, queued: Option<Duration>) -> Self {
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
            server_options,
            next_request_id: AtomicU64::new(1),
        }
    }

    /// Answers one request whose head was read; true when the connection can be reused.
    pub(crate) async fn handle(&self, session: &mut ServerSession, request_id: u64) -> bool {
        let started = Instant::now();
        let mut deployment = None;
        let mut admitted = None;
        let outcome = match self
            .route_and_proxy(session, request_id, started, &mut deployment, &mut admitted)
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
        access_log::record(session, deployment.as_deref(), &outcome, started);
        if let Some(admitted) = admitted {
            admitted.finish();
        }
        outcome.reusable
    }

    async fn route_and_proxy(
        &self,
        session: &mut ServerSession,
        request_id: u64,
        started: Instant,
        routed_to: &mut Option<Arc<DeploymentEntry>>,
        admitted: &mut Option<Admitted>,
    ) -> Result<Outcome, ProxyError> {
        let table = self.router.load_full();
        let client = if is_health_check(session.req_header().uri.path()) {
            None // load balancers check health without a key
        } else {
            client_auth::authenticate(session.req_header(), &table.clients)?
        };
        if let Some(outcome) = answer_locally(session, &table, client.as_deref()).await? {
            return Ok(outcome);
        }
        let limits = self.settings.load().body;
        let body = read_request_body(session, limits).await?;

        let routed = route(session, &table, &body).await?;
        drop(table);
        tracing::Span::current().record("deployment", routed.deployment.name.as_str());
        *routed_to = Some(routed.deployment.clone());
        check_forwardable(session, &routed)?;
        if let Some(client) = client {
            let model = routed.model.as_deref();
            *admitted = Some(client_auth::admit(
                client,
                &routed.deployment.name,
                model,
                body.len(),
            )?);
        }
        let header = |name: &str| crate::data_plane::route::header(session, name);
        let ticket = crate::data_plane::routing_key::ticket(
            &routed.deployment.config,
            &body,
            header("x-session-id"),
            routed.user.as_deref(),
            header("x-infergate-priority"),
            admitted.as_ref().map(Admitted::client),
        );
        let Routed {
            deployment,
            strip_prefix,
            model,
            stream,
            ..
        } = routed;

        let controller = &deployment.controller;
        // The state this request found: the controller its arrival wakes may move on at once
        // (on another thread), and the fallback's reason must say why this request went there.
        let serving = controller.note_request();
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
                    // Boxed, as every fallback call: the common path need not carry its state.
                    Box::pin(fb.serve(session, &deployment, &body, model, reason, started)).await,
                )? {
                    return Ok(outcome);
                }
                tracing::warn!(deployment = %deployment.name, reason, "no fallback provider available; waiting for a replica");
            }
        }

        let max_wait = deployment.config.queue.max_wait.get();
        if controller.maintenance() {
            // No provider answered: new requests wait until maintenance is off (those in
            // flight finish on the replicas).
            let held_since = Instant::now();
            let over = tokio::select! {
                over = controller.wait_out_maintenance(max_wait) => over,
                _ = session.read_body_or_idle(true) => {
                    tracing::info!(deployment = %deployment.name, "client left while held for maintenance");
                    return Ok(Outcome::client_gone("queue".into(), 499, None));
                }
            };
            if !over {
                return Err(ProxyError::QueueTimeout {
                    deployment: deployment.name.clone(),
                    waited: held_since.elapsed(),
                });
            }
        }
        // A request that finds no ready replica waits for a cold start (or is first in line).
        let cold_start = !controller.pool().has_ready();
        let heartbeat = if stream {
            deployment.config.queue.heartbeat.get()
        } else {
            Duration::ZERO
        };
        let mut held = Held::default();
        let acquired = match overload_wait(fallback, max_wait) {
            // No heartbeats while the fallback may still answer: its head must be its own.
            Some(wait) => match self
                .acquire(
                    session,
                    &deployment,
                    wait,
                    Duration::ZERO,
                    &mut held,
                    ticket,
                )
                .await
            {
                Err(ProxyError::QueueTimeout { .. }) => {
                    if let Some(fb) = fallback {
                        let served = Box::pin(fb.serve(
                            session,
                            &deployment,
                            &body,
                            model,
                            "overloaded",
                            started,
                        ))
                        .await;
                        if let Some(outcome) = answered(served)? {
                            return Ok(outcome);
                        }
                    }
                    let left = max_wait.saturating_sub(wait);
                    self.acquire(session, &deployment, left, heartbeat, &mut held, ticket)
                        .await?
                }
                other => other?,
            },
            None => {
                self.acquire(session, &deployment, max_wait, heartbeat, &mut held, ticket)
                    .await?
            }
        };
        let Some(acquired) = acquired else {
            tracing::info!(deployment = %deployment.name, "client left while waiting in the queue");
            return Ok(Outcome::client_gone("queue".into(), 499, None));
        };
        // Once a held stream's head went out, only the replica can answer it.
        let on_replica_error = fallback
            .filter(|f| f.uses(FallbackWhen::ReplicaError))
            .filter(|_| !held.head_sent);
        let plan = Forwarding {
            started,
            body: body.clone(),
            strip_prefix,
            request_id,
            hold_server_errors: on_replica_error.is_some(),
            cold_start: cold_start && acquired.queued.is_some(),
            head_sent: held.head_sent,
            authenticated: admitted.is_some(),
            rate_headers: admitted.as_ref().map(|a| a.headers),
        };
        let usage = admitted.as_mut().map(|a| &mut a.usage);
        let forwarded = self
            .forward(session, &deployment, acquired, plan, usage)
            .await;
        match (forwarded, on_replica_error) {
            (Err(e), Some(fb)) if e.is_replica_error() => {
                tracing::warn!(deployment = %deployment.name, error = %e, "replica failed before answering; trying the fallback");
                let served = Box::pin(fb.serve(
                    session,
                    &deployment,
                    &body,
                    model,
                    "replica_error",
                    started,
                ))
                .await;
                answered(served)?.ok_or(e)
            }
            (result, _) => result,
        }
    }

    /// Waits up to `max_wait` for a slot (with heartbeats every `heartbeat` unless zero);
    /// `Ok(None)` when the client went away while waiting.
    async fn acquire(
        &self,
        session: &mut ServerSession,
        deployment: &DeploymentEntry,
        max_wait: Duration,
        heartbeat: Duration,
        held: &mut Held,
        ticket: infergate_scaler::pool::Ticket,
    ) -> Result<Option<Acquired>, ProxyError> {
        if !heartbeat.is_zero() {
            // The common case first, as `pool.acquire` does it: a free slot and nobody waiting
            // needs no heartbeat timer.
            let pool = deployment.controller.pool();
            if pool.waiting() == 0 && !pool.is_closed() {
                if let Some(slot) = pool.try_acquire_for(ticket.affinity.as_ref(), &[]) {
                    return Ok(Some(Acquired { slot, queued: None }));
                }
            }
            // Boxed: only held streams carry its state.
            return Box::pin(acquire_with_heartbeats(
                session, deployment, max_wait, heartbeat, held, ticket,
            ))
            .await;
        }
        let config = &deployment.config;
        let pool = deployment.controller.pool();
        let result = tokio::select! {
            r = pool.acquire_for(max_wait, config.queue.max_waiting.into(), ticket) => r,
            _ = session.read_body_or_idle(true) => return Ok(None),
        };
        result
            .map(Some)
            .map_err(|e| ProxyError::from_acquire(&deployment.name, e))
    }
}

/// The outcome of a request a provider answered; `None` when no provider could (the request
/// then waits for a replica), an error when one refused our key (a configuration error the
/// client should see named, not as the provider's own 401).
fn answered(result: FallbackResult) -> Result<Option<Outcome>, ProxyError> {
    match result {
        FallbackResult::Answered {
            status,
            route,
            reusable,
        } => Ok(Some(Outcome {
            status,
            route: RouteName::Shared(route.into()),
            queued: None,
            reusable,
        })),
        FallbackResult::Unavailable {
            refused_key: Some((provider, status)),
        } => Err(ProxyError::ProviderRefusedKey { provider, status }),
        FallbackResult::Unavailable { refused_key: None } => Ok(None),
    }
}

/// Phase 0: the answers the proxy gives itself (`/v1/models`, `/v1/models/<id>`, `/health`) and
/// the methods it refuses; `None` sends the request on to be routed.
async fn answer_locally(
    session: &mut ServerSession,
    table: &RouteTable,
    client: Option<&infergate_clients::Client>,
) -> Result<Option<Outcome>, ProxyError> {
    let (body, method_refused) = {
        let req = session.req_header();
        let (method, path) = (&req.method, req.uri.path());
        let body = if *method != Method::GET {
            None
        } else if path == "/v1/models" || path == "/models" {
            Some(Bytes::from(table.models_json(client)))
        } else if let Some(id) = path.strip_prefix("/v1/models/") {
            let json = table
                .model_json(id, client)
                .ok_or_else(|| ProxyError::ModelNotFound(id.to_string()))?;
            Some(Bytes::from(json))
        } else if is_health_check(path) {
            Some(Bytes::from_static(br#"{"status":"ok"}"#))
        } else {
            None
        };
        let refused =
            (*method == Method::CONNECT || *method == Method::TRACE).then(|| method.to_string());
        (body, refused)
    };
    if let Some(method) = method_refused {
        return Err(ProxyError::MethodNotAllowed(method));
    }
    let Some(body) = body else {
        return Ok(None);
    };
    let ok = respond_json(session, 200, body, &[]).await;
    Ok(Some(Outcome {
        status: 200,
        route: "proxy".into(),
        queued: None,
        reusable: ok,
    }))
}

/// The proxy's own health check (answered without a key).
fn is_health_check(path: &str) -> bool {
    path == "/health" || path == "/healthz"
}
