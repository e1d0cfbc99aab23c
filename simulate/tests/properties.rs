//! Properties over random traces and settings, for every policy: each request ends exactly
//! once, replicas never exceed max, GPU-seconds cover the work done, and a seed replays the
//! same report byte for byte.

mod common;

use common::{config, jsonl};
use infergate_simulate::{simulate, PolicyKind, Report, SimOptions};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    requests: Vec<(f64, u32, u32)>,
    settings: String,
    max: u32,
    slots: u32,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((0u32..20_000, 0u32..400, 1u32..400), 1..40),
        (0u32..3, 1u32..5, 1u32..4, 50u32..=100),
        (10u64..60, 0u64..120, 1u32..4, 5u64..600, 1u32..50),
    )
        .prop_map(|(gaps, (min, extra, target, util), (window, delay, slots, max_wait, max_waiting))| {
            let mut t = 0.0;
            let requests = gaps
                .into_iter()
                .map(|(gap, i, o)| {
                    t += f64::from(gap);
                    (t, i, o)
                })
                .collect();
            let max = min + extra;
            let settings = format!(
                "min_replicas = {min}\nmax_replicas = {max}\nconcurrency_target = {target}\ntarget_utilization = {util}\nautoscaling_window = \"{window}s\"\nscale_down_delay = \"{delay}s\"\nreplica_concurrency = {slots}\nqueue = {{ max_wait = \"{max_wait}s\", max_waiting = {max_waiting} }}"
            );
            Case { requests, settings, max, slots }
        })
}

fn run(case: &Case, seed: u64) -> Report {
    let mut o = SimOptions::new(jsonl(&case.requests));
    o.config = Some(config(&case.settings));
    o.policies = PolicyKind::ALL.to_vec();
    o.trace_options.seed = seed;
    let report = simulate(&o, &mut |_| {}).unwrap();
    let _ = std::fs::remove_file(&o.trace);
    report
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_request_ends_once_replicas_stay_within_max_and_gpu_time_covers_the_work(case in case()) {
        let report = run(&case, 1);
        // Service alone on a replica: output / 100 tokens/s (prefill is instant, no batching).
        let mut services: Vec<f64> = case.requests.iter().map(|r| f64::from(r.2) / 100.0).collect();
        services.sort_by(f64::total_cmp);
        for r in &report.totals {
            prop_assert_eq!(r.served + r.timed_out + r.refused, case.requests.len() as u64, "{}", r.policy);
            prop_assert!(r.peak_replicas <= case.max, "{}: peak {} > max {}", r.policy, r.peak_replicas, case.max);
            let work: f64 = services.iter().take(r.served as usize).sum();
            prop_assert!(r.gpu_seconds + 0.1 >= work / f64::from(case.slots), "{}: {} GPU-s for {} s of work", r.policy, r.gpu_seconds, work);
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_report_byte_for_byte(case in case()) {
        let strip = |mut r: Report| { r.wall_s = 0.0; r.requests_per_s = 0.0; r.to_json() };
        prop_assert_eq!(strip(run(&case, 9)), strip(run(&case, 9)));
    }
}
