//! The data plane's side of the fallback (SPEC §6): whether a request of a deployment goes to an
//! external provider, trying providers by priority past open circuits, and streaming the chosen
//! provider's answer back unchanged (SSE included) with `x-infergate-route: fallback/<name>`.

use crate::data_plane::deployment::{DeploymentEntry, DeploymentFallback};
use bytes::Bytes;
use http::header;
use http_body_util::BodyExt;
use infergate_config::FallbackWhen;
use infergate_fallback::Provider;
use infergate_scaler::{EventKind, Numbers, Serving};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora_timeout::fast_timeout::fast_timeout;
use std::time::{Duration, Instant};

/// Largest provider error body relayed (it is buffered to strip the provider key from it).
const MAX_ERROR_BODY: usize = 1 << 20;

/// Response headers of a provider that describe its hop only.
const HOP_BY_HOP: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// What happened when the fallback was tried.
pub enum FallbackResult {
    /// A provider answered (fully or until the client left or it failed); how it ended and the
    /// route.
    Answered {
        /// Status for the access log and metrics: the provider's, or 499 (client gone) or 502
        /// (the provider failed mid-response).
        status: u16,
        /// `fallback/<provider>`.
        route: String,
        /// Whether the client connection can carry another request.
        reusable: bool,
    },
    /// Every provider failed or is cooling down; nothing was sent to the client.
    Unavailable {
        /// A provider that refused our key (401/403) and its status, if one did.
        refused_key: Option<(String, u16)>,
    },
}

impl DeploymentFallback {
    /// Why a request should go to a provider before it would queue for a replica, if it should:
    /// maintenance, hibernation, waking, no ready replica (cold start), or its share of traffic
    /// during the ramp back.
    pub fn reason_before_queue(
        &self,
        deployment: &DeploymentEntry,
        serving: Serving,
        maintenance: bool,
        has_ready: bool,
    ) -> Option<&'static str> {
        if maintenance && self.uses(FallbackWhen::Maintenance) {
            return Some("maintenance");
        }
        let asleep = match serving {
            Serving::Hibernated => Some((FallbackWhen::Hibernated, "hibernated")),
            // The sleep tier of hibernation: `when = ["hibernated"]` covers it.
            Serving::Sleeping => Some((FallbackWhen::Hibernated, "sleeping")),
            Serving::Waking if !has_ready => Some((FallbackWhen::Waking, "waking")),
            _ => None,
        };
        let bridge = match asleep {
            Some(pair) => Some(pair),
            None if !has_ready => Some((FallbackWhen::ColdStart, "cold_start")),
            None => None,
        };
        if let Some((when, reason)) = bridge {
            if !self.uses(when) {
                return None;
            }
            if self.ramp.engage() {
                deployment.controller.events().emit(
                    &deployment.name,
                    EventKind::FallbackEngaged,
                    "proxy",
                    format!(
                        "no replica can answer ({reason}); requests go to the fallback providers"
                    ),
                    Numbers::default(),
                );
            }
            return Some(reason);
        }
        if !self.ramp.is_engaged() {
            return None;
        }
        let (to_replicas, released) = self
            .ramp
            .to_replicas(self.registry.now(), self.config.ramp_back.get());
        if released {
            deployment.controller.events().emit(
                &deployment.name,
                EventKind::FallbackReleased,
                "proxy",
                format!(
                    "all requests are back on the replicas after a {} ramp",
                    self.config.ramp_back
                ),
                Numbers::default(),
            );
        }
        (!to_replicas).then_some("ramp_back")
    }

    /// Sends the request to the first provider that answers; streams its answer to the client.
    pub async fn serve(
        &self,
        session: &mut ServerSession,
        deployment: &DeploymentEntry,
        body: &Bytes,
        model: Option<&str>,
        reason: &'static str,
        started: Instant,
    ) -> FallbackResult {
        let _demand = deployment.controller.pool().external_demand();
        let head = session.req_header();
        let method = head.method.clone();
        let path = head
            .uri
            .path_and_query()
            .map_or_else(|| head.uri.path().to_string(), |p| p.as_str().to_string());
        let headers = head.headers.clone();
        let mut refused_key = None;
        for provider in &self.providers {
            let now = self.registry.now();
            if !provider.breaker().allows(now) {
                tracing::debug!(provider = %provider.name, "provider cooling down; skipped");
                continue;
            }
            let mapped = provider.model_for(&deployment.name, model);
            let request = match provider.request(&method, &path, &headers, body, mapped.as_deref())
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(provider = %provider.name, error = %e, "cannot build provider request");
                    continue;
                }
            };
            let response = match provider.send(request).await {
                Ok(r) => r,
                Err(e) => {
                    self.failed(provider, &e.to_string());
                    continue;
                }
            };
            let status = response.status().as_u16();
            if status >= 500 || status == 429 {
                self.failed(provider, &format!("answered HTTP {status}"));
                continue;
            }
            if status == 401 || status == 403 {
                // Our key for it is wrong: its fault, not the client's. Cool it down, try the
                // next one; never pass its 401 on as if the client's credentials were refused.
                self.failed(
                    provider,
                    &format!("refused infergate's API key (HTTP {status})"),
                );
                refused_key = Some((provider.name.clone(), status));
                continue;
            }
            provider.breaker().record_success();
            tracing::info!(deployment = %deployment.name, provider = %provider.name, reason, status, model = mapped.as_deref(), "answered by fallback provider");
            let route = format!("fallback/{}", provider.name);
            crate::metrics::fallback(&deployment.name, &provider.name, reason);
            let relayed = relay(session, provider, response, &route, reason, || {
                deployment
                    .metrics
                    .time_to_first_byte(&route, started.elapsed())
            })
            .await;
            let (status, reusable) = match relayed {
                Relayed::Complete { reusable } => (status, reusable),
                Relayed::ClientGone => (499, false),
                Relayed::Failed => (502, false),
            };
            return FallbackResult::Answered {
                status,
                route,
                reusable,
            };
        }
        FallbackResult::Unavailable { refused_key }
    }

    fn failed(&self, provider: &Provider, reason: &str) {
        let opened = provider.breaker().record_failure(self.registry.now());
        if opened {
            tracing::warn!(provider = %provider.name, error = reason, cool_down_ms = provider.breaker_cool_down().as_millis() as u64, "provider keeps failing; cooling it down, trying the next one");
        } else {
            tracing::warn!(provider = %provider.name, error = reason, "provider failed; trying the next one");
        }
    }
}

