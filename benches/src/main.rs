//! `infergate-benches`: the simulated model server measured directly, through infergate and
//! through its peers — nginx and haproxy (Debian), vllm-router and LiteLLM's proxy (PyPI; `bench.sh`
//! installs them all) — side by side in one run, rounds interleaved (this machine is noisy), load
//! from this separate process over real keep-alive HTTP/1.1 connections. Prints every figure with
//! its ratio to direct and to nginx.
//!
//! Run: `./bench.sh` (or `./bench.sh --quick` for a smoke run; `--help` for the knobs).

use clap::Parser;
use infergate_benches::load::{self, chat_body, Sample};
use infergate_benches::report::{Figure, Table};
use infergate_benches::{memory, peers, start, Running};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Parser)]
struct Opts {
    /// The infergate binary (built with `cargo build --release`).
    #[arg(long, default_value = "target/release/infergate")]
    infergate: PathBuf,
    /// Another infergate build measured beside it as `before` (a before/after comparison of a
    /// change, in one interleaved run).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// `RUST_LOG` of the baseline (`info` turns the access log on: what it costs, measured
    /// against the same binary at `warn` with `--baseline target/release/infergate`).
    #[arg(long, default_value = "warn")]
    baseline_log: String,
    /// The virtualenv holding vllm-router and litellm (bench.sh makes it).
    #[arg(long, default_value = "target/bench-venv")]
    venv: PathBuf,
    /// Only these targets (comma-separated: direct,infergate,infergate-keys,nginx,haproxy,
    /// vllm-router,litellm; `infergate-keys` is infergate with `[auth]` on).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Concurrent keep-alive connections at saturation.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds per measured round.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Rounds per figure and target (interleaved).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Connections held open for the memory figures.
    #[arg(long, default_value_t = 1000)]
    held: usize,
    /// Leave out the memory figures.
    #[arg(long)]
    no_memory: bool,
    /// A smoke run: one short round per figure, fewer held connections.
    #[arg(long)]
    quick: bool,
}

/// One thing being measured: where it listens and whose CPU and memory are its own.
struct Target {
    name: &'static str,
    addr: String,
    pid: Option<u32>,
    _process: Option<Running>,
}

fn sim_server(infergate: &Path, tokens_per_s: &str) -> (Running, String) {
    let mut c = Command::new(infergate);
    c.args([
        "sim-server",
        "--ttft",
        "0ms",
        "--tokens-per-s",
        tokens_per_s,
    ])
    .args(["--model", "bench"]);
    let (running, url) = start(c, "sim-server listening");
    (running, url.trim_start_matches("http://").to_string())
}

/// `[auth]` with one client whose key the load sends (`load::BENCH_AUTHORIZATION`), its limits set high
/// enough never to refuse, so every request pays for the key check, the budgets and the usage
/// scan: the per-key overhead.
const KEYS: &str = "[auth]\nrequired = true\n[clients.bench]\n\
    key_sha256 = \"b0962662e937d44c699c8305d90cbf190b3150c59b13863d1380b5cc3c711bb7\"\n\
    requests_per_minute = 1000000000\ntokens_per_minute = 4294967295\n";

fn infergate(binary: &Path, log: &str, upstream: &str, dir: &Path, tag: &str) -> (Running, String) {
    infergate_with(binary, log, upstream, dir, tag, "")
}

fn infergate_with(
    binary: &Path,
    log: &str,
    upstream: &str,
    dir: &Path,
    tag: &str,
    extra: &str,
) -> (Running, String) {
    let config = dir.join(format!("infergate-{tag}.toml"));
    let mut f = std::fs::File::create(&config).expect("config");
    write!(
        f,
        "[server]\nlisteners = [{{ address = \"127.0.0.1:0\" }}]\n[admin]\naddress = \"\"\n{extra}\
         [deployments.bench]\n[deployments.bench.backend]\ntype = \"static\"\nurls = [\"http://{upstream}\"]\n"
    )
    .expect("write config");
    let mut c = Command::new(binary);
    // stderr goes nowhere, but every line is still formatted and written.
    c.arg("--config").arg(&config).env("RUST_LOG", log);
    let (running, url) = start(c, "listening on");
    std::thread::sleep(Duration::from_millis(800)); // the static replica passes its health check
    (running, url.trim_start_matches("http://").to_string())
}

