//! Helpers: traces written to temporary files, a config from TOML, one simulation.

#![allow(dead_code)]

use infergate_config::Config;
use infergate_simulate::{simulate, PolicyKind, Report, SimOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

static N: AtomicU64 = AtomicU64::new(0);

/// Writes `text` to a fresh temporary file with extension `ext`.
pub fn temp_file(text: &str, ext: &str) -> PathBuf {
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("infergate-sim-{}-{n}.{ext}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// A JSONL trace of (t_ms, input, output) for deployment `m`.
pub fn jsonl(requests: &[(f64, u32, u32)]) -> PathBuf {
    let text: String = requests
        .iter()
        .map(|(t, i, o)| format!("{{\"t_ms\": {t}, \"model\": \"m\", \"input_tokens\": {i}, \"output_tokens\": {o}}}\n"))
        .collect();
    temp_file(&text, "jsonl")
}

/// One deployment `m` with `settings`, a 30 s cold start, 100 tokens/s decode, instant prefill.
pub fn config(settings: &str) -> Config {
    let text = format!(
        "[deployments.m]\n{settings}\n[deployments.m.simulate]\ncold_start = \"30s\"\ndecode_tps = 100.0\nprefill_tps = 1e12\nbatching_slowdown = 0.0\n[deployments.m.backend]\ntype = \"process\"\ncommand = [\"x\", \"{{port}}\"]\n"
    );
    Config::from_toml_str(&text).unwrap()
}

/// Runs `policies` over `trace` with `config`.
pub fn run(trace: PathBuf, config: Config, policies: &[PolicyKind]) -> Report {
    let mut o = SimOptions::new(trace);
    o.config = Some(config);
    o.policies = policies.to_vec();
    simulate(&o, &mut |_| {}).unwrap()
}
