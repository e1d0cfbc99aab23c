//! `infergate simulate`: the command line of the trace simulator (`infergate-simulate`), with a
//! progress line on stderr, the table or `--json` on stdout, `--plot` and `--recommend`.

use clap::Args;
use infergate_config::Config;
use infergate_simulate::model::ColdStart;
use infergate_simulate::trace::Format;
use infergate_simulate::{simulate, ModelFlags, PolicyKind, SimOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `infergate simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// The trace file.
    #[arg(long)]
    trace: PathBuf,
    /// Trace format.
    #[arg(long, default_value = "auto", value_parser = ["auto", "jsonl", "csv", "azure-llm", "azure-functions"])]
    format: String,
    /// Deployment for requests that name no model.
    #[arg(long, default_value = "default")]
    deployment: String,
    /// Deployment settings (without it: SPEC defaults, max_replicas 10).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Cold start: `90s` or `lognormal:median=90s,p99=300s`.
    #[arg(long)]
    cold_start: Option<String>,
    /// The wall-clock time the trace starts at, for scheduled windows (RFC 3339; default Monday
    /// 2026-01-05T00:00:00Z).
    #[arg(long)]
    start: Option<String>,
    /// A sleeping replica's wake-up (`hibernation.mode = "sleep"`), e.g. `2s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    wake_time: Option<Duration>,
    /// Prompt tokens per second.
    #[arg(long)]
    prefill_tps: Option<f64>,
    /// Generated tokens per second (one request alone).
    #[arg(long)]
    decode_tps: Option<f64>,
    /// Requests one replica serves at once.
    #[arg(long)]
    replica_concurrency: Option<u32>,
    /// Dollars per GPU-hour.
    #[arg(long)]
    gpu_hour_price: Option<f64>,
    /// How requests are spread over ready replicas (default: the deployment's `routing`);
    /// `prefix` routes on the trace's `prefix_hash` / `hash_ids`.
    #[arg(long, value_parser = ["least_loaded", "prefix", "session"])]
    routing: Option<String>,
    /// Prompt prefixes each replica's modelled prefix cache holds (0 = none).
    #[arg(long)]
    prefix_cache_size: Option<usize>,
    /// A cached prefix's prefill time as a fraction of an uncached one (0–1).
    #[arg(long)]
    prefix_hit_factor: Option<f64>,
    /// Policies to compare.
    #[arg(
        long,
        default_value = "infergate,knative,keda-http,fixed-peak,ttl,hybrid-histogram"
    )]
    policies: String,
    /// Seed (cold-start draws, arrivals inside a minute).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Azure Functions: the N busiest functions.
    #[arg(long, default_value_t = 0)]
    top: usize,
    /// Start of the replayed window (trace time).
    #[arg(long, value_parser = humantime::parse_duration)]
    from: Option<Duration>,
    /// End of the replayed window (trace time).
    #[arg(long, value_parser = humantime::parse_duration)]
    to: Option<Duration>,
    /// Multiply arrival times (0.5 = twice the rate).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Add each deployment's desired replicas at every change to the JSON (`desired_timeline`).
    #[arg(long)]
    timeline: bool,
    /// Write replicas over time to this SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Search the cheapest settings meeting --max-p99-wait.
    #[arg(long, requires = "max_p99_wait")]
    recommend: bool,
    /// The recommender's target for the p99 queue wait.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_p99_wait: Option<Duration>,
}

/// Runs the simulation; exit 2 on bad input (with the reason), 0 otherwise.
pub fn run(args: SimulateArgs) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simulate: {e}");
            ExitCode::from(2)
        }
    }
}

fn options(args: &SimulateArgs) -> Result<SimOptions, String> {
    let mut o = SimOptions::new(args.trace.clone());
    o.format = args.format.parse::<Format>()?;
    o.trace_options.deployment = args.deployment.clone();
    o.trace_options.seed = args.seed;
    o.trace_options.top = args.top;
    o.trace_options.from = args.from;
    o.trace_options.to = args.to;
    o.trace_options.time_scale = args.time_scale;
    if let Some(path) = &args.config {
        o.config = Some(Config::load(path).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    let cold_start = match &args.cold_start {
        Some(c) => Some(
            c.parse::<ColdStart>()
                .map_err(|e| format!("--cold-start: {e}"))?,
        ),
        None => None,
    };
    for (flag, v) in [
        ("--prefill-tps", args.prefill_tps),
        ("--decode-tps", args.decode_tps),
    ] {
        if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            return Err(format!("{flag} must be a number > 0"));
        }
    }
    if args
        .gpu_hour_price
        .is_some_and(|v| !(v.is_finite() && v >= 0.0))
    {
        return Err("--gpu-hour-price must be a number ≥ 0".into());
    }
    if args
        .prefix_hit_factor
        .is_some_and(|v| !(0.0..=1.0).contains(&v))
    {
        return Err("--prefix-hit-factor must be between 0 and 1".into());
    }
    if args.replica_concurrency == Some(0) {
        return Err("--replica-concurrency must be ≥ 1".into());
    }
    if let Some(start) = &args.start {
        o.start = start
            .parse()
            .map_err(|e| format!("--start: {e} (expected RFC 3339, e.g. 2026-01-05T09:00:00Z)"))?;
    }
    o.flags = ModelFlags {
        cold_start,
        wake_time: args.wake_time,
        prefill_tps: args.prefill_tps,
        decode_tps: args.decode_tps,
        replica_concurrency: args.replica_concurrency,
        gpu_hour_price: args.gpu_hour_price,
        routing: args.routing.as_deref().map(|r| match r {
            "prefix" => infergate_config::RoutingPolicy::Prefix,
            "session" => infergate_config::RoutingPolicy::Session,
            _ => infergate_config::RoutingPolicy::LeastLoaded,
        }),
        prefix_cache_size: args.prefix_cache_size,
        prefix_hit_factor: args.prefix_hit_factor,
    };
    o.policies = PolicyKind::parse_list(&args.policies)?;
    if o.policies.is_empty() {
        return Err("--policies names no policy".into());
    }
    o.plot = args.plot.is_some();
    o.timeline = args.timeline;
    Ok(o)
}

fn run_inner(args: SimulateArgs) -> Result<(), String> {
    let o = options(&args)?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {human_pos} requests replayed ({per_sec}) {elapsed}",
        )
        .map_err(|e| e.to_string())?,
    );
    let report = simulate(&o, &mut |n| bar.set_position(n)).map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = &args.plot {
        infergate_simulate::plot::write_svg(&report, path)?;
        eprintln!("plot written to {}", path.display());
    }
    if args.recommend {
        let target = args
            .max_p99_wait
            .ok_or("--recommend needs --max-p99-wait")?;
        let r = infergate_simulate::recommend::recommend(&o, target).map_err(|e| e.to_string())?;
        print!("\n{}", r.render());
    }
    Ok(())
}
