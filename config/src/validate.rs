//! Validation: every setting checked against its allowed range, errors naming the field path.

use crate::duration::HumanDuration;
use crate::provider_url::ProviderUrl;
use crate::schema::*;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// One invalid setting: where it is and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the setting, e.g. `deployments.llama.max_replicas`.
    pub field: String,
    /// What is allowed and what was found.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The TOML did not parse or did not match the schema.
    #[error("{0}")]
    Parse(String),
    /// Settings out of range; one entry per field.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

/// Collects field errors while walking the config.
#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn int_range(&mut self, field: &str, value: u64, min: u64, max: u64, unit: &str) {
        if value < min || value > max {
            self.fail(
                field,
                format!("must be between {min} and {max}{unit}, got {value}"),
            );
        }
    }

    fn duration_range(&mut self, field: &str, value: HumanDuration, min: Duration, max: Duration) {
        if value.get() < min || value.get() > max {
            self.fail(
                field,
                format!(
                    "must be between {} and {}, got {}",
                    HumanDuration(min),
                    HumanDuration(max),
                    value
                ),
            );
        }
    }

    fn socket_addr(&mut self, field: &str, value: &str) {
        if value.parse::<SocketAddr>().is_err() {
            self.fail(
                field,
                format!("must be an IP:port such as 127.0.0.1:8080, got {value:?}"),
            );
        }
    }
}

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86400);

impl Config {
    /// Checks every setting; all problems are reported at once, each naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut c = Checker::default();
        self.server.check(&mut c);
        if !self.admin.address.is_empty() {
            c.socket_addr("admin.address", &self.admin.address);
        }
        if self.deployments.is_empty() {
            c.fail("deployments", "at least one deployment is required");
        }
        c.int_range(
            "events.capacity",
            self.events.capacity.into(),
            1,
            1_000_000,
            "",
        );
        c.int_range(
            "events.file_max_size",
            self.events.file_max_size,
            1024,
            1 << 40,
            " bytes",
        );
        c.duration_range(
            "cluster.lease_duration",
            self.cluster.lease_duration,
            Duration::from_secs(2),
            Duration::from_secs(300),
        );
        for (field, name) in [
            ("cluster.lease_name", Some(self.cluster.lease_name.as_str())),
            ("cluster.service", Some(self.cluster.service.as_str())),
            ("cluster.namespace", self.cluster.namespace.as_deref()),
        ] {
            if let Some(name) = name.filter(|n| !crate::is_dns_label(n)) {
                c.fail(
                    field,
                    format!("must be a Kubernetes name (lower-case letters, digits, '-', at most 63), got {name:?}"),
                );
            }
        }
        if matches!(&self.cluster.admin_port, crate::PortRef::Number(0)) {
            c.fail(
                "cluster.admin_port",
                "must be a port number 1–65535 or a port name, got 0",
            );
        }
        if self.cluster.mode == crate::ClusterMode::Kubernetes && self.admin.address.is_empty() {
            c.fail(
                "cluster.mode",
                "\"kubernetes\" needs the admin listener ([admin] address): the leader reads every instance's load there",
            );
        }
        let mut owners: HashMap<&str, &str> = HashMap::new();
        for (name, d) in &self.deployments {
            let path = format!("deployments.{name}");
            if name.is_empty() || !name.chars().all(valid_name_char) {
                c.fail(
                    &path,
                    "a deployment name may hold only letters, digits and . _ - : /",
                );
            }
            for (i, alias) in d.aliases.iter().enumerate() {
                if alias.is_empty() || !alias.chars().all(valid_name_char) {
                    c.fail(
                        format!("{path}.aliases[{i}]"),
                        format!("a model name may hold only letters, digits and . _ - : /, got {alias:?}"),
                    );
                }
            }
            for model in d.names(name) {
                if let Some(other) = owners.insert(model, name) {
                    if other != name {
                        c.fail(
                            format!("{path}.aliases"),
                            format!("model name {model:?} is already used by deployment {other:?}"),
                        );
                    }
                }
            }
            d.check(&path, &mut c);
            if let Some(fallback) = &d.fallback {
                for (i, provider) in fallback.providers.iter().enumerate() {
                    if !self.providers.contains_key(provider) {
                        let known: Vec<&str> = self.providers.keys().map(String::as_str).collect();
                        c.fail(
                            format!("{path}.fallback.providers[{i}]"),
                            format!("no provider named {provider:?} (defined: {known:?})"),
                        );
                    }
                }
            }
        }
        let listeners: Vec<SocketAddr> = self
            .server
            .listeners
            .iter()
            .filter_map(|l| l.address.parse().ok())
            .collect();
        for (name, p) in &self.providers {
            p.check(&format!("providers.{name}"), &listeners, &mut c);
        }
        c.errors.extend(self.gpus.problems(&self.deployments));
        c.errors.extend(crate::clients::problems(
            &self.auth,
            &self.clients,
            &self.deployments,
        ));
        for error in self.loops(&listeners) {
            if error.field.starts_with("deployments.") {
                c.errors.push(error);
            }
        }
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(c.errors))
        }
    }
}

