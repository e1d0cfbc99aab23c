//! `infergate-bench`: measures the simulated model server directly, through infergate and through
//! the peers (nginx, haproxy — when installed; `bench.sh` installs them) side by side in one run
//! (rounds interleaved, since this machine is noisy), with load from this separate process over
//! real keep-alive HTTP/1.1 connections, and prints ratios to direct and to nginx and each proxy's
//! CPU time per request (utime + stime of its process tree).
//!
//! Run: `cargo run --release -p infergate-benches -- --help`

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use infergate_benches::{peers, start};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Opts {
    /// The infergate binary (built with `cargo build --release`).
    #[arg(long, default_value = "target/release/infergate")]
    infergate: PathBuf,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds per measured round.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds per target (interleaved).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Completion tokens per request (the simulated server answers at once: 0 ms TTFT).
    #[arg(long, default_value_t = 1)]
    max_tokens: u32,
    /// A smoke run: one 1 s round per target on 8 connections (checks that every target works).
    #[arg(long)]
    quick: bool,
}

/// Prints the first few distinct failures so errors in a run can be explained.
fn report_error(what: String) {
    static SHOWN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    if SHOWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3 {
        eprintln!("request failed: {what}");
    }
}

struct RoundResult {
    requests: u64,
    errors: u64,
    latencies_us: Vec<u64>,
    elapsed: Duration,
}

async fn worker(addr: String, body: Bytes, model: String, until: Instant) -> (u64, u64, Vec<u64>) {
    let (mut ok, mut errors, mut lat) = (0, 0, Vec::new());
    'reconnect: while Instant::now() < until {
        let Ok(stream) = TcpStream::connect(&addr).await else {
            errors += 1;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            errors += 1;
            continue;
        };
        tokio::spawn(conn);
        while Instant::now() < until {
            let req = Request::post("/v1/chat/completions")
                .header("host", addr.as_str())
                .header("content-type", "application/json")
                .header("x-bench-model", model.as_str())
                .body(Full::new(body.clone()))
                .expect("request");
            let t0 = Instant::now();
            let done = match sender.send_request(req).await {
                Ok(resp) if resp.status().is_success() => resp.into_body().collect().await.is_ok(),
                Ok(resp) => {
                    report_error(format!("HTTP {}", resp.status()));
                    false
                }
                Err(e) => {
                    report_error(e.to_string());
                    false
                }
            };
            if done {
                ok += 1;
                lat.push(t0.elapsed().as_micros() as u64);
            } else {
                errors += 1;
                continue 'reconnect;
            }
        }
    }
    (ok, errors, lat)
}

