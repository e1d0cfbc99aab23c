//! `--recommend --max-p99-wait DUR`: the cheapest infergate settings that keep the p99 queue
//! wait within the target on this trace, found by coordinate descent over `min_replicas`,
//! `concurrency_target`, `target_utilization`, `autoscaling_window`, `scale_down_delay` and
//! hibernation `idle_after` (each tried at a few values while the others stay, two rounds). The
//! same settings are applied to every deployment of the trace.

use crate::policies::PolicyKind;
use crate::report::RunResult;
use crate::setup::{plan, run_policy, spec_for, SimError, SimOptions};
use infergate_config::{DeploymentConfig, HibernationConfig, HumanDuration};
use std::fmt::Write as _;
use std::time::Duration;

/// The settings a candidate changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Replica floor.
    pub min_replicas: u32,
    /// Requests per replica.
    pub concurrency_target: u32,
    /// Headroom, percent.
    pub target_utilization: u32,
    /// Averaging window.
    pub autoscaling_window: Duration,
    /// Idle time before replicas go.
    pub scale_down_delay: Duration,
    /// Hibernation after this idle time (`None` = off).
    pub idle_after: Option<Duration>,
}

impl Candidate {
    fn of(c: &DeploymentConfig) -> Self {
        Candidate {
            min_replicas: c.min_replicas,
            concurrency_target: c.concurrency_target,
            target_utilization: c.target_utilization,
            autoscaling_window: c.autoscaling_window.get(),
            scale_down_delay: c.scale_down_delay.get(),
            idle_after: c.hibernation.as_ref().map(|h| h.idle_after.get()),
        }
    }

    fn apply(&self, base: &DeploymentConfig) -> DeploymentConfig {
        let mut c = base.clone();
        c.min_replicas = self.min_replicas.min(c.max_replicas);
        c.concurrency_target = self.concurrency_target;
        c.target_utilization = self.target_utilization;
        c.autoscaling_window = HumanDuration(self.autoscaling_window);
        c.scale_down_delay = HumanDuration(self.scale_down_delay);
        c.hibernation = self.idle_after.map(|idle| {
            let mut h = base.hibernation.clone().unwrap_or_else(default_hibernation);
            h.idle_after = HumanDuration(idle);
            h
        });
        c
    }

    /// The TOML lines for one deployment.
    pub fn toml(&self, name: &str) -> String {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        let mut s = format!(
            "[deployments.{name}]\nmin_replicas = {}\nconcurrency_target = {}\ntarget_utilization = {}\nautoscaling_window = \"{}\"\nscale_down_delay = \"{}\"\n",
            self.min_replicas,
            self.concurrency_target,
            self.target_utilization,
            d(self.autoscaling_window),
            d(self.scale_down_delay)
        );
        if let Some(idle) = self.idle_after {
            let _ = writeln!(s, "hibernation = {{ idle_after = \"{}\" }}", d(idle));
        }
        s
    }
}

fn default_hibernation() -> HibernationConfig {
    toml::from_str("idle_after = \"15m\"")
        .unwrap_or_else(|e| panic!("the built-in hibernation table does not parse: {e}"))
}

/// What the recommender found.
#[derive(Debug, Clone)]
pub struct Recommendation {
    /// The settings in force and their result.
    pub current: (Candidate, RunResult),
    /// The cheapest that meets the target, if any did.
    pub best: Option<(Candidate, RunResult)>,
    /// Deployments the settings apply to.
    pub deployments: Vec<String>,
    /// The target.
    pub max_p99_wait: Duration,
    /// Simulations run.
    pub runs: u32,
}

fn meets(r: &RunResult, max_p99: Duration) -> bool {
    r.wait_ms.p99 <= max_p99.as_secs_f64() * 1000.0 && r.timed_out == 0 && r.refused == 0
}

