//! Reading the request body before routing: bounded by the configured limit, and the `model`
//! field extracted without building a JSON tree (serde skips every other field as it scans).

use crate::data_plane::errors::ProxyError;
use bytes::{Bytes, BytesMut};
use pingora::protocols::http::ServerSession;
use pingora_timeout::fast_timeout::fast_timeout;
use serde::Deserialize;
use std::borrow::Cow;
use std::io::Read;
use std::time::{Duration, Instant};

/// The `model` and `stream` fields of an OpenAI request; everything else is skipped by the
/// deserializer.
#[derive(Deserialize)]
pub struct ModelField<'a> {
    /// The model named.
    #[serde(borrow, default)]
    pub model: Option<Cow<'a, str>>,
    /// Whether the client asked for a stream of server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// OpenAI's end-user id (`session` routing and the queue's fairness key).
    #[serde(borrow, default)]
    pub user: Option<Cow<'a, str>>,
}

/// How much body a client may send, and how slowly.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body in bytes (after decoding a content coding).
    pub max_size: u64,
    /// Longest silence between two pieces of the body.
    pub read_timeout: Duration,
    /// Slowest average upload in bytes per second after a first `read_timeout` of grace
    /// (0 = no minimum).
    pub min_rate: u64,
}

/// The whole request body as routing and the replica need it: `Expect: 100-continue` answered,
/// read within the size and pace limits, a `Content-Encoding` decoded (the header is then removed,
/// so upstream gets the decoded body framed by its own Content-Length).
pub async fn read_request_body(
    session: &mut ServerSession,
    limits: BodyLimits,
) -> Result<Bytes, ProxyError> {
    if expects_continue(session.req_header()) {
        // Answer `Expect: 100-continue` (curl waits a second for it before bodies > 1 MiB).
        if let Err(e) = session.write_continue_response().await {
            return Err(ProxyError::BadBody(e.to_string()));
        }
    }
    let body = if session.is_body_empty() {
        Bytes::new()
    } else {
        read_bounded(session, limits).await?
    };
    let encoding = session
        .req_header()
        .headers
        .get(http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").to_string());
    match encoding {
        Some(encoding) if !body.is_empty() => {
            let decoded = decode(body, Some(&encoding), limits.max_size)?;
            session
                .req_header_mut()
                .remove_header(&http::header::CONTENT_ENCODING);
            Ok(decoded)
        }
        _ => Ok(body),
    }
}

/// Whether the client waits for `100 Continue` before sending its body.
fn expects_continue(req: &pingora::http::RequestHeader) -> bool {
    req.headers
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Reads the whole body, refusing it with 413 once it passes the limit and with 408 when the
/// client goes silent or trickles it slower than the minimum rate.
async fn read_bounded(
    session: &mut ServerSession,
    limits: BodyLimits,
) -> Result<Bytes, ProxyError> {
    let limit = limits.max_size;
    if let Some(len) = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if len > limit {
            return Err(ProxyError::BodyTooLarge { limit });
        }
    }
    let started = Instant::now();
    let mut buf = BytesMut::new();
    loop {
        // The whole body so far must have come at min_rate after the grace period.
        let allowed = limits.read_timeout
            + match limits.min_rate {
                0 => Duration::from_secs(u32::MAX.into()),
                rate => Duration::from_secs_f64(buf.len() as f64 / rate as f64),
            };
        let left = allowed.saturating_sub(started.elapsed());
        let wait = left.min(limits.read_timeout);
        let read = match fast_timeout(wait, session.read_request_body()).await {
            Ok(read) => read,
            Err(_) => {
                return Err(ProxyError::BodyTimeout {
                    received: buf.len() as u64,
                    waited: started.elapsed(),
                })
            }
        };
        match read {
            Ok(Some(chunk)) => {
                if (buf.len() + chunk.len()) as u64 > limit {
                    return Err(ProxyError::BodyTooLarge { limit });
                }
                if buf.is_empty() && session.is_body_done() {
                    return Ok(chunk); // single-chunk body: no copy
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => return Err(ProxyError::BadBody(e.to_string())),
        }
    }
}

/// Decodes a body sent with `Content-Encoding` (gzip, deflate, zstd), bounded by `limit` bytes
/// after decoding; `identity` and no header pass unchanged. Anything else is refused with 415.
pub fn decode(body: Bytes, encoding: Option<&str>, limit: u64) -> Result<Bytes, ProxyError> {
    let Some(encoding) = encoding.map(|e| e.trim().to_ascii_lowercase()) else {
        return Ok(body);
    };
    let mut out = Vec::new();
    let too_large = || ProxyError::BodyTooLarge { limit };
    let bad = |e: std::io::Error| ProxyError::BadBody(format!("{encoding} body: {e}"));
    // One more byte than allowed tells "exactly at the limit" from "over it".
    let cap = limit.saturating_add(1);
    let read = match encoding.as_str() {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&body[..])
            .take(cap)
            .read_to_end(&mut out),
        "deflate" => {
            // RFC 9110 says zlib-wrapped; some clients send raw deflate.
            let zlib = flate2::read::ZlibDecoder::new(&body[..])
                .take(cap)
                .read_to_end(&mut out);
            if zlib.is_err() {
                out.clear();
                flate2::read::DeflateDecoder::new(&body[..])
                    .take(cap)
                    .read_to_end(&mut out)
            } else {
                zlib
            }
        }
        "zstd" => zstd::stream::read::Decoder::new(&body[..])
            .and_then(|d| d.take(cap).read_to_end(&mut out)),
        _ => return Err(ProxyError::UnsupportedEncoding(encoding)),
    };
    read.map_err(bad)?;
    if out.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(Bytes::from(out))
}

/// The `model` named by a JSON body: `Ok(None)` when the body has no `model` field.
#[cfg(test)]
pub fn model_of(body: &[u8]) -> Result<Option<Cow<'_, str>>, ProxyError> {
    fields_of(body).map(|m| m.model)
}

/// The `model` and `stream` fields of a JSON body, in one pass.
pub fn fields_of(body: &[u8]) -> Result<ModelField<'_>, ProxyError> {
    serde_json::from_slice::<ModelField>(body).map_err(|e| ProxyError::BadJson(e.to_string()))
}

/// Whether a content type says the body is JSON (or says nothing, as curl often does).
pub fn is_json(content_type: Option<&str>) -> bool {
    match content_type {
        None => true,
        Some(ct) => {
            // Checked on every request: compared in place, no lower-cased copy.
            let starts = |prefix: &str| {
                ct.get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            };
            // curl -d sends form-urlencoded by default; OpenAI bodies are JSON whatever it says.
            starts("application/json")
                || ct
                    .as_bytes()
                    .windows(5)
                    .any(|w| w.eq_ignore_ascii_case(b"+json"))
                || starts("text/plain")
                || starts("application/x-www-form-urlencoded")
        }
    }
}

#[cfg(test)]
#[path = "request_body_tests.rs"]
mod tests;
