//! The load the benchmark offers, from this process over real keep-alive HTTP/1.1 connections:
//! closed-loop saturation (each connection sends its next request when the last one is answered),
//! open-loop fixed rate (requests leave on a schedule, latency counted from the scheduled time so a
//! slow proxy cannot hide its queue — no coordinated omission), and time to the first byte of an
//! SSE stream.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// What one measurement produced.
#[derive(Default, Clone)]
pub struct Sample {
    /// Requests answered with a 2xx and a complete body.
    pub ok: u64,
    /// Requests that failed (status, transport, timeout).
    pub errors: u64,
    /// Latency of every answered request, microseconds.
    pub latencies_us: Vec<u64>,
    /// Wall time the measurement took.
    pub elapsed: Duration,
}

impl Sample {
    /// Adds another round's results to this one.
    pub fn merge(&mut self, other: Sample) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
        self.elapsed += other.elapsed;
    }

    /// Answered requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-quantile latency in milliseconds (`p` in 0..=1).
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        match self.latencies_us.len() {
            0 => f64::NAN,
            n => self.latencies_us[((n - 1) as f64 * p) as usize] as f64 / 1000.0,
        }
    }
}

/// A chat completion request body of about `size` bytes (the prompt is padded).
pub fn chat_body(size: usize, stream: bool, max_tokens: u32) -> Bytes {
    let head = format!(
        r#"{{"model":"bench","max_tokens":{max_tokens},"stream":{stream},"messages":[{{"role":"user","content":""#
    );
    let tail = r#""}]}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut body = String::with_capacity(size);
    body.push_str(&head);
    for i in 0..pad {
        body.push(if i % 6 == 5 { ' ' } else { 'x' });
    }
    body.push_str(tail);
    Bytes::from(body)
}

/// Prints the first few distinct failures so errors in a run can be explained.
fn report_error(what: String) {
    static SHOWN: AtomicU32 = AtomicU32::new(0);
    if SHOWN.fetch_add(1, Ordering::Relaxed) < 3 {
        eprintln!("request failed: {what}");
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A new keep-alive HTTP/1.1 connection to `addr`.
pub async fn connect(addr: &str) -> Option<Sender> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// The client key every request carries (`infergate-keys` checks it; the others ignore it).
pub const BENCH_AUTHORIZATION: &str = "Bearer bench-key";

/// A chat completion POST with `body` for the server at `addr`.
pub fn request(addr: &str, body: &Bytes) -> Request<Full<Bytes>> {
    Request::post("/v1/chat/completions")
        .header("host", addr)
        .header("authorization", BENCH_AUTHORIZATION)
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .unwrap_or_else(|e| panic!("bench request: {e}"))
}

/// Sends one request and reads the whole answer; false on any failure.
async fn exchange(sender: &mut Sender, addr: &str, body: &Bytes) -> bool {
    match sender.send_request(request(addr, body)).await {
        Ok(resp) if resp.status().is_success() => resp.into_body().collect().await.is_ok(),
        Ok(resp) => {
            report_error(format!("HTTP {}", resp.status()));
            false
        }
        Err(e) => {
            report_error(e.to_string());
            false
        }
    }
}

/// Closed loop: `connections` connections each send back to back for `seconds`.
pub async fn saturate(addr: &str, connections: usize, seconds: f64, body: Bytes) -> Sample {
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (addr, body) = (addr.to_string(), body.clone());
            tokio::spawn(async move {
                let mut s = Sample::default();
                'reconnect: while Instant::now() < until {
                    let Some(mut sender) = connect(&addr).await else {
                        s.errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    while Instant::now() < until {
                        let t0 = Instant::now();
                        if exchange(&mut sender, &addr, &body).await {
                            s.ok += 1;
                            s.latencies_us.push(t0.elapsed().as_micros() as u64);
                        } else {
                            s.errors += 1;
                            continue 'reconnect;
                        }
                    }
                }
                s
            })
        })
        .collect();
    collect(tasks, start).await
}

