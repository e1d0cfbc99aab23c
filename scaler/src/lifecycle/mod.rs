//! The lifecycle core of one deployment: every decision about its replicas, as a deterministic
//! state machine with no clock, task, lock or socket inside.
//!
//! The caller stamps every observation with its own time (a `Duration` since its epoch) and
//! carries out the [`Command`]s that come back. The live controller (`crate::controller`) is a
//! thin async shell that feeds it the pool's counters, health-check results and process exits and
//! actuates through a `Backend`; `infergate simulate` feeds it a trace in virtual time. Both run
//! this code, so a rule changed here changes in both. The split follows quinn-proto and rustls
//! (protocol state machine apart from the runtime) and Knative's `Scale(now)`.
//!
//! What lives here: load history and the windowed policy (`crate::policy`), first-deploy, the
//! serving state (`crate::hibernation`), replacement with exponential back-off, startup deadlines,
//! waiting for GPUs, which replicas to drain (`crate::scale_down`), fast failure after repeated
//! failed starts, and the replica-seconds accounting ([`accounting`]).

pub mod accounting;
mod interface;
mod replica_events;
mod transitions;
mod wakeup;
mod windows;

use crate::events::{EventKind, Numbers};
use crate::hibernation::{HibernationMemory, HibernationSettings, Serving};
use crate::load::LoadHistory;
use crate::policy::{self, PolicyMemory, ReplicaCounts, Settings};
use crate::replica::ReplicaState;
use crate::scale_down::{choose_replicas_to_stop, Candidate};
use accounting::{ReplicaSeconds, StateCounts};
pub use interface::{Command, Decided, Failure, Observation};
use std::time::Duration;

/// First back-off after a failed replica; doubles per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Back-off ceiling.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often a replica waiting for GPUs tries again.
pub const GPU_RETRY: Duration = Duration::from_millis(250);

/// Everything the core reads from a deployment's config.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreSettings {
    /// The autoscaling policy's settings.
    pub policy: Settings,
    /// Hibernation and deactivation.
    pub hibernation: HibernationSettings,
    /// Longest a replica may take from being asked for to ready.
    pub startup_timeout: Duration,
    /// Failed starts in a row after which waiting requests get 503 at once.
    pub startup_failures_to_give_up: u32,
    /// Scheduled warm windows.
    pub schedule: crate::schedule::Schedule,
}

impl CoreSettings {
    /// Reads them from a deployment's config (after presets).
    pub fn from_config(c: &infergate_config::DeploymentConfig) -> Self {
        CoreSettings {
            policy: Settings::from_config(c),
            hibernation: HibernationSettings::from_config(c),
            startup_timeout: c.startup_timeout.get(),
            startup_failures_to_give_up: c.startup_failures_to_give_up,
            schedule: crate::schedule::Schedule::from_config(c),
        }
    }
}

/// One replica as the core knows it.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    index: u64,
    state: ReplicaState,
    asked_at: Duration,
    launched: bool,
}

/// The deterministic lifecycle state of one deployment.
#[derive(Debug)]
pub struct LifecycleCore {
    name: String,
    settings: CoreSettings,
    history: LoadHistory,
    memory: PolicyMemory,
    hibernation: HibernationMemory,
    serving: Serving,
    replicas: Vec<Tracked>,
    next_index: u64,
    consecutive_failures: u32,
    backoff_until: Option<Duration>,
    waiting_for_gpus: bool,
    unavailable: bool,
    desired: u32,
    peak_desired: u32,
    accounting: ReplicaSeconds,
    arrivals: u64,
    /// A replica's server answered 404 to `/sleep`: hibernation stops replicas from now on.
    sleep_unsupported: bool,
    /// The wall-clock time of `now = 0` (scheduled windows need it; none: they are off).
    wall_epoch: Option<jiff::Timestamp>,
    /// The last cold start measured (asked for → ready): a window's default prewarm.
    last_cold_start: Option<Duration>,
}

impl LifecycleCore {
    /// A newly deployed deployment: it holds max(1, min_replicas) replicas until they are ready.
    pub fn first_deploy(name: &str, settings: CoreSettings) -> Self {
        let memory = PolicyMemory::first_deploy(&settings.policy);
        Self::with_memory(name, settings, memory)
    }

    /// A deployment already running at zero replicas (no first-deploy floor): where a replay of
    /// a trace starts.
    pub fn running(name: &str, settings: CoreSettings) -> Self {
        Self::with_memory(name, settings, PolicyMemory::default())
    }