/// Searches for the cheapest settings whose p99 wait is within `max_p99_wait`.
pub fn recommend(options: &SimOptions, max_p99_wait: Duration) -> Result<Recommendation, SimError> {
    let mut opts = options.clone();
    opts.policies = vec![PolicyKind::Infergate];
    opts.plot = false;
    let shared = plan(&opts)?;
    let first = run_policy(&opts, &shared, PolicyKind::Infergate, &mut |_| {})?;
    let deployments: Vec<String> = first.deployments.iter().map(|(n, _)| n.clone()).collect();
    let bases: Vec<DeploymentConfig> = deployments
        .iter()
        .map(|n| spec_for(options, n).map(|s| s.config))
        .collect::<Result<_, _>>()?;
    let Some(base0) = bases.first() else {
        return Err(SimError::Invalid(
            "the trace has no requests to tune on".into(),
        ));
    };
    let mut runs = 0;
    let mut evaluate = |cand: &Candidate| -> Result<RunResult, SimError> {
        runs += 1;
        let mut o = opts.clone();
        for (name, base) in deployments.iter().zip(&bases) {
            o.overrides.insert(name.clone(), cand.apply(base));
        }
        let pass = run_policy(&o, &shared, PolicyKind::Infergate, &mut |_| {})?;
        let all = crate::report::results_of(PolicyKind::Infergate, &shared, &pass);
        all.into_iter()
            .find(|r| r.deployment == "all")
            .ok_or_else(|| SimError::Invalid("no totals".into()))
    };
    let current = Candidate::of(base0);
    let current_result = evaluate(&current)?;
    let mut best = meets(&current_result, max_p99_wait).then(|| (current, current_result.clone()));
    let mut at = current;
    let secs = Duration::from_secs;
    for _round in 0..2 {
        let c = at.concurrency_target.max(1);
        let dims: Vec<Vec<Candidate>> = vec![
            [0, 1, 2, 3, 4, 6]
                .map(|v| Candidate {
                    min_replicas: v,
                    ..at
                })
                .to_vec(),
            [(c / 2).max(1), c, c * 2, c * 4]
                .map(|v| Candidate {
                    concurrency_target: v,
                    ..at
                })
                .to_vec(),
            [50, 70, 90, 100]
                .map(|v| Candidate {
                    target_utilization: v,
                    ..at
                })
                .to_vec(),
            [secs(10), secs(30), secs(60), secs(180)]
                .map(|v| Candidate {
                    autoscaling_window: v,
                    ..at
                })
                .to_vec(),
            [secs(0), secs(60), secs(300), secs(900)]
                .map(|v| Candidate {
                    scale_down_delay: v,
                    ..at
                })
                .to_vec(),
            [None, Some(secs(120)), Some(secs(600)), Some(secs(1800))]
                .map(|v| Candidate {
                    idle_after: v,
                    ..at
                })
                .to_vec(),
        ];
        for dim in dims {
            // Until a setting meets the target, move towards the lowest p99 wait; then only
            // cheaper settings that meet it are taken.
            let mut closest: Option<(Candidate, f64)> = None;
            for cand in dim {
                if cand == at && best.as_ref().is_some_and(|b| b.0 == at) {
                    continue;
                }
                let r = evaluate(&cand)?;
                let feasible = meets(&r, max_p99_wait);
                if feasible
                    && best
                        .as_ref()
                        .is_none_or(|b| r.gpu_seconds < b.1.gpu_seconds)
                {
                    best = Some((cand, r.clone()));
                }
                let wait = r.wait_ms.p99 + 1e9 * (r.timed_out + r.refused) as f64;
                if closest.is_none_or(|c| wait < c.1) {
                    closest = Some((cand, wait));
                }
            }
            at = match (&best, closest) {
                (Some(b), _) => b.0,
                (None, Some(c)) => c.0,
                (None, None) => at,
            };
        }
    }
    Ok(Recommendation {
        current: (current, current_result),
        best,
        deployments,
        max_p99_wait,
        runs,
    })
}

impl Recommendation {
    /// For people: the current numbers, the recommended ones and the TOML to paste.
    pub fn render(&self) -> String {
        let line = |what: &str, r: &RunResult| {
            format!(
                "{what:<12} GPU-s {:>10.0}  ${:>8.2}  p99 wait {:>8.0} ms  cold starts {:>5}  timed out {}\n",
                r.gpu_seconds, r.cost_usd, r.wait_ms.p99, r.cold_starts, r.timed_out
            )
        };
        let mut s = format!(
            "recommendation for a p99 queue wait ≤ {} ({} simulations)\n",
            humantime::format_duration(self.max_p99_wait),
            self.runs
        );
        s += &line("current", &self.current.1);
        match &self.best {
            None => s += "no setting tried meets the target; raise max_replicas or the target\n",
            Some((cand, r)) => {
                s += &line("recommended", r);
                if *cand == self.current.0 {
                    s += "the current settings are already the cheapest that meet the target\n";
                } else {
                    let saved = self.current.1.gpu_seconds - r.gpu_seconds;
                    let _ = writeln!(
                        s,
                        "saves {saved:.0} GPU-seconds ({:.1} %) on this trace\n",
                        100.0 * saved / self.current.1.gpu_seconds.max(1e-9)
                    );
                    for name in &self.deployments {
                        s += &cand.toml(name);
                        s.push('\n');
                    }
                }
            }
        }
        s
    }
}
