//! A hand-written HTTP/1.1 upstream on a real socket, for what the simulated server cannot do on
//! purpose: a provider (or replica) that resets, closes mid-chunk or stalls mid-stream, echoes our
//! key, and records every request head it received.
//!
//! The behaviour is chosen by the request's `model` field: `reset`, `close`, `stall`, `echo-key`,
//! `length` (a Content-Length body); anything else gets a complete chunked SSE stream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running fake upstream; stops with the test's runtime.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    /// Every request head (request line and headers, as received), in arrival order.
    pub heads: Arc<Mutex<Vec<String>>>,
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, seen.clone()));
            }
        });
        FakeUpstream { addr, heads }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request heads received so far, lower-cased.
    pub fn seen(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect()
    }
}

const CHUNK: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi \"}}]}\n\n";

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

async fn serve(mut stream: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    loop {
        let mut buf = Vec::new();
        let mut byte = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&byte[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&byte[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
        heads.lock().unwrap().push(head.clone());
        let model = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["model"].as_str().map(str::to_string))
            .unwrap_or_default();
        let sse_head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n";
        match model.as_str() {
            "reset" | "close" | "stall" => {
                let first = format!("{sse_head}\r\n{}{}", chunk(CHUNK), chunk(CHUNK));
                let _ = stream.write_all(first.as_bytes()).await;
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                match model.as_str() {
                    "reset" => {
                        // SO_LINGER 0: close sends RST.
                        let _ = stream.set_zero_linger();
                        return;
                    }
                    "close" => {
                        // Half a chunk, then FIN.
                        let _ = stream.write_all(b"40\r\ndata: {\"choi").await;
                        let _ = stream.shutdown().await;
                        return;
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                }
            }
            "echo-key" => {
                // Echo the Authorization we got, split across two chunks, and in a header.
                let auth = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("authorization")
                            .then(|| v.trim().to_string())
                    })
                    .unwrap_or_default();
                let event = format!("data: {{\"echo\":\"{auth}\"}}\n\ndata: [DONE]\n\n");
                let (a, b) = event.split_at(event.len() / 2 - 3);
                let out = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-echo: {auth}\r\ntransfer-encoding: chunked\r\n\r\n{}{}0\r\n\r\n",
                    chunk(a),
                    chunk(b)
                );
                let _ = stream.write_all(out.as_bytes()).await;
            }
            "length" => {
                let body = "{\"object\":\"chat.completion\",\"choices\":[]}";
                let out = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(out.as_bytes()).await;
            }
            _ => {
                let out = format!(
                    "{sse_head}\r\n{}{}0\r\n\r\n",
                    chunk(CHUNK),
                    chunk("data: [DONE]\n\n")
                );
                let _ = stream.write_all(out.as_bytes()).await;
            }
        }
        let _ = stream.flush().await;
    }
}
