//! One deployment in the simulator: its queue, its replicas and the request-level dispatch, and
//! what it measures. Dispatch is modelled (not the live `ReplicaPool`): FIFO, each request to the
//! ready replica with the fewest requests in flight that has a free slot, as the live dispatcher
//! does; a policy that releases waiting requests to the first ready replica (KEDA) pins them to
//! replicas regardless of slots instead.

use super::measured::Measured;
use super::{Event, EventQueue};
use crate::model::ReplicaModel;
use crate::policies::{Action, Scaler, SimReplica, View};
use infergate_scaler::lifecycle::accounting::StateCounts;
use infergate_scaler::ReplicaState;
use rand::rngs::StdRng;
use std::collections::VecDeque;
use std::time::Duration;

/// What an event asks of the policy.
#[derive(Clone, Copy)]
enum Round {
    /// A decision round (arrivals, readiness, timeouts, wake-ups).
    Decide,
    /// Only the new load (a request ended).
    Observe,
}

/// Most desired-replica changes kept per deployment.
const TIMELINE_CAP: usize = 100_000;

/// A request waiting for a slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waiting {
    pub arrived: Duration,
    pub input: u32,
    pub output: u32,
    pub service: Option<Duration>,
    /// Its prompt prefix, when the trace gives one.
    pub prefix: Option<u64>,
}

/// One deployment's simulated state.
pub(crate) struct Deployment {
    pub id: u32,
    pub model: ReplicaModel,
    pub max_wait: Duration,
    pub max_waiting: u32,
    pub fallback_on_cold_start: bool,
    pub scaler: Box<dyn Scaler>,
    pub queue: VecDeque<Waiting>,
    pub local: Vec<VecDeque<Waiting>>,
    /// Each replica's prefix cache (most recent first), beside `replicas`.
    pub caches: Vec<VecDeque<u64>>,
    pub replicas: Vec<SimReplica>,
    pub in_flight: u32,
    pub external: u32,
    pub arrivals: u64,
    pub wake_at: Option<Duration>,
    /// The queue head's timeout event, when one is scheduled (one at a time, not one per request).
    timeout_at: Option<Duration>,
    pub measured: Measured,
    pub rng: StdRng,
    actions: Vec<Action>,
}

