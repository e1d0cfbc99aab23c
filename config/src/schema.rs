//! The configuration schema: every setting with its default. Ranges live in `validate.rs`.

use crate::duration::HumanDuration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Data-plane listeners and request limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// The operator-facing listener (state, metrics).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Model deployments by public name.
    #[serde(default)]
    pub deployments: BTreeMap<String, DeploymentConfig>,
    /// External OpenAI-compatible providers that deployments may fall back to, by name.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The event log.
    #[serde(default)]
    pub events: EventsConfig,
    /// Several instances with one scaling brain (Kubernetes leader election).
    #[serde(default)]
    pub cluster: crate::ClusterConfig,
    /// The box's GPUs, shared by the process-backend deployments that set `gpus_per_replica`
    /// without a `gpus` list of their own.
    #[serde(default)]
    pub gpus: crate::GpusConfig,
    /// Whether clients need an API key (`[auth] required = true`).
    #[serde(default)]
    pub auth: crate::AuthConfig,
    /// Client API keys with the models each may use and its limits, by client name.
    #[serde(default)]
    pub clients: BTreeMap<String, crate::ClientConfig>,
}

/// The event log: kept in memory, optionally appended to a JSONL file.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events kept in memory (the oldest are dropped).
    pub capacity: u32,
    /// JSONL file events are appended to (none = memory only).
    pub file: Option<String>,
    /// Size in bytes at which the file is rotated to `<file>.1`.
    pub file_max_size: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            capacity: 10_000,
            file: None,
            file_max_size: 10 * 1024 * 1024,
        }
    }
}

/// An external OpenAI-compatible provider (SPEC §6). Its API key is read from an environment
/// variable at start, never from the file, and is never written anywhere but its requests.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Base URL as OpenAI clients take it, e.g. `https://api.openai.com/v1`; a request for
    /// `/v1/chat/completions` goes to `<base_url>/chat/completions`.
    pub base_url: String,
    /// Name of the environment variable holding the API key (sent as `Authorization: Bearer`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Model names on the provider, by our deployment name or alias; unmapped names pass as-is.
    #[serde(default)]
    pub models: BTreeMap<String, String>,
    /// Lower is tried first.
    #[serde(default = "defaults::priority")]
    pub priority: u32,
    /// Longest wait for the provider's response headers (and between body chunks).
    #[serde(default = "defaults::provider_timeout")]
    pub timeout: HumanDuration,
    /// Extra CA certificates (PEM) trusted for this provider, on top of the system roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Consecutive failures (errors, timeouts, 5xx) after which the provider is cooled down.
    #[serde(default = "defaults::failures_to_cool_down")]
    pub failures_to_cool_down: u32,
    /// How long a failing provider is skipped.
    #[serde(default = "defaults::cool_down")]
    pub cool_down: HumanDuration,
}

/// Situations in which a deployment's requests go to its fallback providers (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FallbackWhen {
    /// The deployment is hibernated (the request also counts towards waking it).
    Hibernated,
    /// Woken from hibernation, no replica ready yet.
    Waking,
    /// No replica ready (scale from zero, first deploy, all replicas replaced).
    ColdStart,
    /// A request has waited longer than `fallback_after`.
    Overloaded,
    /// Connect failure or 5xx from our replica before any byte reached the client.
    ReplicaError,
    /// Maintenance was switched on by hand.
    Maintenance,
}

/// A deployment's fallback to external providers.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    /// Provider names (tried by their priority, then in this order).
    pub providers: Vec<String>,
    /// When to use them.
    #[serde(default = "defaults::fallback_when")]
    pub when: Vec<FallbackWhen>,
    /// With `overloaded`: how long a request may wait for a replica before it goes to a provider.
    #[serde(default = "defaults::fallback_after")]
    pub fallback_after: HumanDuration,
    /// Once replicas are ready again, traffic moves back to them gradually over this time.
    #[serde(default = "defaults::ramp_back")]
    pub ramp_back: HumanDuration,
}

/// What hibernation does to the replicas first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum HibernationMode {
    /// Stop them at `idle_after` (the default).
    #[default]
    Stop,
    /// Put them to sleep at `sleep_after`, stop them at `idle_after`.
    Sleep,
}

