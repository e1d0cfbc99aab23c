//! The client against real sockets on 127.0.0.1: pooling, one write per request, responses in
//! every framing, and failures that must look failed.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

/// A server that reads one request per answer, writes `answer`, counts the connections it
/// accepted, and closes each connection after its first answer when `close_after_answer` is set.
async fn server(answer: &'static [u8], close_after_answer: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if socket.write_all(answer).await.is_err() || close_after_answer {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// One GET through `upstream`: the status and the body, read to the end; the connection is then
/// handed back to the pool.
async fn exchange(mut upstream: Upstream) -> (u16, Vec<u8>) {
    upstream.send(GET, b"", false).await.unwrap();
    let head = upstream.read_head().await.unwrap();
    let mut body = Vec::new();
    while let Some(piece) = upstream.read_body().await.unwrap() {
        body.extend_from_slice(&piece);
    }
    upstream.release();
    (head.status.as_u16(), body)
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn a_released_connection_is_reused_by_the_next_request() {
    let (addr, accepted) = server(OK, false).await;
    let (first, reused) = connect(addr, Duration::from_secs(1)).await.unwrap();
    assert!(!reused);
    assert_eq!(exchange(first).await, (200, b"ok".to_vec()));
    let (second, reused) = connect(addr, Duration::from_secs(1)).await.unwrap();
    assert!(reused, "the idle connection was not taken from the pool");
    assert_eq!(exchange(second).await, (200, b"ok".to_vec()));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_pooled_connection_the_replica_closed_is_not_reused() {
    let (addr, accepted) = server(OK, true).await;
    let (first, _) = connect(addr, Duration::from_secs(1)).await.unwrap();
    exchange(first).await;
    // The server's FIN reaches the idle socket.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (second, reused) = connect(addr, Duration::from_secs(1)).await.unwrap();
    assert!(!reused, "a closed connection came out of the pool");
    exchange(second).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_replica_means_to_close_is_not_pooled() {
    const CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
    let (addr, accepted) = server(CLOSE, false).await;
    for _ in 0..2 {
        let (upstream, reused) = connect(addr, Duration::from_secs(1)).await.unwrap();
        assert!(!reused);
        exchange(upstream).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn head_and_body_arrive_in_one_read() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (mut upstream, _) = connect(addr, Duration::from_secs(1)).await.unwrap();
    let (peer, _) = listener.accept().await.unwrap();
    let head = b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 13\r\n\r\n";
    upstream
        .send(head, b"{\"model\":\"m\"}", false)
        .await
        .unwrap();
    peer.readable().await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = peer.try_read(&mut buf).unwrap();
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(
        got.starts_with("POST /v1/chat/completions HTTP/1.1\r\n")
            && got.ends_with("{\"model\":\"m\"}"),
        "head and body did not arrive in one read: {got:?}"
    );
}

#[tokio::test]
async fn a_large_body_arrives_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (mut upstream, _) = connect(addr, Duration::from_secs(1)).await.unwrap();
    let (mut peer, _) = listener.accept().await.unwrap();
    let body: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let expected = body.len() + head.len();
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 65536];
        while all.len() < expected {
            let n = peer.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed early");
            all.extend_from_slice(&buf[..n]);
        }
        all
    });
    upstream.send(head.as_bytes(), &body, false).await.unwrap();
    let all = reader.await.unwrap();
    assert!(all.starts_with(head.as_bytes()));
    assert!(all[head.len()..] == body[..], "the body arrived changed");
}

#[tokio::test]
async fn a_chunked_stream_arrives_piece_by_piece_and_the_connection_is_reused() {
    const SSE: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
        7\r\ndata: 1\r\n7\r\ndata: 2\r\n0\r\n\r\n";
    let (addr, accepted) = server(SSE, false).await;
    for _ in 0..2 {
        let (upstream, _) = connect(addr, Duration::from_secs(1)).await.unwrap();
        assert_eq!(exchange(upstream).await, (200, b"data: 1data: 2".to_vec()));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_that_ends_before_its_length_is_an_error() {
    const SHORT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nonly5";
    let (addr, _) = server(SHORT, true).await;
    let (mut upstream, _) = connect(addr, Duration::from_secs(1)).await.unwrap();
    upstream.send(GET, b"", false).await.unwrap();
    upstream.read_head().await.unwrap();
    let mut got = Vec::new();
    let error = loop {
        match upstream.read_body().await {
            Ok(Some(piece)) => got.extend_from_slice(&piece),
            Ok(None) => panic!("a short body ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, b"only5");
    assert!(matches!(error, UpstreamError::ClosedMidBody), "{error}");
}

#[tokio::test]
async fn a_close_delimited_body_ends_at_the_close_and_is_not_pooled() {
    const UNTIL_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\n\r\neverything until the end";
    let (addr, accepted) = server(UNTIL_CLOSE, true).await;
    for _ in 0..2 {
        let (upstream, reused) = connect(addr, Duration::from_secs(1)).await.unwrap();
        assert!(!reused);
        assert_eq!(exchange(upstream).await.1, b"everything until the end");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_replica_that_closes_without_answering_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = socket.read(&mut buf).await;
    });
    let (mut upstream, _) = connect(addr, Duration::from_secs(1)).await.unwrap();
    upstream.send(GET, b"", false).await.unwrap();
    assert!(matches!(
        upstream.read_head().await,
        Err(UpstreamError::ClosedBeforeHead)
    ));
}

#[tokio::test]
async fn a_large_response_body_grows_the_buffer_and_arrives_whole() {
    static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let wire = BIG.get_or_init(|| {
        let body: Vec<u8> = (0..1024 * 1024).map(|i| (i % 253) as u8).collect();
        let mut w =
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
        w.extend_from_slice(&body);
        w
    });
    let (addr, _) = server(wire, false).await;
    let (upstream, _) = connect(addr, Duration::from_secs(1)).await.unwrap();
    let (status, body) = exchange(upstream).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), 1024 * 1024);
    assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 253) as u8));
}
