//! Which request headers may leave the proxy, and to whom (RFC 9110 §7.6.1 and SPEC §6).
//!
//! Replicas are ours: they get the client's headers minus the hop-by-hop ones, minus whatever the
//! `Connection` header names, minus what the deployment strips. Providers are third parties: they
//! get an allowlist only, so no client credential (`Cookie`, `x-api-key`, `api-key`, …) ever
//! reaches them. The idea is Envoy's and nginx's: forward by allowlist across a trust boundary.

use http::{HeaderMap, HeaderName};

/// Request headers that describe one hop and are never forwarded.
pub const HOP_BY_HOP_REQUEST_HEADERS: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// Exact header names a provider may receive from the client.
const PROVIDER_ALLOWED: [&str; 4] = ["content-type", "accept", "user-agent", "x-request-id"];

/// Header name prefixes a provider may receive from the client (the OpenAI SDKs' own headers).
const PROVIDER_ALLOWED_PREFIXES: [&str; 2] = ["openai-", "x-stainless-"];

/// The header names listed in the request's `Connection` header(s), lower-cased: one-hop headers
/// the sender asked us not to forward.
pub fn connection_tokens(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().to_ascii_lowercase().as_bytes()).ok())
        .collect()
}

/// Whether a request header is one-hop: a fixed hop-by-hop name or one named in `Connection`.
pub fn is_hop_by_hop(name: &HeaderName, connection: &[HeaderName]) -> bool {
    HOP_BY_HOP_REQUEST_HEADERS.contains(&name.as_str()) || connection.contains(name)
}

/// Whether a client request header may be forwarded to a third-party provider.
pub fn provider_may_receive(name: &HeaderName) -> bool {
    let name = name.as_str();
    PROVIDER_ALLOWED.contains(&name)
        || PROVIDER_ALLOWED_PREFIXES
            .iter()
            .any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn connection_named_headers_are_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.append(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.append("connection", HeaderValue::from_static("x-other"));
        let tokens = connection_tokens(&h);
        assert!(is_hop_by_hop(
            &HeaderName::from_static("x-secret-hop"),
            &tokens
        ));
        assert!(is_hop_by_hop(&HeaderName::from_static("x-other"), &tokens));
        assert!(is_hop_by_hop(&HeaderName::from_static("te"), &tokens));
        assert!(!is_hop_by_hop(
            &HeaderName::from_static("content-type"),
            &tokens
        ));
    }

    #[test]
    fn providers_get_an_allowlist_only() {
        for ok in [
            "content-type",
            "accept",
            "user-agent",
            "x-request-id",
            "openai-organization",
            "x-stainless-lang",
        ] {
            assert!(provider_may_receive(&HeaderName::from_static(ok)), "{ok}");
        }
        for no in [
            "cookie",
            "x-api-key",
            "api-key",
            "authorization",
            "proxy-authorization",
            "x-custom-token",
        ] {
            assert!(!provider_may_receive(&HeaderName::from_static(no)), "{no}");
        }
    }
}
