//! The discrete-event loop: arrivals streamed from the trace, completions, cold starts,
//! timeouts and policy wake-ups from a heap, all in virtual time. One pass per policy.

mod deployment;
mod dispatch;
mod measured;

pub(crate) use deployment::{Deployment, Waiting};
pub use measured::Measured;

use crate::trace::{Arrival, TraceError, TraceReader};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Something due at a virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Event {
    Complete { dep: u32, index: u64 },
    Ready { dep: u32, index: u64 },
    Timeout { dep: u32 },
    Wake { dep: u32 },
    ExternalDone { dep: u32 },
}

impl Event {
    fn dep(&self) -> u32 {
        match *self {
            Event::Complete { dep, .. }
            | Event::Ready { dep, .. }
            | Event::Timeout { dep }
            | Event::Wake { dep }
            | Event::ExternalDone { dep } => dep,
        }
    }
}

/// Events by time, first in first out among equal times.
#[derive(Default)]
pub(crate) struct EventQueue {
    heap: BinaryHeap<Reverse<(Duration, u64, Event)>>,
    seq: u64,
}

impl EventQueue {
    pub fn push(&mut self, at: Duration, event: Event) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, event)));
    }

    fn peek_time(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    fn pop(&mut self) -> Option<(Duration, Event)> {
        self.heap.pop().map(|Reverse((t, _, e))| (t, e))
    }
}

/// Replicas and load over time, summed over deployments, for the plot (bounded: the sampling
/// step doubles whenever the series grows past its cap).
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// (seconds, replicas starting + ready, load = in flight + waiting + at the fallback).
    pub points: Vec<(f64, u32, f64)>,
    step: f64,
}

const SERIES_CAP: usize = 4_000;

impl Series {
    fn sample(&mut self, t: f64, deployments: &[Deployment]) {
        if self.step == 0.0 {
            self.step = 1.0;
        }
        if self.points.last().is_some_and(|p| t < p.0 + self.step) {
            return;
        }
        let (mut replicas, mut load) = (0, 0.0);
        for d in deployments {
            let c = d.counts();
            replicas += c.starting + c.ready;
            load += f64::from(d.in_flight + d.external) + d.queue.len() as f64;
        }
        self.points.push((t, replicas, load));
        if self.points.len() > SERIES_CAP {
            let kept = self.points.iter().step_by(2).copied().collect();
            self.points = kept;
            self.step *= 2.0;
        }
    }
}

/// What one pass measured.
pub struct PassResult {
    /// Per deployment, in the order of their first arrival: (name, what it measured).
    pub deployments: Vec<(String, Measured)>,
    /// Arrivals replayed.
    pub requests: u64,
    /// Where the books were closed.
    pub end: Duration,
    /// Replicas over time (empty unless asked for).
    pub series: Series,
}

/// Drives one policy over a trace. `canonical` names the deployment a trace model belongs to
/// (aliases share one); `make` builds a deployment the first time one of its requests arrives;
/// `tail` is how long after the last arrival the books stay open (the same for
/// every policy, so idle replicas are charged alike); `progress` is called every 64 Ki arrivals.
pub(crate) fn run_pass(
    trace: &mut dyn TraceReader,
    canonical: &mut dyn FnMut(&str) -> Result<String, TraceError>,
    make: &mut dyn FnMut(usize, &str) -> Result<Deployment, TraceError>,
    tail: Duration,
    plot: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<PassResult, TraceError> {
    let mut events = EventQueue::default();
    let mut deps: Vec<Deployment> = Vec::new();
    let mut slot: Vec<Option<u32>> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut by_name: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut series = Series::default();
    let mut requests = 0u64;
    let mut last_arrival = Duration::ZERO;
    let mut next: Option<Arrival> = trace.next_arrival().transpose()?;
    loop {
        let heap_t = events.peek_time();
        let take_event = match (&next, heap_t) {
            (Some(a), Some(t)) => t <= a.at,
            (None, Some(t)) => t <= last_arrival + tail,
            (_, None) => false,
        };
        if take_event {
            let Some((t, e)) = events.pop() else { break };
            let d = &mut deps[e.dep() as usize];
            match e {
                Event::Complete { index, .. } => d.complete(t, index, &mut events),
                Event::Ready { index, .. } => d.ready(t, index, &mut events),
                Event::Timeout { .. } => d.expire(t, &mut events),
                Event::Wake { .. } => {
                    if d.wake_at == Some(t) {
                        d.wake(t, &mut events);
                    }
                }
                Event::ExternalDone { .. } => d.external_done(t, &mut events),
            }
            if plot {
                series.sample(t.as_secs_f64(), &deps);
            }
            continue;
        }
        let Some(a) = next.take() else { break };
        requests += 1;
        if requests.is_multiple_of(65_536) {
            progress(requests);
        }
        last_arrival = a.at;
        if slot.len() <= a.deployment {
            slot.resize(a.deployment + 1, None);
        }
        let id = match slot[a.deployment] {
            Some(id) => id,
            None => {
                let name = canonical(&trace.deployments()[a.deployment])?;
                let id = match by_name.get(&name) {
                    Some(&id) => id,
                    None => {
                        let id = deps.len() as u32;
                        deps.push(make(id as usize, &name)?);
                        deps[id as usize].id = id;
                        by_name.insert(name.clone(), id);
                        names.push(name);
                        id
                    }
                };
                slot[a.deployment] = Some(id);
                id
            }
        };
        let w = Waiting {
            arrived: a.at,
            input: a.input_tokens,
            output: a.output_tokens,
            service: a.service,
            prefix: a.prefix,
        };
        deps[id as usize].arrive(a.at, w, &mut events);
        if plot {
            series.sample(a.at.as_secs_f64(), &deps);
        }
        next = trace.next_arrival().transpose()?;
    }
    progress(requests);
    let end = last_arrival + tail;
    let out = names
        .into_iter()
        .zip(deps.iter_mut())
        .map(|(name, d)| (name, d.finish(end)))
        .collect();
    Ok(PassResult {
        deployments: out,
        requests,
        end,
        series,
    })
}
