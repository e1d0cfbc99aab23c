//! The Azure Functions 2019 trace (Shahrad et al., ATC'20): invocations per function per minute
//! over a day. Each function becomes one deployment; the arrivals of a minute are spread over it
//! uniformly by a seeded RNG and yielded in time order, one minute at a time (memory: the count
//! table of the functions kept, plus one minute of arrivals).
//!
//! If the sampler's `*_run.csv` sits next to the `*_inv.csv`, each function's average execution
//! time becomes its requests' service time.

use super::{window, Arrival, TraceError, TraceOptions, TraceReader};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

/// Per-minute invocation counts, replayed as arrivals.
pub struct AzureFunctions {
    names: Vec<String>,
    counts: Vec<Vec<u32>>,
    service: Vec<Option<Duration>>,
    minutes: usize,
    minute: usize,
    pending: std::vec::IntoIter<(Duration, usize)>,
    rng: StdRng,
    options: TraceOptions,
}

impl AzureFunctions {
    /// Reads the count table (keeping the `--top` busiest functions) and the run times if present.
    pub fn open(path: &Path, options: &TraceOptions) -> Result<Self, TraceError> {
        let io = |source| TraceError::Io {
            file: path.to_path_buf(),
            source,
        };
        let line_error = |line: u64, message: String| TraceError::Line {
            file: path.to_path_buf(),
            line,
            message,
        };
        let reader = BufReader::new(std::fs::File::open(path).map_err(io)?);
        let mut rows: Vec<(String, Vec<u32>, u64)> = Vec::new();
        let mut minutes = 0;
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(io)?;
            let line_no = i as u64 + 1;
            let fields: Vec<&str> = line.trim().split(',').collect();
            if i == 0 {
                if fields.first() != Some(&"HashFunction") || fields.len() < 4 {
                    return Err(line_error(
                        1,
                        "expected the header HashFunction,HashApp,HashOwner,minute_1,…".into(),
                    ));
                }
                minutes = fields.len() - 3;
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            if fields.len() != minutes + 3 {
                return Err(line_error(
                    line_no,
                    format!("expected {} fields, got {}", minutes + 3, fields.len()),
                ));
            }
            let mut counts = Vec::with_capacity(minutes);
            for (m, f) in fields[3..].iter().enumerate() {
                counts.push(f.parse::<u32>().map_err(|_| {
                    line_error(line_no, format!("minute_{} is not a count: {f:?}", m + 1))
                })?);
            }
            let total = counts.iter().map(|&c| u64::from(c)).sum();
            rows.push((fields[0].to_string(), counts, total));
        }
        if options.top > 0 {
            // Stable: equal totals keep file order.
            rows.sort_by_key(|r| std::cmp::Reverse(r.2));
            rows.truncate(options.top);
        }
        let run_times = read_run_times(path);
        let names: Vec<String> = rows
            .iter()
            .map(|r| format!("fn-{}", &r.0[..r.0.len().min(8)]))
            .collect();
        let service = rows.iter().map(|r| run_times.get(&r.0).copied()).collect();
        Ok(AzureFunctions {
            names,
            counts: rows.into_iter().map(|r| r.1).collect(),
            service,
            minutes,
            minute: 0,
            pending: Vec::new().into_iter(),
            rng: StdRng::seed_from_u64(options.seed),
            options: options.clone(),
        })
    }

    fn fill_minute(&mut self) -> bool {
        while self.minute < self.minutes {
            let m = self.minute;
            self.minute += 1;
            let start = Duration::from_secs(60 * m as u64);
            if self.options.to.is_some_and(|to| start >= to) {
                self.minute = self.minutes;
                return false;
            }
            let mut arrivals = Vec::new();
            for (f, counts) in self.counts.iter().enumerate() {
                for _ in 0..counts[m] {
                    let offset = Duration::from_secs_f64(self.rng.random::<f64>() * 60.0);
                    arrivals.push((start + offset, f));
                }
            }
            if !arrivals.is_empty() {
                arrivals.sort_by_key(|a| a.0);
                self.pending = arrivals.into_iter();
                return true;
            }
        }
        false
    }
}

/// Average execution time per function hash from the `*_run.csv` beside `inv` (empty if none).
fn read_run_times(inv: &Path) -> HashMap<String, Duration> {
    let mut map = HashMap::new();
    let Some(name) = inv.file_name().and_then(|n| n.to_str()) else {
        return map;
    };
    if !name.ends_with("_inv.csv") {
        return map;
    }
    let run = inv.with_file_name(name.replace("_inv.csv", "_run.csv"));
    let Ok(file) = std::fs::File::open(run) else {
        return map;
    };
    let mut lines = BufReader::new(file).lines();
    let header = lines.next().and_then(Result::ok).unwrap_or_default();
    let Some(avg) = header.split(',').position(|h| h == "Average") else {
        return map;
    };
    for line in lines.map_while(Result::ok) {
        let f: Vec<&str> = line.split(',').collect();
        if let (Some(hash), Some(Ok(ms))) = (f.first(), f.get(avg).map(|v| v.parse::<f64>())) {
            if ms.is_finite() && ms >= 0.0 {
                map.insert(hash.to_string(), Duration::from_secs_f64(ms / 1000.0));
            }
        }
    }
    map
}

impl TraceReader for AzureFunctions {
    fn next_arrival(&mut self) -> Option<Result<Arrival, TraceError>> {
        loop {
            match self.pending.next() {
                Some((t, f)) => {
                    let Some(at) = window(t, &self.options) else {
                        continue;
                    };
                    return Some(Ok(Arrival {
                        at,
                        deployment: f,
                        input_tokens: 0,
                        output_tokens: 0,
                        service: self.service[f],
                        prefix: None,
                    }));
                }
                None => {
                    if !self.fill_minute() {
                        return None;
                    }
                }
            }
        }
    }

    fn deployments(&self) -> &[String] {
        &self.names
    }
}
