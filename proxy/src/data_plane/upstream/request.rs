//! The request head as the replica must see it, written straight into the bytes that go on the
//! wire (no copy of the client's header map): one-hop headers removed, the body framed by
//! `content-length`, the route's path prefix stripped, HTTP/1.1, and our loop marker and request id.

use http::{header, Method};
use infergate_fallback::headers::connection_tokens;
use infergate_fallback::{marker_value, FORWARDED_MARKER, HOP_BY_HOP_REQUEST_HEADERS};
use pingora::http::RequestHeader;
use std::net::SocketAddr;

/// What shapes the head besides the client's request.
pub struct HeadPlan<'a> {
    /// Length of the body that follows.
    pub body_len: usize,
    /// Length of the route's path prefix to strip.
    pub strip_prefix: usize,
    /// Headers the deployment never forwards.
    pub strip_headers: &'a [String],
    /// The replica (the `host` when the client sent none).
    pub replica: SocketAddr,
    /// Our request id (sent as `x-request-id` when the client sent none).
    pub request_id: u64,
    /// The client authenticated with its own key (`[auth]`): `authorization` and `api-key` are
    /// not forwarded.
    pub drop_client_credentials: bool,
    /// `Authorization` value for the replica (`Bearer <backend.api_key_env>`), replacing the
    /// client's.
    pub replica_authorization: Option<&'a str>,
}

/// The HTTP/1.1 request head for `downstream`, ready for the wire.
pub fn encode(downstream: &RequestHeader, plan: &HeadPlan<'_>) -> Result<Vec<u8>, String> {
    let headers = &downstream.headers;
    let size: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let mut out = Vec::with_capacity(size + 256);
    out.extend_from_slice(downstream.method.as_str().as_bytes());
    out.push(b' ');
    write_target(&mut out, downstream, plan.strip_prefix);
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let named_in_connection = connection_tokens(headers);
    let drop_credentials = plan.drop_client_credentials || plan.replica_authorization.is_some();
    for (name, value) in headers {
        let n = name.as_str();
        if drop_credentials && (*name == header::AUTHORIZATION || n == "api-key") {
            continue;
        }
        if HOP_BY_HOP_REQUEST_HEADERS.contains(&n)
            || *name == header::CONTENT_LENGTH
            || n == FORWARDED_MARKER
            // Headers the client named in `Connection` are one-hop too (RFC 9110 §7.6.1).
            || named_in_connection.iter().any(|t| t.as_str() == n)
            || plan.strip_headers.iter().any(|s| s.eq_ignore_ascii_case(n))
        {
            continue;
        }
        line(&mut out, n, value.as_bytes());
    }
    if plan.body_len > 0 || downstream.method == Method::POST || downstream.method == Method::PUT {
        let mut digits = itoa_buf();
        line(
            &mut out,
            "content-length",
            digits.format(plan.body_len as u64),
        );
    }
    if headers.get(header::HOST).is_none() {
        let host = downstream
            .uri
            .authority()
            .map_or_else(|| plan.replica.to_string(), |a| a.to_string());
        line(&mut out, "host", host.as_bytes());
    }
    if let Some(value) = plan.replica_authorization {
        line(&mut out, "authorization", value.as_bytes());
    }
    // Marked, so a replica URL that leads back here (through any number of hops) is cut: 508.
    line(&mut out, FORWARDED_MARKER, marker_value(headers).as_bytes());
    if headers.get("x-request-id").is_none() {
        out.extend_from_slice(b"x-request-id: infergate-");
        let mut digits = itoa_buf();
        out.extend_from_slice(digits.format(plan.request_id));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// Writes the request target: origin-form (absolute-form and HTTP/2 requests lose their
/// authority), with the route's prefix stripped (`/prefix?x=1` leaves `/?x=1`).
fn write_target(out: &mut Vec<u8>, downstream: &RequestHeader, strip_prefix: usize) {
    if strip_prefix == 0 && downstream.uri.authority().is_none() {
        out.extend_from_slice(downstream.raw_path());
        return;
    }
    let path_and_query = downstream.uri.path_and_query().map_or("/", |p| p.as_str());
    let rest = path_and_query.get(strip_prefix..).unwrap_or("/");
    if rest.is_empty() || rest.starts_with('?') {
        out.push(b'/');
    }
    out.extend_from_slice(rest.as_bytes());
}

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Decimal digits without an allocation.
struct Digits([u8; 20]);

fn itoa_buf() -> Digits {
    Digits([0; 20])
}

impl Digits {
    fn format(&mut self, mut n: u64) -> &[u8] {
        let mut i = self.0.len();
        loop {
            i -= 1;
            self.0[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return &self.0[i..];
            }
        }
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
