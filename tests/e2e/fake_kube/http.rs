//! The fake API server's HTTPS listener and request routing.

use super::objects::{self, Change};
use super::{pods, Cluster, TOKEN};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Binds 127.0.0.1:0 with TLS (the given self-signed certificate) and serves in the background.
pub async fn serve(cluster: Arc<Cluster>, cert: Vec<u8>, key: Vec<u8>) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let cluster = cluster.clone();
                    async move { Ok::<_, Infallible>(handle(cluster, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

fn error(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &objects::status(code.as_u16(), reason, message))
}

async fn handle(cluster: Arc<Cluster>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url_pairs(q)
                .into_iter()
                .collect::<HashMap<String, String>>()
        })
        .unwrap_or_default();
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    cluster
        .state
        .lock()
        .unwrap()
        .requests
        .push(format!("{method} {path}"));
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    // RBAC as the API server does it, with the Role infergate ships.
    if let Some((group, resource, verb)) = rbac_attributes(&method, &path, &query) {
        static GRANTS: std::sync::OnceLock<std::collections::BTreeSet<(String, String, String)>> =
            std::sync::OnceLock::new();
        let grants = GRANTS.get_or_init(crate::deploy_manifests::role_grants);
        if !grants.contains(&(group.clone(), resource.clone(), verb.clone())) {
            let message = format!("forbidden: the infergate Role cannot {verb} resource \"{resource}\" in API group \"{group}\"");
            return error(StatusCode::FORBIDDEN, "Forbidden", &message);
        }
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let namespace = cluster.state.lock().unwrap().namespace.clone();
    match (method, parts.as_slice()) {
        (m, ["apis", "apps", "v1", "namespaces", ns, "deployments", name, "scale"])
            if *ns == namespace =>
        {
            scale(&cluster, &m, name, &body)
        }
        (Method::GET, ["apis", "discovery.k8s.io", "v1", "namespaces", ns, "endpointslices"])
            if *ns == namespace =>
        {
            let service = query
                .get("labelSelector")
                .and_then(|l| l.strip_prefix("kubernetes.io/service-name="))
                .map(str::to_string);
            if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
                let from = query
                    .get("resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                watch(cluster, service, from)
            } else {
                let s = cluster.state.lock().unwrap();
                let items = objects::current_slices(&s.history, service.as_deref());
                json_response(
                    StatusCode::OK,
                    &json!({
                        "apiVersion": "discovery.k8s.io/v1",
                        "kind": "EndpointSliceList",
                        "metadata": { "resourceVersion": s.rv.to_string() },
                        "items": items,
                    }),
                )
            }
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "pods"]) if *ns == namespace => {
            let app = query
                .get("labelSelector")
                .and_then(|l| l.strip_prefix("app="))
                .unwrap_or_default()
                .to_string();
            let s = cluster.state.lock().unwrap();
            let items: Vec<Value> = s
                .pods
                .values()
                .filter(|p| p.workload == app)
                .map(|p| p.to_json(&namespace))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({ "apiVersion": "v1", "kind": "PodList",
                    "metadata": { "resourceVersion": s.rv.to_string() }, "items": items }),
            )
        }
        (Method::PATCH, ["api", "v1", "namespaces", ns, "pods", name]) if *ns == namespace => {
            patch_pod(&cluster, name, &body)
        }
        (m, ["apis", "coordination.k8s.io", "v1", "namespaces", ns, "leases", rest @ ..])
            if *ns == namespace =>
        {
            lease(&cluster, &m, rest.first().copied(), body)
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("no route for {path}"),
        ),
    }
}

/// GET or PATCH (merge patch of `spec.replicas`) of a Deployment's scale subresource.
fn scale(cluster: &Arc<Cluster>, method: &Method, name: &str, body: &Value) -> Response<Body> {
    if !cluster.state.lock().unwrap().workloads.contains_key(name) {
        let message = format!("deployments.apps \"{name}\" not found");
        return error(StatusCode::NOT_FOUND, "NotFound", &message);
    }
    if *method == Method::PATCH {
        let Some(replicas) = body["spec"]["replicas"].as_u64() else {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "spec.replicas missing",
            );
        };
        pods::set_replicas(cluster, name, replicas as u32, true);
    } else if *method != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "GET or PATCH",
        );
    }
    let mut s = cluster.state.lock().unwrap();
    s.rv += 1;
    let replicas = s.workloads[name].replicas;
    let ready = s
        .pods
        .values()
        .filter(|p| p.workload == name && p.ready)
        .count() as u32;
    json_response(
        StatusCode::OK,
        &objects::scale(&s.namespace, name, replicas, ready, s.rv),
    )
}

