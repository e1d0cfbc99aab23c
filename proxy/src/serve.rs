//! `infergate serve`: wires config, controllers, the data plane and the admin listener together,
//! and owns the process lifecycle (signals, graceful shutdown, no orphaned replicas).

use crate::control_plane::admin;
use crate::control_plane::admin_token;
use crate::control_plane::reload::{check_loops, Deployments};
use crate::data_plane::app::ProxyApp;
use crate::data_plane::connection::EdgeApp;
use crate::data_plane::workers::{self, BoundListener, Workers};
use infergate_config::Config;
use infergate_fallback::Providers;
use infergate_scaler::events::{EventFile, EventLog};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {reason}")]
    Bind {
        /// The configured address.
        address: String,
        /// The OS error.
        reason: String,
    },
    /// TLS certificate or key could not be loaded.
    #[error("TLS setup for {address} failed: {reason}")]
    Tls {
        /// The listener address.
        address: String,
        /// What went wrong.
        reason: String,
    },
    /// A data-plane worker thread or its runtime could not be started.
    #[error("cannot start the data-plane workers: {0}")]
    Runtime(String),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(String),
    /// A fallback provider cannot be used (key, CA file) or points back at this proxy.
    #[error("{0}")]
    Provider(String),
}

/// Runs the proxy until SIGINT/SIGTERM, then shuts down gracefully.
/// `config_path` is the file to reload on SIGHUP or change (none for the embedded demo).
pub async fn run(
    config: Config,
    config_source: &str,
    config_path: Option<PathBuf>,
) -> Result<(), ServeError> {
    // Signal handlers first, so a signal during start-up still shuts down cleanly.
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| ServeError::Signals(e.to_string()))?;
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| ServeError::Signals(e.to_string()))?;
    let mut sighup =
        signal(SignalKind::hangup()).map_err(|e| ServeError::Signals(e.to_string()))?;
    // Before any deployment registers its metric handles.
    let prometheus = crate::metrics::install().map_err(ServeError::Provider)?;
    tokio::spawn(crate::metrics::run_upkeep(prometheus.clone()));

    // Bind listeners ourselves so port 0 works and the chosen address can be printed; each
    // data-plane worker takes a duplicate of every bound socket.
    let mut urls = Vec::new();
    let mut bound = Vec::new();
    let mut sockets = Vec::new();
    for listener in &config.server.listeners {
        let bind_error = |e: std::io::Error| ServeError::Bind {
            address: listener.address.clone(),
            reason: e.to_string(),
        };
        let std_listener = std::net::TcpListener::bind(&listener.address).map_err(bind_error)?;
        let local = std_listener.local_addr().map_err(bind_error)?;
        // tokio needs the socket in non-blocking mode before pingora adopts it.
        std_listener.set_nonblocking(true).map_err(bind_error)?;
        bound.push(local);
        let scheme = if listener.tls.is_some() {
            "https"
        } else {
            "http"
        };
        urls.push(format!("{scheme}://{local}"));
        sockets.push(BoundListener {
            socket: std_listener,
            key: local.to_string(),
            tls: listener
                .tls
                .as_ref()
                .map(|tls| (tls.cert.clone(), tls.key.clone())),
        });
    }

    // Listeners on port 0 got their port only now: refuse providers and static replicas that
    // reach one of them.
    check_loops(&config, &bound).map_err(ServeError::Provider)?;
    let providers =
        Arc::new(Providers::from_config(&config).map_err(|e| ServeError::Provider(e.to_string()))?);
    let clients =
        crate::control_plane::reload::client_table(&config, None).map_err(ServeError::Provider)?;

    let (events, event_sink) = EventLog::start(
        config.events.capacity as usize,
        config.events.file.as_ref().map(|f| EventFile {
            path: f.into(),
            max_bytes: config.events.file_max_size,
        }),
    );

    // Before any controller starts, so none acts as the cluster's leader before the election.
    let cluster = infergate_scaler::cluster::install(&config.cluster);
    let deployments = Deployments::start(
        config.clone(),
        config_path,
        bound.clone(),
        &providers,
        event_sink.clone(),
        clients,
    );
    let router = deployments.router().clone();
    let settings = deployments.settings().clone();
    // h2c is decided per listener by the edge app; pingora's HTTP/2 server is enabled whenever
    // one listener accepts it (the edge app hands it only the connections that may use it).
    let h2c: Vec<(std::net::SocketAddr, bool)> = config
        .server
        .listeners
        .iter()
        .zip(&bound)
        .map(|(l, addr)| (*addr, l.h2c && l.tls.is_none()))
        .collect();
    let any_h2c = h2c.iter().any(|(_, on)| *on);
    let app = Arc::new(ProxyApp::new(router.clone(), settings, any_h2c));
    let edge = EdgeApp::new(app, h2c);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (exit_tx, exit_rx) = watch::channel(false);
    let workers = Workers::start(
        &sockets,
        edge,
        workers::default_count(),
        stop_rx.clone(),
        exit_rx,
    )?;
    drop(sockets);

    let admin_url = if config.admin.address.is_empty() {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(&config.admin.address)
            .await
            .map_err(|e| ServeError::Bind {
                address: config.admin.address.clone(),
                reason: e.to_string(),
            })?;
        let local = listener.local_addr().map_err(|e| ServeError::Bind {
            address: config.admin.address.clone(),
            reason: e.to_string(),
        })?;
        let (token, token_file) = admin_token::resolve(&config.admin.token_env, &local.to_string())
            .map_err(|reason| ServeError::Bind {
                address: config.admin.address.clone(),
                reason,
            })?;
        if let Some(cluster) = &cluster {
            cluster.start(token.clone());
        }
        let metrics_router = router.clone();
        let state = Arc::new(admin::AdminState {
            router: router.clone(),
            events: events.clone(),
            token,
            metrics: Arc::new(move || {
                let table = metrics_router.load();
                let deployments = table.deployments.iter();
                crate::metrics::render(
                    &prometheus,
                    deployments.map(|d| (d.name.as_str(), &*d.controller)),
                )
            }),
        });
        tokio::spawn(admin::serve(listener, state, stop_rx.clone()));
        Some((format!("http://{local}"), token_file))
    };
    // Every command the banner prints works as written: the admin curl reads the token where
    // infergate put it (or from the variable it came from).
    let (admin_url, token_note) = match admin_url {
        Some((url, Some(f))) => (
            Some(url.clone()),
            format!(
                "  admin token written to {file} (or set ${env})\n\nLive state:\n  {me} status\n  curl -s -H \"authorization: Bearer $(cat '{file}')\" {url}/admin/v1/deployments",
                file = f.display(),
                env = config.admin.token_env,
                me = this_binary(),
            ),
        ),
        Some((url, None)) => (
            Some(url.clone()),
            format!(
                "  admin token from ${env}\n\nLive state:\n  {me} status\n  curl -s -H \"authorization: Bearer ${env}\" {url}/admin/v1/deployments",
                env = config.admin.token_env,
                me = this_binary(),
            ),
        ),
        None => (None, String::new()),
    };

    let (token_line, live_state) = token_note
        .split_once("\n\n")
        .map_or((token_note.as_str(), ""), |(a, b)| (a, b));
    print_banner(
        &config,
        config_source,
        &urls,
        admin_url.as_deref(),
        token_line,
    );
    if !live_state.is_empty() {
        println!("\n{live_state}");
    }

    let mut deployments = deployments;
    let mut file_check = tokio::time::interval(Duration::from_secs(1));
    let signal_name = loop {
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            _ = sighup.recv() => {
                let _ = deployments.reload("SIGHUP");
            }
            _ = file_check.tick() => {
                if deployments.file_changed() {
                    let _ = deployments.reload("file changed");
                }
            }
        }
    };
    tracing::info!(signal = signal_name, grace = ?deployments.config().server.shutdown_grace.get(), "shutting down: no new connections, letting in-flight requests finish");
    let _ = stop_tx.send(true);

    // Let in-flight requests and streams finish, up to the grace period.
    let deadline = Instant::now() + deployments.config().server.shutdown_grace.get();
    loop {
        let table = router.load();
        let busy: u64 = table
            .deployments
            .iter()
            .map(|d| {
                // Replica requests and requests a provider is answering: both are the grace's.
                let pool = d.controller.pool();
                pool.in_flight() + pool.external()
            })
            .sum();
        if busy == 0 || Instant::now() >= deadline {
            if busy > 0 {
                tracing::warn!(
                    in_flight = busy,
                    "grace period over with requests still in flight"
                );
            }
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = sigterm.recv() => { tracing::warn!("second signal: stopping now"); break; }
            _ = sigint.recv() => { tracing::warn!("second signal: stopping now"); break; }
        }
    }
    // Waiting requests get a clear 503; replicas are drained and stopped.
    deployments.shutdown().await;
    // The replica_stopped events of the shutdown reach the log file before the process ends.
    events.flush(&event_sink, Duration::from_secs(2)).await;
    let _ = exit_tx.send(true);
    // Off the runtime: the workers' threads end at once now that `exit` is set.
    let _ = tokio::task::spawn_blocking(move || workers.join()).await;
    tracing::info!("infergate stopped");
    Ok(())
}