/// Hibernation of an idle deployment (SPEC §5).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HibernationConfig {
    /// `stop` (replicas stop) or `sleep` (first they sleep: the process stays, its GPU memory
    /// is freed, and it wakes in seconds — vLLM's `/sleep` and `/wake_up`).
    pub mode: HibernationMode,
    /// With `mode = "sleep"`: no request for this long puts the replicas to sleep.
    pub sleep_after: HumanDuration,
    /// How long the request rate must stay below `below_rps` before hibernating (stopping the
    /// replicas, sleeping or not).
    pub idle_after: HumanDuration,
    /// Request rate (per second, averaged over `idle_after`) under which the deployment is idle.
    pub below_rps: f64,
    /// Requests that wake a hibernated deployment.
    pub wake_after_requests: u32,
}

impl Default for HibernationConfig {
    fn default() -> Self {
        HibernationConfig {
            mode: HibernationMode::Stop,
            sleep_after: HumanDuration::secs(300),
            idle_after: HumanDuration::secs(1800),
            below_rps: 0.0,
            wake_after_requests: 1,
        }
    }
}

/// Settings of the OpenAI-compatible data plane.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Addresses the proxy accepts client traffic on.
    pub listeners: Vec<ListenerConfig>,
    /// Largest request body accepted, in bytes (prompts reach megabytes).
    pub max_body_size: u64,
    /// How long in-flight requests may take to finish when infergate is asked to stop.
    pub shutdown_grace: HumanDuration,
    /// Longest time from a new connection (or the first byte of a request on a kept-alive one)
    /// to a complete request header; slower clients are closed (slowloris).
    pub header_read_timeout: HumanDuration,
    /// Longest a kept-alive connection may sit idle between requests (HTTP/1.1 and HTTP/2).
    pub keepalive_idle_timeout: HumanDuration,
    /// Most client connections open at once; more are refused (503 on HTTP/1.1, then closed).
    pub max_connections: u32,
    /// Longest silence between two pieces of a request body (408 after it).
    pub body_read_timeout: HumanDuration,
    /// Slowest accepted average body upload, in bytes per second, after a first
    /// `body_read_timeout` of grace (408 below it).
    pub min_body_rate: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listeners: vec![ListenerConfig::default()],
            max_body_size: 32 * 1024 * 1024,
            shutdown_grace: HumanDuration::secs(30),
            header_read_timeout: HumanDuration::secs(10),
            keepalive_idle_timeout: HumanDuration::secs(60),
            max_connections: 10_000,
            body_read_timeout: HumanDuration::secs(30),
            min_body_rate: 1024,
        }
    }
}

/// One downstream listener: plain HTTP/1.1 + h2c, or TLS with ALPN h2/http1.1.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// `host:port` to bind; port 0 lets the OS choose (the chosen address is printed).
    pub address: String,
    /// Accept HTTP/2 with prior knowledge on a plain-text listener.
    pub h2c: bool,
    /// Serve TLS with this certificate chain and key (PEM files).
    pub tls: Option<TlsConfig>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            address: "127.0.0.1:8080".into(),
            h2c: true,
            tls: None,
        }
    }
}

/// Certificate and key for a TLS listener.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

/// The admin listener: live state, settings changes, events and Prometheus metrics.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `host:port` to bind; empty disables the admin listener.
    pub address: String,
    /// Environment variable holding the bearer token the admin API requires. When it is not set,
    /// infergate makes a random token and writes it to a file only this user can read (the CLI
    /// finds it there).
    pub token_env: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            address: "127.0.0.1:8081".into(),
            token_env: "INFERGATE_ADMIN_TOKEN".into(),
        }
    }
}

/// Which load signal drives autoscaling (SPEC §4).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// In-flight plus waiting requests.
    #[default]
    Concurrency,
    /// Waiting requests (ours plus the replicas' own queues).
    QueueDepth,
    /// The replicas' KV-cache use as a fraction.
    KvCacheUsage,
}

/// Named bundles of settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Min 0 and max 1, not changeable: cheap iteration on a model.
    Development,
}

