//! The request-level dispatch of the simulator — a model of the live `ReplicaPool`'s FIFO
//! dispatcher, not the live code (SPEC §3: held requests are served in arrival order, each to
//! the least-loaded replica with a free slot).

use super::deployment::{ms, Deployment, Waiting};
use super::{Event, EventQueue};
use infergate_scaler::ReplicaState;
use std::time::Duration;

impl Deployment {
    /// Hands waiting requests to ready replicas: FIFO, the least-loaded ready replica with a
    /// free slot (or, for a policy that releases to the first ready replica, any ready one).
    pub(super) fn dispatch(&mut self, now: Duration, events: &mut EventQueue) {
        let pin = self.scaler.releases_to_first_ready();
        // 0 = unlimited, as in the live pool.
        let slots = match self.model.replica_concurrency {
            0 => u32::MAX,
            n => n,
        };
        while !self.queue.is_empty() {
            let best = self
                .replicas
                .iter()
                .enumerate()
                .filter(|(_, r)| r.state == ReplicaState::Ready && (pin || r.in_flight < slots))
                .min_by_key(|(_, r)| (r.in_flight + r.local_queue, r.index))
                .map(|(i, _)| i);
            let Some(i) = best else {
                return;
            };
            let Some(w) = self.queue.pop_front() else {
                return;
            };
            if self.replicas[i].in_flight < slots {
                self.start(now, i, w, events);
            } else {
                self.replicas[i].local_queue += 1;
                self.in_flight += 1;
                self.local[i].push_back(w);
            }
        }
    }

    /// Starts serving `w` on replica `i`: its wait and time to first token are known now.
    pub(super) fn start(&mut self, now: Duration, i: usize, w: Waiting, events: &mut EventQueue) {
        let r = &mut self.replicas[i];
        r.in_flight += 1;
        r.served += 1;
        self.in_flight += 1;
        let wait = now.saturating_sub(w.arrived);
        let (prefill, service) = match w.service {
            Some(s) => (Duration::ZERO, s),
            None => {
                let prefill = self.model.prefill(w.input);
                (prefill, prefill + self.model.decode(w.output, r.in_flight))
            }
        };
        self.measured.served += 1;
        self.measured.wait.record(ms(wait));
        self.measured.ttft.record(ms(wait + prefill));
        let index = r.index;
        events.push(
            now + service,
            Event::Complete {
                dep: self.id,
                index,
            },
        );
    }
}
