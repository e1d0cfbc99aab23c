//! `soak`: sends a million requests through infergate with nobody scraping `/metrics` and prints
//! the proxy's resident memory every 100,000 requests — it must stay flat (issue 11: without the
//! recorder's upkeep, histogram samples piled up at ~22 bytes per request).
//!
//! Run: `./soak.sh` (or `./soak.sh --requests 200000 --connections 16`).

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use infergate_benches::start;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Opts {
    /// The infergate binary (built with `cargo build --release`).
    #[arg(long, default_value = "target/release/infergate")]
    infergate: PathBuf,
    /// Requests to send in all.
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests between two memory samples.
    #[arg(long, default_value_t = 100_000)]
    every: u64,
}

/// Resident set size of a process in KiB (from /proc).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn worker(addr: String, sent: Arc<AtomicU64>, total: u64, errors: Arc<AtomicU64>) {
    let body = Bytes::from_static(
        br#"{"model":"soak","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    'reconnect: while sent.load(Ordering::Relaxed) < total {
        let Ok(stream) = TcpStream::connect(&addr).await else {
            errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        tokio::spawn(conn);
        while sent.fetch_add(1, Ordering::Relaxed) < total {
            let req = Request::post("/v1/chat/completions")
                .header("host", addr.as_str())
                .header("content-type", "application/json")
                .body(Full::new(body.clone()))
                .expect("request");
            let ok = match sender.send_request(req).await {
                Ok(resp) if resp.status().is_success() => resp.into_body().collect().await.is_ok(),
                _ => false,
            };
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
                continue 'reconnect;
            }
        }
    }
}

fn main() {
    let opts = Opts::parse();
    let (_sim, sim_url) = start(
        {
            let mut c = Command::new(&opts.infergate);
            c.args(["sim-server", "--ttft", "0ms", "--tokens-per-s", "1000000"]);
            c.args(["--model", "soak"]);
            c
        },
        "sim-server listening",
    );
    let dir = std::env::temp_dir().join(format!("infergate-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("soak.toml");
    let mut f = std::fs::File::create(&config).expect("config");
    // The admin listener (and its /metrics) is on, but nobody scrapes it.
    write!(
        f,
        "[server]\nlisteners = [{{ address = \"127.0.0.1:0\" }}]\n[admin]\naddress = \"127.0.0.1:0\"\n[deployments.soak]\n[deployments.soak.backend]\ntype = \"static\"\nurls = [\"{sim_url}\"]\n"
    )
    .expect("write config");
    let (proxy, proxy_url) = start(
        {
            let mut c = Command::new(&opts.infergate);
            c.arg("--config")
                .arg(&config)
                .env("RUST_LOG", "warn")
                .env("INFERGATE_ADMIN_TOKEN", "soak");
            c
        },
        "listening on",
    );
    std::thread::sleep(Duration::from_millis(800));
    let pid = proxy.pid();
    let addr = proxy_url.trim_start_matches("http://").to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    println!("{:>10} {:>10} {:>8}", "requests", "RSS KiB", "errors");
    println!("{:>10} {:>10} {:>8}", 0, rss_kib(pid), 0);
    rt.block_on(async {
        let workers: Vec<_> = (0..opts.connections)
            .map(|_| {
                tokio::spawn(worker(
                    addr.clone(),
                    sent.clone(),
                    opts.requests,
                    errors.clone(),
                ))
            })
            .collect();
        let mut next = opts.every;
        while workers.iter().any(|w| !w.is_finished()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let done = sent.load(Ordering::Relaxed).min(opts.requests);
            if done >= next {
                println!(
                    "{:>10} {:>10} {:>8}",
                    next,
                    rss_kib(pid),
                    errors.load(Ordering::Relaxed)
                );
                next += opts.every;
            }
        }
    });
    // Let one upkeep pass run (every 5 s), then the final figure.
    std::thread::sleep(Duration::from_secs(6));
    println!(
        "{:>10} {:>10} {:>8}   (after 6 s idle; {:.0} req/s)",
        opts.requests,
        rss_kib(pid),
        errors.load(Ordering::Relaxed),
        opts.requests as f64 / started.elapsed().as_secs_f64()
    );
}
