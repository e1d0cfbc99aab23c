//! A replica's response head: parsed with `httparse` straight out of the read buffer, its header
//! values kept as slices of that buffer (no copy per header), and its body framing and
//! keep-alive decided as RFC 9112 §6.3 and §9.3 say.

use super::body::{Chunk, Framing};
use super::UpstreamError;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::ResponseHeader;

/// Most headers one response may carry.
const MAX_HEADERS: usize = 100;

/// Largest response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;

/// Response headers that describe this one hop and are not passed on.
const HOP_BY_HOP: [HeaderName; 3] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// A parsed final response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// The header as the client gets it (one-hop headers removed).
    pub header: ResponseHeader,
    /// How its body ends.
    pub framing: Framing,
    /// Whether the replica lets the connection carry another request after this one.
    pub keep_alive: bool,
}

/// Takes one response head off the front of `buf` if a whole one is there: `Ok(None)` means
/// read more. Interim (1xx other than 101) heads are consumed and skipped.
pub fn parse(
    buf: &mut BytesMut,
    request_was_head: bool,
) -> Result<Option<ResponseHead>, UpstreamError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(UpstreamError::BadHead(format!(
                    "response head larger than {MAX_HEAD} bytes"
                )))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(UpstreamError::BadHead(e.to_string())),
        };
        let code = response.code.unwrap_or(0);
        if (100..200).contains(&code) && code != 101 {
            buf.advance(len);
            continue;
        }
        // Its own exact-size copy: the header outlives the exchange (pingora keeps what it
        // wrote), and must not pin the read buffer, which is reused in place.
        let head = Bytes::copy_from_slice(&buf[..len]);
        buf.advance(len);
        return build(&head, request_was_head).map(Some);
    }
}

/// The head in `raw` (one complete head) as a [`ResponseHead`].
fn build(raw: &Bytes, request_was_head: bool) -> Result<ResponseHead, UpstreamError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    response
        .parse(raw)
        .map_err(|e| UpstreamError::BadHead(e.to_string()))?;
    let code = response.code.unwrap_or(0);
    let bad = |what: &str| UpstreamError::BadHead(what.to_string());
    let mut header = ResponseHeader::build_no_case(code, Some(response.headers.len()))
        .map_err(|_| bad("invalid status code"))?;
    let http10 = response.version == Some(0);
    if http10 {
        header.set_version(http::Version::HTTP_10);
    }
    let mut close = false;
    let mut keep_alive_token = false;
    let mut chunked = false;
    let mut transfer_encoded = false;
    let mut length: Option<u64> = None;
    for h in response.headers.iter() {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("invalid header name"))?;
        if name == header::CONNECTION {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name == header::TRANSFER_ENCODING {
            transfer_encoded = true;
            // The final coding decides: chunked or read until close.
            chunked = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONTENT_LENGTH {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| bad("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting content-length values"));
            }
            length = Some(n);
        }
        if HOP_BY_HOP.contains(&name) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(raw.slice_ref(h.value))
            .map_err(|_| bad("invalid header value"))?;
        header
            .append_header(name, value)
            .map_err(|_| bad("invalid header"))?;
    }
    let no_body = request_was_head || code == 204 || code == 304 || (100..200).contains(&code);
    let framing = if no_body {
        Framing::Empty
    } else if transfer_encoded {
        if length.is_some() {
            // Both: transfer-encoding wins, and the length must not reach the client.
            header.remove_header(&header::CONTENT_LENGTH);
        }
        if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::UntilClose
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    // A message with both framings is suspect (RFC 9112 §6.3): no second request after it.
    let keep_alive = code != 101
        && !(transfer_encoded && length.is_some())
        && framing != Framing::UntilClose
        && !close
        && (!http10 || keep_alive_token);
    Ok(ResponseHead {
        header,
        framing,
        keep_alive,
    })
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