/// Writes the provider's response to the client: the status and headers as they came (plus our
/// route headers), the body streamed chunk by chunk; error bodies are buffered and cleaned of the
/// provider key. Says how it ended.
async fn relay(
    session: &mut ServerSession,
    provider: &Provider,
    response: http::Response<hyper::body::Incoming>,
    route: &str,
    reason: &str,
    first_byte: impl FnOnce(),
) -> Relayed {
    let (parts, mut body) = response.into_parts();
    let status = parts.status.as_u16();
    let Ok(mut header) = ResponseHeader::build(status, Some(parts.headers.len() + 2)) else {
        return Relayed::Failed;
    };
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            let clean = provider.redact(value.as_bytes());
            match http::HeaderValue::from_bytes(&clean) {
                Ok(v) => {
                    let _ = header.append_header(name.clone(), v);
                }
                Err(_) => continue,
            }
        }
    }
    let _ = header.insert_header("x-infergate-route", route);
    let _ = header.insert_header("x-infergate-fallback-reason", reason);
    let idle = provider.timeout;
    let mut redactor = provider.stream_redactor();

    if !(200..300).contains(&status) {
        let mut buffered = Vec::new();
        while buffered.len() < MAX_ERROR_BODY {
            match fast_timeout(idle, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        buffered.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
        let clean = Bytes::from(provider.redact(&buffered));
        let _ = header.remove_header(&header::CONTENT_LENGTH);
        let _ = header.insert_header(header::CONTENT_LENGTH, clean.len().to_string());
        first_byte();
        let done = session
            .write_response_header(Box::new(header))
            .await
            .is_ok()
            && session.write_response_body(clean, true).await.is_ok()
            && session.finish_body().await.is_ok();
        return if done {
            Relayed::Complete { reusable: true }
        } else {
            Relayed::ClientGone
        };
    }

    // Framed like a replica's answer: the provider's Content-Length when it gave one (and the
    // key cannot change the length: redaction may, so then chunked), else chunked. Never a
    // close-delimited body, which would make a cut stream look complete.
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_none() || provider.has_key() {
        let _ = header.remove_header(&header::CONTENT_LENGTH);
        let _ = header.insert_header(header::TRANSFER_ENCODING, "chunked");
    }
    if session
        .write_response_header(Box::new(header))
        .await
        .is_err()
    {
        return Relayed::ClientGone;
    }
    first_byte();
    loop {
        tokio::select! {
            biased;
            frame = fast_timeout(idle, body.frame()) => match frame {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        let clean = Bytes::from(redactor.push(&data));
                        if !clean.is_empty() && session.write_response_body(clean, false).await.is_err() {
                            tracing::info!(provider = %provider.name, "client disconnected mid-response; cancelling the provider request");
                            return Relayed::ClientGone;
                        }
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::warn!(provider = %provider.name, error = %infergate_fallback::provider::error_chain(&e), "provider failed mid-response; aborting the response so the client sees it failed");
                    session.shutdown().await;
                    return Relayed::Failed;
                }
                Err(_) => {
                    tracing::warn!(provider = %provider.name, idle_ms = idle.as_millis() as u64, "provider silent too long mid-response; aborting the response so the client sees it failed");
                    session.shutdown().await;
                    return Relayed::Failed;
                }
            },
            _ = session.read_body_or_idle(true) => {
                tracing::info!(provider = %provider.name, "client disconnected mid-response; cancelling the provider request");
                return Relayed::ClientGone;
            }
        }
    }
    let rest = Bytes::from(redactor.finish());
    if !rest.is_empty() && session.write_response_body(rest, false).await.is_err() {
        return Relayed::ClientGone;
    }
    match session.finish_body().await {
        Ok(_) => Relayed::Complete { reusable: true },
        Err(_) => Relayed::ClientGone,
    }
}

/// How relaying a provider's answer ended.
enum Relayed {
    /// Sent whole.
    Complete {
        /// Whether the client connection can carry another request.
        reusable: bool,
    },
    /// The client went away (counted as 499).
    ClientGone,
    /// The provider failed mid-response; the client saw an aborted response (counted as 502).
    Failed,
}

/// How long to wait for a replica before the `overloaded` fallback answers, if it applies.
pub fn overload_wait(
    fallback: Option<&DeploymentFallback>,
    max_wait: Duration,
) -> Option<Duration> {
    fallback
        .filter(|f| f.uses(FallbackWhen::Overloaded))
        .map(|f| f.config.fallback_after.get().min(max_wait))
}