impl Config {
    /// Providers and static replica URLs that reach one of `listeners` (this proxy): a request
    /// sent there would come back here without end. Checked at load with the configured
    /// addresses and again once listeners on port 0 got their port.
    pub fn loops(&self, listeners: &[SocketAddr]) -> Vec<FieldError> {
        let mut found = Vec::new();
        for (name, p) in &self.providers {
            if let Some(own) =
                ProviderUrl::parse(&p.base_url).and_then(|u| u.own_listener(listeners))
            {
                found.push(FieldError {
                    field: format!("providers.{name}.base_url"),
                    message: format!("resolves to {own}, one of this proxy's own listeners: only external providers are allowed (a loop)"),
                });
            }
        }
        for (name, d) in &self.deployments {
            let BackendConfig::Static(s) = &d.backend else {
                continue;
            };
            for (i, url) in s.urls.iter().enumerate() {
                if let Some(own) = ProviderUrl::parse(url).and_then(|u| u.own_listener(listeners)) {
                    found.push(FieldError {
                        field: format!("deployments.{name}.backend.urls[{i}]"),
                        message: format!("resolves to {own}, one of this proxy's own listeners: a replica must be another server (a loop)"),
                    });
                }
            }
        }
        found
    }
}

fn valid_name_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-' | ':' | '/')
}

impl ProviderConfig {
    fn check(&self, path: &str, listeners: &[SocketAddr], c: &mut Checker) {
        let f = |field: &str| format!("{path}.{field}");
        match ProviderUrl::parse(&self.base_url) {
            None => c.fail(
                f("base_url"),
                format!(
                    "must look like https://api.example.com/v1 (http or https, no query), got {:?}",
                    self.base_url
                ),
            ),
            Some(url) => {
                if let Some(own) = url.own_listener(listeners) {
                    c.fail(
                        f("base_url"),
                        format!(
                            "resolves to {own}, one of this proxy's own listeners: only external providers are allowed (a loop)"
                        ),
                    );
                }
            }
        }
        if let Some(var) = &self.api_key_env {
            if var.is_empty()
                || !var
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            {
                c.fail(
                    f("api_key_env"),
                    format!(
                        "must be an environment variable name such as OPENAI_API_KEY, got {var:?}"
                    ),
                );
            } else if std::env::var_os(var).is_none_or(|v| v.is_empty()) {
                c.fail(
                    f("api_key_env"),
                    format!("environment variable {var} is not set (it must hold the provider's API key)"),
                );
            }
        }
        c.duration_range(&f("timeout"), self.timeout, SECOND, DAY);
        c.int_range(
            &f("failures_to_cool_down"),
            self.failures_to_cool_down.into(),
            1,
            1000,
            "",
        );
        c.duration_range(&f("cool_down"), self.cool_down, SECOND, DAY);
        if let Some(file) = &self.ca_file {
            if std::fs::metadata(file).is_err() {
                c.fail(f("ca_file"), format!("file {file:?} cannot be read"));
            }
        }
        for (model, mapped) in &self.models {
            if mapped.is_empty() {
                c.fail(
                    format!("{path}.models.{model}"),
                    "must name the provider's model, got an empty string",
                );
            }
        }
    }
}