/// Open loop: `rate` requests per second in all, spread over `connections` connections, each
/// on its own schedule; a connection that falls behind sends at once and its latency counts
/// from when the request should have left.
pub async fn fixed_rate(
    addr: &str,
    connections: usize,
    rate: f64,
    seconds: f64,
    body: Bytes,
) -> Sample {
    let start = Instant::now();
    // A proxy that cannot keep up is not waited for: what is left unsent is not sent.
    let hard_stop = start + Duration::from_secs_f64(seconds * 1.5 + 1.0);
    let per_connection = Duration::from_secs_f64(connections as f64 / rate);
    let count = (rate * seconds / connections as f64).ceil() as u64;
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let (addr, body) = (addr.to_string(), body.clone());
            // Connections start staggered so the load is smooth, not in bursts.
            let offset = per_connection.mul_f64(i as f64 / connections as f64);
            tokio::spawn(async move {
                let mut s = Sample::default();
                let Some(mut sender) = connect(&addr).await else {
                    s.errors += count;
                    return s;
                };
                for n in 0..count {
                    if Instant::now() > hard_stop {
                        break;
                    }
                    let due = start + offset + per_connection * n as u32;
                    // Behind schedule (the proxy was slow): the wait counts, from `due`. On
                    // time: from when the timer woke us (its lateness is ours, not the proxy's).
                    let from = if Instant::now() >= due {
                        due
                    } else {
                        tokio::time::sleep_until(due.into()).await;
                        Instant::now()
                    };
                    let answered = exchange(&mut sender, &addr, &body).await;
                    let latency = answered.then(|| from.elapsed());
                    if !tally(&mut s, latency, &mut sender, &addr).await {
                        return s;
                    }
                }
                s
            })
        })
        .collect();
    collect(tasks, start).await
}

/// Time to the first body byte of `requests` SSE streams, sent one after another on each of
/// `connections` connections; the rest of each stream is read to the end.
pub async fn sse_first_byte(addr: &str, connections: usize, requests: usize) -> Sample {
    let start = Instant::now();
    let body = chat_body(200, true, 4);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (addr, body) = (addr.to_string(), body.clone());
            tokio::spawn(async move {
                let mut s = Sample::default();
                let Some(mut sender) = connect(&addr).await else {
                    s.errors += 1;
                    return s;
                };
                for _ in 0..requests / connections.max(1) {
                    let t0 = Instant::now();
                    let first = match sender.send_request(request(&addr, &body)).await {
                        Ok(resp) if resp.status().is_success() => first_frame(resp).await,
                        _ => None,
                    };
                    if !tally(&mut s, first.map(|t| t - t0), &mut sender, &addr).await {
                        return s;
                    }
                }
                s
            })
        })
        .collect();
    collect(tasks, start).await
}

/// Counts one request: its latency when it was answered, else an error and a new connection
/// in place of the broken one (false when none can be made).
async fn tally(s: &mut Sample, latency: Option<Duration>, sender: &mut Sender, addr: &str) -> bool {
    if let Some(latency) = latency {
        s.ok += 1;
        s.latencies_us.push(latency.as_micros() as u64);
        return true;
    }
    s.errors += 1;
    match connect(addr).await {
        Some(again) => {
            *sender = again;
            true
        }
        None => false,
    }
}

/// When the first data frame of a response arrived; the rest is read and dropped.
async fn first_frame(resp: hyper::Response<hyper::body::Incoming>) -> Option<Instant> {
    let mut body = resp.into_body();
    let mut first = None;
    while !body.is_end_stream() {
        match body.frame().await {
            Some(Ok(frame)) => {
                if first.is_none() && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                    first = Some(Instant::now());
                }
            }
            Some(Err(_)) => return None,
            None => break,
        }
    }
    first
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Sample>>, start: Instant) -> Sample {
    let mut total = Sample::default();
    for t in tasks {
        if let Ok(s) = t.await {
            total.merge(s);
        }
    }
    total.elapsed = start.elapsed();
    total
}
