//! The request-level dispatch of the simulator — a model of the live `ReplicaPool`'s FIFO
//! dispatcher, not the live code (SPEC §3: held requests are served in arrival order, each to
//! the least-loaded replica with a free slot).

use super::deployment::{ms, Deployment, Waiting};
use super::{Event, EventQueue};
use infergate_config::RoutingPolicy;
use infergate_scaler::affinity::{self, Affinity, RouteReason};
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
        let by_prefix = self.model.routing == RoutingPolicy::Prefix && !pin;
        while !self.queue.is_empty() {
            let keyed = self
                .queue
                .front()
                .and_then(|w| w.prefix)
                .filter(|_| by_prefix);
            let best = match keyed {
                // The live pool's choice: the key's replica within the load bound.
                Some(key) => self.by_prefix(key, slots),
                None => self
                    .replicas
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.state == ReplicaState::Ready && (pin || r.in_flight < slots))
                    .min_by_key(|(_, r)| (r.in_flight + r.local_queue, r.index))
                    .map(|(i, _)| i),
            };
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

    /// The replica `key` goes to, as `infergate_scaler::affinity` chooses live.
    fn by_prefix(&self, key: u64, slots: u32) -> Option<usize> {
        // (id, in flight, ready) of each replica, in the pool's order.
        let view: Vec<(String, u32, bool)> = self
            .replicas
            .iter()
            .map(|r| {
                (
                    r.index.to_string(),
                    r.in_flight,
                    r.state == ReplicaState::Ready,
                )
            })
            .collect();
        let affinity = Affinity {
            key,
            reason: RouteReason::Prefix,
            load_factor: self.model.routing_load_factor,
        };
        affinity::pick(
            &view,
            &affinity,
            |r| &r.0,
            |r| r.1,
            |r| r.2,
            |r| r.2 && r.1 < slots,
        )
        .map(|(i, _)| i)
    }

    /// Whether replica `i` holds `prefix` in its cache (an LRU of `prefix_cache_size`), which
    /// then holds it as the most recent.
    fn cached(&mut self, i: usize, prefix: Option<u64>) -> bool {
        let (Some(prefix), size) = (prefix, self.model.prefix_cache_size) else {
            return false;
        };
        if size == 0 {
            return false;
        }
        let cache = &mut self.caches[i];
        let hit = match cache.iter().position(|k| *k == prefix) {
            Some(at) => {
                cache.remove(at);
                true
            }
            None => false,
        };
        cache.push_front(prefix);
        cache.truncate(size);
        self.measured.prefix_queries += 1;
        self.measured.prefix_hits += u64::from(hit);
        hit
    }

    /// Starts serving `w` on replica `i`: its wait and time to first token are known now.
    pub(super) fn start(&mut self, now: Duration, i: usize, w: Waiting, events: &mut EventQueue) {
        let hit = self.cached(i, w.prefix);
        let r = &mut self.replicas[i];
        r.in_flight += 1;
        r.served += 1;
        self.in_flight += 1;
        let wait = now.saturating_sub(w.arrived);
        let (prefill, service) = match w.service {
            Some(s) => (Duration::ZERO, s),
            None => {
                let mut prefill = self.model.prefill(w.input);
                if hit {
                    prefill = prefill.mul_f64(self.model.prefix_hit_factor);
                }
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
