//! The running deployments and hot reload (SPEC §7): on SIGHUP or a change of the config file the
//! file is read again; deployments are added, changed (settings swapped on the controller, the
//! routing table swapped whole) or removed (drained in the background) without touching requests
//! in flight or waiting on the deployments that stay. An invalid file is refused with the field and
//! the reason (log + event) and the running configuration stays.

use crate::data_plane::app::DataPlaneSettings;
use crate::data_plane::routing::RouteTable;
use arc_swap::ArcSwap;
use infergate_clients::ClientTable;
use infergate_config::Config;
use infergate_fallback::Providers;
use infergate_scaler::gpus::SharedGpus;
use infergate_scaler::{Controller, ControllerHandle, EventKind, EventSink, Numbers};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// Refuses providers and static replica URLs that would reach one of this proxy's bound
/// listeners (a loop).
pub fn check_loops(config: &Config, bound: &[SocketAddr]) -> Result<(), String> {
    match config.loops(bound).first() {
        Some(error) => Err(error.to_string()),
        None => Ok(()),
    }
}

/// The keys a configuration needs from the environment: every client's `key_env` (the table
/// of clients is built here, keeping the budgets of `previous`'s unchanged clients) and every
/// `backend.api_key_env`; a missing one is an error naming its field.
pub fn client_table(
    config: &Config,
    previous: Option<&ClientTable>,
) -> Result<Arc<ClientTable>, String> {
    for (name, d) in &config.deployments {
        if let Some(var) = d.backend.api_key_env() {
            if std::env::var(var).map_or(true, |v| v.is_empty()) {
                return Err(format!("deployments.{name}.backend.api_key_env: environment variable {var} is not set (it must hold the key the replicas expect)"));
            }
        }
    }
    ClientTable::build(config, previous)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// The deployments running now, and what a reload needs to change them.
pub struct Deployments {
    config: Config,
    path: Option<PathBuf>,
    bound: Vec<SocketAddr>,
    handles: HashMap<String, ControllerHandle>,
    router: Arc<ArcSwap<RouteTable>>,
    settings: Arc<ArcSwap<DataPlaneSettings>>,
    /// The providers in force (kept across reloads when unchanged).
    providers: Arc<Providers>,
    events: EventSink,
    /// The box's shared GPU pool (`[gpus]`), kept for the process's life.
    gpus: Option<Arc<SharedGpus>>,
    /// (modified, length) of the file when last read, to notice changes.
    seen: Option<(SystemTime, u64)>,
}

impl Deployments {
    /// Starts a controller per deployment and builds the routing table.
    pub fn start(
        config: Config,
        path: Option<PathBuf>,
        bound: Vec<SocketAddr>,
        providers: &Arc<Providers>,
        events: EventSink,
        clients: Arc<ClientTable>,
    ) -> Deployments {
        let gpus = SharedGpus::from_config(&config.gpus);
        let mut handles = HashMap::new();
        for (name, d) in &config.deployments {
            handles.insert(
                name.clone(),
                Controller::spawn(name, d.clone(), events.clone(), gpus.as_ref()),
            );
        }
        let controllers = handles
            .iter()
            .map(|(n, h)| (n.clone(), h.controller.clone()))
            .collect();
        let router = Arc::new(ArcSwap::from_pointee(RouteTable::new(
            &config,
            &controllers,
            providers,
            clients,
        )));
        let settings = Arc::new(ArcSwap::from_pointee(DataPlaneSettings::from_config(
            &config.server,
        )));
        let seen = path.as_deref().and_then(file_stamp);
        Deployments {
            config,
            path,
            bound,
            handles,
            router,
            settings,
            providers: providers.clone(),
            events,
            gpus,
            seen,
        }
    }

    /// The routing table the data plane and admin API read.
    pub fn router(&self) -> &Arc<ArcSwap<RouteTable>> {
        &self.router
    }

    /// The data-plane settings.
    pub fn settings(&self) -> &Arc<ArcSwap<DataPlaneSettings>> {
        &self.settings
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the config file changed since it was last read.
    pub fn file_changed(&self) -> bool {
        match &self.path {
            Some(p) => file_stamp(p) != self.seen,
            None => false,
        }
    }

    /// Reads the file again and applies it; on error the running configuration stays.
    pub fn reload(&mut self, trigger: &str) -> Result<(), String> {
        let Some(path) = self.path.clone() else {
            return Err("running the embedded demo config: nothing to reload".into());
        };
        self.seen = file_stamp(&path);
        let result = Config::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                check_loops(&c, &self.bound)?;
                let providers = self.providers.rebuild(&c).map_err(|e| e.to_string())?;
                let clients = client_table(&c, Some(&self.router.load().clients))?;
                Ok((c, providers, clients))
            });
        let (config, providers, clients) = match result {
            Ok(ok) => ok,
            Err(reason) => {
                tracing::error!(path = %path.display(), trigger, reason = %reason, "config reload refused; the running configuration stays");
                self.events.emit(
                    "",
                    EventKind::ConfigRejected,
                    "config",
                    format!("reload of {} refused ({trigger}): {reason}", path.display()),
                    Numbers::default(),
                );
                return Err(reason);
            }
        };
        self.providers = Arc::new(providers);
        self.apply(config, self.providers.clone(), clients, trigger);
        Ok(())
    }

    fn apply(
        &mut self,
        config: Config,
        providers: Arc<Providers>,
        clients: Arc<ClientTable>,
        trigger: &str,
    ) {
        let mut added = Vec::new();
        let mut changed = Vec::new();
        for (name, d) in &config.deployments {
            match self.handles.get(name) {
                Some(handle) => {
                    let old = self.config.deployments.get(name);
                    if old.map(json) == Some(json(d)) {
                        continue;
                    }
                    if old.map(|o| json(&o.backend)) != Some(json(&d.backend)) {
                        tracing::warn!(deployment = %name, "the backend of a running deployment changed: replicas started from now on are unaffected until infergate restarts; settings are applied");
                    }
                    // Validated with the whole file above.
                    let _ = handle.controller.update_config(d.clone(), "config");
                    changed.push(name.clone());
                }
                None => {
                    let handle =
                        Controller::spawn(name, d.clone(), self.events.clone(), self.gpus.as_ref());
                    self.handles.insert(name.clone(), handle);
                    added.push(name.clone());
                }
            }
        }
        let removed: Vec<String> = self
            .handles
            .keys()
            .filter(|n| !config.deployments.contains_key(*n))
            .cloned()
            .collect();
        let controllers = self
            .handles
            .iter()
            .filter(|(n, _)| config.deployments.contains_key(*n))
            .map(|(n, h)| (n.clone(), h.controller.clone()))
            .collect::<HashMap<_, _>>();
        self.router.store(Arc::new(RouteTable::new(
            &config,
            &controllers,
            &providers,
            clients,
        )));
        self.settings
            .store(Arc::new(DataPlaneSettings::from_config(&config.server)));
        for name in &removed {
            if let Some(handle) = self.handles.remove(name) {
                // Out of the routing table already: drain what it still serves, then stop.
                tokio::spawn(handle.shutdown());
            }
        }
        if json(&config.server.listeners) != json(&self.config.server.listeners)
            || json(&config.admin) != json(&self.config.admin)
        {
            tracing::warn!("listener or admin address changes take effect after a restart");
        }
        if config.gpus != self.config.gpus {
            tracing::warn!("[gpus] changes take effect after a restart");
        }
        for (list, what) in [(&added, "added"), (&removed, "removed")] {
            for name in list {
                self.events.emit(
                    name,
                    EventKind::SettingsChanged,
                    "config",
                    format!("deployment {what} by a config reload ({trigger})"),
                    Numbers::default(),
                );
            }
        }
        tracing::info!(trigger, ?added, ?changed, ?removed, "config reloaded");
        self.config = config;
    }

    /// Stops every deployment: waiting requests are answered, replicas drained and stopped.
    pub async fn shutdown(self) {
        futures_util::future::join_all(self.handles.into_values().map(|h| h.shutdown())).await;
    }
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

fn file_stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
