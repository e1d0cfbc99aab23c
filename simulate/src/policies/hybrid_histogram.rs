//! The hybrid histogram keep-alive policy of "Serverless in the Wild" (Shahrad et al., USENIX
//! ATC'20, §4.2): per application, a histogram of idle times (the gap from going idle to the
//! next request) in 1-minute bins over a 4-hour range. When the histogram is representative
//! (coefficient of variation of the bin counts > 2), after each idle start the app is unloaded
//! and pre-warmed again at the 5th-percentile idle time (minus a 10 % margin), then kept alive
//! until the 99th percentile (plus 10 %). Otherwise — too few or too spread idle times — it falls
//! back to a fixed keep-alive of the whole range (4 h). (The paper's ARIMA branch for idle
//! times beyond the range is not modelled: those apps also get the fixed keep-alive.)
//!
//! The paper sizes one instance per app; for a model with several replicas, replicas follow the
//! load at ceil(load / (concurrency_target × target_utilization)) while busy and drop to one
//! after a minute below that, and the histogram rules govern the last replica.

use super::{converge, per_replica, Action, Scaler, View};
use infergate_config::DeploymentConfig;
use std::collections::VecDeque;
use std::time::Duration;

const BIN: Duration = Duration::from_secs(60);
const BINS: usize = 240;
const CV_THRESHOLD: f64 = 2.0;
const MARGIN: f64 = 0.1;
const SCALE_DOWN_AFTER: Duration = Duration::from_secs(60);

/// Pre-warm and keep-alive windows from the idle-time histogram.
pub struct HybridHistogram {
    per_replica: f64,
    max: u32,
    min: u32,
    bins: Vec<u32>,
    samples: u32,
    idle_since: Option<Duration>,
    /// (pre-warm at, keep alive until) for the current idle period.
    windows: Option<(Duration, Duration)>,
    /// (time, replicas wanted) with wanted strictly decreasing from front to back.
    recent: VecDeque<(Duration, u32)>,
    next_index: u64,
}

impl HybridHistogram {
    /// An empty histogram (fixed keep-alive until it becomes representative).
    pub fn new(config: &DeploymentConfig) -> Self {
        HybridHistogram {
            per_replica: per_replica(config, f64::from(config.target_utilization)),
            max: config.effective_max_replicas(),
            min: config.effective_min_replicas(),
            bins: vec![0; BINS],
            samples: 0,
            idle_since: None,
            windows: None,
            recent: VecDeque::new(),
            next_index: u64::from(config.effective_min_replicas()),
        }
    }

    /// (pre-warm, keep-alive) windows after going idle, per the paper's rules.
    pub fn windows(&self) -> (Duration, Duration) {
        let range = BIN * BINS as u32;
        if self.samples == 0 {
            return (Duration::ZERO, range);
        }
        let n = BINS as f64;
        let mean = f64::from(self.samples) / n;
        let var = self
            .bins
            .iter()
            .map(|&c| (f64::from(c) - mean).powi(2))
            .sum::<f64>()
            / n;
        let cv = var.sqrt() / mean;
        if cv <= CV_THRESHOLD {
            return (Duration::ZERO, range);
        }
        let percentile = |p: f64| {
            let want = (p * f64::from(self.samples)).ceil().max(1.0) as u32;
            let mut seen = 0;
            for (i, &c) in self.bins.iter().enumerate() {
                seen += c;
                if seen >= want {
                    return i;
                }
            }
            BINS - 1
        };
        let head = BIN.mul_f64(percentile(0.05) as f64 * (1.0 - MARGIN));
        let tail = BIN.mul_f64((percentile(0.99) + 1) as f64 * (1.0 + MARGIN));
        (head, tail.saturating_sub(head).max(BIN))
    }
}

impl Scaler for HybridHistogram {
    fn tick(&mut self, now: Duration, view: &View, out: &mut Vec<Action>) {
        let load = view.concurrency();
        let want = if load > 0.0 {
            ((load / self.per_replica).ceil() as u32).clamp(1, self.max)
        } else {
            0
        };
        // Sliding-window maximum of the last minute (a monotonic deque: O(1) per tick), so
        // replicas follow the load up at once and down a minute later, busy or idle.
        while self.recent.back().is_some_and(|(_, w)| *w <= want) {
            self.recent.pop_back();
        }
        self.recent.push_back((now, want));
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > SCALE_DOWN_AFTER)
        {
            self.recent.pop_front();
        }
        let recent_max = self.recent.front().map_or(want, |r| r.1);
        if load > 0.0 {
            if let Some(since) = self.idle_since.take() {
                let idle = now.saturating_sub(since);
                let bin = (idle.as_secs() / BIN.as_secs()) as usize;
                if bin < BINS {
                    self.bins[bin] += 1;
                    self.samples += 1;
                }
                self.windows = None;
            }
            converge(recent_max.max(self.min), view, &mut self.next_index, out);
            return;
        }
        let since = *self.idle_since.get_or_insert(now);
        let (prewarm_at, until) = match self.windows {
            Some(w) => w,
            None => {
                let (prewarm, keep) = self.windows();
                let w = (since + prewarm, since + prewarm + keep);
                self.windows = Some(w);
                w
            }
        };
        let desired = if prewarm_at > since {
            // A pre-warm window: unloaded right after the work, loaded again at the pre-warm
            // time, kept until the keep-alive ends.
            u32::from(now >= prewarm_at && now < until)
        } else if now < until {
            recent_max.max(1)
        } else {
            0
        };
        converge(desired.max(self.min), view, &mut self.next_index, out);
    }

    fn initial_replicas(&self) -> Vec<u64> {
        (0..u64::from(self.min)).collect()
    }

    fn next_wakeup(&self, now: Duration, view: &View) -> Option<Duration> {
        // The last minute's maximum falls when its front expires; the windows open and close.
        let mut due = self.recent.front().map(|(t, _)| *t + SCALE_DOWN_AFTER);
        if view.concurrency() == 0.0 {
            if let Some((prewarm_at, until)) = self.windows {
                for t in [prewarm_at, until] {
                    if t > now {
                        due = Some(due.map_or(t, |d| d.min(t)));
                    }
                }
            }
        }
        due.filter(|t| *t > now).or_else(|| {
            // Past the minute: nothing changes until the windows or a request.
            self.windows
                .and_then(|(p, u)| [p, u].into_iter().find(|t| *t > now))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_idle_time_gives_a_pre_warm_and_a_short_keep_alive() {
        let mut h = HybridHistogram::new(&crate::setup::default_deployment());
        assert_eq!(
            h.windows(),
            (Duration::ZERO, BIN * 240),
            "no history: fixed 4 h keep-alive"
        );
        // 20 idle times of 9–10 minutes: CV ≈ 15 > 2, representative.
        h.bins[9] = 20;
        h.samples = 20;
        let (prewarm, keep) = h.windows();
        assert_eq!(prewarm, BIN.mul_f64(9.0 * 0.9), "5th percentile minus 10 %");
        assert_eq!(
            prewarm + keep,
            BIN.mul_f64(10.0 * 1.1),
            "99th percentile plus 10 %"
        );
        // Idle times spread evenly over the range: CV < 2, back to the fixed keep-alive.
        h.bins = vec![1; BINS];
        h.samples = BINS as u32;
        assert_eq!(h.windows(), (Duration::ZERO, BIN * 240));
    }
}