/// Every wanted target in front of `upstream`; `litellm` only when asked (it starts slowly).
fn targets(opts: &Opts, upstream: &str, dir: &Path, tag: &str, litellm: bool) -> Vec<Target> {
    let wanted = |name: &str| opts.targets.is_empty() || opts.targets.iter().any(|t| t == name);
    let mut out = Vec::new();
    let mut push = |name: &'static str, started: Option<(Running, String)>| {
        if let Some((running, addr)) = started {
            out.push(Target {
                name,
                addr,
                pid: Some(running.pid()),
                _process: Some(running),
            });
        }
    };
    if let Some(before) = &opts.baseline {
        push(
            "before",
            Some(infergate(
                before,
                &opts.baseline_log,
                upstream,
                dir,
                &format!("{tag}-before"),
            )),
        );
    }
    if wanted("infergate") {
        push(
            "infergate",
            Some(infergate(&opts.infergate, "warn", upstream, dir, tag)),
        );
    }
    if wanted("infergate-keys") {
        push(
            "infergate-keys",
            Some(infergate_with(
                &opts.infergate,
                "warn",
                upstream,
                dir,
                &format!("{tag}-keys"),
                KEYS,
            )),
        );
    }
    let peer_dir = dir.join(tag);
    std::fs::create_dir_all(&peer_dir).expect("temp dir");
    if wanted("nginx") {
        push("nginx", peers::nginx(upstream, &peer_dir));
    }
    if wanted("haproxy") {
        push("haproxy", peers::haproxy(upstream, &peer_dir));
    }
    if wanted("vllm-router") {
        push("vllm-router", peers::vllm_router(upstream, &opts.venv));
    }
    if litellm && wanted("litellm") {
        push("litellm", peers::litellm(upstream, &opts.venv, &peer_dir));
    }
    out
}

