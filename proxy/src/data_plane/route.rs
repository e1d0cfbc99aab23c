//! Phase 3, route: which deployment a request is for — its `model` (JSON field or multipart form
//! field, read from the body already in memory), else the `x-infergate-deployment` header, the
//! host or the path prefix — and whether its path may reach that deployment's replicas.

use crate::data_plane::deployment::DeploymentEntry;
use crate::data_plane::errors::ProxyError;
use crate::data_plane::request_body::{fields_of, is_json};
use crate::data_plane::routing::RouteTable;
use bytes::Bytes;
use infergate_fallback::forwarded_by_us;
use pingora::protocols::http::ServerSession;
use std::borrow::Cow;
use std::sync::Arc;

/// Where a request goes; `'b` is the request body's lifetime (the model name is usually a slice
/// of it, not a copy).
pub(crate) struct Routed<'b> {
    /// The deployment.
    pub(crate) deployment: Arc<DeploymentEntry>,
    /// Length of the deployment's path prefix to strip upstream.
    pub(crate) strip_prefix: usize,
    /// The `model` the request named, if any.
    pub(crate) model: Option<Cow<'b, str>>,
    /// The request asked for a stream (`"stream": true`).
    pub(crate) stream: bool,
    /// The body's `user` field.
    pub(crate) user: Option<Cow<'b, str>>,
}

/// Finds the deployment of a request whose body was read; 404 for an unknown model, 400 for a
/// `/v1/` request without one, 404 for a path no deployment serves.
pub(crate) async fn route<'b>(
    session: &ServerSession,
    table: &RouteTable,
    body: &'b Bytes,
) -> Result<Routed<'b>, ProxyError> {
    let method = &session.req_header().method;
    let path = session.req_header().uri.path();
    let header_str = |name: &str| header(session, name);
    let content_type = header_str("content-type");
    let mut stream = false;
    let mut user = None;
    let model = if body.is_empty() {
        None
    } else if let Some(boundary) = crate::data_plane::multipart::boundary(content_type) {
        // Boxed: multipart parsing is a large state machine that JSON requests need not carry.
        Box::pin(crate::data_plane::multipart::text_field(
            body, &boundary, "model",
        ))
        .await
        .map_err(|e| ProxyError::BadBody(format!("multipart/form-data: {e}")))?
        .map(Cow::Owned)
    } else if is_json(content_type) {
        let fields = fields_of(body)?;
        stream = fields.stream;
        user = fields.user;
        fields.model
    } else {
        None
    };
    let host = header_str("host").or_else(|| session.req_header().uri.host());
    let deployment_header = header_str("x-infergate-deployment");
    let (deployment, strip_prefix) = match model.as_deref().and_then(|m| table.by_model(m)) {
        Some(d) => {
            let strip = table
                .prefix_route(path)
                .filter(|r| Arc::ptr_eq(r.deployment, d))
                .map_or(0, |r| r.strip_prefix);
            (d.clone(), strip)
        }
        None => match table.by_request(deployment_header, host, path) {
            Some(r) => (r.deployment.clone(), r.strip_prefix),
            None => {
                return Err(match model {
                    Some(m) => ProxyError::ModelNotFound(m.into_owned()),
                    None if path.starts_with("/v1/") => ProxyError::ModelRequired,
                    None => ProxyError::NoRoute {
                        method: method.to_string(),
                        path: path.to_string(),
                    },
                })
            }
        },
    };
    Ok(Routed {
        deployment,
        strip_prefix,
        model,
        stream,
        user,
    })
}

/// A request header's value as text (`None` when absent or not visible ASCII).
pub(crate) fn header<'s>(session: &'s ServerSession, name: &str) -> Option<&'s str> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

/// Refuses what must not reach a replica of the deployment: a path outside `/v1/*` and
/// `route.passthrough` (404), a request that already passed through this proxy (508).
pub(crate) fn check_forwardable(
    session: &ServerSession,
    routed: &Routed,
) -> Result<(), ProxyError> {
    let path = session.req_header().uri.path();
    let (deployment, strip_prefix) = (&routed.deployment, routed.strip_prefix);
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

    Ok(())
}
