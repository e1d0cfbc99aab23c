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
mod replica_events;
mod transitions;

use crate::events::{EventKind, Numbers};
use crate::hibernation::{HibernationMemory, HibernationSettings, Serving};
use crate::load::LoadHistory;
use crate::policy::{self, PolicyMemory, ReplicaCounts, Settings};
use crate::pool::Unavailable;
use crate::replica::ReplicaState;
use crate::scale_down::{choose_replicas_to_stop, Candidate};
use accounting::{ReplicaSeconds, StateCounts};
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
}

impl CoreSettings {
    /// Reads them from a deployment's config (after presets).
    pub fn from_config(c: &infergate_config::DeploymentConfig) -> Self {
        CoreSettings {
            policy: Settings::from_config(c),
            hibernation: HibernationSettings::from_config(c),
            startup_timeout: c.startup_timeout.get(),
            startup_failures_to_give_up: c.startup_failures_to_give_up,
        }
    }
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Launch replica number `index` (check [`LifecycleCore::wants_launch`] just before).
    Start {
        /// Launch number within the deployment; the replica's id is `<deployment>-<index>`.
        index: u64,
    },
    /// Send replica `index` no new requests; stop it once idle (or after the drain timeout) and
    /// report [`LifecycleCore::replica_stopped`].
    Drain {
        /// Which replica.
        index: u64,
    },
    /// Replica `index` missed its startup deadline: stop it (the failure is already counted).
    Fail {
        /// Which replica.
        index: u64,
        /// Why, for its `replica_failed` event.
        why: String,
        /// The back-off that follows.
        failure: Failure,
    },
    /// The serving state changed (the data plane reads it on every request).
    Serving {
        /// Previous state.
        from: Serving,
        /// New state.
        to: Serving,
        /// Why.
        reason: &'static str,
    },
    /// Nothing can answer: waiting requests get 503 at once.
    Unavailable(Unavailable),
    /// Requests may wait again; `ready` names the replica that made it so, if one did.
    Available {
        /// The replica that became ready, or `None` when no replica is wanted any more.
        ready: Option<u64>,
    },
    /// Record an event in the deployment's log.
    Event {
        /// What happened.
        kind: EventKind,
        /// Who did it (`autoscaler`, `api`, `backend`).
        component: &'static str,
        /// One line for people.
        message: String,
        /// The numbers behind it.
        numbers: Numbers,
    },
}

/// A counted failure and the back-off it set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Failures in a row, this one included.
    pub consecutive: u32,
    /// No start before this much time has passed.
    pub backoff: Duration,
}

/// The outcome of one decision round, for logs, events and the admin API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decided {
    /// Replicas the deployment should have.
    pub desired: u32,
    /// The desired count of the round before.
    pub previous: u32,
    /// Why (the policy's reason, or the serving state holding it at zero).
    pub reason: &'static str,
    /// Load averaged over the window.
    pub average_load: f64,
    /// Load at this instant.
    pub current_load: f64,
    /// Replicas starting and ready when it was taken.
    pub replicas: ReplicaCounts,
    /// Whether starts are held by a back-off.
    pub in_backoff: bool,
}

/// What the core observes at a decision round.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// The deployment's load in its metric (`crate::load::measure`).
    pub load: f64,
    /// Requests that arrived for the deployment since start (any route).
    pub arrivals: u64,
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
        let decision = policy::decide(
            &self.settings.policy,
            self.history.samples(),
            counts,
            self.memory,
            now,
        );
        self.memory = decision.memory;
        let mut desired = decision.desired;
        let mut reason = decision.reason.name();
        if self.step_hibernation(counts.ready, now, out) {
            desired = 0;
            reason = self.serving.name();
        }
        let current = counts.current();
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
    }

    /// The earliest time a decision could change without a new observation (a countdown, a
    /// back-off, a startup deadline, a hibernation timer, the load window moving); `None` when
    /// nothing is due. A caller may always decide earlier.
    pub fn next_wakeup(&self, now: Duration) -> Option<Duration> {
        let s = &self.settings;
        let mut due: Option<Duration> = None;
        // Timers already past were acted on by the decision just taken (a countdown whose delay is
        // over now waits for the next step, not for its own end again).
        let mut at = |t: Duration| {
            if t > now {
                due = Some(due.map_or(t, |d: Duration| d.min(t)));
            }
        };
        let current = self.counts().current();
        if self.memory.below_since.is_none() && current > 0 {
            // The window moving is the only thing that can start a countdown by itself.
            let policy = &s.policy;
            if let Some(t) =
                self.history
                    .first_drop_below(now, policy.autoscaling_window, current, |avg| {
                        policy.replicas_for(avg)
                    })
            {
                at(t);
            }
        }
        if let Some(since) = self.memory.below_since {
            at(since + s.policy.scale_down_delay);
        }
        if let Some(last) = self.memory.last_step_down {
            at(last + s.policy.autoscaling_window);
        }
        if let Some(until) = self.backoff_until.filter(|u| *u > now) {
            if self.desired > self.counts().current() {
                at(until);
            }
        }
        for r in &self.replicas {
            if r.state == ReplicaState::Starting && r.launched {
                at(r.asked_at + s.startup_timeout);
            }
        }
        if let Some(t) =
            crate::hibernation::next_due(&s.hibernation, self.serving, &self.hibernation, now)
        {
            at(t);
        }
        due
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
        StateCounts {
            starting: c.starting,
            ready: c.ready,
            draining: (self.replicas.len() as u32).saturating_sub(c.starting + c.ready),
        }
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