async fn round(addr: &str, opts: &Opts) -> RoundResult {
    let body = Bytes::from(format!(
        r#"{{"model":"bench","max_tokens":{},"messages":[{{"role":"user","content":"hello there"}}]}}"#,
        opts.max_tokens
    ));
    let start = Instant::now();
    let until = start + Duration::from_secs(opts.seconds);
    let tasks: Vec<_> = (0..opts.connections)
        .map(|_| {
            tokio::spawn(worker(
                addr.to_string(),
                body.clone(),
                "bench".into(),
                until,
            ))
        })
        .collect();
    let mut result = RoundResult {
        requests: 0,
        errors: 0,
        latencies_us: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        if let Ok((ok, err, lat)) = t.await {
            result.requests += ok;
            result.errors += err;
            result.latencies_us.extend(lat);
        }
    }
    result.elapsed = start.elapsed();
    result
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    let mut opts = Opts::parse();
    if opts.quick {
        opts.seconds = 1;
        opts.rounds = 1;
        opts.connections = 8;
    }
    let sim_args = [
        "sim-server",
        "--ttft",
        "0ms",
        "--tokens-per-s",
        "1000000",
        "--model",
        "bench",
    ];
    let (_sim, sim_url) = start(
        {
            let mut c = Command::new(&opts.infergate);
            c.args(sim_args);
            c
        },
        "sim-server listening",
    );
    let dir = std::env::temp_dir().join(format!("infergate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("bench.toml");
    let mut f = std::fs::File::create(&config).expect("config");
    write!(
        f,
        "[server]\nlisteners = [{{ address = \"127.0.0.1:0\" }}]\n[admin]\naddress = \"\"\n[deployments.bench]\n[deployments.bench.backend]\ntype = \"static\"\nurls = [\"{sim_url}\"]\n"
    )
    .expect("write config");
    let (_proxy, proxy_url) = start(
        {
            let mut c = Command::new(&opts.infergate);
            c.arg("--config").arg(&config).env("RUST_LOG", "warn");
            c
        },
        "listening on",
    );
    std::thread::sleep(Duration::from_millis(800)); // static replica passes its health check

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let upstream = sim_url.trim_start_matches("http://").to_string();
    let nginx = peers::nginx(&upstream, &dir);
    let haproxy = peers::haproxy(&upstream, &dir);
    // (name, address, process whose CPU is the proxy's)
    let mut targets: Vec<(&str, String, Option<u32>)> = vec![
        ("direct", upstream.clone(), None),
        (
            "infergate",
            proxy_url.trim_start_matches("http://").to_string(),
            Some(_proxy.pid()),
        ),
    ];
    for (name, peer) in [("nginx", &nginx), ("haproxy", &haproxy)] {
        match peer {
            Some((running, addr)) => targets.push((name, addr.clone(), Some(running.pid()))),
            None => eprintln!("{name} is not installed: left out (./bench.sh installs it)"),
        }
    }
    let mut totals: Vec<(u64, u64, Duration, Vec<u64>, u64)> =
        vec![(0, 0, Duration::ZERO, Vec::new(), 0); targets.len()];
    rt.block_on(async {
        // Warm-up, then interleaved rounds.
        for (_, addr, _) in &targets {
            let warm = Opts {
                seconds: 1,
                connections: opts.connections,
                ..Opts::parse()
            };
            round(addr, &warm).await;
        }
        for r in 0..opts.rounds {
            for (i, (name, addr, pid)) in targets.iter().enumerate() {
                let cpu_before = pid.map_or(0, peers::cpu_us_of_tree);
                let res = round(addr, &opts).await;
                let cpu = pid
                    .map_or(0, peers::cpu_us_of_tree)
                    .saturating_sub(cpu_before);
                eprintln!(
                    "round {r} {name:<10} {:>9.0} req/s  errors {}",
                    res.requests as f64 / res.elapsed.as_secs_f64(),
                    res.errors
                );
                let t = &mut totals[i];
                t.0 += res.requests;
                t.1 += res.errors;
                t.2 += res.elapsed;
                t.3.extend(res.latencies_us);
                t.4 += cpu;
            }
        }
    });
    println!(
        "\n{} connections, {} rounds x {} s, max_tokens {}, simulated server with 0 ms TTFT",
        opts.connections, opts.rounds, opts.seconds, opts.max_tokens
    );
    println!(
        "{:<10} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>10} {:>12}",
        "target",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "rps ×",
        "× nginx",
        "p50 +ms",
        "CPU µs/req"
    );
    let rps_of = |t: &(u64, u64, Duration, Vec<u64>, u64)| t.0 as f64 / t.2.as_secs_f64();
    let base_rps = rps_of(&totals[0]);
    let nginx_rps = targets
        .iter()
        .position(|t| t.0 == "nginx")
        .map(|i| rps_of(&totals[i]));
    let mut base_p50 = 0.0;
    for (i, (name, _, pid)) in targets.iter().enumerate() {
        let rps = rps_of(&totals[i]);
        let (req, err, _, lat, cpu) = &mut totals[i];
        lat.sort_unstable();
        let p50 = percentile(lat, 0.5) as f64 / 1000.0;
        let p99 = percentile(lat, 0.99) as f64 / 1000.0;
        if i == 0 {
            base_p50 = p50;
        }
        let vs_nginx = nginx_rps.map_or("-".to_string(), |n| format!("{:.2}", rps / n));
        let cpu_per_req = match pid {
            Some(_) if *req > 0 => format!("{:.1}", *cpu as f64 / *req as f64),
            _ => "-".into(),
        };
        println!(
            "{name:<10} {rps:>10.0} {p50:>9.3} {p99:>9.3} {err:>9} {:>8.2} {vs_nginx:>8} {:>10.3} {cpu_per_req:>12}",
            rps / base_rps,
            p50 - base_p50
        );
    }
}
