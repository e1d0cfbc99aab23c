//! Serving-state transitions of the lifecycle core: the hibernation machine's steps, and
//! hibernate / resume / activate by hand.

use super::{Command, LifecycleCore};
use crate::events::{EventKind, Numbers};
use crate::hibernation::{self, Serving};
use crate::policy::PolicyMemory;
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
            self.enter(t.to, t.reason, false, out);
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
            &[Serving::Active, Serving::Waking],
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
        self.by_hand(&[Serving::Hibernated], Serving::Waking, arrivals, now, out)
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
        self.enter(to, "by hand", true, out);
        Ok(())
    }

    /// Switches the serving state; waking starts like a first deploy (max(1, min) replicas).
    fn enter(&mut self, to: Serving, reason: &'static str, by_hand: bool, out: &mut Vec<Command>) {
        let from = std::mem::replace(&mut self.serving, to);
        if from == to {
            return;
        }
        if to == Serving::Waking {
            self.memory = PolicyMemory::first_deploy(&self.settings.policy);
        }
        out.push(Command::Serving { from, to, reason });
        let kind = match (from, to) {
            (_, Serving::Hibernated) => EventKind::Hibernated,
            (_, Serving::Deactivated) => EventKind::Deactivated,
            (Serving::Deactivated, _) => EventKind::Activated,
            (Serving::Hibernated, _) => EventKind::Woke,
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