/// How to run this binary again from the current directory (for the commands the banner prints).
fn this_binary() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "infergate".into();
    };
    let relative = std::env::current_dir().ok().and_then(|cwd| {
        exe.strip_prefix(&cwd)
            .ok()
            .map(|p| format!("./{}", p.display()))
    });
    relative.unwrap_or_else(|| exe.display().to_string())
}

fn print_banner(
    config: &Config,
    source: &str,
    urls: &[String],
    admin: Option<&str>,
    token_line: &str,
) {
    let base = urls
        .first()
        .map(String::as_str)
        .unwrap_or("http://127.0.0.1:8080");
    println!(
        "infergate {} serving {} deployment(s) from {source}",
        env!("CARGO_PKG_VERSION"),
        config.deployments.len()
    );
    for url in urls {
        println!("  listening on {url}");
    }
    if let Some(admin) = admin {
        println!("  admin on {admin}");
        if !token_line.is_empty() {
            println!("{token_line}");
        }
    }
    for (name, d) in &config.deployments {
        println!(
            "  deployment {name:<28} aliases={:?} replicas {}..{}",
            d.aliases,
            d.min_replicas,
            d.effective_max_replicas()
        );
    }
    if let Some((name, _)) = config.deployments.iter().find(|(_, d)| d.min_replicas == 0) {
        println!("\nTry it (the first request starts a replica and waits for it):");
        println!("  curl -s {base}/v1/models");
        println!(
            "  curl -sN {base}/v1/chat/completions -H 'content-type: application/json' \\\n    -d '{{\"model\":\"{name}\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'"
        );
    }
    if let Some((name, _)) = config
        .deployments
        .iter()
        .find(|(_, d)| d.fallback.is_some())
    {
        println!("\nFallback while cold-starting (watch x-infergate-route move from fallback/… to replica/…):");
        println!(
            "  curl -si {base}/v1/chat/completions -H 'content-type: application/json' \\\n    -d '{{\"model\":\"{name}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}' | grep -i x-infergate"
        );
    }
}
