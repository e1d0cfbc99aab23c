//! The request head the replica gets.

use super::*;

fn client_request(method: &str, path: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build(method, path.as_bytes(), None).unwrap();
    for (n, v) in headers {
        req.append_header(n.to_string(), *v).unwrap();
    }
    req
}

fn plan(body_len: usize, strip_prefix: usize, strip: &[String]) -> HeadPlan<'_> {
    HeadPlan {
        body_len,
        strip_prefix,
        strip_headers: strip,
        replica: "127.0.0.1:9000".parse().unwrap(),
        request_id: 42,
        drop_client_credentials: false,
        replica_authorization: None,
    }
}

fn encoded(req: &RequestHeader, plan: &HeadPlan<'_>) -> String {
    String::from_utf8(encode(req, plan).unwrap()).unwrap()
}

#[test]
fn one_hop_headers_go_and_framing_host_marker_and_id_are_ours() {
    let req = client_request(
        "POST",
        "/v1/chat/completions",
        &[
            ("Content-Type", "application/json"),
            ("Connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "999"),
            ("TE", "trailers"),
            ("Expect", "100-continue"),
            ("x-drop-me", "1"),
        ],
    );
    let strip = vec!["X-Drop-Me".to_string()];
    let head = encoded(&req, &plan(17, 0, &strip));
    assert!(
        head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"));
    let lines: Vec<&str> = head.trim_end().lines().skip(1).collect();
    assert!(lines.contains(&"content-type: application/json"), "{head}");
    assert!(lines.contains(&"content-length: 17"), "{head}");
    assert!(lines.contains(&"host: 127.0.0.1:9000"), "{head}");
    assert!(lines.contains(&"x-request-id: infergate-42"), "{head}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("x-infergate-forwarded: ig")),
        "{head}"
    );
    for gone in [
        "connection",
        "x-secret-hop",
        "transfer-encoding",
        "te:",
        "expect",
        "x-drop-me",
    ] {
        assert!(
            !lines
                .iter()
                .any(|l| l.to_ascii_lowercase().starts_with(gone)),
            "{gone} in {head}"
        );
    }
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("content-length"))
            .count(),
        1
    );
}

#[test]
fn the_clients_host_and_request_id_are_kept() {
    let req = client_request(
        "GET",
        "/v1/models",
        &[("host", "api.example"), ("x-request-id", "abc")],
    );
    let head = encoded(&req, &plan(0, 0, &[]));
    assert!(head.contains("host: api.example\r\n"), "{head}");
    assert!(head.contains("x-request-id: abc\r\n"), "{head}");
    assert!(!head.contains("infergate-42"));
    assert!(
        !head.contains("content-length"),
        "a GET without a body has no length: {head}"
    );
}

#[test]
fn the_route_prefix_is_stripped() {
    let req = client_request("POST", "/llama/v1/completions?x=1", &[]);
    assert!(encoded(&req, &plan(0, 6, &[])).starts_with("POST /v1/completions?x=1 HTTP/1.1\r\n"));
    let req = client_request("POST", "/llama?x=1", &[]);
    assert!(encoded(&req, &plan(0, 6, &[])).starts_with("POST /?x=1 HTTP/1.1\r\n"));
    let req = client_request("POST", "/llama", &[]);
    assert!(encoded(&req, &plan(0, 6, &[])).starts_with("POST / HTTP/1.1\r\n"));
}

#[test]
fn an_absolute_form_target_becomes_origin_form() {
    // As pingora's server parses an absolute-form target: the URI keeps its authority.
    let mut req = client_request("GET", "/", &[]);
    req.set_uri("http://api.example/v1/models".parse().unwrap());
    let head = encoded(&req, &plan(0, 0, &[]));
    assert!(head.starts_with("GET /v1/models HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("host: api.example\r\n"), "{head}");
}

#[test]
fn an_authenticated_clients_key_never_reaches_the_replica_and_the_replicas_own_key_does() {
    let req = client_request(
        "POST",
        "/v1/chat/completions",
        &[
            ("Authorization", "Bearer sk-client"),
            ("api-key", "sk-client"),
            ("x-keep", "1"),
        ],
    );
    let open = encoded(&req, &plan(0, 0, &[]));
    assert!(open.contains("authorization: Bearer sk-client"), "{open}");
    let mut p = plan(0, 0, &[]);
    p.drop_client_credentials = true;
    let head = encoded(&req, &p);
    assert!(!head.contains("sk-client"), "{head}");
    assert!(head.contains("x-keep: 1"));
    p.replica_authorization = Some("Bearer sk-replica");
    let head = encoded(&req, &p);
    assert!(!head.contains("sk-client"), "{head}");
    assert_eq!(
        head.matches("authorization: Bearer sk-replica").count(),
        1,
        "{head}"
    );
}
