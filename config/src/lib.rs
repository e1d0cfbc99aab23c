//! Configuration for infergate: the TOML schema, its defaults and its validation.
//!
//! This crate is a leaf: every other crate reads settings through the types defined here, so a
//! setting has one name, one default and one allowed range everywhere (file, validation errors,
//! and later the admin API).

mod demo;
mod duration;
pub use duration::HumanDuration;
mod clients;
mod cluster;
mod routing;
pub use routing::{Priority, RoutingPolicy};
mod metrics_source;
pub use clients::{AuthConfig, ClientConfig};
pub use metrics_source::{MetricsConfig, ModelServer};
mod gpus;
pub use gpus::GpusConfig;
pub mod cron;
mod schedule;
pub use schedule::ScheduleConfig;
mod kubernetes;
pub use cluster::{ClusterConfig, ClusterMode};
pub use kubernetes::{
    is_dns_label, is_dns_subdomain, KubernetesBackendConfig, PortRef, WorkloadKind,
};
mod provider_url;
pub use provider_url::{reaches_listener, ProviderUrl};
mod schema;
mod validate;

pub use demo::{demo_config, DEMO_CONFIG_TOML, DEMO_PROVIDER_KEY_ENV, DEMO_PROVIDER_PORT};
pub use schema::*;
pub use validate::{parse_cold_start, parse_http_url, ConfigError, FieldError};

use std::path::Path;

impl Config {
    /// Parses a TOML document and validates it; errors name the field path and the allowed range.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_toml_str(&text)
    }
}