impl ServerConfig {
    fn check(&self, c: &mut Checker) {
        if self.listeners.is_empty() {
            c.fail("server.listeners", "at least one listener is required");
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let path = format!("server.listeners[{i}]");
            c.socket_addr(&format!("{path}.address"), &l.address);
            if let Some(tls) = &l.tls {
                for (field, file) in [("cert", &tls.cert), ("key", &tls.key)] {
                    if std::fs::metadata(file).is_err() {
                        c.fail(
                            format!("{path}.tls.{field}"),
                            format!("file {file:?} cannot be read"),
                        );
                    }
                }
            }
        }
        c.int_range(
            "server.max_body_size",
            self.max_body_size,
            1024,
            1 << 30,
            " bytes",
        );
        c.duration_range(
            "server.shutdown_grace",
            self.shutdown_grace,
            Duration::ZERO,
            HOUR,
        );
        c.duration_range(
            "server.header_read_timeout",
            self.header_read_timeout,
            Duration::from_millis(100),
            600 * SECOND,
        );
        c.duration_range(
            "server.keepalive_idle_timeout",
            self.keepalive_idle_timeout,
            SECOND,
            HOUR,
        );
        c.int_range(
            "server.max_connections",
            self.max_connections.into(),
            1,
            10_000_000,
            "",
        );
        c.duration_range(
            "server.body_read_timeout",
            self.body_read_timeout,
            Duration::from_millis(100),
            HOUR,
        );
        c.int_range(
            "server.min_body_rate",
            self.min_body_rate,
            0,
            1 << 30,
            " bytes per second",
        );
    }
}

