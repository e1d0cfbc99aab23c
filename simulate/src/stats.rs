//! Percentiles in bounded memory: exact while there are few samples (golden tests work them out
//! by hand), then a log histogram with 1 % wide buckets (millions of requests in a few KiB).

/// Samples in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    exact: Vec<f64>,
    buckets: Vec<u64>,
    count: u64,
    max: f64,
}

/// Samples kept exactly before switching to the histogram.
const EXACT_LIMIT: usize = 4_096;
/// Bucket width: values within 1 % share a bucket.
const GROWTH: f64 = 1.01;

fn bucket_of(v: f64) -> usize {
    ((v.max(0.0) + 1.0).ln() / GROWTH.ln()) as usize
}

fn value_of(bucket: usize) -> f64 {
    // Midpoint of the bucket's range.
    let lo = GROWTH.powf(bucket as f64) - 1.0;
    let hi = GROWTH.powf(bucket as f64 + 1.0) - 1.0;
    (lo + hi) / 2.0
}

impl Samples {
    /// Adds one sample.
    pub fn record(&mut self, ms: f64) {
        self.count += 1;
        self.max = self.max.max(ms);
        if self.buckets.is_empty() {
            self.exact.push(ms);
            if self.exact.len() > EXACT_LIMIT {
                for v in std::mem::take(&mut self.exact) {
                    self.bump(v);
                }
            }
        } else {
            self.bump(ms);
        }
    }

    fn bump(&mut self, v: f64) {
        let b = bucket_of(v);
        if self.buckets.len() <= b {
            self.buckets.resize(b + 1, 0);
        }
        self.buckets[b] += 1;
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Samples) {
        for &v in &other.exact {
            self.record(v);
        }
        if !other.buckets.is_empty() {
            if self.buckets.is_empty() {
                for v in std::mem::take(&mut self.exact) {
                    self.bump(v);
                }
            }
            if self.buckets.len() < other.buckets.len() {
                self.buckets.resize(other.buckets.len(), 0);
            }
            for (i, &c) in other.buckets.iter().enumerate() {
                self.buckets[i] += c;
            }
            self.count += other.buckets.iter().sum::<u64>();
            self.max = self.max.max(other.max);
        }
    }

    /// How many samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest sample (0 without samples).
    pub fn max(&self) -> f64 {
        self.max
    }

    /// Several quantiles at once (one sort of the exact samples).
    pub fn quantiles<const N: usize>(&mut self, ps: [f64; N]) -> [f64; N] {
        if self.buckets.is_empty() {
            self.exact.sort_by(f64::total_cmp);
        }
        ps.map(|p| self.quantile(p))
    }

    /// The `p`-quantile (0–1) by nearest rank; 0 without samples.
    pub fn quantile(&self, p: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((p * self.count as f64).ceil() as u64).clamp(1, self.count);
        if self.buckets.is_empty() {
            if self.exact.is_sorted_by(|a, b| a <= b) {
                return self.exact[rank as usize - 1];
            }
            let mut sorted = self.exact.clone();
            sorted.sort_by(f64::total_cmp);
            return sorted[rank as usize - 1];
        }
        let mut seen = 0;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value_of(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_within_one_percent() {
        let mut s = Samples::default();
        for v in [5.0, 1.0, 3.0, 2.0, 4.0] {
            s.record(v);
        }
        assert_eq!(
            (s.quantile(0.5), s.quantile(0.99), s.max()),
            (3.0, 5.0, 5.0)
        );
        let mut big = Samples::default();
        for i in 1..=300_000u32 {
            big.record(f64::from(i));
        }
        let p50 = big.quantile(0.5);
        assert!((p50 - 150_000.0).abs() / 150_000.0 < 0.01, "{p50}");
        assert_eq!(big.count(), 300_000);
    }
}
