//! Hardening at the edge, HTTP side (issue 11): pipelined requests answered in order, malformed
//! heads answered (400/431/505) and closed, CONNECT/TRACE refused, `Expect: 100-continue`
//! answered, compressed bodies decoded or refused, silent/slow/idle connections closed, the
//! connection cap, which paths reach a replica, query strings after a stripped prefix, and which
//! headers a replica gets. Raw sockets, so what is on the wire is what is asserted.

use crate::fake_upstream::FakeUpstream;
use crate::harness::{chat, sim_deployment, Proxy};
use std::io::Write;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any single wait in these tests (a bound, not a timing assertion).
const BOUND: Duration = Duration::from_secs(20);

fn proxy_with(server_extra: &str) -> Proxy {
    Proxy::start_with_server(
        &format!("listeners = [{{ address = \"127.0.0.1:0\" }}]\nmax_body_size = 65536\n{server_extra}"),
        &sim_deployment(
            "m",
            "min_replicas = 1\nroute = { path_prefix = \"/small\", passthrough = [\"/\", \"/sim/*\"] }",
            "--ttft 1ms",
        ),
    )
}

async fn connect(proxy: &Proxy) -> TcpStream {
    TcpStream::connect(proxy.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Everything the proxy sends until it closes the connection.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut out))
        .await
        .expect("the proxy kept the connection open")
        .ok();
    String::from_utf8_lossy(&out).to_string()
}

/// Sends `bytes` on a fresh connection and returns all it gets until the proxy closes.
async fn exchange(proxy: &Proxy, bytes: &[u8]) -> String {
    let mut s = connect(proxy).await;
    s.write_all(bytes).await.unwrap();
    read_to_close(&mut s).await
}