impl Deployment {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u32,
        model: ReplicaModel,
        max_wait: Duration,
        max_waiting: u32,
        fallback_on_cold_start: bool,
        scaler: Box<dyn Scaler>,
        rng: StdRng,
    ) -> Self {
        let mut d = Deployment {
            id,
            model,
            max_wait,
            max_waiting,
            fallback_on_cold_start,
            scaler,
            queue: VecDeque::new(),
            local: Vec::new(),
            caches: Vec::new(),
            replicas: Vec::new(),
            in_flight: 0,
            external: 0,
            arrivals: 0,
            wake_at: None,
            timeout_at: None,
            measured: Measured::default(),
            rng,
            actions: Vec::new(),
        };
        for index in d.scaler.initial_replicas() {
            d.replicas.push(SimReplica {
                index,
                state: ReplicaState::Ready,
                in_flight: 0,
                local_queue: 0,
                served: 0,
            });
            d.local.push(VecDeque::new());
            d.caches.push(VecDeque::new());
        }
        d
    }

    /// A request arrives.
    pub fn arrive(&mut self, now: Duration, w: Waiting, events: &mut EventQueue) {
        self.arrivals += 1;
        let ready = self.replicas.iter().any(|r| r.state == ReplicaState::Ready);
        if !ready && self.fallback_on_cold_start {
            self.send_to_fallback(now, w, events);
        } else if self.queue.len() as u32 >= self.max_waiting {
            self.measured.refused += 1;
        } else {
            self.queue.push_back(w);
            self.schedule_timeout(events);
        }
        self.settle(now, events);
    }

    fn send_to_fallback(&mut self, now: Duration, w: Waiting, events: &mut EventQueue) {
        let wait = now.saturating_sub(w.arrived);
        self.measured.fallback += 1;
        self.measured.served += 1;
        self.measured.fallback_cost += self.model.provider_cost(w.input, w.output);
        self.measured.wait.record(ms(wait));
        self.measured
            .ttft
            .record(ms(wait + self.model.provider_latency));
        self.external += 1;
        let done = self.model.provider_latency
            + w.service.unwrap_or_else(|| self.model.decode(w.output, 1));
        events.push(now + done, Event::ExternalDone { dep: self.id });
    }

    /// The fallback finished a request.
    pub fn external_done(&mut self, now: Duration, events: &mut EventQueue) {
        self.external = self.external.saturating_sub(1);
        self.settle_as(now, events, Round::Observe);
    }

    /// A request on replica `index` finished.
    pub fn complete(&mut self, now: Duration, index: u64, events: &mut EventQueue) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(i) = self.position(index) {
            let r = &mut self.replicas[i];
            r.in_flight = r.in_flight.saturating_sub(1);
            if let Some(w) = self.local[i].pop_front() {
                self.replicas[i].local_queue -= 1;
                self.in_flight -= 1; // counted when pinned; start() counts it again
                self.start(now, i, w, events);
            } else if self.replicas[i].state == ReplicaState::Draining
                && self.replicas[i].in_flight == 0
            {
                self.stop(now, i);
            }
        }
        self.settle_as(now, events, Round::Observe);
    }

    /// Replica `index` finished its cold start.
    pub fn ready(&mut self, now: Duration, index: u64, events: &mut EventQueue) {
        let Some(i) = self.position(index) else {
            return; // failed or drained while starting
        };
        if self.replicas[i].state != ReplicaState::Starting {
            return;
        }
        self.replicas[i].state = ReplicaState::Ready;
        self.scaler.replica_ready(index, now);
        self.settle(now, events);
    }

    /// Requests at the head of the queue that waited too long.
    pub fn expire(&mut self, now: Duration, events: &mut EventQueue) {
        if self.timeout_at == Some(now) {
            self.timeout_at = None;
        }
        let before = self.measured.timed_out;
        while self
            .queue
            .front()
            .is_some_and(|w| now >= w.arrived + self.max_wait)
        {
            self.queue.pop_front();
            self.measured.timed_out += 1;
        }
        self.schedule_timeout(events);
        if self.measured.timed_out != before {
            self.settle(now, events);
        }
    }

    /// Makes sure a timeout event is due at the queue head's deadline (or earlier: an event for
    /// a head already served finds nothing to expire and schedules the next).
    fn schedule_timeout(&mut self, events: &mut EventQueue) {
        if self.timeout_at.is_some() {
            return;
        }
        if let Some(head) = self.queue.front() {
            let at = head.arrived + self.max_wait;
            self.timeout_at = Some(at);
            events.push(at, Event::Timeout { dep: self.id });
        }
    }

    /// The policy's wake-up.
    pub fn wake(&mut self, now: Duration, events: &mut EventQueue) {
        self.wake_at = None;
        self.settle(now, events);
    }

    /// After any event: dispatch, decide (or observe), carry out, dispatch again, account, plan
    /// the wake-up.
    fn settle(&mut self, now: Duration, events: &mut EventQueue) {
        self.settle_as(now, events, Round::Decide);
    }

    fn settle_as(&mut self, now: Duration, events: &mut EventQueue, round: Round) {
        self.dispatch(now, events);
        let mut actions = std::mem::take(&mut self.actions);
        let view = view_of(
            &self.queue,
            self.in_flight,
            self.external,
            self.arrivals,
            &self.replicas,
        );
        match round {
            Round::Decide => self.scaler.tick(now, &view, &mut actions),
            Round::Observe => self.scaler.observe(now, &view, &mut actions),
        }
        let acted = !actions.is_empty();
        for action in actions.drain(..) {
            self.act(now, action, events);
        }
        self.actions = actions;
        if acted {
            self.dispatch(now, events);
        }
        let counts = self.counts();
        self.measured.peak_replicas = self
            .measured
            .peak_replicas
            .max(counts.starting + counts.ready);
        self.measured.replica_seconds.advance(now, counts);
        let view = view_of(
            &self.queue,
            self.in_flight,
            self.external,
            self.arrivals,
            &self.replicas,
        );
        if let Some(timeline) = &mut self.measured.desired_timeline {
            let desired = self.scaler.desired(&view);
            if timeline.last().is_none_or(|l| l.1 != desired) && timeline.len() < TIMELINE_CAP {
                timeline.push((now.as_secs_f64(), desired));
            }
        }
        if let Some(at) = self.scaler.next_wakeup(now, &view) {
            // Never at `now` itself: a policy that is due now has just decided.
            let at = if at <= now {
                now + Duration::from_millis(1)
            } else {
                at
            };
            // One pending wake-up, the earliest: a later one is planned when it fires (waking
            // early only costs a decision round); pushing every re-planned time would fill the
            // heap with stale entries.
            if self.wake_at.is_none_or(|pending| at < pending) {
                self.wake_at = Some(at);
                events.push(at, Event::Wake { dep: self.id });
            }
        }
    }

    fn act(&mut self, now: Duration, action: Action, events: &mut EventQueue) {
        match action {
            Action::Start { index } => {
                self.measured.cold_starts += 1;
                self.replicas.push(SimReplica {
                    index,
                    state: ReplicaState::Starting,
                    in_flight: 0,
                    local_queue: 0,
                    served: 0,
                });
                self.local.push(VecDeque::new());
                self.caches.push(VecDeque::new());
                let cold = self.model.cold_start.sample(&mut self.rng);
                events.push(
                    now + cold,
                    Event::Ready {
                        dep: self.id,
                        index,
                    },
                );
            }
            Action::Drain { index } => {
                if let Some(i) = self.position(index) {
                    self.replicas[i].state = ReplicaState::Draining;
                    if self.replicas[i].in_flight == 0 && self.local[i].is_empty() {
                        self.stop(now, i);
                    }
                }
            }
            Action::Fail { index } => {
                if let Some(i) = self.position(index) {
                    self.stop(now, i);
                }
            }
            Action::Sleep { index } => {
                if let Some(i) = self.position(index) {
                    self.replicas[i].state = ReplicaState::Sleeping;
                }
            }
            Action::WakeUp { index } => {
                if let Some(i) = self.position(index) {
                    self.replicas[i].state = ReplicaState::Starting;
                    self.measured.wake_ups += 1;
                    events.push(
                        now + self.model.wake_time,
                        Event::Ready {
                            dep: self.id,
                            index,
                        },
                    );
                }
            }
        }
    }

    fn stop(&mut self, now: Duration, i: usize) {
        let r = self.replicas.swap_remove(i);
        let local = self.local.swap_remove(i);
        self.caches.swap_remove(i);
        if r.served == 0 {
            self.measured.over_scale += 1;
        }
        for w in local {
            self.queue.push_front(w);
        }
        self.scaler.replica_stopped(r.index, now);
    }

    fn position(&self, index: u64) -> Option<usize> {
        self.replicas.iter().position(|r| r.index == index)
    }

    /// Replicas by costed state.
    pub fn counts(&self) -> StateCounts {
        let mut c = StateCounts::default();
        for r in &self.replicas {
            match r.state {
                ReplicaState::Starting => c.starting += 1,
                ReplicaState::Ready => c.ready += 1,
                ReplicaState::Sleeping => c.sleeping += 1,
                _ => c.draining += 1,
            }
        }
        c
    }

    /// Closes the books at `end`: replicas still up are charged to it and counted as over-scale
    /// if they never served; requests still waiting count as timed out.
    pub fn finish(&mut self, end: Duration) -> Measured {
        let counts = self.counts();
        self.measured.replica_seconds.advance(end, counts);
        self.measured.over_scale += self.replicas.iter().filter(|r| r.served == 0).count() as u64;
        self.measured.timed_out +=
            self.queue.len() as u64 + self.local.iter().map(|l| l.len() as u64).sum::<u64>();
        self.measured.gpus_per_replica = self.model.gpus_per_replica;
        self.measured.gpu_hour_price = self.model.gpu_hour_price;
        std::mem::take(&mut self.measured)
    }
}

fn view_of<'a>(
    queue: &VecDeque<Waiting>,
    in_flight: u32,
    external: u32,
    arrivals: u64,
    replicas: &'a [SimReplica],
) -> View<'a> {
    View {
        waiting: queue.len() as u32,
        in_flight,
        external,
        arrivals,
        replicas,
    }
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
