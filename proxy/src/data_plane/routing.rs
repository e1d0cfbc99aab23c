//! Which deployment a request is for: by `model` (name or alias), else by the
//! `x-infergate-deployment` header, else by host or path prefix. The table is immutable and swapped
//! whole (`ArcSwap`) on reload, so lookups take no lock.

use crate::data_plane::deployment::{DeploymentEntry, DeploymentFallback};
use crate::metrics::DeploymentMetrics;
use infergate_clients::{Client, ClientTable};
use infergate_config::Config;
use infergate_fallback::Providers;
use infergate_scaler::Controller;
use std::collections::HashMap;
use std::sync::Arc;

/// The routing table.
#[derive(Default)]
pub struct RouteTable {
    /// Deployments in name order.
    pub deployments: Vec<Arc<DeploymentEntry>>,
    by_model: HashMap<String, usize>,
    by_host: HashMap<String, usize>,
    by_prefix: Vec<(String, usize)>,
    /// Client API keys and limits (`[auth]`, `[clients]`).
    pub clients: Arc<ClientTable>,
}

/// A routing result: the deployment and the upstream path to use.
pub struct Route<'a> {
    /// The chosen deployment.
    pub deployment: &'a Arc<DeploymentEntry>,
    /// Length of the path prefix to strip before forwarding.
    pub strip_prefix: usize,
}

impl RouteTable {
    /// Builds the table from the config and the running controllers (same order as config).
    pub fn new(
        config: &Config,
        controllers: &HashMap<String, Arc<Controller>>,
        providers: &Arc<Providers>,
        clients: Arc<ClientTable>,
    ) -> Self {
        let mut table = RouteTable {
            clients,
            ..RouteTable::default()
        };
        for (name, d) in &config.deployments {
            let Some(controller) = controllers.get(name) else {
                continue;
            };
            let index = table.deployments.len();
            table.deployments.push(Arc::new(DeploymentEntry {
                name: name.clone(),
                config: Arc::new(d.clone()),
                controller: controller.clone(),
                fallback: d
                    .fallback
                    .as_ref()
                    .map(|f| DeploymentFallback::new(f, providers)),
                metrics: DeploymentMetrics::new(name),
                replica_authorization: d
                    .backend
                    .api_key_env()
                    .and_then(|var| std::env::var(var).ok())
                    .map(|key| Arc::from(format!("Bearer {key}"))),
            }));
            for model in d.names(name) {
                table.by_model.insert(model.to_string(), index);
            }
            for host in &d.route.hosts {
                table.by_host.insert(host.to_ascii_lowercase(), index);
            }
            if let Some(prefix) = &d.route.path_prefix {
                table.by_prefix.push((prefix.clone(), index));
            }
        }
        // Longest prefix first.
        table
            .by_prefix
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        table
    }

    /// Looks up a model name or alias.
    pub fn by_model(&self, model: &str) -> Option<&Arc<DeploymentEntry>> {
        self.by_model.get(model).map(|&i| &self.deployments[i])
    }

    /// Finds the deployment for a request without a known model: header, then host, then prefix.
    pub fn by_request(
        &self,
        header: Option<&str>,
        host: Option<&str>,
        path: &str,
    ) -> Option<Route<'_>> {
        if let Some(d) = header.and_then(|h| self.by_model(h)) {
            return Some(Route {
                deployment: d,
                strip_prefix: 0,
            });
        }
        if let Some(host) = host {
            let host = host
                .rsplit_once(':')
                .map_or(host, |(h, _)| h)
                .to_ascii_lowercase();
            if let Some(&i) = self.by_host.get(&host) {
                return Some(Route {
                    deployment: &self.deployments[i],
                    strip_prefix: 0,
                });
            }
        }
        self.prefix_route(path)
    }

    /// The deployment whose path prefix the path starts with, if any.
    pub fn prefix_route(&self, path: &str) -> Option<Route<'_>> {
        self.by_prefix.iter().find_map(|(prefix, i)| {
            let rest = path.strip_prefix(prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| Route {
                deployment: &self.deployments[*i],
                strip_prefix: prefix.len(),
            })
        })
    }

    /// The `GET /v1/models` body: every deployment (that `client` may use) with its aliases.
    pub fn models_json(&self, client: Option<&Client>) -> String {
        let data: Vec<_> = self
            .deployments
            .iter()
            .filter(|d| client.is_none_or(|c| c.may_use(&d.name)))
            .map(|d| {
                serde_json::json!({
                    "id": d.name, "object": "model", "created": 0, "owned_by": "infergate",
                    "aliases": d.config.aliases,
                })
            })
            .collect();
        serde_json::json!({"object": "list", "data": data}).to_string()
    }

    /// The `GET /v1/models/{id}` body for one model name or alias (that `client` may use).
    pub fn model_json(&self, id: &str, client: Option<&Client>) -> Option<String> {
        let d = self
            .by_model(id)
            .filter(|d| client.is_none_or(|c| c.may_use(&d.name)))?;
        Some(
            serde_json::json!({"id": d.name, "object": "model", "created": 0, "owned_by": "infergate", "aliases": d.config.aliases})
                .to_string(),
        )
    }
}
