//! Client connections before and between requests: how many may be open, how long one may stay
//! silent, when a plain-text connection speaks HTTP/2, the HTTP/1.1 keep-alive loop (pipelined
//! requests answered in order, RFC 9112 §9.3.2), and a clear answer to bytes that are not HTTP.
//!
//! pingora's own accept path (`impl ServerApp for HttpServerApp`) peeks for the h2c preface
//! without a deadline and needs 24 bytes to decide, so a silent connection or a short HTTP/0.9
//! line is held forever. This module takes that path over: it sniffs at most 24 bytes under
//! `server.header_read_timeout`, hands HTTP/2 to pingora unchanged, and runs HTTP/1.x itself.
//! The idea (a deadline on the request head, a cap on connections) is nginx's
//! `client_header_timeout`, `keepalive_timeout` and `worker_connections`.

use crate::data_plane::app::ProxyApp;
use async_trait::async_trait;
use pingora::apps::{
    HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp,
};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use pingora_timeout::fast_timeout::fast_timeout;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Connection limits, read per connection (swapped on reload with the other data-plane settings).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// New connection (or first byte of a kept-alive request) → complete request head.
    pub header_read_timeout: Duration,
    /// Longest idle time between two requests on one connection.
    pub keepalive_idle: Duration,
    /// Most connections open at once.
    pub max_connections: u64,
}

/// What the proxy answers to a request head it could not read.
pub struct RawAnswer {
    /// HTTP status.
    pub status: u16,
    /// Status reason phrase.
    pub reason: &'static str,
    /// OpenAI-style error code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// The listeners' server app: admission, sniffing and the HTTP/1.x loop around [`ProxyApp`].
/// Cloned for each data-plane worker; the clones share the app and the connection count.
#[derive(Clone)]
pub struct EdgeApp {
    app: Arc<ProxyApp>,
    /// Each plain-text listener's bound address and whether it accepts h2c.
    h2c: Arc<[(std::net::SocketAddr, bool)]>,
    open: Arc<AtomicU64>,
}

/// One open connection, counted until dropped.
struct OpenConnection(Arc<AtomicU64>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let now = self.0.fetch_sub(1, Ordering::AcqRel) - 1;
        crate::metrics::connections_open(now);
    }
}

impl EdgeApp {
    /// Wraps the data plane; `h2c` lists each listener's bound address and whether it accepts
    /// HTTP/2 with prior knowledge (decided per listener, not for all of them at once).
    pub fn new(app: Arc<ProxyApp>, h2c: Vec<(std::net::SocketAddr, bool)>) -> Self {
        EdgeApp {
            app,
            h2c: h2c.into(),
            open: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether the listener that accepted `stream` accepts h2c.
    fn h2c_for(&self, stream: &Stream) -> bool {
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
        let Some(local) = local else {
            return false;
        };
        self.h2c.iter().any(|(bound, h2c)| {
            *h2c && bound.port() == local.port()
                && (bound.ip().is_unspecified() || bound.ip() == local.ip())
        })
    }

    fn admit(&self, max: u64) -> Option<OpenConnection> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        let guard = OpenConnection(self.open.clone());
        if before >= max {
            return None;
        }
        crate::metrics::connections_open(before + 1);
        Some(guard)
    }
}

#[async_trait]
impl ServerApp for EdgeApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = self.app.connection_limits();
        let Some(_open) = self.admit(limits.max_connections) else {
            crate::metrics::connection_refused();
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection refused: server.max_connections are open"
            );
            let mut stream = stream;
            if !matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
                let answer = RawAnswer {
                    status: 503,
                    reason: "Service Unavailable",
                    code: "too_many_connections",
                    message: format!(
                        "This proxy has {} connections open (server.max_connections); retry later.",
                        limits.max_connections
                    ),
                };
                write_raw(&mut stream, &answer).await;
            }
            return None;
        };
        let tls = stream.get_ssl_digest().is_some();
        let (stream, h2) = if tls {
            let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
            (stream, h2)
        } else {
            let h2c = self.h2c_for(&stream);
            match sniff(stream, h2c, limits.header_read_timeout).await {
                Some(sniffed) => sniffed,
                None => return None,
            }
        };
        if h2 {
            // pingora's HTTP/2 server, unchanged (the preface is already buffered).
            return ServerApp::process_new(&self.app, stream, shutdown).await;
        }
        let mut session = ServerSession::new_http1(stream);
        let keepalive = if *shutdown.borrow() {
            None
        } else {
            Some(limits.keepalive_idle.as_secs().max(1))
        };
        session.set_keepalive(keepalive);
        session.set_pipelining_enabled(true);
        let mut result = self.app.serve_session(session, shutdown, false).await;
        while let Some((stream, settings)) = result.map(ReusedHttpStream::consume) {
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            result = self.app.serve_session(session, shutdown, true).await;
        }
        None
    }

    async fn cleanup(&self) {}
}

