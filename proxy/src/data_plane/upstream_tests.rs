//! The upstream pool and the held writes, against a real HTTP/1.1 server on 127.0.0.1.

use super::*;
use pingora::http::RequestHeader;
use std::sync::atomic::AtomicUsize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that answers every request `ok`, counts the connections it accepted, and closes
/// each connection after its first answer when `close_after_answer` is set.
async fn server(close_after_answer: bool) -> (SocketAddr, Arc<AtomicUsize>) {
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
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if socket.write_all(answer).await.is_err() || close_after_answer {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// One GET through `upstream`, read to the end, then handed back to the pool.
async fn exchange(mut upstream: Upstream) {
    let req = RequestHeader::build("GET", b"/", None).unwrap();
    upstream
        .session
        .write_request_header(Box::new(req))
        .await
        .unwrap();
    upstream.session.finish_body().await.unwrap();
    upstream.session.read_response().await.unwrap();
    while upstream.session.read_body_bytes().await.unwrap().is_some() {}
    upstream.release().await;
}

#[tokio::test]
async fn a_released_connection_is_reused_by_the_next_request() {
    let (addr, accepted) = server(false).await;
    let (first, reused) = connect(addr, Duration::from_secs(1)).await.unwrap();
    assert!(!reused);
    exchange(first).await;
    let (second, reused) = connect(addr, Duration::from_secs(1)).await.unwrap();
    assert!(reused, "the idle connection was not taken from the pool");
    exchange(second).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_pooled_connection_the_replica_closed_is_not_reused() {
    let (addr, accepted) = server(true).await;
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
async fn the_head_waits_for_the_body_and_both_leave_together() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (mut upstream, _) = connect(addr, Duration::from_secs(1)).await.unwrap();
    let (peer, _) = listener.accept().await.unwrap();

    let body = b"{\"model\":\"m\"}";
    let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
    req.insert_header("content-length", body.len().to_string())
        .unwrap();
    upstream.hold_writes();
    upstream
        .session
        .write_request_header(Box::new(req))
        .await
        .unwrap();
    upstream.session.write_body(body).await.unwrap();
    // pingora flushed after the head; nothing may have left while held.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut buf = vec![0u8; 4096];
    assert!(
        matches!(peer.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "bytes left before the body was finished"
    );
    upstream.release_writes();
    upstream.session.finish_body().await.unwrap();
    peer.readable().await.unwrap();
    let n = peer.try_read(&mut buf).unwrap();
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(
        got.starts_with("POST /v1/chat/completions HTTP/1.1\r\n")
            && got.ends_with("{\"model\":\"m\"}"),
        "head and body did not arrive in one read: {got:?}"
    );
}

#[tokio::test]
async fn a_large_body_leaves_whole_beside_the_held_head() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (mut upstream, _) = connect(addr, Duration::from_secs(1)).await.unwrap();
    let (mut peer, _) = listener.accept().await.unwrap();
    let body = vec![b'x'; 3 * COALESCE_LIMIT];
    let mut req = RequestHeader::build("POST", b"/v1/completions", None).unwrap();
    req.insert_header("content-length", body.len().to_string())
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 65536];
        let body_len = |all: &[u8]| {
            let end = all.windows(4).position(|w| w == b"\r\n\r\n")?;
            Some(all.len() - end - 4)
        };
        while body_len(&all) < Some(3 * COALESCE_LIMIT) {
            let n = peer.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed early");
            all.extend_from_slice(&buf[..n]);
        }
        all
    });
    upstream.hold_writes();
    upstream
        .session
        .write_request_header(Box::new(req))
        .await
        .unwrap();
    upstream.session.write_body(&body).await.unwrap();
    upstream.release_writes();
    upstream.session.finish_body().await.unwrap();
    let all = reader.await.unwrap();
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(all.starts_with(b"POST /v1/completions HTTP/1.1\r\n"));
    assert_eq!(&all[head_end..], &body[..], "the body arrived changed");
}
