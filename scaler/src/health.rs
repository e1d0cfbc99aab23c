//! Readiness probe: one `GET <path>` over a fresh TCP connection, healthy on a 2xx status.
//!
//! Written against the socket rather than through an HTTP client so a probe costs one connect,
//! one small write and one read, and cannot be confused by connection pooling.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Returns true when `GET path` on `addr` answers 2xx within `timeout`.
pub async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, probe_inner(addr, path))
        .await
        .unwrap_or(false)
}

async fn probe_inner(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = send_get(addr, path, "infergate-health").await else {
        return false;
    };
    let mut buf = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => len += n,
        }
    }
    // "HTTP/1.1 200 ..."
    buf.starts_with(b"HTTP/1.") && buf[9] == b'2'
}

/// `POST path` with an empty body on `addr`; the status code of the answer (read within
/// `timeout`). For a model server's control endpoints (vLLM's `/sleep`, `/wake_up`).
pub async fn post_empty(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!(
            "POST {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: infergate-control\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer")
            })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"))?
}

/// Connects and sends `GET path` as HTTP/1.0 with `Connection: close`, so the answer is never
/// chunked and ends when the server closes.
pub(crate) async fn send_get(
    addr: SocketAddr,
    path: &str,
    agent: &str,
) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: {agent}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    Ok(stream)
}
