//! Reading the request body before routing: bounded by the configured limit, and the `model`
//! field extracted without building a JSON tree (serde skips every other field as it scans).

use crate::errors::ProxyError;
use bytes::{Bytes, BytesMut};
use pingora::protocols::http::ServerSession;
use serde::Deserialize;

/// Only the `model` field of an OpenAI request; everything else is skipped by the deserializer.
#[derive(Deserialize)]
struct ModelField<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
}

/// Reads the whole body, refusing it with 413 once it passes `limit` bytes.
pub async fn read_bounded(session: &mut ServerSession, limit: u64) -> Result<Bytes, ProxyError> {
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
    let mut buf = BytesMut::new();
    loop {
        match session.read_request_body().await {
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

/// The `model` named by a JSON body: `Ok(None)` when the body has no `model` field.
pub fn model_of(body: &[u8]) -> Result<Option<String>, ProxyError> {
    serde_json::from_slice::<ModelField>(body)
        .map(|m| m.model.map(|c| c.into_owned()))
        .map_err(|e| ProxyError::BadJson(e.to_string()))
}

/// Whether a content type says the body is JSON (or says nothing, as curl often does).
pub fn is_json(content_type: Option<&str>) -> bool {
    match content_type {
        None => true,
        Some(ct) => {
            let ct = ct.to_ascii_lowercase();
            // curl -d sends form-urlencoded by default; OpenAI bodies are JSON whatever it says.
            ct.starts_with("application/json")
                || ct.contains("+json")
                || ct.starts_with("text/plain")
                || ct.starts_with("application/x-www-form-urlencoded")
        }
    }
}

#[cfg(test)]
#[path = "request_body_tests.rs"]
mod tests;
