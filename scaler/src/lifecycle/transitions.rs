//! Serving-state transitions of the lifecycle core: the hibernation machine's steps, and
//! hibernate / resume / activate by hand.

use super::{Command, LifecycleCore};
use crate::events::{EventKind, Numbers};
use crate::hibernation::{self, Serving};
use crate::policy::PolicyMemory;
use crate::replica::ReplicaState;
use std::time::Duration;

impl LifecycleCore {
    /// Runs the hibernation state machine; true when the deployment must be held at zero.
    pub(super) fn step_hibernation(
        &mut self,
        ready: u32,
        now: Duration,
        out: &mut Vec<Command>,
    ) -> bool {
        let transition = hibernation::step(
            &self.settings.hibernation,
            self.serving,
            self.arrivals,
            ready,
            &mut self.hibernation,
            now,
        );
        if let Some(t) = transition {
            self.enter(t.to, t.reason, false, now, out);
        }
        self.serving.holds_at_zero()
    }

    /// Hibernates by hand: zero replicas until requests wake it or `resume`.
    pub fn hibernate(
        &mut self,
        arrivals: u64,
        now: Duration,
        out: &mut Vec<Command>,
    ) -> Result<(), String> {
        self.by_hand(
            &[Serving::Active, Serving::Waking, Serving::Sleeping],
            Serving::Hibernated,
            arrivals,
            now,
            out,
        )
    }

    /// Wakes a hibernated deployment by hand.
    pub fn resume(
        &mut self,
        arrivals: u64,
        now: Duration,
        out: &mut Vec<Command>,
    ) -> Result<(), String> {
        self.by_hand(
            &[Serving::Hibernated, Serving::Sleeping],
            Serving::Waking,
            arrivals,
            now,
            out,
        )
    }

    /// Brings a deactivated deployment back.
    pub fn activate(
        &mut self,
        arrivals: u64,
        now: Duration,
        out: &mut Vec<Command>,
    ) -> Result<(), String> {
        self.by_hand(&[Serving::Deactivated], Serving::Waking, arrivals, now, out)
    }

    fn by_hand(
        &mut self,
        from: &[Serving],
        to: Serving,
        arrivals: u64,
        now: Duration,
        out: &mut Vec<Command>,
    ) -> Result<(), String> {
        let current = self.serving;
        if current == to {
            return Ok(());
        }
        if !from.contains(&current) {
            return Err(format!(
                "deployment {} is {}; this applies to {}",
                self.name,
                current.name(),
                from.iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        }
        self.arrivals = arrivals;
        hibernation::manual(&mut self.hibernation, to, arrivals, now);
        self.enter(to, "by hand", true, now, out);
        Ok(())
    }

    /// A scheduled window that wants replicas opens (or its prewarm starts) while the
    /// deployment is hibernated or asleep: it wakes.
    pub(super) fn enter_by_schedule(&mut self, now: Duration, out: &mut Vec<Command>) {
        hibernation::manual(&mut self.hibernation, Serving::Waking, self.arrivals, now);
        self.enter(Serving::Waking, "a scheduled window opens", false, now, out);
    }

    /// Replica `index`'s server has no sleep mode (it answered 404 to `/sleep`): the deployment
    /// falls back to `stop` for good, with one warning event; replicas already asleep are woken
    /// and the deployment is active again (it hibernates, by stopping, at `idle_after`).
    pub fn sleep_refused(&mut self, index: u64, why: &str, now: Duration, out: &mut Vec<Command>) {
        if let Some(r) = self
            .replicas
            .iter_mut()
            .find(|r| r.index == index && r.state == ReplicaState::Sleeping)
        {
            r.state = ReplicaState::Ready;
        }
        if self.sleep_unsupported {
            return;
        }
        self.sleep_unsupported = true;
        self.settings.hibernation.sleep_after = None;
        out.push(Command::Event {
            kind: EventKind::SleepUnsupported,
            component: "backend",
            message: format!(
                "{}-{index}: {why}; hibernation falls back to mode = \"stop\"",
                self.name
            ),
            numbers: Numbers::default(),
        });
        for r in &mut self.replicas {
            if r.state == ReplicaState::Sleeping {
                r.state = ReplicaState::Starting;
                r.asked_at = now;
                out.push(Command::WakeUp { index: r.index });
            }
        }
        if self.serving == Serving::Sleeping {
            let ready = self.counts().ready;
            let to = if ready > 0 {
                Serving::Active
            } else {
                Serving::Waking
            };
            self.enter(to, "the replicas cannot sleep", false, now, out);
        }
        self.account(now);
    }

    /// Switches the serving state; waking starts like a first deploy (max(1, min) replicas).
    /// Going to sleep puts the ready replicas to sleep; leaving it wakes them (or, to
    /// hibernation, stops them).
    fn enter(
        &mut self,
        to: Serving,
        reason: &'static str,
        by_hand: bool,
        now: Duration,
        out: &mut Vec<Command>,
    ) {
        let from = std::mem::replace(&mut self.serving, to);
        if from == to {
            return;
        }
        if to == Serving::Waking {
            self.memory = PolicyMemory::first_deploy(&self.settings.policy);
        }
        out.push(Command::Serving { from, to, reason });
        for r in &mut self.replicas {
            match (to, r.state) {
                (Serving::Sleeping, ReplicaState::Ready) => {
                    r.state = ReplicaState::Sleeping;
                    out.push(Command::Sleep { index: r.index });
                }
                (Serving::Waking | Serving::Active, ReplicaState::Sleeping) => {
                    // Woken like a start: its startup deadline runs from now.
                    r.state = ReplicaState::Starting;
                    r.asked_at = now;
                    out.push(Command::WakeUp { index: r.index });
                }
                (_, ReplicaState::Sleeping) => {
                    r.state = ReplicaState::Draining;
                    out.push(Command::Drain { index: r.index });
                }
                _ => {}
            }
        }
        self.account(now);
        let kind = match (from, to) {
            (_, Serving::Sleeping) => EventKind::Slept,
            (_, Serving::Hibernated) => EventKind::Hibernated,
            (_, Serving::Deactivated) => EventKind::Deactivated,
            (Serving::Deactivated, _) => EventKind::Activated,
            (Serving::Hibernated | Serving::Sleeping, _) => EventKind::Woke,
            _ => return, // waking → active is the replica_ready event
        };
        out.push(Command::Event {
            kind,
            component: if by_hand { "api" } else { "autoscaler" },
            message: format!("{} → {}: {reason}", from.name(), to.name()),
            numbers: Numbers::default(),
        });
    }
}
