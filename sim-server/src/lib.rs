//! `infergate sim-server`: a simulated OpenAI-compatible model server (its own crate: the demo,
//! the tests and the benchmarks all run it as `infergate sim-server`).
//!
//! It plays the GPU replica in demos, tests and benchmarks: a real HTTP server in a real process
//! with a configurable cold start, time to first token and token rate, vLLM-named metrics, and
//! counters that prove what the proxy did to it (maximum concurrency seen, cancelled requests).

mod audio;
mod openai;
mod prefix_cache;
mod responses;
mod sleep;
mod state;

use bytes::Bytes;
use clap::Args;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use state::SimState;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Settings of the simulated model server.
#[derive(Debug, Clone, Args)]
pub struct SimOptions {
    /// Port to listen on (0 = any free port; the address is printed).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Model name reported by /v1/models and in responses.
    #[arg(long, default_value = "sim-model")]
    pub model: String,
    /// Time after start before /health answers 200 (model loading).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub cold_start: Duration,
    /// Time to first token.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub ttft: Duration,
    /// Decode speed after the first token.
    #[arg(long, default_value_t = 100.0)]
    pub tokens_per_s: f64,
    /// Requests processed at once; more wait (reported as vllm:num_requests_waiting). 0 = no limit.
    #[arg(long, default_value_t = 0)]
    pub max_concurrency: u32,
    /// Fraction of requests answered with HTTP 500 (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Tokens generated when the request names no max_tokens.
    #[arg(long, default_value_t = 16)]
    pub default_max_tokens: u32,
    /// Dimension of returned embeddings.
    #[arg(long, default_value_t = 16)]
    pub embedding_dim: usize,
    /// Require `Authorization: Bearer <key>` (plays a SaaS provider).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Answer /metrics with 404, like a model server started without its metrics endpoint.
    #[arg(long)]
    pub no_metrics: bool,
    /// Whose metric names /metrics uses: vllm, sglang, llamacpp, tgi or tei (as each server
    /// exports its queue and KV cache).
    #[arg(long, default_value = "vllm", value_parser = ["vllm", "sglang", "llamacpp", "tgi", "tei"])]
    pub metrics_flavor: String,
    /// Path of the Prometheus endpoint.
    #[arg(long, default_value = "/metrics")]
    pub metrics_path: String,
    /// Prompt prefixes the modelled prefix cache holds (0, the default: no prefix cache, so
    /// every request takes `--ttft`).
    #[arg(long, default_value_t = 0)]
    pub prefix_cache_size: usize,
    /// Bytes of prompt text (from the first message on) that make a prefix.
    #[arg(long, default_value_t = 1024)]
    pub prefix_bytes: usize,
    /// Time to first token of a request whose prefix is cached, as a fraction of `--ttft`.
    #[arg(long, default_value_t = 0.2)]
    pub prefix_hit_ttft_factor: f64,
    /// Time `POST /wake_up` takes to bring a sleeping model back (vLLM's sleep mode).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub wake_time: Duration,
    /// Answer `/sleep`, `/wake_up` and `/is_sleeping` with 404, like a server started without
    /// sleep mode.
    #[arg(long)]
    pub no_sleep_mode: bool,
    /// Serve HTTPS with this PEM certificate chain (with `--tls-key`), like a SaaS provider.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<String>,
    /// PEM private key for `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<String>,
}

/// Response body type used by every handler: full bodies and SSE streams alike.
pub(crate) type SimBody = BoxBody<Bytes, Infallible>;

pub(crate) fn full(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<SimBody> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

pub(crate) fn json_error(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: &str,
) -> Response<SimBody> {
    let body = serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    full(status, "application/json", body.to_string())
}

/// Runs the simulated server until the process is killed.
pub async fn run(opts: SimOptions) -> std::io::Result<()> {
    let addr: SocketAddr = format!("{}:{}", opts.host, opts.port)
        .parse()
        .map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bad address: {e}"),
            )
        })?;
    let tls = match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    // Whoever started us may stop reading stdout; that must not kill the server.
    let mut out = std::io::stdout();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let _ = writeln!(
        out,
        "sim-server listening on {scheme}://{local} model={} cold_start={:?}",
        opts.model, opts.cold_start
    );
    let _ = out.flush();
    let state = Arc::new(SimState::new(opts));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(state, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

/// A rustls acceptor for `--tls-cert` / `--tls-key`.
fn tls_acceptor(cert: &str, key: &str) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let certs = rustls_pemfile::certs(&mut std::fs::read(cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut std::fs::read(key)?.as_slice())?
        .ok_or_else(|| invalid(format!("{key}: no private key")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn route(state: Arc<SimState>, req: Request<Incoming>) -> Response<SimBody> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/health") => {
            if state.loaded() {
                full(StatusCode::OK, "application/json", r#"{"status":"ok"}"#)
            } else {
                full(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    r#"{"status":"loading"}"#,
                )
            }
        }
        (&Method::GET, p) if p == state.opts.metrics_path && !state.opts.no_metrics => full(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.prometheus(),
        ),
        (&Method::POST, "/sleep") => sleep::sleep(&state),
        (&Method::POST, "/wake_up") => sleep::wake_up(state).await,
        (&Method::GET, "/is_sleeping") => sleep::is_sleeping(&state),
        _ if state.sleeping.load(std::sync::atomic::Ordering::Acquire)
            && path.starts_with("/v1/") =>
        {
            sleep::refused_while_sleeping()
        }
        (&Method::GET, "/sim/stats") => full(
            StatusCode::OK,
            "application/json",
            state.stats_json().to_string(),
        ),
        _ if !state.loaded() => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "model is still loading",
            "server_error",
            "model_loading",
        ),
        _ if !state.authorized(&req) => {
            // Like OpenAI, the message echoes the key it got: a proxy must not pass that on.
            let got = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            json_error(
                StatusCode::UNAUTHORIZED,
                &format!("Incorrect API key provided: {got}."),
                "invalid_request_error",
                "invalid_api_key",
            )
        }
        // The request's headers as this server got them (tests check what a proxy forwards).
        (&Method::GET, "/sim/headers") => full(
            StatusCode::OK,
            "application/json",
            serde_json::Value::Object(
                req.headers()
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.to_string(),
                            serde_json::Value::from(String::from_utf8_lossy(v.as_bytes())),
                        )
                    })
                    .collect(),
            )
            .to_string(),
        ),
        (&Method::GET, "/v1/models") => full(
            StatusCode::OK,
            "application/json",
            state.models_json().to_string(),
        ),
        (&Method::POST, "/v1/chat/completions") => {
            openai::generate(state, req, openai::Kind::Chat).await
        }
        (&Method::POST, "/v1/completions") => {
            openai::generate(state, req, openai::Kind::Completion).await
        }
        (&Method::POST, "/v1/embeddings") => openai::embeddings(state, req).await,
        (&Method::POST, "/v1/responses") => responses::create(state, req).await,
        (&Method::POST, "/v1/audio/transcriptions" | "/v1/audio/translations") => {
            audio::transcribe(state, req).await
        }
        _ => json_error(
            StatusCode::NOT_FOUND,
            &format!("no route for {} {path}", req.method()),
            "invalid_request_error",
            "not_found",
        ),
    }
}
