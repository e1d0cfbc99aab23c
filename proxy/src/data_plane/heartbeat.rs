//! Progress while a streaming request waits for a replica (`queue.heartbeat`): after waiting one
//! period it gets its 200 and `content-type: text/event-stream`, then an SSE comment line each
//! period until a replica takes it, so a load balancer's idle timeout (60 s on an AWS ALB) never
//! cuts a request held through a cold start. The replica's own events follow unchanged; a wait
//! that fails ends the stream with an OpenAI-style error event (`respond::respond_error`).
//! kthena #1019 asks for this; llama-swap streams a loading state.

use crate::data_plane::deployment::DeploymentEntry;
use crate::data_plane::errors::ProxyError;
use bytes::Bytes;
use http::header;
use infergate_scaler::Acquired;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use std::time::{Duration, Instant};

/// The header that marks a response as a held stream whose head went out before a replica
/// answered (its value: the heartbeat period in seconds).
pub(crate) const HELD_STREAM: &str = "x-infergate-heartbeat";

/// What the wait did to the response.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// The 200 and the event-stream head were sent: the replica's head must not be.
    pub(crate) head_sent: bool,
    /// Comment lines sent.
    pub(crate) comments: u32,
}

/// Waits up to `max_wait` for a slot, sending heartbeats every `every`; `Ok(None)` when the
/// client went away.
pub(crate) async fn acquire_with_heartbeats(
    session: &mut ServerSession,
    deployment: &DeploymentEntry,
    max_wait: Duration,
    every: Duration,
    held: &mut Held,
    ticket: infergate_scaler::pool::Ticket,
) -> Result<Option<Acquired>, ProxyError> {
    let pool = deployment.controller.pool();
    let since = Instant::now();
    let acquire = pool.acquire_for(max_wait, deployment.config.queue.max_waiting.into(), ticket);
    tokio::pin!(acquire);
    let mut next = since + every;
    loop {
        tokio::select! {
            r = &mut acquire => {
                return r.map(Some).map_err(|e| ProxyError::from_acquire(&deployment.name, e));
            }
            _ = session.read_body_or_idle(true) => return Ok(None),
            _ = tokio::time::sleep_until(next.into()) => {
                if !held.head_sent {
                    if !write_head(session, every).await {
                        return Ok(None);
                    }
                    held.head_sent = true;
                }
                let line = format!(
                    ": infergate: waiting for a replica of {} (queued {} s, cold start in progress)\n\n",
                    deployment.name,
                    since.elapsed().as_secs()
                );
                if session.write_response_body(Bytes::from(line), false).await.is_err() {
                    return Ok(None);
                }
                held.comments += 1;
                next += every;
            }
        }
    }
}

/// The head of a held stream: 200, server-sent events, chunked, not cached.
async fn write_head(session: &mut ServerSession, every: Duration) -> bool {
    let Ok(mut head) = ResponseHeader::build(200, Some(6)) else {
        return false;
    };
    let _ = head.insert_header(header::CONTENT_TYPE, "text/event-stream");
    let _ = head.insert_header(header::CACHE_CONTROL, "no-cache");
    let _ = head.insert_header(header::TRANSFER_ENCODING, "chunked");
    let _ = head.insert_header("x-infergate-cold-start", "true");
    let _ = head.insert_header("x-infergate-route", "queue");
    let _ = head.insert_header(HELD_STREAM, every.as_secs().max(1).to_string());
    session.write_response_header(Box::new(head)).await.is_ok()
}

/// The error event that ends a held stream: the error's OpenAI-style body as a `data:` event
/// (the official clients raise on it).
pub(crate) fn error_event(body: &[u8]) -> Bytes {
    let mut event = Vec::with_capacity(body.len() + 8);
    event.extend_from_slice(b"data: ");
    event.extend_from_slice(body);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// A replica's non-2xx answer to a held stream, as an OpenAI-style error body: its own if it
/// sent one (`{"error": …}`), else one that names the status.
pub(crate) fn replica_error_body(status: u16, body: &[u8]) -> Bytes {
    let own = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(|v| v.get("error").is_some());
    match own {
        Some(v) => Bytes::from(v.to_string()),
        None => Bytes::from(
            serde_json::json!({"error": {
                "message": format!("the replica answered {status}: {}", String::from_utf8_lossy(&body[..body.len().min(512)])),
                "type": "server_error",
                "param": null,
                "code": "replica_error",
            }})
            .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_error_becomes_one_openai_error_event() {
        let own = replica_error_body(
            400,
            br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#,
        );
        assert_eq!(
            &own[..],
            br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#
        );
        let wrapped: serde_json::Value =
            serde_json::from_slice(&replica_error_body(500, b"Internal Server Error")).unwrap();
        assert_eq!(wrapped["error"]["code"], "replica_error");
        assert!(wrapped["error"]["message"]
            .as_str()
            .unwrap()
            .contains("500"));
        assert_eq!(&error_event(b"{}")[..], b"data: {}\n\n");
    }
}
