//! `infergate simulate`: request traces replayed in virtual time through the same lifecycle core
//! the live proxy runs ([`infergate_scaler::lifecycle`]), side by side with the rules of Knative,
//! KEDA, a fixed fleet, llama-swap's TTL and the hybrid histogram policy — on one replica model
//! ([`model`]) and one queue ([`engine`]), with the live proxy's replica-seconds accounting.
//!
//! The idea comes from trace-driven evaluations of serverless keep-alive policies (Shahrad et
//! al., ATC'20) and from sans-I/O protocol cores (quinn-proto): a state machine that owns no
//! clock runs as fast in virtual time as the CPU allows.
//!
//! ```no_run
//! use infergate_simulate::{simulate, SimOptions};
//! let options = SimOptions::new("trace.jsonl".into());
//! let report = simulate(&options, &mut |_| {}).unwrap();
//! println!("{}", report.table());
//! ```

pub mod engine;
pub mod model;
pub mod plot;
pub mod policies;
pub mod recommend;
pub mod report;
mod setup;
pub mod stats;
pub mod trace;

pub use policies::PolicyKind;
pub use report::{Report, RunResult};
pub use setup::{default_deployment, spec_for, ModelFlags, SimError, SimOptions, Spec};

use std::time::Instant;

/// Replays the trace once per policy and reports each; `progress(arrivals)` is called as the
/// passes go (arrivals counted over all passes).
pub fn simulate(options: &SimOptions, progress: &mut dyn FnMut(u64)) -> Result<Report, SimError> {
    let started = Instant::now();
    let plan = setup::plan(options)?;
    let mut results = Vec::new();
    let mut series = Vec::new();
    let mut requests = 0;
    let mut replayed = 0;
    for &policy in &options.policies {
        let pass = setup::run_policy(options, &plan, policy, &mut |n| progress(replayed + n))?;
        requests = pass.requests;
        replayed += pass.requests;
        results.extend(report::results_of(policy, &plan, &pass));
        series.push((policy, pass.series));
    }
    let wall_s = started.elapsed().as_secs_f64();
    Ok(Report::new(requests, replayed, wall_s, results, series))
}
