//! From options to runs: which settings and replica model each deployment of the trace gets,
//! the fixed fleet's size (one extra pass over the trace), and one pass per policy.

use crate::engine::{self, Deployment, PassResult};
use crate::model::{ColdStart, ReplicaModel};
use crate::policies::PolicyKind;
use crate::trace::{self, Format, TraceError, TraceOptions};
use infergate_config::{Config, DeploymentConfig, FallbackWhen};
use rand::SeedableRng;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Replica-model flags (each overrides the config's `[simulate]` table).
#[derive(Debug, Clone, Default)]
pub struct ModelFlags {
    /// `--cold-start`.
    pub cold_start: Option<ColdStart>,
    /// `--wake-time`.
    pub wake_time: Option<Duration>,
    /// `--prefill-tps`.
    pub prefill_tps: Option<f64>,
    /// `--decode-tps`.
    pub decode_tps: Option<f64>,
    /// `--replica-concurrency`.
    pub replica_concurrency: Option<u32>,
    /// `--gpu-hour-price`.
    pub gpu_hour_price: Option<f64>,
    /// `--routing`.
    pub routing: Option<infergate_config::RoutingPolicy>,
    /// `--prefix-cache-size`.
    pub prefix_cache_size: Option<usize>,
    /// `--prefix-hit-factor`.
    pub prefix_hit_factor: Option<f64>,
}

/// Everything a simulation needs.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The trace file.
    pub trace: PathBuf,
    /// Its format.
    pub format: Format,
    /// Which part of it, how fast, which deployment by default.
    pub trace_options: TraceOptions,
    /// The deployments' settings (`None`: SPEC defaults with `max_replicas` 10).
    pub config: Option<Config>,
    /// Replica-model flags.
    pub flags: ModelFlags,
    /// Policies to compare.
    pub policies: Vec<PolicyKind>,
    /// Keep replicas over time for a plot.
    pub plot: bool,
    /// The wall-clock time of the trace's start, for scheduled windows (`--start`; default
    /// Monday 2026-01-05 00:00 UTC).
    pub start: jiff::Timestamp,
    /// Record each deployment's desired replicas over time (`--timeline`).
    pub timeline: bool,
    /// Settings replacing a deployment's own (the recommender's candidates), by name.
    pub overrides: HashMap<String, DeploymentConfig>,
}

impl SimOptions {
    /// Defaults for `trace`: auto format, every policy.
    pub fn new(trace: PathBuf) -> Self {
        SimOptions {
            trace,
            format: Format::Auto,
            trace_options: TraceOptions::default(),
            config: None,
            flags: ModelFlags::default(),
            policies: PolicyKind::ALL.to_vec(),
            plot: false,
            start: default_start(),
            timeline: false,
            overrides: HashMap::new(),
        }
    }
}

/// Why a simulation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The trace is unreadable.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The trace names a model the config does not serve.
    #[error(
        "the trace names model {0:?}, which is neither a deployment nor an alias in the config"
    )]
    UnknownModel(String),
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Settings and model of one deployment.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Deployment name (as in the config, or the trace's model name).
    pub name: String,
    /// Its settings.
    pub config: DeploymentConfig,
    /// Its replicas.
    pub model: ReplicaModel,
}

/// What every pass shares.
pub struct Plan {
    /// Fixed-fleet size per deployment name (only when `fixed-peak` runs).
    pub peaks: HashMap<String, u32>,
    /// How long after the last arrival the books stay open.
    pub tail: Duration,
}

/// The default deployment of SPEC §4, with `max_replicas` 10 so that scaling shows.
pub fn default_deployment() -> DeploymentConfig {
    let text = "max_replicas = 10\n[backend]\ntype = \"process\"\ncommand = [\"model-server\", \"{port}\"]\n";
    // The literal above is fixed and valid; a failure here is a bug caught by every test.
    toml::from_str(text)
        .unwrap_or_else(|e| panic!("the built-in default deployment does not parse: {e}"))
}

