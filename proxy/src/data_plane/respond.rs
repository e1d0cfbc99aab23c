//! Answers the proxy writes itself: complete JSON responses and OpenAI-style errors (with a
//! lingering close when the client is still sending a body we refused).

use crate::data_plane::errors::ProxyError;
use bytes::Bytes;
use http::{header, StatusCode};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use std::time::Duration;

/// How long an error answer waits for the unread rest of a refused request body.
const LINGER: Duration = Duration::from_secs(2);

/// Writes a complete JSON response; true when the connection can be reused.
pub(crate) async fn respond_json(
    session: &mut ServerSession,
    status: u16,
    body: Bytes,
    extra: &[(&'static str, String)],
) -> bool {
    let Ok(mut resp) = ResponseHeader::build(status, Some(4 + extra.len())) else {
        return false;
    };
    let _ = resp.insert_header(header::CONTENT_TYPE, "application/json");
    let _ = resp.insert_header(header::CONTENT_LENGTH, body.len().to_string());
    for (name, value) in extra {
        let _ = resp.insert_header(*name, value.as_str());
    }
    session.write_response_header(Box::new(resp)).await.is_ok()
        && session.write_response_body(body, true).await.is_ok()
        && session.finish_body().await.is_ok()
        && session.is_body_done()
}

/// Answers an error with an OpenAI-style body; true when the connection can be reused.
pub(crate) async fn respond_error(session: &mut ServerSession, err: &ProxyError) -> bool {
    if let Some(head) = session.response_written() {
        if head
            .headers
            .contains_key(crate::data_plane::heartbeat::HELD_STREAM)
        {
            // A held stream: its 200 went out before the wait failed. The error goes as an
            // event, and the stream is cut rather than ended, so no client takes it for whole.
            let event = crate::data_plane::heartbeat::error_event(&err.body());
            let _ = session.write_response_body(event, false).await;
        }
        return false;
    }
    let mut extra = err.extra_headers();
    if let Some(secs) = err.retry_after() {
        extra.push(("retry-after", secs.to_string()));
    }
    let unread_body = !session.is_body_done();
    if unread_body {
        // The body was not (fully) read: the connection cannot carry another request.
        session.set_keepalive(None);
    }
    let status = StatusCode::from_u16(err.status()).map_or(500, |s| s.as_u16());
    let reusable = respond_json(session, status, err.body(), &extra).await;
    if unread_body {
        // Lingering close: swallow what the client is still sending (bounded) so it reads our
        // answer instead of a connection reset.
        let _ = tokio::time::timeout(LINGER, session.drain_request_body()).await;
    }
    reusable && !unread_body
}