    /// A deployment already running with `ready` replicas (numbered 0..ready) at time zero: a
    /// replay of a trace for a deployment whose floor is above zero.
    pub fn running_with_ready(name: &str, settings: CoreSettings, ready: u32) -> Self {
        let mut core = Self::running(name, settings);
        for index in 0..u64::from(ready) {
            core.replicas.push(Tracked {
                index,
                state: ReplicaState::Ready,
                asked_at: Duration::ZERO,
                launched: true,
            });
        }
        core.next_index = u64::from(ready);
        core.desired = ready;
        core.account(Duration::ZERO);
        core
    }

    fn with_memory(name: &str, settings: CoreSettings, memory: PolicyMemory) -> Self {
        LifecycleCore {
            name: name.to_string(),
            settings,
            history: LoadHistory::default(),
            memory,
            hibernation: HibernationMemory::default(),
            serving: Serving::Active,
            replicas: Vec::new(),
            next_index: 0,
            consecutive_failures: 0,
            backoff_until: None,
            waiting_for_gpus: false,
            unavailable: false,
            desired: 0,
            peak_desired: 0,
            accounting: ReplicaSeconds::default(),
            arrivals: 0,
            sleep_unsupported: false,
            wall_epoch: None,
            last_cold_start: None,
        }
    }

    /// One observe → decide round at `now`: expires startup deadlines, runs the policy and the
    /// hibernation machine, and asks for starts or drains. `in_flight(index)` is the requests in
    /// flight on a replica (read only when choosing which to drain).
    pub fn tick(
        &mut self,
        now: Duration,
        observed: Observation,
        in_flight: &dyn Fn(u64) -> u32,
        out: &mut Vec<Command>,
    ) -> Decided {
        self.arrivals = observed.arrivals;
        self.expire_startups(now, out);
        let counts = self.counts();
        let keep = self.settings.policy.autoscaling_window + Duration::from_secs(1);
        self.history.record(now, observed.load, keep);
        let (window, policy_settings) = self.policy_in_force(now);
        let decision = policy::decide(
            &policy_settings,
            self.history.samples(),
            counts,
            self.memory,
            now,
        );
        self.memory = decision.memory;
        let mut desired = decision.desired;
        let mut reason = decision.reason.name();
        let warm_window = window.is_some() && policy_settings.min_replicas > 0;
        if let Some(leader) = observed.follow {
            desired = leader;
            reason = "leader";
        } else if warm_window {
            // A window that wants replicas: no hibernation, and a hibernated or sleeping
            // deployment wakes for it.
            if matches!(self.serving, Serving::Hibernated | Serving::Sleeping) {
                self.enter_by_schedule(now, out);
            }
            if desired == policy_settings.min_replicas {
                reason = "schedule";
            }
        } else if self.step_hibernation(counts.ready, now, out) {
            desired = 0;
            reason = self.serving.name();
        }
        if self.serving == Serving::Sleeping {
            return self.hold_asleep(now, &decision);
        }
        // After the hibernation step: replicas it woke from sleep are starting now.
        let current = self.counts().current();
        if desired == 0 && current == 0 && self.unavailable {
            // Nothing is being started any more (load is gone): the next request must get a
            // fresh try — waiting, and asking for a replica — not the 503 of the last attempt.
            self.unavailable = false;
            out.push(Command::Available { ready: None });
        }
        let previous = std::mem::replace(&mut self.desired, desired);
        self.peak_desired = self.peak_desired.max(desired);
        let numbers = Numbers {
            load: Some(decision.average_load.max(decision.current_load)),
            desired: Some(desired),
            current: Some(current),
        };
        if desired > current {
            if desired > previous {
                out.push(self.autoscaler_event(
                    EventKind::ScaledUp,
                    format!("{current} → {desired} replicas ({reason})"),
                    numbers,
                ));
            }
            for _ in current..desired {
                if self.in_backoff(now) {
                    break;
                }
                self.ask_for_replica(now, out);
            }
        } else if desired < current {
            out.push(self.autoscaler_event(
                EventKind::ScaledDown,
                format!("{current} → {desired} replicas ({reason})"),
                numbers,
            ));
            self.drain_excess((current - desired) as usize, in_flight, out);
        }
        self.account(now);
        Decided {
            desired,
            previous,
            reason,
            average_load: decision.average_load,
            current_load: decision.current_load,
            replicas: counts,
            in_backoff: self.in_backoff(now),
        }
    }