/// Settings and model for the deployment the trace calls `name`.
pub fn spec_for(options: &SimOptions, name: &str) -> Result<Spec, SimError> {
    let (name, mut config) = match &options.config {
        None => (name.to_string(), default_deployment()),
        Some(c) => c
            .deployments
            .iter()
            .find(|(n, d)| d.names(n).any(|x| x == name))
            .map(|(n, d)| (n.clone(), d.clone()))
            .ok_or_else(|| SimError::UnknownModel(name.to_string()))?,
    };
    if let Some(o) = options.overrides.get(&name) {
        config = o.clone();
    }
    let mut model = ReplicaModel {
        replica_concurrency: config.replica_concurrency,
        gpus_per_replica: config.gpus_per_replica(),
        routing: config.routing,
        routing_load_factor: config.routing_load_factor,
        ..ReplicaModel::default()
    };
    if let Some(price) = config.gpu_hour_price {
        model.gpu_hour_price = price;
    }
    if let Some(sim) = &config.simulate {
        if let Some(c) = &sim.cold_start {
            model.cold_start = c.parse().map_err(|e| {
                SimError::Invalid(format!("deployments.{name}.simulate.cold_start: {e}"))
            })?;
        }
        model.prefill_tps = sim.prefill_tps.unwrap_or(model.prefill_tps);
        model.decode_tps = sim.decode_tps.unwrap_or(model.decode_tps);
        model.batching_slowdown = sim.batching_slowdown.unwrap_or(model.batching_slowdown);
        model.provider_latency = sim
            .provider_latency
            .map_or(model.provider_latency, |d| d.get());
        model.provider_price_per_mtok = sim
            .provider_price_per_mtok
            .unwrap_or(model.provider_price_per_mtok);
    }
    let f = &options.flags;
    model.cold_start = f.cold_start.unwrap_or(model.cold_start);
    model.wake_time = f.wake_time.unwrap_or(model.wake_time);
    model.prefill_tps = f.prefill_tps.unwrap_or(model.prefill_tps);
    model.decode_tps = f.decode_tps.unwrap_or(model.decode_tps);
    if let Some(n) = f.replica_concurrency {
        model.replica_concurrency = n;
        config.replica_concurrency = n;
    }
    model.gpu_hour_price = f.gpu_hour_price.unwrap_or(model.gpu_hour_price);
    model.routing = f.routing.unwrap_or(model.routing);
    model.prefix_cache_size = f.prefix_cache_size.unwrap_or(model.prefix_cache_size);
    model.prefix_hit_factor = f
        .prefix_hit_factor
        .unwrap_or(model.prefix_hit_factor)
        .clamp(0.0, 1.0);
    Ok(Spec {
        name,
        config,
        model,
    })
}

/// How long after the last arrival the books stay open: long enough for every deployment's
/// policy to wind down (scale_down_delay plus halving steps, hibernation, KEDA's cooldown). It
/// depends on the settings only, so it is the same for every policy and needs no trace pass.
fn tail_of(options: &SimOptions) -> Duration {
    let mut configs: Vec<&DeploymentConfig> = match &options.config {
        Some(c) => c.deployments.values().collect(),
        None => Vec::new(),
    };
    let default = default_deployment();
    if options.config.is_none() {
        configs.push(&default);
    }
    configs.extend(options.overrides.values());
    let mut tail = Duration::from_secs(315); // KEDA's cooldown and one HPA sync
    for c in configs {
        let steps = f64::from(c.effective_max_replicas().max(1)).log2().ceil() as u32 + 2;
        let mut t = c.scale_down_delay.get() + c.autoscaling_window.get() * steps;
        if let Some(h) = &c.hibernation {
            t = t.max(h.idle_after.get() + Duration::from_secs(1));
        }
        tail = tail.max(t);
    }
    tail
}

