//! A deployment as the data plane sees it: the types the routing table holds and every phase
//! reads (a leaf: it names no phase, so routing, fallback and metrics do not import each other).

use crate::metrics::DeploymentMetrics;
use infergate_config::{DeploymentConfig, FallbackConfig, FallbackWhen};
use infergate_fallback::{Provider, Providers, RampBack};
use infergate_scaler::Controller;
use std::sync::Arc;

/// A deployment as the data plane sees it.
pub struct DeploymentEntry {
    /// Public name.
    pub name: String,
    /// Settings in force when the table was built (limits, timeouts, aliases).
    pub config: Arc<DeploymentConfig>,
    /// The controller, whose pool hands out replica slots.
    pub controller: Arc<Controller>,
    /// External providers that answer while replicas cannot, if configured.
    pub fallback: Option<DeploymentFallback>,
    /// Its Prometheus handles.
    pub metrics: DeploymentMetrics,
    /// `Bearer <key>` for replicas that need their own key (`backend.api_key_env`).
    pub replica_authorization: Option<Arc<str>>,
}

/// A deployment's fallback: its settings, its providers by priority and its ramp-back state.
pub struct DeploymentFallback {
    /// When and how.
    pub config: FallbackConfig,
    /// Providers, lowest priority number first.
    pub providers: Vec<Arc<Provider>>,
    /// The registry (the clock of the circuits).
    pub registry: Arc<Providers>,
    /// Gradual move back to our replicas.
    pub ramp: RampBack,
}

impl DeploymentFallback {
    /// Builds a deployment's fallback from its settings and the provider registry.
    pub fn new(config: &FallbackConfig, registry: &Arc<Providers>) -> Self {
        DeploymentFallback {
            config: config.clone(),
            providers: registry.ordered(&config.providers),
            registry: registry.clone(),
            ramp: RampBack::default(),
        }
    }

    /// Whether the deployment falls back in this situation.
    pub fn uses(&self, when: FallbackWhen) -> bool {
        self.config.when.contains(&when)
    }
}
