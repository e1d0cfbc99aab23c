//! Prometheus metrics (SPEC §7) through the `metrics` facade: counters and histograms are recorded
//! where things happen; gauges (in-flight, waiting, replicas by state, desired) are read from the
//! deployments when `/metrics` is scraped, so the request path pays only for what it records.

use infergate_scaler::Controller;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Histogram, Unit,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Histogram buckets in seconds: from a fast first byte to a 30-minute cold start.
const BUCKETS: [f64; 20] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1200.0, 1800.0,
];

/// Installs the process-wide recorder; returns the handle that renders the text format.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe_counter!(
        "infergate_requests_total",
        "Requests answered, by deployment, route (replica, fallback, proxy) and status."
    );
    describe_gauge!(
        "infergate_in_flight_requests",
        "Requests being served by replicas."
    );
    describe_gauge!("infergate_waiting_requests", "Requests held in the queue.");
    describe_gauge!(
        "infergate_fallback_in_flight_requests",
        "Requests being served by fallback providers."
    );
    describe_gauge!("infergate_replicas", "Replicas by state.");
    describe_gauge!(
        "infergate_desired_replicas",
        "Replicas the autoscaler asks for."
    );
    describe_histogram!(
        "infergate_cold_start_seconds",
        Unit::Seconds,
        "Scale-up decision to replica ready."
    );
    describe_histogram!(
        "infergate_queue_wait_seconds",
        Unit::Seconds,
        "Time requests waited for a replica."
    );
    describe_histogram!(
        "infergate_time_to_first_byte_seconds",
        Unit::Seconds,
        "Request received to response headers sent."
    );
    describe_counter!(
        "infergate_fallback_requests_total",
        "Requests answered by a fallback provider, by provider and reason."
    );
    describe_counter!(
        "infergate_scaling_events_total",
        "Events of the event log, by deployment and type."
    );
    describe_gauge!(
        "infergate_replica_seconds_total",
        "Replica-seconds so far, by deployment and state (starting, ready, draining, sleeping)."
    );
    describe_gauge!(
        "infergate_gpu_seconds_total",
        "GPU-seconds so far (replica-seconds awake × gpus_per_replica), by deployment."
    );
    describe_gauge!(
        "infergate_cost_usd_total",
        "What the GPU-seconds cost so far at gpu_hour_price, by deployment."
    );
    describe_counter!(
        "infergate_client_requests_total",
        "Requests admitted per client API key ([clients.NAME])."
    );
    describe_counter!(
        "infergate_client_tokens_total",
        "Tokens per client, by kind (prompt, completion)."
    );
    describe_counter!(
        "infergate_client_rate_limited_total",
        "Requests refused with 429 per client, by limit."
    );
    describe_gauge!("infergate_connections_open", "Client connections open now.");
    describe_counter!(
        "infergate_connections_refused_total",
        "Client connections refused because server.max_connections were open."
    );
    describe_counter!(
        "infergate_connections_closed_total",
        "Client connections closed by the proxy, by reason (header_timeout, idle, malformed)."
    );
    Ok(handle)
}

/// How often histogram samples are folded into their buckets when nobody scrapes `/metrics`.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the recorder's upkeep forever: without it, every histogram sample recorded stays queued
/// until the next scrape, so an unscraped proxy grows by ~22 bytes per request.
pub async fn run_upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// A connection closed by the proxy, by why.
pub fn connection_closed(reason: &'static str) {
    counter!("infergate_connections_closed_total", "reason" => reason).increment(1);
}

/// A connection refused at `server.max_connections`.
pub fn connection_refused() {
    counter!("infergate_connections_refused_total").increment(1);
}

/// The number of open client connections changed.
pub fn connections_open(open: u64) {
    gauge!("infergate_connections_open").set(open as f64);
}