/// One model deployment: its names, autoscaling settings, queue, health check and backend.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Other names clients may put in the `model` field.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Routing by path prefix or host when a request names no model.
    #[serde(default)]
    pub route: RouteConfig,
    /// A preset that pins some settings.
    #[serde(default)]
    pub preset: Option<Preset>,
    /// Floor of replicas; 0 enables scale to zero.
    #[serde(default)]
    pub min_replicas: u32,
    /// Ceiling of replicas.
    #[serde(default = "defaults::max_replicas")]
    pub max_replicas: u32,
    /// Load is averaged over this window.
    #[serde(default = "defaults::autoscaling_window")]
    pub autoscaling_window: HumanDuration,
    /// Load must stay low this long before replicas are removed.
    #[serde(default = "defaults::scale_down_delay")]
    pub scale_down_delay: HumanDuration,
    /// Requests one replica should carry.
    #[serde(default = "defaults::concurrency_target")]
    pub concurrency_target: u32,
    /// Headroom in percent: scale when load per replica passes target × utilization.
    #[serde(default = "defaults::target_utilization")]
    pub target_utilization: u32,
    /// What load means.
    #[serde(default)]
    pub metric: Metric,
    /// How a replica is picked for a request: `least_loaded`, `prefix` or `session`.
    #[serde(default)]
    pub routing: crate::RoutingPolicy,
    /// With `routing = "prefix"`: bytes of prompt text (from the first message on) that make
    /// the key.
    #[serde(default = "crate::routing::defaults::prefix_bytes")]
    pub routing_prefix_bytes: u32,
    /// With `prefix` or `session`: a replica above this × the mean in-flight passes its keys to
    /// the next replica of the key's order (bounded loads).
    #[serde(default = "crate::routing::defaults::load_factor")]
    pub routing_load_factor: f64,
    /// Where the replicas' Prometheus metrics are and which server wrote them.
    #[serde(default)]
    pub metrics: crate::MetricsConfig,
    /// With `metric = "kv_cache_usage"`: the KV-cache fraction one replica should run at.
    #[serde(default = "defaults::kv_cache_target")]
    pub kv_cache_target: f64,
    /// Most requests one replica may carry at once; 0 = unlimited.
    #[serde(default)]
    pub replica_concurrency: u32,
    /// How long a starting replica may take to pass its readiness check.
    #[serde(default = "defaults::startup_timeout")]
    pub startup_timeout: HumanDuration,
    /// Failed starts in a row after which waiting requests get 503 `deployment_unavailable` at
    /// once (starts keep being retried with back-off; the deployment recovers by itself).
    #[serde(default = "defaults::startup_failures_to_give_up")]
    pub startup_failures_to_give_up: u32,
    /// Readiness check of replicas.
    #[serde(default)]
    pub health: HealthConfig,
    /// Holding requests while no replica can take them.
    #[serde(default)]
    pub queue: QueueConfig,
    /// Timeouts towards replicas.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// Stopping replicas: drain then signal.
    #[serde(default)]
    pub stop: StopConfig,
    /// External providers used while replicas cannot answer.
    #[serde(default)]
    pub fallback: Option<FallbackConfig>,
    /// Sleeping at zero replicas whatever `min_replicas` says, after a quiet period.
    #[serde(default)]
    pub hibernation: Option<HibernationConfig>,
    /// No traffic for this long deactivates the deployment (0 = never).
    #[serde(default = "defaults::deactivate_after")]
    pub deactivate_after: HumanDuration,
    /// Scheduled warm windows: other `min_replicas` / `max_replicas` at known times.
    #[serde(default)]
    pub schedule: Vec<crate::ScheduleConfig>,
    /// Dollars per GPU-hour: `status`, the admin API and `simulate` turn GPU-seconds into cost.
    #[serde(default)]
    pub gpu_hour_price: Option<f64>,
    /// How `infergate simulate` models this deployment's replicas and fallback.
    #[serde(default)]
    pub simulate: Option<SimulateConfig>,
    /// Where replicas come from.
    pub backend: BackendConfig,
}

/// The replica model `infergate simulate` uses for a deployment (flags override it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SimulateConfig {
    /// Cold start: a duration (`90s`) or `lognormal:median=90s,p99=300s`.
    pub cold_start: Option<String>,
    /// Prompt tokens per second.
    pub prefill_tps: Option<f64>,
    /// Generated tokens per second for a request alone on a replica.
    pub decode_tps: Option<f64>,
    /// Per-request decode slowdown per extra request in flight (0 = none).
    pub batching_slowdown: Option<f64>,
    /// The fallback provider's time to first token.
    pub provider_latency: Option<HumanDuration>,
    /// The fallback provider's price per million tokens.
    pub provider_price_per_mtok: Option<f64>,
}

