//! The admin listener (SPEC §7): deployments' live state, autoscaling changes, hibernate /
//! resume / activate / maintenance, the event log (listed and streamed as SSE), an OpenAPI
//! document, and Prometheus `/metrics`.
//!
//! Everything under `/admin/` needs `Authorization: Bearer <token>` (compared in constant time);
//! `/healthz` and `/metrics` are open so that probes and scrapers need no secret.

mod clients;
mod cluster;
mod patch;
mod state;

pub use state::deployment_state;

use crate::data_plane::routing::RouteTable;
use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use infergate_scaler::events::{EventFilter, EventLog};
use patch::AutoscalingPatch;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Largest admin request body.
const MAX_BODY: usize = 64 * 1024;

/// The OpenAPI description of this API, served at `/admin/v1/openapi.json`.
const OPENAPI: &str = include_str!("openapi.json");

type Body = BoxBody<Bytes, Infallible>;

/// What the admin API serves from.
pub struct AdminState {
    /// The routing table (deployments and their controllers), swapped on reload.
    pub router: Arc<ArcSwap<RouteTable>>,
    /// The event log.
    pub events: Arc<EventLog>,
    /// The bearer token.
    pub token: String,
    /// Renders Prometheus metrics.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    full(status, "application/json", body.to_string())
}

/// An OpenAI-style error body.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response<Body> {
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    json_response(
        status,
        json!({"error": {"message": message.into(), "type": kind, "param": null, "code": code}}),
    )
}

/// Constant-time comparison (the length is not secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `None` when the request carries the token; else the 401/403 answer.
fn refuse_unauthorized(state: &AdminState, req: &Request<Incoming>) -> Option<Response<Body>> {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "The admin API needs `Authorization: Bearer <token>` (the token is in the environment variable named by admin.token_env, or in the file infergate printed at start).",
        )),
        Some(t) if !same(t.as_bytes(), state.token.as_bytes()) => Some(error(
            StatusCode::FORBIDDEN,
            "invalid_token",
            "The admin token is wrong.",
        )),
        Some(_) => None,
    }
}

async fn handle(state: Arc<AdminState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => {
            return json_response(StatusCode::OK, json!({"status": "ok"}))
        }
        (&Method::GET, "/metrics") => {
            return full(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                (state.metrics)(),
            )
        }
        _ => {}
    }
    if !path.starts_with("/admin/") {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such admin resource: {path}"),
        );
    }
    if let Some(refused) = refuse_unauthorized(&state, &req) {
        return refused;
    }
    let table = state.router.load_full();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/admin/v1/cluster/load") => {
            json_response(StatusCode::OK, cluster::load(&table))
        }
        (&Method::GET, "/admin/v1/cluster") => json_response(StatusCode::OK, cluster::status()),
        (&Method::GET, "/admin/v1/clients") => {
            json_response(StatusCode::OK, clients::list(&table.clients))
        }
        (&Method::GET, "/admin/v1/openapi.json") => {
            full(StatusCode::OK, "application/json", OPENAPI)
        }
        (&Method::GET, "/admin/v1/deployments") => {
            let list: Vec<Value> = table
                .deployments
                .iter()
                .map(|d| deployment_state(d))
                .collect();
            json_response(StatusCode::OK, json!({"deployments": list}))
        }
        (&Method::GET, "/admin/v1/events") => {
            let filter = by_name(event_filter(req.uri().query()), &table);
            let list = state.events.list(&filter);
            let list: Vec<&infergate_scaler::events::Event> = list.iter().map(|e| &**e).collect();
            json_response(StatusCode::OK, json!({"events": list}))
        }
        (&Method::GET, "/admin/v1/events/stream") => event_stream(
            &state.events,
            by_name(event_filter(req.uri().query()), &table),
        ),
        _ => deployment_resource(&table, req, &path).await,
    }
}