/// Reads the gauges from the deployments (name and controller) and renders everything.
pub fn render<'a>(
    handle: &PrometheusHandle,
    deployments: impl IntoIterator<Item = (&'a str, &'a Controller)>,
) -> String {
    for (name, controller) in deployments {
        let name = name.to_string();
        let pool = controller.pool();
        gauge!("infergate_in_flight_requests", "deployment" => name.clone())
            .set(pool.in_flight() as f64);
        gauge!("infergate_waiting_requests", "deployment" => name.clone())
            .set(pool.waiting() as f64);
        gauge!("infergate_fallback_in_flight_requests", "deployment" => name.clone())
            .set(pool.external() as f64);
        gauge!("infergate_desired_replicas", "deployment" => name.clone())
            .set(f64::from(controller.stats.desired.load(Ordering::Acquire)));
        let replicas = pool.replicas();
        for state in ["starting", "ready", "draining", "sleeping"] {
            let n = replicas
                .iter()
                .filter(|r| r.state().name() == state)
                .count();
            gauge!("infergate_replicas", "deployment" => name.clone(), "state" => state)
                .set(n as f64);
        }
    }
    handle.render()
}

/// The label value of a route: only its kind (low cardinality).
fn route_kind(route: &str) -> &'static str {
    match route.split('/').next() {
        Some("replica") => "replica",
        Some("fallback") => "fallback",
        Some("queue") => "queue",
        _ => "proxy",
    }
}

/// One answered request that reached no deployment (unknown model, bad request…).
pub fn request_without_deployment(route: &str, status: u16) {
    counter!("infergate_requests_total", "deployment" => "none", "route" => route_kind(route), "status" => status.to_string()).increment(1);
}

/// A deployment's metric handles, registered once when the routing table is built so that the
/// common cases on the request path touch a ready handle (no label allocation, no registry lookup).
pub struct DeploymentMetrics {
    name: String,
    replica_ok: Counter,
    fallback_ok: Counter,
    queue_wait: Histogram,
    ttfb_replica: Histogram,
    ttfb_fallback: Histogram,
}

impl DeploymentMetrics {
    /// Registers the handles of deployment `name`.
    pub fn new(name: &str) -> Self {
        let n = || name.to_string();
        DeploymentMetrics {
            name: n(),
            replica_ok: counter!("infergate_requests_total", "deployment" => n(), "route" => "replica", "status" => "200"),
            fallback_ok: counter!("infergate_requests_total", "deployment" => n(), "route" => "fallback", "status" => "200"),
            queue_wait: histogram!("infergate_queue_wait_seconds", "deployment" => n()),
            ttfb_replica: histogram!("infergate_time_to_first_byte_seconds", "deployment" => n(), "route" => "replica"),
            ttfb_fallback: histogram!("infergate_time_to_first_byte_seconds", "deployment" => n(), "route" => "fallback"),
        }
    }

    /// One answered request; `route` is `replica/<id>`, `fallback/<provider>` or proxy-level.
    pub fn request(&self, route: &str, status: u16) {
        match (route_kind(route), status) {
            ("replica", 200) => self.replica_ok.increment(1),
            ("fallback", 200) => self.fallback_ok.increment(1),
            (kind, status) => counter!("infergate_requests_total", "deployment" => self.name.clone(), "route" => kind, "status" => status.to_string()).increment(1),
        }
    }

    /// Time a request waited in the queue.
    pub fn queue_wait(&self, waited: Duration) {
        self.queue_wait.record(waited.as_secs_f64());
    }

    /// Time to the first byte of a response.
    pub fn time_to_first_byte(&self, route: &str, elapsed: Duration) {
        if route.starts_with("fallback/") {
            self.ttfb_fallback.record(elapsed.as_secs_f64());
        } else {
            self.ttfb_replica.record(elapsed.as_secs_f64());
        }
    }
}

/// A request a provider answered.
pub fn fallback(deployment: &str, provider: &str, reason: &'static str) {
    counter!("infergate_fallback_requests_total", "deployment" => deployment.to_string(), "provider" => provider.to_string(), "reason" => reason).increment(1);
}