/// Reads the first bytes of a plain-text connection (at most the HTTP/2 preface's 24, stopping
/// as soon as they differ from it) within `deadline`, puts them back, and says whether the client
/// speaks HTTP/2. `None`: silent past the deadline, closed, or not a TCP stream.
async fn sniff(stream: Stream, h2c: bool, deadline: Duration) -> Option<(Stream, bool)> {
    if !stream.as_any().is::<TcpStream>() {
        return Some((stream, false));
    }
    let mut tcp: Box<TcpStream> = stream.into_any().downcast().ok()?;
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut n = 0;
    let read = fast_timeout(deadline, async {
        loop {
            let got = tcp.read(&mut buf[n..]).await?;
            if got == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            n += got;
            if !h2c || n == buf.len() || buf[..n] != H2_PREFACE[..n] {
                return Ok(true);
            }
        }
    })
    .await;
    match read {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) | Ok(Err(_)) => return None,
        Err(_) => {
            crate::metrics::connection_closed("header_timeout");
            tracing::debug!(
                timeout_ms = deadline.as_millis() as u64,
                bytes = n,
                "connection silent past server.header_read_timeout; closed"
            );
            let mut stream: Stream = tcp;
            if n > 0 {
                write_raw(&mut stream, &header_timeout(deadline)).await;
            }
            return None;
        }
    }
    tcp.rewind(&buf[..n]);
    let h2 = h2c && n == H2_PREFACE.len() && buf == H2_PREFACE;
    Some((tcp, h2))
}

/// The 408 for a request head that did not arrive in time.
pub fn header_timeout(deadline: Duration) -> RawAnswer {
    RawAnswer {
        status: 408,
        reason: "Request Timeout",
        code: "request_timeout",
        message: format!(
            "The request head did not arrive within {} (server.header_read_timeout).",
            infergate_config::HumanDuration(deadline)
        ),
    }
}

/// What to answer to a request head pingora could not parse; `None` when the client just left.
pub fn malformed(error: &pingora::Error) -> Option<RawAnswer> {
    use pingora::ErrorType;
    let text = error.to_string();
    match error.etype() {
        ErrorType::InvalidHTTPHeader
            if text.contains("larger than") || text.contains("too many headers") =>
        {
            Some(RawAnswer {
                status: 431,
                reason: "Request Header Fields Too Large",
                code: "headers_too_large",
                message: "The request head is too large (at most 1 MiB and 256 header fields)."
                    .into(),
            })
        }
        ErrorType::InvalidHTTPHeader if text.contains("HTTP version") || is_http09(&text) => {
            Some(RawAnswer {
                status: 505,
                reason: "HTTP Version Not Supported",
                code: "http_version_not_supported",
                message: "Only HTTP/1.0, HTTP/1.1 and HTTP/2 are served.".into(),
            })
        }
        ErrorType::InvalidHTTPHeader => Some(RawAnswer {
            status: 400,
            reason: "Bad Request",
            code: "invalid_request",
            message: "The request head is not valid HTTP.".into(),
        }),
        _ => None,
    }
}

