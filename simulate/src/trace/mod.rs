//! Request traces, streamed: each reader yields arrivals in time order and never holds the file.
//!
//! Formats: generic JSON Lines (`{"t_ms": …, "model": …, "input_tokens": …, "output_tokens": …}`),
//! the same columns as CSV with a header, the Azure LLM inference trace 2023 (`TIMESTAMP,
//! ContextTokens,GeneratedTokens`), and the Azure Functions 2019 per-minute invocation counts
//! (one deployment per function; arrivals spread inside each minute by a seeded RNG).

mod azure_functions;
mod lines;

pub use azure_functions::AzureFunctions;
pub use lines::LineTrace;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// One request of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// When it arrives, from the start of the trace.
    pub at: Duration,
    /// Which deployment (index into [`TraceReader::deployments`]).
    pub deployment: usize,
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Generated tokens.
    pub output_tokens: u32,
    /// A fixed service time, when the trace gives one instead of tokens (Azure Functions).
    pub service: Option<Duration>,
    /// Its prompt prefix (`prefix_hash`, or the first of `hash_ids`): requests sharing one share
    /// a replica's prefix cache.
    pub prefix: Option<u64>,
}

/// A trace that cannot be read: the file, the line and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A line does not parse, or goes back in time.
    #[error("{file}:{line}: {message}")]
    Line {
        /// The trace file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The file cannot be opened or read.
    #[error("{file}: {source}")]
    Io {
        /// The trace file.
        file: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The options do not fit the trace.
    #[error("{0}")]
    Options(String),
}

/// The formats `--format` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Guess from the extension and the first line.
    Auto,
    /// Generic JSON Lines.
    Jsonl,
    /// Generic CSV with a header (`t_ms,model,input_tokens,output_tokens`).
    Csv,
    /// Azure LLM inference trace 2023.
    AzureLlm,
    /// Azure Functions 2019 invocations per minute.
    AzureFunctions,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Format::Auto,
            "jsonl" => Format::Jsonl,
            "csv" => Format::Csv,
            "azure-llm" => Format::AzureLlm,
            "azure-functions" => Format::AzureFunctions,
            _ => {
                return Err(format!(
                    "unknown trace format {s:?}; expected auto, jsonl, csv, azure-llm or azure-functions"
                ))
            }
        })
    }
}

/// How a trace is read: which part, how fast, and the defaults it lacks.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// Deployment for arrivals that name no model.
    pub deployment: String,
    /// Arrivals before this (trace time) are skipped; the rest start at zero from here.
    pub from: Option<Duration>,
    /// Arrivals from this on are dropped.
    pub to: Option<Duration>,
    /// Multiplies arrival times (0.5 = twice as fast).
    pub time_scale: f64,
    /// Seed for spreading per-minute counts.
    pub seed: u64,
    /// Azure Functions: keep the N busiest functions (0 = all).
    pub top: usize,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            deployment: "default".into(),
            from: None,
            to: None,
            time_scale: 1.0,
            seed: 1,
            top: 0,
        }
    }
}

/// A stream of arrivals in time order.
pub trait TraceReader {
    /// The next arrival, an error, or `None` at the end.
    fn next_arrival(&mut self) -> Option<Result<Arrival, TraceError>>;
    /// Deployment names seen so far (index = `Arrival::deployment`).
    fn deployments(&self) -> &[String];
}

/// Opens `path` in `format` (guessed when `Auto`).
pub fn open(
    path: &Path,
    format: Format,
    options: &TraceOptions,
) -> Result<Box<dyn TraceReader>, TraceError> {
    let format = match format {
        Format::Auto => guess(path)?,
        f => f,
    };
    if options.time_scale <= 0.0 || !options.time_scale.is_finite() {
        return Err(TraceError::Options(
            "--time-scale must be a positive number".into(),
        ));
    }
    Ok(match format {
        Format::AzureFunctions => Box::new(AzureFunctions::open(path, options)?),
        f => Box::new(LineTrace::open(path, f, options)?),
    })
}

fn guess(path: &Path) -> Result<Format, TraceError> {
    let io = |source| TraceError::Io {
        file: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(file), &mut first).map_err(io)?;
    let first = first.trim_start();
    Ok(if first.starts_with('{') {
        Format::Jsonl
    } else if first.starts_with("TIMESTAMP,") {
        Format::AzureLlm
    } else if first.starts_with("HashFunction,") {
        Format::AzureFunctions
    } else {
        Format::Csv
    })
}

/// Applies `--from`, `--to` and `--time-scale` to a trace time; `None` = outside the range.
pub(crate) fn window(t: Duration, options: &TraceOptions) -> Option<Duration> {
    if options.from.is_some_and(|from| t < from) || options.to.is_some_and(|to| t >= to) {
        return None;
    }
    let t = t.saturating_sub(options.from.unwrap_or_default());
    Some(t.mul_f64(options.time_scale))
}