/// Routing of requests that carry no `model` field.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Requests whose path starts with this prefix go here; the prefix is stripped upstream.
    pub path_prefix: Option<String>,
    /// Requests whose Host header (without port) is one of these go here.
    pub hosts: Vec<String>,
    /// Paths besides `/v1/*` that clients may reach on a replica (exact, or a prefix ending in
    /// `*`), e.g. `["/tokenize", "/detokenize"]`. A replica's own `/metrics`, `/health` or vLLM's
    /// `/sleep` stay out of clients' reach unless listed.
    pub passthrough: Vec<String>,
}

impl RouteConfig {
    /// Whether a client may reach `path` (the path sent upstream, query excluded) on a replica:
    /// the OpenAI API under `/v1/`, or a path listed in `passthrough`.
    pub fn allows_upstream_path(&self, path: &str) -> bool {
        path.starts_with("/v1/")
            || self.passthrough.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == p,
            })
    }
}

/// Readiness polling of replicas.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Path answered 2xx by a ready replica.
    pub path: String,
    /// Poll interval while a replica starts (and while a static replica is not ready).
    pub interval: HumanDuration,
    /// Poll interval once a replica is ready: a replica that hangs is noticed this often.
    pub interval_ready: HumanDuration,
    /// Consecutive failed checks of a ready replica before it gets no new requests (and, on
    /// the process backend, is replaced).
    pub failures_to_eject: u32,
    /// Longest a check may take before it counts as failed.
    pub timeout: HumanDuration,
    /// A static deployment with no healthy replica this long answers waiting requests 503
    /// `deployment_unavailable` at once, until one is healthy again.
    pub unhealthy_fail_after: HumanDuration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            path: "/health".into(),
            interval: HumanDuration::millis(250),
            interval_ready: HumanDuration::secs(5),
            failures_to_eject: 3,
            timeout: HumanDuration::secs(2),
            unhealthy_fail_after: HumanDuration::secs(30),
        }
    }
}

/// The per-deployment FIFO that holds requests while no replica can take them.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Longest a request may wait before it is answered 504.
    pub max_wait: HumanDuration,
    /// Most requests held at once; more are answered 503 with Retry-After.
    pub max_waiting: u32,
    /// A streaming request held this long gets its 200 and an SSE comment, then one more each
    /// time this passes, until a replica answers (0 = off): a load balancer's idle timeout
    /// never cuts a request waiting for a cold start.
    pub heartbeat: HumanDuration,
    /// Most requests one client (API key, else `user` field) may hold in the queue at once, so
    /// one cannot fill it for the others (0 = no share: only `max_waiting`).
    pub max_waiting_per_client: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_wait: HumanDuration::secs(600),
            max_waiting: 1000,
            heartbeat: HumanDuration::secs(15),
            max_waiting_per_client: 0,
        }
    }
}

/// Timeouts on the way to a replica.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// TCP connect timeout; a failed connect is retried on another replica.
    pub connect_timeout: HumanDuration,
    /// Longest wait for the response headers (prefill of a long prompt takes a while).
    pub response_timeout: HumanDuration,
    /// Longest silence between two chunks of a response body.
    pub idle_timeout: HumanDuration,
    /// Client request headers never sent to this deployment's replicas (case-insensitive), on
    /// top of the hop-by-hop ones, e.g. `["cookie", "x-api-key"]`.
    pub strip_headers: Vec<String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout: HumanDuration::secs(2),
            response_timeout: HumanDuration::secs(600),
            idle_timeout: HumanDuration::secs(300),
            strip_headers: Vec::new(),
        }
    }
}

/// How replicas are stopped.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StopConfig {
    /// Longest wait for a draining replica's in-flight requests to finish.
    pub drain_timeout: HumanDuration,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: HumanDuration,
}

impl Default for StopConfig {
    fn default() -> Self {
        StopConfig {
            drain_timeout: HumanDuration::secs(120),
            kill_grace: HumanDuration::secs(10),
        }
    }
}

/// Where a deployment's replicas come from.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    /// Child processes started from a command template.
    Process(ProcessBackendConfig),
    /// Fixed replica URLs: routing, counting and queueing, no actuation.
    Static(StaticBackendConfig),
    /// The pods of a Kubernetes Deployment or StatefulSet.
    Kubernetes(crate::KubernetesBackendConfig),
}

