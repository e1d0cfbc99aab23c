//! The live state of a deployment as the admin API and `infergate status` show it.

use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// JSON state of one deployment.
pub fn deployment_state(d: &crate::data_plane::deployment::DeploymentEntry) -> Value {
    let controller = &d.controller;
    let pool = controller.pool();
    let config = controller.config();
    let replicas: Vec<Value> = pool
        .replicas()
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "addr": r.addr().to_string(),
                "state": r.state().name(),
                "ejected": r.is_ejected(),
                "in_flight": r.in_flight(),
                "cold_start_ms": r.cold_start().map(|d| d.as_millis() as u64),
                "gpus": controller.replica_gpus(&r.id),
                // The replica's own gauges at the last scrape (queue_depth / kv_cache_usage).
                "metrics": controller.replica_metrics(&r.id).map(|m| json!({
                    "waiting": m.num_requests_waiting,
                    "kv_cache_usage": m.kv_cache_usage,
                })),
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
    let seconds = controller.replica_seconds();
    let gpus = config.gpus_per_replica();
    let cost = json!({
        "replica_seconds": {
            "starting": round3(seconds.starting),
            "ready": round3(seconds.ready),
            "draining": round3(seconds.draining),
            "sleeping": round3(seconds.sleeping),
        },
        "gpus_per_replica": gpus,
        "gpu_seconds": round3(seconds.gpu_seconds(gpus)),
        "gpu_hour_price": config.gpu_hour_price,
        "cost_usd": config.gpu_hour_price.map(|p| round3(seconds.cost_usd(gpus, p))),
    });
    json!({
        "name": d.name,
        "aliases": config.aliases,
        "in_flight": pool.in_flight(),
        "waiting": pool.waiting(),
        "requests_total": pool.requests_total(),
        "serving": controller.serving().name(),
        "maintenance": controller.maintenance(),
        "maintenance_note": controller.maintenance().then(|| maintenance_note(d, &config)),
        "maintenance_waiting": controller.maintenance_held(),
        "fallback_requests_in_flight": pool.external(),
        "fallback_engaged": d.fallback.as_ref().is_some_and(|f| {
            f.ramp
                .is_engaged_at(f.registry.now(), f.config.ramp_back.get())
        }),
        "desired_replicas": stats.desired.load(Ordering::Acquire),
        "peak_desired_replicas": stats.peak_desired.load(Ordering::Acquire),
        "decision": decision,
        "replicas": replicas,
        "replicas_started_total": stats.replicas_started.load(Ordering::Acquire),
        "replicas_failed_total": stats.replicas_failed.load(Ordering::Acquire),
        "replicas_stopped_total": stats.replicas_stopped.load(Ordering::Acquire),
        "cost": cost,
        "schedule": schedule_json(&config, controller.schedule_status()),
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

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// What maintenance does to this deployment's requests.
fn maintenance_note(
    d: &crate::data_plane::deployment::DeploymentEntry,
    config: &infergate_config::DeploymentConfig,
) -> String {
    let bridged = d
        .fallback
        .as_ref()
        .is_some_and(|f| f.uses(infergate_config::FallbackWhen::Maintenance));
    if bridged {
        "new requests go to the fallback providers; requests in flight finish on the replicas"
            .into()
    } else {
        format!(
            "no fallback for maintenance: new requests wait (up to queue.max_wait = {}) until maintenance is off; requests in flight finish",
            config.queue.max_wait
        )
    }
}

/// The scheduled window in force and the next one (`null` when none is configured).
fn schedule_json(
    config: &infergate_config::DeploymentConfig,
    (active, next): (
        Option<infergate_scaler::schedule::Span>,
        Option<infergate_scaler::schedule::Span>,
    ),
) -> Value {
    if config.schedule.is_empty() {
        return Value::Null;
    }
    let span = |s: Option<infergate_scaler::schedule::Span>| {
        s.and_then(|s| {
            let w = config.schedule.get(s.window)?;
            Some(json!({
                "window": s.window,
                "cron": w.cron,
                "tz": w.tz,
                "min_replicas": w.min_replicas,
                "max_replicas": w.max_replicas,
                "warm_from": s.warm_from.to_string(),
                "opens": s.opens.to_string(),
                "closes": s.closes.to_string(),
            }))
        })
    };
    json!({ "active": span(active), "next": span(next) })
}