impl DeploymentConfig {
    /// Checks one deployment's settings on their own, as a live change (reload, API) must be
    /// checked before it is applied; fields are named `deployments.NAME.field`.
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let mut c = Checker::default();
        self.check(&format!("deployments.{name}"), &mut c);
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(c.errors))
        }
    }

    fn check(&self, path: &str, c: &mut Checker) {
        let f = |field: &str| format!("{path}.{field}");
        if self.max_replicas < 1 {
            c.fail(
                f("max_replicas"),
                format!("must be ≥ 1, got {}", self.max_replicas),
            );
        } else if self.max_replicas < self.min_replicas {
            c.fail(
                f("max_replicas"),
                format!(
                    "must be ≥ min_replicas ({}), got {}",
                    self.min_replicas, self.max_replicas
                ),
            );
        }
        c.int_range(&f("max_replicas"), self.max_replicas.into(), 1, 1000, "");
        if let Some(price) = self.gpu_hour_price {
            if !(price.is_finite() && price >= 0.0) {
                c.fail(
                    f("gpu_hour_price"),
                    format!("must be a number ≥ 0 (dollars per GPU-hour), got {price}"),
                );
            }
        }
        if let Some(sim) = &self.simulate {
            check_simulate(sim, &f("simulate"), c);
        }
        if self.preset == Some(Preset::Development) {
            if self.min_replicas != 0 {
                c.fail(
                    f("min_replicas"),
                    format!(
                        "is fixed at 0 by preset \"development\", got {}",
                        self.min_replicas
                    ),
                );
            }
            if self.max_replicas != 1 {
                c.fail(
                    f("max_replicas"),
                    format!(
                        "is fixed at 1 by preset \"development\", got {}",
                        self.max_replicas
                    ),
                );
            }
        }
        c.duration_range(
            &f("autoscaling_window"),
            self.autoscaling_window,
            10 * SECOND,
            HOUR,
        );
        c.duration_range(
            &f("scale_down_delay"),
            self.scale_down_delay,
            Duration::ZERO,
            HOUR,
        );
        c.int_range(
            &f("concurrency_target"),
            self.concurrency_target.into(),
            1,
            100_000,
            "",
        );
        c.int_range(
            &f("target_utilization"),
            self.target_utilization.into(),
            1,
            100,
            " (percent)",
        );
        if !self.metrics.server.supports(self.metric) {
            let metric = match self.metric {
                crate::Metric::QueueDepth => "queue_depth",
                _ => "kv_cache_usage",
            };
            c.fail(
                f("metric"),
                format!(
                    "must be \"concurrency\" for metrics.server = \"{}\": it exports no {} (got \"{metric}\")",
                    self.metrics.server.name(),
                    if metric == "queue_depth" { "queue-depth metric" } else { "KV-cache metric" },
                ),
            );
        }
        if !self.metrics.path.starts_with('/') || self.metrics.path.contains([' ', '#']) {
            c.fail(
                f("metrics.path"),
                format!(
                    "must be a path like \"/metrics\", got {:?}",
                    self.metrics.path
                ),
            );
        }
        if !(0.01..=1.0).contains(&self.kv_cache_target) {
            c.fail(
                f("kv_cache_target"),
                format!(
                    "must be between 0.01 and 1.0 (a fraction of the KV cache), got {}",
                    self.kv_cache_target
                ),
            );
        }
        c.int_range(
            &f("replica_concurrency"),
            self.replica_concurrency.into(),
            0,
            100_000,
            " (0 = unlimited)",
        );
        c.duration_range(&f("startup_timeout"), self.startup_timeout, SECOND, DAY);
        if !self.health.path.starts_with('/') {
            c.fail(
                f("health.path"),
                format!("must start with '/', got {:?}", self.health.path),
            );
        }
        c.duration_range(
            &f("health.interval"),
            self.health.interval,
            Duration::from_millis(10),
            60 * SECOND,
        );
        c.duration_range(
            &f("health.interval_ready"),
            self.health.interval_ready,
            Duration::from_millis(50),
            HOUR,
        );
        c.int_range(
            &f("health.failures_to_eject"),
            self.health.failures_to_eject.into(),
            1,
            1000,
            "",
        );
        c.duration_range(
            &f("health.unhealthy_fail_after"),
            self.health.unhealthy_fail_after,
            Duration::from_millis(100),
            DAY,
        );
        c.int_range(
            &f("startup_failures_to_give_up"),
            self.startup_failures_to_give_up.into(),
            1,
            1000,
            "",
        );
        c.duration_range(
            &f("health.timeout"),
            self.health.timeout,
            Duration::from_millis(10),
            60 * SECOND,
        );
        c.duration_range(
            &f("queue.max_wait"),
            self.queue.max_wait,
            Duration::from_millis(1),
            DAY,
        );
        let heartbeat = self.queue.heartbeat.get();
        if !heartbeat.is_zero()
            && (heartbeat < Duration::from_millis(100) || heartbeat > 10 * 60 * SECOND)
        {
            c.fail(
                f("queue.heartbeat"),
                format!(
                    "must be 0 (off) or between 100ms and 10m, got {}",
                    self.queue.heartbeat
                ),
            );
        }
        c.int_range(
            &f("queue.max_waiting"),
            self.queue.max_waiting.into(),
            0,
            1_000_000,
            "",
        );
        c.int_range(
            &f("queue.max_waiting_per_client"),
            self.queue.max_waiting_per_client.into(),
            0,
            self.queue.max_waiting.into(),
            " (0 = no per-client share; at most queue.max_waiting)",
        );
        c.int_range(
            &f("routing_prefix_bytes"),
            self.routing_prefix_bytes.into(),
            16,
            1 << 20,
            " bytes",
        );
        if !(1.0..=100.0).contains(&self.routing_load_factor) {
            c.fail(
                f("routing_load_factor"),
                format!(
                    "must be between 1.0 and 100.0 (× the mean requests in flight), got {}",
                    self.routing_load_factor
                ),
            );
        }
        c.duration_range(
            &f("upstream.connect_timeout"),
            self.upstream.connect_timeout,
            Duration::from_millis(10),
            60 * SECOND,
        );
        c.duration_range(
            &f("upstream.response_timeout"),
            self.upstream.response_timeout,
            Duration::from_millis(100),
            DAY,
        );
        c.duration_range(
            &f("upstream.idle_timeout"),
            self.upstream.idle_timeout,
            Duration::from_millis(100),
            DAY,
        );
        c.duration_range(
            &f("stop.drain_timeout"),
            self.stop.drain_timeout,
            Duration::ZERO,
            DAY,
        );
        c.duration_range(
            &f("stop.kill_grace"),
            self.stop.kill_grace,
            Duration::ZERO,
            600 * SECOND,
        );
        if let Some(fallback) = &self.fallback {
            if fallback.providers.is_empty() {
                c.fail(f("fallback.providers"), "must name at least one provider");
            }
            if fallback.when.is_empty() {
                c.fail(
                    f("fallback.when"),
                    "must list at least one of hibernated, waking, cold_start, overloaded, replica_error, maintenance",
                );
            }
            c.duration_range(
                &f("fallback.fallback_after"),
                fallback.fallback_after,
                Duration::ZERO,
                DAY,
            );
            c.duration_range(
                &f("fallback.ramp_back"),
                fallback.ramp_back,
                Duration::ZERO,
                HOUR,
            );
        }
        for (field, message) in crate::schedule::problems(&self.schedule, self.max_replicas) {
            c.fail(f(&field), message);
        }
        if let Some(h) = &self.hibernation {
            c.duration_range(&f("hibernation.idle_after"), h.idle_after, SECOND, 30 * DAY);
            if h.mode == crate::HibernationMode::Sleep {
                c.duration_range(
                    &f("hibernation.sleep_after"),
                    h.sleep_after,
                    SECOND,
                    30 * DAY,
                );
                if h.sleep_after >= h.idle_after {
                    c.fail(
                        f("hibernation.sleep_after"),
                        format!(
                            "must be shorter than hibernation.idle_after ({}): replicas sleep first, then stop; got {}",
                            h.idle_after, h.sleep_after
                        ),
                    );
                }
            }
            if !(h.below_rps >= 0.0 && h.below_rps <= 1e6) {
                c.fail(
                    f("hibernation.below_rps"),
                    format!(
                        "must be between 0 and 1000000 requests per second, got {}",
                        h.below_rps
                    ),
                );
            }
            c.int_range(
                &f("hibernation.wake_after_requests"),
                h.wake_after_requests.into(),
                1,
                1_000_000,
                "",
            );
        }
        let deactivate = self.deactivate_after.get();
        if !deactivate.is_zero() && !(60 * SECOND..=3650 * DAY).contains(&deactivate) {
            c.fail(
                f("deactivate_after"),
                format!(
                    "must be 0s (never) or between 1m and 3650days, got {}",
                    self.deactivate_after
                ),
            );
        }
        if let Some(prefix) = &self.route.path_prefix {
            if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') {
                c.fail(
                    f("route.path_prefix"),
                    format!(
                        "must look like \"/name\" (leading '/', no trailing '/'), got {prefix:?}"
                    ),
                );
            }
        }
        for (i, path) in self.route.passthrough.iter().enumerate() {
            let stem = path.strip_suffix('*').unwrap_or(path);
            if !path.starts_with('/') || stem.contains('*') || path.contains(['?', '#', ' ']) {
                c.fail(
                    format!("{}[{i}]", f("route.passthrough")),
                    format!("must be a path like \"/tokenize\" or a prefix like \"/debug/*\", got {path:?}"),
                );
            }
        }
        for (i, name) in self.upstream.strip_headers.iter().enumerate() {
            if http_header_name(name).is_none() {
                c.fail(
                    format!("{}[{i}]", f("upstream.strip_headers")),
                    format!("must be an HTTP header name like \"cookie\", got {name:?}"),
                );
            }
        }
        match &self.backend {
            BackendConfig::Process(p) => {
                if p.command.first().is_none_or(|s| s.trim().is_empty()) {
                    c.fail(
                        f("backend.command"),
                        "must name a program, e.g. [\"vllm\", \"serve\", \"...\", \"--port\", \"{port}\"]",
                    );
                }
                let needed = u64::from(self.effective_max_replicas())
                    * u64::from(p.effective_gpus_per_replica());
                // Without a list of its own it shares `[gpus] devices` (checked with the file).
                if !p.gpus.is_empty() && needed > p.gpus.len() as u64 {
                    c.fail(
                        f("backend.gpus"),
                        format!(
                            "must hold max_replicas ({}) × gpus_per_replica ({}) = {needed} GPUs, got {}",
                            self.effective_max_replicas(),
                            p.effective_gpus_per_replica(),
                            p.gpus.len()
                        ),
                    );
                }
            }
            BackendConfig::Kubernetes(k) => {
                if !crate::is_dns_subdomain(&k.name) {
                    c.fail(
                        f("backend.name"),
                        format!("must be a Kubernetes object name (lower-case letters, digits, '-', '.'), got {:?}", k.name),
                    );
                }
                if let Some(ns) = &k.namespace {
                    if !crate::is_dns_label(ns) {
                        c.fail(
                            f("backend.namespace"),
                            format!("must be a namespace name (lower-case letters, digits, '-', at most 63), got {ns:?}"),
                        );
                    }
                }
                if let Some(svc) = &k.service {
                    if !crate::is_dns_label(svc) {
                        c.fail(
                            f("backend.service"),
                            format!("must be a Service name (lower-case letters, digits, '-', at most 63), got {svc:?}"),
                        );
                    }
                }
                if let Some(selector) = &k.label_selector {
                    if selector.trim().is_empty()
                        || selector.contains(char::is_whitespace) && !selector.contains('(')
                    {
                        c.fail(
                            f("backend.label_selector"),
                            format!("must be a Kubernetes label selector such as \"app=vllm,tier=gpu\", got {selector:?}"),
                        );
                    }
                }
                match &k.port {
                    crate::PortRef::Number(0) => c.fail(f("backend.port"), "must be a port number 1–65535 or a port name, got 0"),
                    crate::PortRef::Name(n) if !crate::is_dns_label(n) || n.len() > 15 => c.fail(
                        f("backend.port"),
                        format!("must be a port number 1–65535 or a port name (lower-case, at most 15 characters), got {n:?}"),
                    ),
                    _ => {}
                }
            }
            BackendConfig::Static(s) => {
                if s.urls.is_empty() {
                    c.fail(f("backend.urls"), "must list at least one replica URL");
                }
                for (i, url) in s.urls.iter().enumerate() {
                    if parse_http_url(url).is_none() {
                        c.fail(
                            format!("{path}.backend.urls[{i}]"),
                            format!("must look like http://127.0.0.1:8000, got {url:?}"),
                        );
                    }
                }
            }
        }
    }
}

