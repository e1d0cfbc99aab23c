//! The admin listener: live state of every deployment as JSON, for operators and tests.
//! (Authentication, mutations, events and Prometheus metrics arrive with the control-plane work.)

use crate::routing::RouteTable;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// JSON state of one deployment.
pub fn deployment_state(d: &crate::routing::DeploymentEntry) -> Value {
    let controller = &d.controller;
    let pool = controller.pool();
    let config = controller.config();
    let replicas: Vec<Value> = pool
        .replicas()
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "addr": r.addr.to_string(),
                "state": r.state().name(),
                "in_flight": r.in_flight(),
                "cold_start_ms": r.cold_start().map(|d| d.as_millis() as u64),
            })
        })
        .collect();
    let stats = &controller.stats;
    let decision = controller.last_decision().map(|d| {
        json!({
            "desired": d.desired,
            "reason": d.reason,
            "average_load": d.average_load,
            "current_load": d.current_load,
            "starting": d.replicas.starting,
            "ready": d.replicas.ready,
            "scale_up_latency_us": d.scale_up_latency.map(|l| l.as_micros() as u64),
        })
    });
    json!({
        "name": d.name,
        "aliases": config.aliases,
        "in_flight": pool.in_flight(),
        "waiting": pool.waiting(),
        "requests_total": pool.requests_total(),
        "serving": controller.serving().name(),
        "maintenance": controller.maintenance(),
        "fallback_requests_in_flight": pool.external(),
        "fallback_engaged": d.fallback.as_ref().is_some_and(|f| f.ramp.is_engaged()),
        "desired_replicas": stats.desired.load(Ordering::Acquire),
        "peak_desired_replicas": stats.peak_desired.load(Ordering::Acquire),
        "decision": decision,
        "replicas": replicas,
        "replicas_started_total": stats.replicas_started.load(Ordering::Acquire),
        "replicas_failed_total": stats.replicas_failed.load(Ordering::Acquire),
        "replicas_stopped_total": stats.replicas_stopped.load(Ordering::Acquire),
        "settings": {
            "preset": config.preset,
            "min_replicas": config.effective_min_replicas(),
            "max_replicas": config.effective_max_replicas(),
            "autoscaling_window": config.autoscaling_window.to_string(),
            "scale_down_delay": config.scale_down_delay.to_string(),
            "concurrency_target": config.concurrency_target,
            "target_utilization": config.target_utilization,
            "metric": config.metric,
            "kv_cache_target": config.kv_cache_target,
            "replica_concurrency": config.replica_concurrency,
            "startup_timeout": config.startup_timeout.to_string(),
            "queue_max_wait": config.queue.max_wait.to_string(),
            "queue_max_waiting": config.queue.max_waiting,
        },
    })
}

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn route(
    router: &ArcSwap<RouteTable>,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let table = router.load();
    let path = req.uri().path();
    match path {
        "/healthz" => json_response(StatusCode::OK, json!({"status": "ok"})),
        "/admin/v1/deployments" => {
            let list: Vec<Value> = table
                .deployments
                .iter()
                .map(|d| deployment_state(d))
                .collect();
            json_response(StatusCode::OK, json!({"deployments": list}))
        }
        _ => {
            let rest = path
                .strip_prefix("/admin/v1/deployments/")
                .unwrap_or_default();
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
                return not_found(path);
            };
            match (req.method(), action) {
                (&Method::GET, None) => json_response(StatusCode::OK, deployment_state(d)),
                (&Method::POST, Some(action)) => {
                    let c = &d.controller;
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
                        Err(message) => json_response(
                            StatusCode::CONFLICT,
                            json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "invalid_state"}}),
                        ),
                    }
                }
                _ => not_found(path),
            }
        }
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

fn not_found(path: &str) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"error": {"message": format!("no such admin resource: {path}"), "type": "invalid_request_error", "param": null, "code": "not_found"}}),
    )
}

/// Serves the admin API on an already bound listener until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    router: Arc<ArcSwap<RouteTable>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let resp = route(&router, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
