//! The data plane's threads: one single-threaded tokio runtime per core, each accepting on every
//! listener and serving the connections it accepted to their end, so a request never changes
//! thread — no work stealing, no cross-thread wake-up on the request path. The control plane
//! (controllers, health checks, admin API, reloads) keeps the multi-threaded runtime.
//!
//! The idea is nginx's worker processes and pingora's own `NoStealRuntime`; a single pingora
//! `Service` on the shared runtime spent 45 % of a saturated run in the scheduler (issue 14).

use crate::data_plane::connection::EdgeApp;
use crate::serve::ServeError;
use pingora::listeners::{L4BufferSettings, ListenerConfig, Listeners};
use pingora::server::Fds;
use pingora::services::listening::Service;
use pingora::services::Service as ServiceTrait;
use std::os::fd::IntoRawFd;
use std::sync::Arc;
use tokio::sync::watch;

/// TLS read buffer: one TLS record (rustls reads records of at most 16 KiB).
const TLS_READ_BUFFER: usize = 16 * 1024;

/// One bound listening socket and how to speak on it.
pub struct BoundListener {
    /// The socket, bound and non-blocking; each worker accepts on its own duplicate.
    pub socket: std::net::TcpListener,
    /// The address it is bound to (pingora's key for the socket).
    pub key: String,
    /// PEM certificate chain and key, for HTTPS listeners.
    pub tls: Option<(String, String)>,
}

/// The running workers; `stop` ends accepting, `exit` ends the threads.
pub struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers, each with its own runtime and its own copy of every listener.
    /// Connections still open when accepting stops keep being served until `exit` is set.
    pub fn start(
        listeners: &[BoundListener],
        edge: EdgeApp,
        count: usize,
        stop: watch::Receiver<bool>,
        exit: watch::Receiver<bool>,
    ) -> Result<Workers, ServeError> {
        let mut threads = Vec::with_capacity(count);
        for index in 0..count.max(1) {
            let (pingora_listeners, fds) = listeners_for_worker(listeners)?;
            let edge = edge.clone();
            let (stop, mut exit) = (stop.clone(), exit.clone());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| ServeError::Runtime(e.to_string()))?;
            let thread = std::thread::Builder::new()
                .name(format!("infergate-worker-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let mut service = Service::with_listeners(
                            "infergate".to_string(),
                            pingora_listeners,
                            edge,
                        );
                        let fds = Arc::new(parking_lot::Mutex::new(fds));
                        service.start_service(Some(fds), stop, 1).await;
                        // Accepting stopped; open connections finish on this runtime.
                        let _ = exit.wait_for(|done| *done).await;
                    });
                })
                .map_err(|e| ServeError::Runtime(e.to_string()))?;
            threads.push(thread);
        }
        Ok(Workers { threads })
    }

    /// Waits for every worker to end (after `exit` was set).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// How many workers to run: one per core the process may use.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A worker's own listeners: a duplicate of each socket, plain TCP unbuffered on the read side
/// (pingora reads the request head into its own 4 KiB buffer; its default 64 KiB read buffer,
/// zero-filled, cost every idle connection 64 KiB of RSS), TLS with one record of read buffer.
fn listeners_for_worker(bound: &[BoundListener]) -> Result<(Listeners, Fds), ServeError> {
    let mut listeners = Listeners::new();
    let mut fds = Fds::new();
    for b in bound {
        let dup = b.socket.try_clone().map_err(|e| ServeError::Bind {
            address: b.key.clone(),
            reason: e.to_string(),
        })?;
        fds.add(b.key.clone(), dup.into_raw_fd());
        let config = ListenerConfig::tcp(b.key.as_str());
        let config = match &b.tls {
            Some((cert, key)) => {
                let mut tls = pingora::listeners::tls::TlsSettings::intermediate(cert, key)
                    .map_err(|e| ServeError::Tls {
                        address: b.key.clone(),
                        reason: e.to_string(),
                    })?;
                tls.enable_h2();
                config
                    .tls(tls)
                    .l4_buffer(L4BufferSettings::default().read(TLS_READ_BUFFER))
            }
            None => config.l4_buffer(L4BufferSettings::default().read(0)),
        };
        listeners.add_listener(config);
    }
    Ok((listeners, fds))
}