/// The lower-cased name when `name` is a valid HTTP header name (RFC 9110 token).
fn http_header_name(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    ok.then(|| name.to_ascii_lowercase())
}

/// Splits `http://host:port[/]` into `host:port`; `None` if it is not of that form.
pub fn parse_http_url(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = authority.rsplit_once(':')?;
    if host.is_empty() || authority.contains('/') || port.parse::<u16>().is_err() {
        return None;
    }
    Some(authority)
}

/// The `[simulate]` table: positive speeds and prices, a cold start that parses.
fn check_simulate(sim: &crate::SimulateConfig, path: &str, c: &mut Checker) {
    let f = |field: &str| format!("{path}.{field}");
    for (field, value, zero_ok) in [
        ("prefill_tps", sim.prefill_tps, false),
        ("decode_tps", sim.decode_tps, false),
        ("batching_slowdown", sim.batching_slowdown, true),
        ("provider_price_per_mtok", sim.provider_price_per_mtok, true),
    ] {
        if let Some(v) = value {
            let ok = v.is_finite() && (v > 0.0 || (zero_ok && v == 0.0));
            if !ok {
                let range = if zero_ok { "≥ 0" } else { "> 0" };
                c.fail(f(field), format!("must be a number {range}, got {v}"));
            }
        }
    }
    if let Some(cold) = &sim.cold_start {
        if let Err(why) = parse_cold_start(cold) {
            c.fail(f("cold_start"), why);
        }
    }
}