/// Starts model servers as child processes.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessBackendConfig {
    /// Program and arguments; `{port}`, `{replica}`, `{model}` and `{infergate}` (this binary)
    /// are substituted.
    pub command: Vec<String>,
    /// Extra environment variables for the model server.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// GPU ids handed out through `CUDA_VISIBLE_DEVICES`.
    #[serde(default)]
    pub gpus: Vec<String>,
    /// GPUs each replica takes from the pool; 0 (the default) means 1 when `gpus` is listed, so a
    /// GPU list never leaves replicas unpinned.
    #[serde(default)]
    pub gpus_per_replica: u32,
    /// Environment variable holding the key the model servers expect (`--api-key`): sent as
    /// `Authorization: Bearer …` to them instead of the client's, which never reaches a replica
    /// when `[auth]` is on.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

impl BackendConfig {
    /// The environment variable holding the replicas' own API key, if they need one.
    pub fn api_key_env(&self) -> Option<&str> {
        match self {
            BackendConfig::Process(p) => p.api_key_env.as_deref(),
            BackendConfig::Static(s) => s.api_key_env.as_deref(),
            BackendConfig::Kubernetes(k) => k.api_key_env.as_deref(),
        }
    }
}

impl ProcessBackendConfig {
    /// GPUs each replica really takes: `gpus_per_replica`, or 1 when `gpus` is listed without it.
    pub fn effective_gpus_per_replica(&self) -> u32 {
        if self.gpus_per_replica == 0 && !self.gpus.is_empty() {
            1
        } else {
            self.gpus_per_replica
        }
    }
}

/// Routes to model servers someone else runs.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticBackendConfig {
    /// `http://host:port` of each replica.
    pub urls: Vec<String>,
    /// Environment variable holding the key the model servers expect (`--api-key`): sent as
    /// `Authorization: Bearer …` to them instead of the client's, which never reaches a replica
    /// when `[auth]` is on.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

mod defaults {
    use super::{FallbackWhen, HumanDuration};
    pub fn priority() -> u32 {
        100
    }
    pub fn provider_timeout() -> HumanDuration {
        HumanDuration::secs(600)
    }
    pub fn failures_to_cool_down() -> u32 {
        3
    }
    pub fn cool_down() -> HumanDuration {
        HumanDuration::secs(30)
    }
    pub fn fallback_when() -> Vec<FallbackWhen> {
        vec![
            FallbackWhen::Hibernated,
            FallbackWhen::Waking,
            FallbackWhen::ColdStart,
            FallbackWhen::ReplicaError,
            FallbackWhen::Maintenance,
        ]
    }
    pub fn fallback_after() -> HumanDuration {
        HumanDuration::secs(30)
    }
    pub fn ramp_back() -> HumanDuration {
        HumanDuration::secs(30)
    }
    pub fn deactivate_after() -> HumanDuration {
        HumanDuration::secs(14 * 86400)
    }
    pub fn startup_timeout() -> HumanDuration {
        HumanDuration::secs(1200)
    }
    pub fn startup_failures_to_give_up() -> u32 {
        3
    }
    pub fn max_replicas() -> u32 {
        1
    }
    pub fn autoscaling_window() -> HumanDuration {
        HumanDuration::secs(60)
    }
    pub fn scale_down_delay() -> HumanDuration {
        HumanDuration::secs(900)
    }
    pub fn concurrency_target() -> u32 {
        1
    }
    pub fn target_utilization() -> u32 {
        70
    }
    pub fn kv_cache_target() -> f64 {
        0.8
    }
}

impl DeploymentConfig {
    /// Every name a client may use for this deployment: the name itself, then its aliases.
    pub fn names<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        std::iter::once(name).chain(self.aliases.iter().map(String::as_str))
    }

    /// The replica floor after presets are applied.
    pub fn effective_min_replicas(&self) -> u32 {
        match self.preset {
            Some(Preset::Development) => 0,
            None => self.min_replicas,
        }
    }

    /// GPUs one replica holds, for cost accounting: the process backend's GPUs per replica,
    /// else 1 (a model server replica is taken to hold one GPU).
    pub fn gpus_per_replica(&self) -> u32 {
        match &self.backend {
            BackendConfig::Process(p) => p.effective_gpus_per_replica().max(1),
            _ => 1,
        }
    }

    /// The replica ceiling after presets are applied.
    pub fn effective_max_replicas(&self) -> u32 {
        match self.preset {
            Some(Preset::Development) => 1,
            None => self.max_replicas,
        }
    }
}