    /// Records the load at `now` without deciding — what the live controller sees between two
    /// decision rounds (it decides on demand and every 200 ms, not on each request's end). The
    /// next [`LifecycleCore::tick`] decides on it; [`LifecycleCore::next_wakeup`] accounts for it.
    pub fn observe(&mut self, now: Duration, load: f64) {
        let keep = self.settings.policy.autoscaling_window + Duration::from_secs(1);
        self.history.record(now, load, keep);
    }

    fn ask_for_replica(&mut self, now: Duration, out: &mut Vec<Command>) {
        let index = self.next_index;
        self.next_index += 1;
        self.replicas.push(Tracked {
            index,
            state: ReplicaState::Starting,
            asked_at: now,
            launched: false,
        });
        out.push(Command::Start { index });
    }

    fn drain_excess(
        &mut self,
        excess: usize,
        in_flight: &dyn Fn(u64) -> u32,
        out: &mut Vec<Command>,
    ) {
        let candidates: Vec<Candidate> = self
            .replicas
            .iter()
            .map(|r| Candidate {
                state: r.state,
                in_flight: if r.state == ReplicaState::Ready {
                    in_flight(r.index)
                } else {
                    0
                },
                order: r.index,
            })
            .collect();
        for i in choose_replicas_to_stop(&candidates, excess) {
            self.replicas[i].state = ReplicaState::Draining;
            out.push(Command::Drain {
                index: self.replicas[i].index,
            });
        }
    }

    fn expire_startups(&mut self, now: Duration, out: &mut Vec<Command>) {
        let timeout = self.settings.startup_timeout;
        while let Some(r) = self
            .replicas
            .iter()
            .find(|r| {
                r.state == ReplicaState::Starting && r.launched && now >= r.asked_at + timeout
            })
            .copied()
        {
            let why = format!(
                "not ready within startup_timeout ({})",
                infergate_config::HumanDuration(timeout)
            );
            let failure = self.replica_failed(r.index, &why, now, out);
            out.push(Command::Fail {
                index: r.index,
                why,
                failure,
            });
        }
    }

    /// New settings take effect on the next decision.
    pub fn set_settings(&mut self, settings: CoreSettings) {
        self.settings = settings;
        if self.sleep_unsupported {
            self.settings.hibernation.sleep_after = None;
        }
    }

    /// Starting (asked for, not ready) and ready replicas.
    pub fn counts(&self) -> ReplicaCounts {
        let mut c = ReplicaCounts::default();
        for r in &self.replicas {
            match r.state {
                ReplicaState::Starting => c.starting += 1,
                ReplicaState::Ready => c.ready += 1,
                _ => {}
            }
        }
        c
    }

    fn state_counts(&self) -> StateCounts {
        let c = self.counts();
        let sleeping = self.sleeping_count();
        StateCounts {
            starting: c.starting,
            ready: c.ready,
            draining: (self.replicas.len() as u32).saturating_sub(c.starting + c.ready + sleeping),
            sleeping,
        }
    }

    /// Replicas asleep.
    fn sleeping_count(&self) -> u32 {
        self.replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Sleeping)
            .count() as u32
    }

    fn account(&mut self, now: Duration) {
        let counts = self.state_counts();
        self.accounting.advance(now, counts);
    }

    /// Replica-seconds per state up to the last observation.
    pub fn accounting(&self) -> &ReplicaSeconds {
        &self.accounting
    }

    /// Replica-seconds per state up to `now` (integrates the time since the last observation).
    pub fn accounting_at(&self, now: Duration) -> ReplicaSeconds {
        let mut a = self.accounting;
        a.advance(now, a.counts());
        a
    }

    /// The serving state.
    pub fn serving(&self) -> Serving {
        self.serving
    }

    /// The desired count of the last decision.
    pub fn desired(&self) -> u32 {
        self.desired
    }

    /// Most replicas asked for at once since start.
    pub fn peak_desired(&self) -> u32 {
        self.peak_desired
    }

    /// Whether starts are held by a back-off at `now`.
    pub fn in_backoff(&self, now: Duration) -> bool {
        self.backoff_until.is_some_and(|until| now < until)
    }

    /// The settings in force.
    pub fn settings(&self) -> &CoreSettings {
        &self.settings
    }

    fn cancel_unlaunched(&mut self) {
        self.replicas
            .retain(|r| r.state != ReplicaState::Starting || r.launched);
    }

    fn autoscaler_event(&self, kind: EventKind, message: String, numbers: Numbers) -> Command {
        Command::Event {
            kind,
            component: "autoscaler",
            message,
            numbers,
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tier_tests;