/// Parses a cold start: `90s` → (90 s, None), or `lognormal:median=DUR,p99=DUR` with p99 ≥
/// median → (median, Some(p99)). Shared by validation and `simulate`.
pub fn parse_cold_start(text: &str) -> Result<(Duration, Option<Duration>), String> {
    let parse = |v: &str| {
        humantime::parse_duration(v.trim()).map_err(|e| format!("{v:?} is not a duration: {e}"))
    };
    match text.strip_prefix("lognormal:") {
        None => parse(text)
            .map(|d| (d, None))
            .map_err(|e| format!("must be a duration (90s) or lognormal:median=DUR,p99=DUR; {e}")),
        Some(params) => {
            let (mut median, mut p99) = (None, None);
            for kv in params.split(',') {
                match kv.split_once('=') {
                    Some(("median", v)) => median = Some(parse(v)?),
                    Some(("p99", v)) => p99 = Some(parse(v)?),
                    _ => return Err(format!("lognormal takes median=DUR,p99=DUR, got {kv:?}")),
                }
            }
            match (median, p99) {
                (Some(m), Some(p)) if p >= m => Ok((m, Some(p))),
                (Some(_), Some(_)) => Err("lognormal: p99 must be at least the median".into()),
                _ => Err("lognormal needs both median= and p99=".into()),
            }
        }
    }
}
