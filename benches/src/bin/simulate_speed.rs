//! `simulate_speed`: how fast `infergate simulate` replays traces and how much memory it needs
//! (issue 13: ≥ 1,000,000 requests per second for the default policy on the Azure conversation
//! trace; the 24 h Azure Functions sample in bounded memory). Runs the release binary as a child
//! process and reads its own `requests_per_s` and the child's peak RSS (`wait4` rusage).
//!
//! Run: `./simulate-bench.sh` (or `./simulate-bench.sh --passes 20`).

use clap::Parser;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Parser)]
struct Opts {
    /// The infergate binary (built with `cargo build --release`).
    #[arg(long, default_value = "target/release/infergate")]
    infergate: PathBuf,
    /// Where the shared traces are.
    #[arg(long, default_value = "../shared/traces")]
    traces: PathBuf,
    /// Passes of the conversation trace in one process (one `infergate` policy per pass).
    #[arg(long, default_value_t = 50)]
    passes: usize,
}

/// Runs `infergate simulate ARGS --json`; returns the report and the child's peak RSS in KiB.
// The child is reaped by `wait4` (which also gives its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run(bin: &PathBuf, args: &[String]) -> (Value, i64) {
    let mut child = Command::new(bin)
        .arg("simulate")
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let pid = child.id() as libc::pid_t;
    let mut pipe = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut pipe, &mut out);
        out
    });
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // wait4 reaps the child and reports its peak RSS (ru_maxrss, KiB).
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let stdout = reader.join().unwrap_or_default();
    let report: Value = serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}) from {args:?}"));
    (report, usage.ru_maxrss)
}

fn main() {
    let opts = Opts::parse();
    let conv = opts
        .traces
        .join("azure_llm_2023/AzureLLMInferenceTrace_conv.csv");
    let functions = opts.traces.join("azure_functions_2019/1000_inv.csv");
    println!(
        "{:<54} {:>11} {:>9} {:>14} {:>9}",
        "run", "requests", "wall s", "requests/s", "peak RSS"
    );
    let row = |name: &str, r: &Value, rss: i64| {
        println!(
            "{:<54} {:>11} {:>9.3} {:>14.0} {:>6} MiB",
            name,
            r["requests"].as_u64().unwrap_or_default(),
            r["wall_s"].as_f64().unwrap_or_default(),
            r["requests_per_s"].as_f64().unwrap_or_default(),
            rss / 1024
        )
    };
    let policies = vec!["infergate"; opts.passes].join(",");
    let (r, rss) = run(
        &opts.infergate,
        &[
            "--trace".into(),
            conv.display().to_string(),
            "--policies".into(),
            policies,
        ],
    );
    row(
        &format!(
            "conversation trace, infergate policy, {} passes",
            opts.passes
        ),
        &r,
        rss,
    );
    let (r, rss) = run(
        &opts.infergate,
        &[
            "--trace".into(),
            functions.display().to_string(),
            "--policies".into(),
            "infergate".into(),
        ],
    );
    row("Azure Functions 24 h, 1,000 functions, infergate", &r, rss);
    let (r, rss) = run(
        &opts.infergate,
        &["--trace".into(), functions.display().to_string()],
    );
    row(
        "Azure Functions 24 h, 1,000 functions, all 6 policies",
        &r,
        rss,
    );
}