/// PATCH of a pod's annotations (the pod-deletion-cost).
fn patch_pod(cluster: &Cluster, name: &str, body: &Value) -> Response<Body> {
    let mut s = cluster.state.lock().unwrap();
    let namespace = s.namespace.clone();
    let Some(pod) = s.pods.get_mut(name) else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods \"{name}\" not found"),
        );
    };
    let annotations = &body["metadata"]["annotations"];
    if let Some(cost) = annotations["controller.kubernetes.io/pod-deletion-cost"].as_str() {
        pod.deletion_cost = cost.parse().unwrap_or(0);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": { "controller.kubernetes.io/pod-deletion-cost": pod.deletion_cost.to_string() },
            },
        }),
    )
}

/// Lease GET, POST (create: 409 if it exists) and PUT (update: 409 unless the resourceVersion
/// is the current one).
fn lease(
    cluster: &Cluster,
    method: &Method,
    name: Option<&str>,
    mut body: Value,
) -> Response<Body> {
    let mut s = cluster.state.lock().unwrap();
    match (method.clone(), name) {
        (Method::GET, Some(name)) => match s.leases.get(name) {
            Some(lease) => json_response(StatusCode::OK, lease),
            None => error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("leases.coordination.k8s.io \"{name}\" not found"),
            ),
        },
        (Method::POST, None) => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if s.leases.contains_key(&name) {
                return error(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("leases.coordination.k8s.io \"{name}\" already exists"),
                );
            }
            s.rv += 1;
            body["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            s.leases.insert(name, body.clone());
            json_response(StatusCode::CREATED, &body)
        }
        (Method::PUT, Some(name)) => {
            let Some(current) = s.leases.get(name) else {
                return error(StatusCode::NOT_FOUND, "NotFound", "lease not found");
            };
            if current["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"] {
                return error(StatusCode::CONFLICT, "Conflict", "Operation cannot be fulfilled on leases.coordination.k8s.io: the object has been modified; please apply your changes to the latest version and try again");
            }
            s.rv += 1;
            body["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            s.leases.insert(name.to_string(), body.clone());
            json_response(StatusCode::OK, &body)
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "lease verbs: get, create, update",
        ),
    }
}

/// A watch from resourceVersion `from`: the changes after it, then live ones and a bookmark each
/// second; 410 Gone (as an ERROR event) when `from` is older than the kept history.
fn watch(cluster: Arc<Cluster>, service: Option<String>, from: u64) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<String>(256);
    let (backlog, mut live, expired) = {
        let s = cluster.state.lock().unwrap();
        let live = cluster.changes.subscribe();
        let expired = from < s.compacted_below;
        let backlog: Vec<Change> = s
            .history
            .iter()
            .filter(|c| c.rv > from && service.as_deref().is_none_or(|svc| svc == c.service))
            .cloned()
            .collect();
        (backlog, live, expired)
    };
    let gone = objects::status(410, "Expired", &format!("too old resource version: {from}"));
    tokio::spawn(async move {
        if expired {
            let _ = tx
                .send(format!("{}\n", json!({"type": "ERROR", "object": gone})))
                .await;
            return;
        }
        let mut last = from;
        for c in backlog {
            last = c.rv;
            if tx.send(c.line()).await.is_err() {
                return;
            }
        }
        let mut bookmarks = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                change = live.recv() => match change {
                    Ok(c) if c.kind == "EXPIRE" => return,
                    Ok(c) if c.rv <= last => {}
                    Ok(c) if service.as_deref().is_none_or(|svc| svc == c.service) => {
                        last = c.rv;
                        if tx.send(c.line()).await.is_err() { return; }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = bookmarks.tick() => {
                    let rv = cluster.state.lock().unwrap().rv;
                    let bookmark = json!({"type": "BOOKMARK", "object": {
                        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {"resourceVersion": rv.to_string()}}});
                    last = last.max(rv);
                    if tx.send(format!("{bookmark}\n")).await.is_err() { return; }
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, Infallible>(Frame::data(Bytes::from(line))), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed())
        .unwrap()
}

/// Decodes `a=b&c=d` with percent-escapes.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The (API group, resource[/subresource], verb) an authorizer checks for a request.
fn rbac_attributes(
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
) -> Option<(String, String, String)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (resource, name, sub) = match rest {
        ["namespaces", _, resource] => (*resource, None, None),
        ["namespaces", _, resource, name] => (*resource, Some(*name), None),
        ["namespaces", _, resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return None,
    };
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (method.clone(), name) {
        (Method::GET, Some(_)) => "get",
        (Method::GET, None) if watch => "watch",
        (Method::GET, None) => "list",
        (Method::POST, _) => "create",
        (Method::PUT, _) => "update",
        (Method::PATCH, _) => "patch",
        (Method::DELETE, _) => "delete",
        _ => return None,
    };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    Some((group.to_string(), resource, verb.to_string()))
}
