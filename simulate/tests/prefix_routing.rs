//! `simulate` replays prefix routing (issue 18 item 5): a trace whose requests carry a
//! `prefix_hash` (16 system prompts) or Mooncake-style `hash_ids`, over 4 replicas each caching 6
//! prefixes, routed `prefix` and `least_loaded` by the same choice the live pool makes; the
//! prefix-cache hit rate and the time to first token show what prefix routing buys.

mod common;

use common::{run, temp_file};
use infergate_config::Config;
use infergate_simulate::PolicyKind;

fn trace(field: &str) -> std::path::PathBuf {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let text: String = (0..2000)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let prompt = x % 16 + 1;
            let prefix = match field {
                "hash_ids" => format!("\"hash_ids\": [{prompt}, {}]", 1000 + i),
                _ => format!("\"prefix_hash\": {prompt}"),
            };
            format!("{{\"t_ms\": {}, \"model\": \"m\", \"input_tokens\": 2000, \"output_tokens\": 20, {prefix}}}\n", i * 50)
        })
        .collect();
    temp_file(&text, "jsonl")
}

fn config(routing: &str) -> Config {
    Config::from_toml_str(&format!(
        "[deployments.m]\nmin_replicas = 4\nmax_replicas = 4\nrouting = \"{routing}\"\n\
         [deployments.m.simulate]\ncold_start = \"1s\"\nprefill_tps = 2000.0\ndecode_tps = 1000.0\nbatching_slowdown = 0.0\n\
         [deployments.m.backend]\ntype = \"process\"\ncommand = [\"x\", \"{{port}}\"]\n"
    ))
    .unwrap()
}

fn replay(field: &str, routing: &str) -> (f64, f64) {
    let trace = trace(field);
    let mut o = infergate_simulate::SimOptions::new(trace);
    o.config = Some(config(routing));
    o.policies = vec![PolicyKind::FixedPeak];
    o.flags.prefix_cache_size = Some(6);
    let report = infergate_simulate::simulate(&o, &mut |_| {}).unwrap();
    let t = report.total("fixed-peak").unwrap();
    assert_eq!(t.served, 2000, "{t:?}");
    (t.prefix_hit_rate.unwrap(), t.ttft_ms.p50)
}

#[test]
fn prefix_routing_keeps_prompts_in_their_replicas_cache() {
    let (hit_ll, ttft_ll) = replay("prefix_hash", "least_loaded");
    let (hit_px, ttft_px) = replay("prefix_hash", "prefix");
    eprintln!("least_loaded: {:.1} % hits, TTFT p50 {ttft_ll} ms; prefix: {:.1} % hits, TTFT p50 {ttft_px} ms", hit_ll * 100.0, hit_px * 100.0);
    // 16 prompts over 4 caches of 6: spread at random, a replica's cache holds 6 of the 16.
    assert!(hit_ll < 0.5, "{hit_ll}");
    // By prefix each replica sees about 4 (more for some, and the load bound spills a few).
    assert!(hit_px > 0.75 && hit_px > hit_ll + 0.3, "{hit_px}");
    // A hit prefills 2000 tokens in 0.2 s instead of 1 s.
    assert!(ttft_px < ttft_ll, "{ttft_px} vs {ttft_ll}");
    // Mooncake-style block ids key the prefix by their first block.
    let (hit_ids, _) = replay("hash_ids", "prefix");
    assert!((hit_ids - hit_px).abs() < 1e-9, "{hit_ids} vs {hit_px}");
    // Without prefixes in the trace there is no hit rate to report.
    let plain = run(
        common::jsonl(&[(0.0, 10, 10)]),
        config("prefix"),
        &[PolicyKind::FixedPeak],
    );
    assert!(plain.total("fixed-peak").unwrap().prefix_hit_rate.is_none());
}