fn main() {
    let mut opts = Opts::parse();
    if opts.quick {
        (opts.seconds, opts.rounds, opts.held) = (1.0, 1, 100);
    }
    let dir = std::env::temp_dir().join(format!("infergate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (_sim, upstream) = sim_server(&opts.infergate, "1000000");
    let mut all = vec![Target {
        name: "direct",
        addr: upstream.clone(),
        pid: None,
        _process: None,
    }];
    all.extend(targets(&opts, &upstream, &dir, "fast", true));
    let names: Vec<&str> = all.iter().map(|t| t.name).collect();
    let mut table = Table::new(&names);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let small = chat_body(1024, false, 1);
    let large = chat_body(64 * 1024, false, 1);
    let (secs, conns) = (opts.seconds, opts.connections);
    rt.block_on(async {
        for t in &all {
            load::saturate(&t.addr, conns, 1.0, small.clone()).await; // warm-up
        }
        let mut results: Vec<[Sample; 4]> = vec![Default::default(); all.len()];
        let mut cpu: Vec<[u64; 2]> = vec![[0; 2]; all.len()];
        for r in 0..opts.rounds {
            for (i, t) in all.iter().enumerate() {
                let cpu_before = t.pid.map_or(0, peers::cpu_us_of_tree);
                let s = load::saturate(&t.addr, conns, secs, small.clone()).await;
                cpu[i][0] += t.pid.map_or(0, peers::cpu_us_of_tree) - cpu_before;
                eprintln!(
                    "round {r} {:<12} 1 KiB   {:>8.0} req/s  errors {}",
                    t.name,
                    s.rate(),
                    s.errors
                );
                results[i][0].merge(s);
            }
            for (i, t) in all.iter().enumerate() {
                let s = load::saturate(&t.addr, conns, secs, large.clone()).await;
                eprintln!(
                    "round {r} {:<12} 64 KiB  {:>8.0} req/s  errors {}",
                    t.name,
                    s.rate(),
                    s.errors
                );
                results[i][1].merge(s);
            }
            for (i, t) in all.iter().enumerate() {
                let cpu_before = t.pid.map_or(0, peers::cpu_us_of_tree);
                let s = load::fixed_rate(&t.addr, 16, 1000.0, secs, small.clone()).await;
                cpu[i][1] += t.pid.map_or(0, peers::cpu_us_of_tree) - cpu_before;
                eprintln!(
                    "round {r} {:<12} 1k/s    {:>8.0} req/s  errors {}",
                    t.name,
                    s.rate(),
                    s.errors
                );
                results[i][2].merge(s);
            }
            for (i, t) in all.iter().enumerate() {
                let s = load::fixed_rate(&t.addr, 8, 200.0, secs, small.clone()).await;
                results[i][3].merge(s);
            }
        }
        let sse: Vec<Sample> = {
            let mut v = Vec::new();
            for t in &all {
                v.push(load::sse_first_byte(&t.addr, 2, if opts.quick { 100 } else { 1000 }).await);
            }
            v
        };
        for (i, [s1k, s64k, f1k, f200]) in results.iter_mut().enumerate() {
            let saturated = |s: &Sample, rate: f64| s.rate() < rate * 0.9;
            table.set(Figure::Rps1k, i, s1k.rate());
            table.set(Figure::Rps64k, i, s64k.rate());
            if all[i].pid.is_some() && s1k.ok > 0 {
                table.set(Figure::CpuSaturated, i, cpu[i][0] as f64 / s1k.ok as f64);
            }
            if !saturated(f1k, 1000.0) {
                table.set(Figure::P50At1k, i, f1k.percentile_ms(0.5));
                table.set(Figure::P99At1k, i, f1k.percentile_ms(0.99));
                if all[i].pid.is_some() {
                    table.set(Figure::CpuAt1k, i, cpu[i][1] as f64 / f1k.ok as f64);
                }
            }
            if !saturated(f200, 200.0) {
                table.set(Figure::P50At200, i, f200.percentile_ms(0.5));
                table.set(Figure::P99At200, i, f200.percentile_ms(0.99));
            }
            let mut first = sse[i].clone();
            if first.ok > 0 {
                table.set(Figure::SseFirstByte, i, first.percentile_ms(0.5));
            }
        }
        if !opts.no_memory {
            for (i, t) in all.iter().enumerate() {
                if let Some(pid) = t.pid {
                    if let Some(kib) = memory::per_idle_connection(&t.addr, pid, opts.held).await {
                        table.set(Figure::RssIdle, i, kib);
                    }
                }
            }
        }
    });
    if !opts.no_memory {
        // Streams need an upstream that keeps them open: a second server, 1 token every 2 s.
        let (_slow, slow) = sim_server(&opts.infergate, "0.5");
        let streaming = targets(&opts, &slow, &dir, "slow", false);
        rt.block_on(async {
            for t in &streaming {
                let Some(i) = names.iter().position(|n| *n == t.name) else {
                    continue;
                };
                let pid = t.pid.unwrap_or_default();
                if let Some(kib) = memory::per_open_stream(&t.addr, pid, opts.held).await {
                    table.set(Figure::RssStream, i, kib);
                }
            }
        });
    }
    println!(
        "\n{conns} connections at saturation, {} rounds x {secs} s, fixed rates on 16 (1k/s) and 8 (200/s) connections, \
         {} connections held for memory; simulated server with 0 ms TTFT",
        opts.rounds, opts.held
    );
    table.print();
}