/// The shared plan: the tail, and — when `fixed-peak` runs — the fixed fleet's size from a pass
/// that sums each minute's offered work (service time alone on a replica) per deployment.
pub fn plan(options: &SimOptions) -> Result<Plan, SimError> {
    let tail = tail_of(options);
    let mut peaks = HashMap::new();
    if !options.policies.contains(&PolicyKind::FixedPeak) {
        return Ok(Plan { peaks, tail });
    }
    let mut specs: HashMap<String, Spec> = HashMap::new();
    let mut reader = trace::open(&options.trace, options.format, &options.trace_options)?;
    let mut names: HashMap<String, String> = HashMap::new();
    let mut minute_work: HashMap<String, (u64, f64, f64)> = HashMap::new(); // minute, seconds, peak
    while let Some(a) = reader.next_arrival() {
        let a = a?;
        let model = &reader.deployments()[a.deployment];
        let name = match names.get(model) {
            Some(n) => n.clone(),
            None => {
                let n = spec_for(options, model)?.name;
                names.insert(model.clone(), n.clone());
                n
            }
        };
        if !specs.contains_key(&name) {
            specs.insert(name.clone(), spec_for(options, &name)?);
        }
        let spec = &specs[&name];
        let work = a.service.unwrap_or_else(|| {
            spec.model.prefill(a.input_tokens) + spec.model.decode(a.output_tokens, 1)
        });
        let minute = a.at.as_secs() / 60;
        let e = minute_work
            .entry(name.clone())
            .or_insert((minute, 0.0, 0.0));
        if e.0 != minute {
            e.2 = e.2.max(e.1 / 60.0);
            *e = (minute, 0.0, e.2);
        }
        e.1 += work.as_secs_f64();
        let peak_concurrency = e.2.max(e.1 / 60.0);
        let per = policies_per_replica(&spec.config);
        let n = ((peak_concurrency / per).ceil() as u32)
            .clamp(1, spec.config.effective_max_replicas().max(1));
        peaks.insert(name, n);
    }
    Ok(Plan { peaks, tail })
}

fn policies_per_replica(c: &DeploymentConfig) -> f64 {
    (f64::from(c.concurrency_target) * f64::from(c.target_utilization) / 100.0).max(1e-9)
}

/// One pass of `policy` over the trace.
pub fn run_policy(
    options: &SimOptions,
    plan: &Plan,
    policy: PolicyKind,
    progress: &mut dyn FnMut(u64),
) -> Result<PassResult, SimError> {
    let mut reader = trace::open(&options.trace, options.format, &options.trace_options)?;
    let mut error = None;
    let seed = options.trace_options.seed;
    let mut canonical = |name: &str| -> Result<String, TraceError> {
        spec_for(options, name)
            .map(|s| s.name)
            .map_err(|e| TraceError::Options(e.to_string()))
    };
    let mut make = |index: usize, name: &str| -> Result<Deployment, TraceError> {
        let spec = match spec_for(options, name) {
            Ok(s) => s,
            Err(e) => {
                error = Some(e);
                return Err(TraceError::Options(String::new()));
            }
        };
        let c = &spec.config;
        let peak = plan.peaks.get(&spec.name).copied().unwrap_or(1);
        let scaler = policy.build(&spec.name, c, peak, options.start);
        let fallback_on_cold_start = c.fallback.as_ref().is_some_and(|f| {
            f.when.iter().any(|w| {
                matches!(
                    w,
                    FallbackWhen::ColdStart | FallbackWhen::Waking | FallbackWhen::Hibernated
                )
            })
        });
        // The same cold-start draws for every policy: seeded by the deployment, not the policy.
        let rng = rand::rngs::StdRng::seed_from_u64(
            seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let mut d = Deployment::new(
            0,
            spec.model,
            c.queue.max_wait.get(),
            c.queue.max_waiting,
            fallback_on_cold_start,
            scaler,
            rng,
        );
        if options.timeline {
            d.measured.desired_timeline = Some(vec![(0.0, 0)]);
        }
        Ok(d)
    };
    let result = engine::run_pass(
        reader.as_mut(),
        &mut canonical,
        &mut make,
        plan.tail,
        options.plot,
        progress,
    );
    match (result, error) {
        (_, Some(e)) => Err(e),
        (Ok(r), None) => Ok(r),
        (Err(e), None) => Err(e.into()),
    }
}

/// Where a replay starts on the wall clock when the trace does not say: a Monday at midnight
/// UTC, so weekday windows fall where they would.
pub fn default_start() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_767_571_200).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}