/// `/admin/v1/deployments/NAME[/action]`.
async fn deployment_resource(
    table: &RouteTable,
    req: Request<Incoming>,
    path: &str,
) -> Response<Body> {
    let Some(rest) = path.strip_prefix("/admin/v1/deployments/") else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such admin resource: {path}"),
        );
    };
    // Names may hold '/', so actions are recognised as suffixes.
    let (name, action) = ACTIONS
        .iter()
        .find_map(|a| {
            rest.strip_suffix(a)
                .and_then(|n| n.strip_suffix('/'))
                .map(|n| (n, Some(*a)))
        })
        .unwrap_or((rest, None));
    let Some(d) = table.by_model(name).filter(|_| !name.is_empty()) else {
        return error(
            StatusCode::NOT_FOUND,
            "deployment_not_found",
            format!("no deployment named {name:?}"),
        );
    };
    let c = &d.controller;
    match (req.method().clone(), action) {
        (Method::GET, None) => json_response(StatusCode::OK, deployment_state(d)),
        (Method::PATCH, None) => {
            let body = match Limited::read(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            let patch: AutoscalingPatch = match serde_json::from_slice(&body) {
                Ok(p) => p,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_settings",
                        format!("cannot read the settings: {e}"),
                    )
                }
            };
            match c.update_config(patch.apply(&c.config()), "api") {
                Ok(()) => json_response(StatusCode::OK, deployment_state(d)),
                Err(e) => error(StatusCode::BAD_REQUEST, "invalid_settings", e.to_string()),
            }
        }
        (Method::POST, Some(action)) => {
            let done = match action {
                "maintenance/on" | "maintenance/off" => {
                    c.set_maintenance(action == "maintenance/on");
                    Ok(())
                }
                "hibernate" => c.hibernate(),
                "resume" => c.resume(),
                _ => c.activate(),
            };
            match done {
                Ok(()) => json_response(StatusCode::OK, deployment_state(d)),
                Err(message) => error(StatusCode::CONFLICT, "invalid_state", message),
            }
        }
        (method, _) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        ),
    }
}

/// Actions on one deployment: `POST /admin/v1/deployments/NAME/<action>`.
const ACTIONS: [&str; 5] = [
    "maintenance/on",
    "maintenance/off",
    "hibernate",
    "resume",
    "activate",
];

/// Reads a request body up to [`MAX_BODY`].
struct Limited;

impl Limited {
    async fn read(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
        let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
        match limited.collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) => Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("cannot read the body (at most {MAX_BODY} bytes): {e}"),
            )),
        }
    }
}

/// The filter with an alias in `deployment=` replaced by the deployment's name (events carry
/// names; an alias works wherever a name does).
fn by_name(mut filter: EventFilter, table: &RouteTable) -> EventFilter {
    if let Some(d) = filter.deployment.as_deref().and_then(|n| table.by_model(n)) {
        filter.deployment = Some(d.name.clone());
    }
    filter
}

/// `?deployment=&type=a,b&since=&limit=`.
fn event_filter(query: Option<&str>) -> EventFilter {
    let mut filter = EventFilter::default();
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "deployment" if !value.is_empty() => filter.deployment = Some(value),
            "type" => {
                filter.kinds = value
                    .split(',')
                    .filter(|k| !k.is_empty())
                    .map(String::from)
                    .collect()
            }
            "since" => filter.since = value.parse().ok(),
            "limit" => filter.limit = value.parse().ok(),
            _ => {}
        }
    }
    filter
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Server-sent events: the matching events kept in memory, then new ones as they happen.
fn event_stream(events: &Arc<EventLog>, filter: EventFilter) -> Response<Body> {
    let live = events.subscribe();
    let backlog = events.list(&filter);
    let last = backlog.last().map(|e| e.seq).or(filter.since);
    let frame = |e: &infergate_scaler::events::Event| {
        let data = serde_json::to_string(e).unwrap_or_default();
        Ok::<_, Infallible>(Frame::data(Bytes::from(format!(
            "id: {}\nevent: {}\ndata: {data}\n\n",
            e.seq,
            e.kind.name()
        ))))
    };
    let first: Vec<_> = backlog.iter().map(|e| frame(e)).collect();
    let live_filter = EventFilter {
        since: last,
        limit: None,
        ..filter
    };
    let rest = futures_util::stream::unfold((live, live_filter), move |(mut rx, f)| async move {
        loop {
            match rx.recv().await {
                Ok(e) if f.matches(&e) => {
                    let data = serde_json::to_string(&*e).unwrap_or_default();
                    let chunk =
                        format!("id: {}\nevent: {}\ndata: {data}\n\n", e.seq, e.kind.name());
                    return Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))),
                        (rx, f),
                    ));
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // A comment first so clients see the headers at once.
    let hello = futures_util::stream::once(async {
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b": infergate events\n\n")))
    });
    let stream = hello.chain(futures_util::stream::iter(first)).chain(rest);
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    resp
}

/// Serves the admin API on an already bound listener until `stop` turns true.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let state = state.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            // Event streams never end on their own: close them when infergate stops.
            tokio::select! {
                _ = conn => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }

    #[test]
    fn event_filters_parse_from_the_query() {
        let f = event_filter(Some(
            "deployment=llama%2Fbig&type=scaled_up,replica_ready&since=4&limit=10",
        ));
        assert_eq!(f.deployment.as_deref(), Some("llama/big"));
        assert_eq!(f.kinds, vec!["scaled_up", "replica_ready"]);
        assert_eq!((f.since, f.limit), (Some(4), Some(10)));
    }
}
