//! `prefix-routing`: what prefix-aware routing buys (issue 18 item 4). Four simulated replicas
//! with a modelled prefix cache (`--prefix-cache-size 8` prompts each; a hit starts in 0.2 × the
//! TTFT); a workload of 16 system prompts × multi-turn conversations, streamed; `least_loaded` vs
//! `prefix`, each with the prompts uniform and with one prompt at 50 % of the traffic. Prints the
//! prefix-cache hit rate, time to first byte p50/p99, and the load spread (max/mean requests per
//! replica, and max/mean in flight sampled during the run).
//!
//! Run: `cargo run --release -p infergate-benches --bin prefix-routing` (after
//! `cargo build --release -p infergate`).

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use infergate_benches::Running;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Opts {
    /// The infergate binary.
    #[arg(long, default_value = "target/release/infergate")]
    infergate: std::path::PathBuf,
    /// Requests per run.
    #[arg(long, default_value_t = 1200)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Replicas.
    #[arg(long, default_value_t = 4)]
    replicas: u32,
    /// The replicas' time to first token on a cache miss.
    #[arg(long, default_value = "40ms")]
    ttft: String,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const TOKEN: &str = "prefix-bench";
const PROMPTS: usize = 16;

fn system_prompt(i: usize) -> String {
    format!("System prompt {i}. ") + &"You answer in the voice of the house. ".repeat(40)
}

/// A tiny deterministic generator (xorshift), so every run sees the same workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The prompt of request `i`: uniform over 16, or prompt 0 for half of them.
fn prompt_of(rng: &mut Rng, skewed: bool) -> usize {
    if skewed && rng.next() % 2 == 0 {
        0
    } else {
        (rng.next() % PROMPTS as u64) as usize
    }
}

struct Proxy {
    _process: Running,
    base: String,
    admin: String,
}

fn start(opts: &Opts, policy: &str, dir: &std::path::Path) -> Proxy {
    let config = dir.join(format!("prefix-{policy}.toml"));
    let mut f = std::fs::File::create(&config).expect("config");
    write!(
        f,
        "[server]\nlisteners = [{{ address = \"127.0.0.1:0\" }}]\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [deployments.bench]\nmin_replicas = {n}\nmax_replicas = {n}\nrouting = \"{policy}\"\n\
         [deployments.bench.backend]\ntype = \"process\"\n\
         command = [\"{{infergate}}\", \"sim-server\", \"--port\", \"{{port}}\", \"--model\", \"bench\", \"--ttft\", \"{ttft}\", \
         \"--tokens-per-s\", \"2000\", \"--prefix-cache-size\", \"8\", \"--prefix-hit-ttft-factor\", \"0.2\"]\n",
        n = opts.replicas,
        ttft = opts.ttft,
    )
    .expect("write config");
    let mut child = Command::new(&opts.infergate)
        .arg("--config")
        .arg(&config)
        .env("INFERGATE_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start infergate");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut base, mut admin) = (None, None);
    while base.is_none() || admin.is_none() {
        let line = lines.next().expect("infergate ended").expect("read");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_string);
        if line.contains("listening on") {
            base = base.or(url);
        } else if line.contains("admin on") {
            admin = admin.or(url);
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Proxy {
        _process: Running::new(child),
        base: base.unwrap_or_default(),
        admin: admin.unwrap_or_default(),
    }
}

async fn get_json(client: &HttpClient, url: &str) -> Value {
    let req = hyper::Request::get(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    match client.request(req).await {
        Ok(r) => {
            let body = r
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        }
        Err(_) => Value::Null,
    }
}

/// Waits until every replica is ready; their addresses.
async fn ready_replicas(client: &HttpClient, proxy: &Proxy, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = get_json(
            client,
            &format!("{}/admin/v1/deployments/bench", proxy.admin),
        )
        .await;
        let ready: Vec<String> = state["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["state"] == "ready")
            .filter_map(|r| r["addr"].as_str().map(str::to_string))
            .collect();
        if ready.len() == n {
            return ready;
        }
        assert!(Instant::now() < deadline, "replicas not ready: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Outcome {
    hit_rate: f64,
    ttft_p50_ms: f64,
    ttft_p99_ms: f64,
    requests_spread: f64,
    in_flight_spread: f64,
    errors: usize,
}

async fn run(opts: &Opts, policy: &str, skewed: bool, dir: &std::path::Path) -> Outcome {
    let proxy = start(opts, policy, dir);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let addrs = ready_replicas(&client, &proxy, opts.replicas as usize).await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..opts.requests)
            .map(|i| {
                let p = prompt_of(&mut rng, skewed);
                let turns = (rng.next() % 6) as usize;
                let mut messages = vec![json!({"role": "system", "content": system_prompt(p)})];
                for t in 0..=turns {
                    messages.push(json!({"role": "user", "content": format!("turn {t} of conversation {i}")}));
                }
                Bytes::from(json!({"model": "bench", "stream": true, "max_tokens": 4, "messages": messages}).to_string())
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (client, admin, sampling) = (client.clone(), proxy.admin.clone(), sampling.clone());
        tokio::spawn(async move {
            let mut spreads = Vec::new();
            while sampling.load(Ordering::Acquire) {
                let state = get_json(&client, &format!("{admin}/admin/v1/deployments/bench")).await;
                let flights: Vec<f64> = state["replicas"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["in_flight"].as_f64())
                    .collect();
                let mean = flights.iter().sum::<f64>() / flights.len().max(1) as f64;
                if mean > 0.0 {
                    spreads.push(flights.iter().cloned().fold(0.0, f64::max) / mean);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            spreads.iter().sum::<f64>() / spreads.len().max(1) as f64
        })
    };
    let url: hyper::Uri = format!("{}/v1/chat/completions", proxy.base)
        .parse()
        .expect("url");
    let mut tasks = Vec::new();
    for _ in 0..opts.concurrency {
        let (client, bodies, next, errors, url) = (
            client.clone(),
            bodies.clone(),
            next.clone(),
            errors.clone(),
            url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut ttfts = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::AcqRel);
                let Some(body) = bodies.get(i) else { break };
                let req = hyper::Request::post(url.clone())
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .expect("request");
                let started = Instant::now();
                let Ok(resp) = client.request(req).await else {
                    errors.fetch_add(1, Ordering::AcqRel);
                    continue;
                };
                if !resp.status().is_success() {
                    errors.fetch_add(1, Ordering::AcqRel);
                }
                let mut body = resp.into_body();
                let mut first = None;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) if f.is_data() && first.is_none() => first = Some(started.elapsed()),
                        Ok(_) => {}
                        Err(_) => {
                            errors.fetch_add(1, Ordering::AcqRel);
                            break;
                        }
                    }
                }
                if let Some(t) = first {
                    ttfts.push(t);
                }
            }
            ttfts
        }));
    }
    let mut ttfts = Vec::new();
    for t in tasks {
        ttfts.extend(t.await.unwrap_or_default());
    }
    sampling.store(false, Ordering::Release);
    let in_flight_spread = sampler.await.unwrap_or(f64::NAN);
    ttfts.sort();
    let pct = |p: f64| {
        ttfts
            .get(((ttfts.len().saturating_sub(1)) as f64 * p) as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    let (mut hits, mut queries, mut per_replica) = (0.0, 0.0, Vec::new());
    for addr in &addrs {
        let stats = get_json(&client, &format!("http://{addr}/sim/stats")).await;
        hits += stats["prefix_cache_hits"].as_f64().unwrap_or(0.0);
        queries += stats["prefix_cache_queries"].as_f64().unwrap_or(0.0);
        per_replica.push(stats["requests"].as_f64().unwrap_or(0.0));
    }
    let mean = per_replica.iter().sum::<f64>() / per_replica.len().max(1) as f64;
    Outcome {
        hit_rate: hits / queries.max(1.0),
        ttft_p50_ms: pct(0.5),
        ttft_p99_ms: pct(0.99),
        requests_spread: per_replica.iter().cloned().fold(0.0, f64::max) / mean.max(1e-9),
        in_flight_spread,
        errors: errors.load(Ordering::Acquire),
    }
}

#[tokio::main]
async fn main() {
    let opts = Opts::parse();
    let dir = std::env::temp_dir().join(format!("infergate-prefix-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!(
        "{} replicas (prefix cache: 8 prompts each, hit TTFT 0.2 × {}), {} streamed requests, {} at once, {PROMPTS} system prompts × multi-turn conversations",
        opts.replicas, opts.ttft, opts.requests, opts.concurrency
    );
    println!("| workload | routing | prefix-cache hit rate | TTFT p50 ms | TTFT p99 ms | requests max/mean | in flight max/mean | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    for (skewed, workload) in [(false, "uniform"), (true, "one prompt at 50 %")] {
        for policy in ["least_loaded", "prefix"] {
            let o = run(&opts, policy, skewed, &dir).await;
            println!(
                "| {workload} | {policy} | {:.1} % | {:.1} | {:.1} | {:.2} | {:.2} | {} |",
                o.hit_rate * 100.0,
                o.ttft_p50_ms,
                o.ttft_p99_ms,
                o.requests_spread,
                o.in_flight_spread,
                o.errors
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