fn chat_request(extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

fn chat_body() -> Vec<u8> {
    serde_json::to_vec(&chat("m", false, 2)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered_in_order() {
    let proxy = proxy_with("");
    proxy.wait_ready("m", 1).await;
    let mut bytes = b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\nGET /health HTTP/1.1\r\nhost: x\r\n\r\nGET /v1/models/m HTTP/1.1\r\nhost: x\r\n\r\n".to_vec();
    bytes.extend(chat_request("connection: close\r\n", &chat_body()));
    let out = exchange(&proxy, &bytes).await;
    let statuses: Vec<&str> = out.matches("HTTP/1.1 200 OK").collect();
    assert_eq!(statuses.len(), 4, "{out}");
    // Each answer's body, in the order the requests were sent.
    let mut at = 0;
    for marker in [
        "{\"object\":\"list\"",
        "{\"status\":\"ok\"}",
        "{\"id\":\"m\",\"object\":\"model\"",
        "\"object\":\"chat.completion\"",
    ] {
        let found = out[at..].find(marker);
        assert!(found.is_some(), "{marker} missing or out of order: {out}");
        at += found.unwrap_or(0) + marker.len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_heads_get_an_answer_and_a_close() {
    let proxy = proxy_with("");
    let big = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(2 << 20)
    );
    let many: String = (0..300).map(|i| format!("x-h{i}: a\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nhost: x\r\n{many}\r\n");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "invalid request line",
            b"GARBAGE\x01 \x02\r\n\r\n".to_vec(),
            "HTTP/1.1 400 ",
        ),
        ("HTTP/0.9", b"GET /\r\n\r\n".to_vec(), "HTTP/1.1 505 "),
        (
            "HTTP/3.0",
            b"GET / HTTP/3.0\r\nhost: x\r\n\r\n".to_vec(),
            "HTTP/1.1 505 ",
        ),
        ("2 MiB header", big.into_bytes(), "HTTP/1.1 431 "),
        ("300 headers", many.into_bytes(), "HTTP/1.1 431 "),
        (
            "CONNECT",
            b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n"
                .to_vec(),
            "HTTP/1.1 405 ",
        ),
        (
            "TRACE",
            b"TRACE /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(),
            "HTTP/1.1 405 ",
        ),
    ];
    for (what, bytes, status) in cases {
        let out = exchange(&proxy, &bytes).await;
        assert!(out.starts_with(status), "{what}: {out:.300}");
        assert!(
            out.contains("\"error\""),
            "{what}: not an OpenAI-style body: {out:.300}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let proxy = proxy_with("");
    proxy.wait_ready("m", 1).await;
    let body = chat_body();
    let mut s = connect(&proxy).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nexpect: 100-continue\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(BOUND, s.read(&mut buf))
        .await
        .expect("no 100 Continue")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"));
    s.write_all(&body).await.unwrap();
    let out = read_to_close(&mut s).await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_bodies_are_decoded_within_the_limit_or_refused() {
    let proxy = proxy_with("");
    proxy.wait_ready("m", 1).await;
    let body = chat_body();
    let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    deflate.write_all(&body).unwrap();
    let encoded = [
        ("gzip", gzip(&body)),
        ("deflate", deflate.finish().unwrap()),
        ("zstd", zstd::encode_all(&body[..], 3).unwrap()),
    ];
    for (coding, data) in encoded {
        let out = exchange(
            &proxy,
            &chat_request(
                &format!("content-encoding: {coding}\r\nconnection: close\r\n"),
                &data,
            ),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200 "), "{coding}: {out}");
        assert!(
            out.contains("x-infergate-route: replica/m-0"),
            "{coding}: {out}"
        );
    }
    let out = exchange(
        &proxy,
        &chat_request("content-encoding: br\r\nconnection: close\r\n", b"abcd"),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 415 ") && out.contains("unsupported_content_encoding"),
        "{out}"
    );
    // 1 MiB of zeros compresses to ~1 KiB: over max_body_size (64 KiB) once decoded.
    let bomb = gzip(&vec![b' '; 1 << 20]);
    let out = exchange(
        &proxy,
        &chat_request("content-encoding: gzip\r\nconnection: close\r\n", &bomb),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 413 ") && out.contains("request_too_large"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_slow_and_idle_connections_are_closed() {
    let proxy = proxy_with(
        "header_read_timeout = \"1s\"\nkeepalive_idle_timeout = \"1s\"\nbody_read_timeout = \"1s\"",
    );
    proxy.wait_ready("m", 1).await;
    // Never sends a byte: closed without an answer.
    let mut silent = connect(&proxy).await;
    assert_eq!(read_to_close(&mut silent).await, "");
    // Slowloris: a byte every 200 ms never completes the head within 1 s.
    let mut slow = connect(&proxy).await;
    let drip = tokio::spawn(async move {
        for b in b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut out = Vec::new();
        let _ = tokio::time::timeout(BOUND, slow.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).to_string()
    });
    let out = drip.await.unwrap();
    assert!(
        out.starts_with("HTTP/1.1 408 ") && out.contains("header_read_timeout"),
        "{out}"
    );
    // Idle keep-alive: answered, then closed after 1 s of nothing.
    let mut idle = connect(&proxy).await;
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let out = read_to_close(&mut idle).await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    // A body that stops half-way: 408.
    let mut stalled = connect(&proxy).await;
    stalled
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"model\":\"m\",")
        .await
        .unwrap();
    let out = read_to_close(&mut stalled).await;
    assert!(
        out.starts_with("HTTP/1.1 408 ") && out.contains("request_timeout"),
        "{out}"
    );
    // A body that keeps coming, but slower than server.min_body_rate (1 KiB/s) after the 1 s
    // grace: 408 although no gap reaches body_read_timeout.
    let mut trickle = connect(&proxy).await;
    trickle
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 60000\r\n\r\n")
        .await
        .unwrap();
    let drip = tokio::spawn(async move {
        for _ in 0..100 {
            if trickle.write_all(b"          ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        read_to_close(&mut trickle).await
    });
    let out = drip.await.unwrap();
    assert!(
        out.starts_with("HTTP/1.1 408 ") && out.contains("min_body_rate"),
        "{out}"
    );
    let metrics = proxy.metrics().await;
    for reason in ["header_timeout", "idle"] {
        assert!(
            metrics.contains(&format!(
                "infergate_connections_closed_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_refused_and_counted() {
    let proxy = proxy_with("max_connections = 3");
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = connect(&proxy).await;
        s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 "));
        open.push(s);
    }
    let out = exchange(&proxy, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(
        out.starts_with("HTTP/1.1 503 ") && out.contains("too_many_connections"),
        "{out}"
    );
    drop(open);
    // Once they close, new connections are served again.
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let out = exchange(
            &proxy,
            b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        if out.starts_with("HTTP/1.1 200 ") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{out}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = proxy.metrics().await;
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("infergate_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_v1_and_listed_paths_reach_a_replica_and_queries_survive_a_stripped_prefix() {
    let proxy = Proxy::start(&format!(
        "{}{}",
        sim_deployment("locked", "min_replicas = 1", "--ttft 1ms"),
        sim_deployment(
            "open",
            "min_replicas = 1\nroute = { path_prefix = \"/open\", passthrough = [\"/\", \"/sim/*\"] }",
            "--ttft 1ms"
        ),
    ));
    proxy.wait_ready("locked", 1).await;
    proxy.wait_ready("open", 1).await;
    let client = reqwest::Client::new();
    for path in ["/metrics", "/sim/stats", "/sleep", "/reset_prefix_cache"] {
        let r = client
            .get(proxy.url(path))
            .header("x-infergate-deployment", "locked")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "path_not_forwarded", "{path}");
    }
    let r = client
        .get(proxy.url("/sim/stats"))
        .header("x-infergate-deployment", "open")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(proxy.url("/open?x=1"))
        .json(&chat("open", false, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["x-infergate-route"],
        "replica/open-0",
        "{:?}",
        r.status()
    );
    assert_ne!(r.status(), 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_get_no_connection_named_or_stripped_headers() {
    let replica = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "[deployments.fake]\nupstream = {{ strip_headers = [\"Cookie\"] }}\n[deployments.fake.backend]\ntype = \"static\"\nurls = [\"{}\"]\n",
        replica.url()
    ));
    proxy.wait_ready("fake", 1).await;
    let r = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .header("cookie", "session=strip-me")
        .header("connection", "keep-alive, x-hop-only")
        .header("x-hop-only", "drop-me")
        .header("x-api-key", "kept-by-default")
        .json(&chat("fake", true, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    let head = replica
        .seen()
        .into_iter()
        .find(|h| h.starts_with("post "))
        .expect("the replica got the request");
    assert!(
        !head.contains("strip-me") && !head.contains("drop-me"),
        "{head}"
    );
    assert!(head.contains("x-api-key: kept-by-default"), "{head}");
}