/// Whether pingora's error quotes an HTTP/0.9 request line (`GET /path` and no version).
fn is_http09(error_text: &str) -> bool {
    let Some((_, buf)) = error_text.split_once("buf: ") else {
        return false;
    };
    let line = buf
        .trim_start_matches('"')
        .split("\\r")
        .next()
        .unwrap_or("");
    let line = line.split("\\n").next().unwrap_or("");
    let mut tokens = line.split(' ');
    let method = tokens.next().unwrap_or("");
    let target = tokens.next().unwrap_or("");
    !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && target.starts_with('/')
        && tokens.next().is_none()
}

/// Writes a complete JSON error answer with `Connection: close` straight to the socket (the
/// request could not be parsed, so there is no HTTP session to answer through), then closes.
pub async fn write_raw(stream: &mut Stream, answer: &RawAnswer) {
    let body = serde_json::json!({"error": {
        "message": answer.message, "type": "invalid_request_error", "param": null, "code": answer.code,
    }})
    .to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.status,
        answer.reason,
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    let _ = fast_timeout(Duration::from_secs(2), write).await;
}

impl ProxyApp {
    /// The connection limits in force.
    pub fn connection_limits(&self) -> ConnectionLimits {
        self.settings.load().connections
    }

    /// Reads one request head (within `server.header_read_timeout`, plus the keep-alive idle time
    /// on a `kept_alive` connection), answers it, and hands back the connection when it can carry
    /// another request. A head that is not valid HTTP gets 400/431/505 and the connection closes.
    pub async fn serve_session(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
        kept_alive: bool,
    ) -> Option<ReusedHttpStream> {
        let limits = self.connection_limits();
        let budget = if kept_alive {
            limits.keepalive_idle + limits.header_read_timeout
        } else {
            limits.header_read_timeout
        };
        let mut shutdown_rx = shutdown.clone();
        let waiting_since = kept_alive.then(Instant::now);
        let read = tokio::select! {
            biased;
            r = fast_timeout(budget, session.read_request()) => r,
            _ = shutdown_rx.wait_for(|stopping| *stopping) => return None,
        };
        let answer = match read {
            Ok(Ok(true)) => None,
            Ok(Ok(false)) => {
                // The client closed, or pingora's keep-alive timer did.
                if waiting_since.is_some_and(|t| t.elapsed() >= limits.keepalive_idle) {
                    crate::metrics::connection_closed("idle");
                }
                return None;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "could not read request");
                let answer = malformed(&e)?;
                crate::metrics::connection_closed("malformed");
                Some(answer)
            }
            Err(_) if kept_alive => {
                // Idle (or trickling) between requests: close without an answer, which a client
                // reusing the connection just then would mistake for its own.
                crate::metrics::connection_closed("idle");
                return None;
            }
            Err(_) => {
                crate::metrics::connection_closed("header_timeout");
                Some(header_timeout(limits.header_read_timeout))
            }
        };
        if session.get_keepalive().is_some() {
            // pingora makes every HTTP/1.1 connection keep-alive forever once a request is read;
            // bound the idle time by server.keepalive_idle_timeout.
            session.set_keepalive(Some(limits.keepalive_idle.as_secs().max(1)));
        }
        if let Some(answer) = answer {
            tracing::info!(
                status = answer.status,
                code = answer.code,
                "request head refused"
            );
            crate::metrics::request_without_deployment("proxy", answer.status);
            if let ServerSession::H1(h1) = session {
                let mut stream = h1.into_inner();
                write_raw(&mut stream, &answer).await;
            }
            return None;
        }
        if *shutdown.borrow() {
            session.set_keepalive(None);
        }
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("request", request_id, deployment = tracing::field::Empty);
        if !self.handle(&mut session, request_id).instrument(span).await {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        session
            .finish()
            .await
            .ok()
            .flatten()
            .map(|s| ReusedHttpStream::from_reusable_stream(s, settings))
    }
}

#[async_trait]
impl HttpServerApp for ProxyApp {
    /// HTTP/2 streams (HTTP/1.x connections are run by [`EdgeApp`]).
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        self.serve_session(session, shutdown, false).await
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.server_options)
    }
}
