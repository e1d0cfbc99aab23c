//! Line-oriented traces: generic JSON Lines, generic CSV with a header, and the Azure LLM
//! inference trace 2023. Read one line at a time.

use super::{window, Arrival, Format, TraceError, TraceOptions, TraceReader};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A JSON Lines or CSV trace, streamed.
pub struct LineTrace {
    file: PathBuf,
    reader: BufReader<std::fs::File>,
    format: Format,
    options: TraceOptions,
    line_no: u64,
    buf: String,
    columns: Columns,
    names: Vec<String>,
    index: HashMap<String, usize>,
    last: Option<Duration>,
    /// Index of `--deployment` once seen (rows without a model: no lookup per line).
    default_index: Option<usize>,
    /// Azure LLM: the first timestamp — times are relative to it.
    origin: Option<Duration>,
}

/// Where each field sits in a CSV row.
#[derive(Debug, Default, Clone, Copy)]
struct Columns {
    t: usize,
    model: Option<usize>,
    input: Option<usize>,
    output: Option<usize>,
}

/// A parsed line: (trace time, model, input tokens, output tokens, prompt prefix).
type Parsed = (Duration, Option<String>, u32, u32, Option<u64>);

/// One JSON Lines record (extra fields ignored).
#[derive(serde::Deserialize)]
struct Record<'a> {
    t_ms: f64,
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    input_tokens: u32,
    #[serde(default)]
    output_tokens: u32,
    /// The prompt's prefix, as one id.
    #[serde(default)]
    prefix_hash: Option<u64>,
    /// The prompt's prefix blocks (Mooncake's traces): the first one keys the prefix.
    #[serde(default)]
    hash_ids: Option<Vec<u64>>,
}

impl LineTrace {
    /// Opens a line trace; CSV formats read their header here.
    pub fn open(path: &Path, format: Format, options: &TraceOptions) -> Result<Self, TraceError> {
        let file = std::fs::File::open(path).map_err(|source| TraceError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        let mut trace = LineTrace {
            file: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 16, file),
            format,
            options: options.clone(),
            line_no: 0,
            buf: String::new(),
            columns: Columns::default(),
            names: Vec::new(),
            index: HashMap::new(),
            last: None,
            default_index: None,
            origin: None,
        };
        if format != Format::Jsonl {
            trace.read_header()?;
        }
        Ok(trace)
    }

    fn read_header(&mut self) -> Result<(), TraceError> {
        if !self.read_line()? {
            return Err(self.error("empty file: a header line was expected".into()));
        }
        let header: Vec<String> = self
            .buf
            .trim()
            .split(',')
            .map(|h| h.trim().to_string())
            .collect();
        let find = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
        let (t, input, output) = match self.format {
            Format::AzureLlm => (
                find(&["TIMESTAMP"]),
                find(&["ContextTokens"]),
                find(&["GeneratedTokens"]),
            ),
            _ => (
                find(&["t_ms"]),
                find(&["input_tokens"]),
                find(&["output_tokens"]),
            ),
        };
        let Some(t) = t else {
            let want = if self.format == Format::AzureLlm {
                "TIMESTAMP"
            } else {
                "t_ms"
            };
            return Err(self.error(format!(
                "the header has no {want} column: {}",
                self.buf.trim()
            )));
        };
        self.columns = Columns {
            t,
            model: find(&["model"]),
            input,
            output,
        };
        Ok(())
    }

    fn read_line(&mut self) -> Result<bool, TraceError> {
        self.buf.clear();
        let n = self
            .reader
            .read_line(&mut self.buf)
            .map_err(|source| TraceError::Io {
                file: self.file.clone(),
                source,
            })?;
        self.line_no += 1;
        Ok(n > 0)
    }

    fn error(&self, message: String) -> TraceError {
        TraceError::Line {
            file: self.file.clone(),
            line: self.line_no,
            message,
        }
    }

    fn deployment_index(&mut self, model: Option<&str>) -> usize {
        if model.is_none_or(str::is_empty) {
            if let Some(i) = self.default_index {
                return i;
            }
        }
        let name = model
            .filter(|m| !m.is_empty())
            .unwrap_or(&self.options.deployment);
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len();
        if name == self.options.deployment {
            self.default_index = Some(i);
        }
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        i
    }

    /// Parses the current line: (trace time, model, input, output, prefix).
    fn parse(&mut self) -> Result<Parsed, String> {
        let line = self.buf.trim();
        if self.format == Format::Jsonl {
            let r: Record =
                serde_json::from_str(line).map_err(|e| format!("not a trace record: {e}"))?;
            let prefix = r
                .prefix_hash
                .or_else(|| r.hash_ids.as_ref().and_then(|ids| ids.first().copied()));
            return Ok((
                ms(r.t_ms)?,
                r.model.map(|m| m.into_owned()),
                r.input_tokens,
                r.output_tokens,
                prefix,
            ));
        }
        // Up to 16 columns on the stack: no allocation per line.
        let mut fields = [""; 16];
        let mut count = 0;
        for field in line.split(',') {
            if count < fields.len() {
                fields[count] = field.trim();
            }
            count += 1;
        }
        let fields = &fields[..count.min(16)];
        let get = |i: usize, what: &str| {
            fields
                .get(i)
                .copied()
                .ok_or_else(|| format!("no {what} field"))
        };
        let int = |col: Option<usize>, what: &str| -> Result<u32, String> {
            match col {
                None => Ok(0),
                Some(i) => get(i, what)?
                    .parse()
                    .map_err(|_| format!("{what} is not a whole number: {:?}", fields[i])),
            }
        };
        let raw_t = get(self.columns.t, "time")?;
        let t = if self.format == Format::AzureLlm {
            let secs = parse_timestamp(raw_t).ok_or_else(|| {
                format!("TIMESTAMP is not YYYY-MM-DD HH:MM:SS.fffffff: {raw_t:?}")
            })?;
            let origin = *self.origin.get_or_insert(secs);
            secs.checked_sub(origin).ok_or_else(|| {
                format!("arrivals must be sorted by time: {raw_t} is before the first row")
            })?
        } else {
            ms(raw_t
                .parse()
                .map_err(|_| format!("t_ms is not a number: {raw_t:?}"))?)?
        };
        let model = match self.columns.model {
            Some(i) => Some(get(i, "model")?.to_string()),
            None => None,
        };
        Ok((
            t,
            model,
            int(self.columns.input, "input_tokens")?,
            int(self.columns.output, "output_tokens")?,
            None,
        ))
    }
}

fn ms(v: f64) -> Result<Duration, String> {
    if v.is_finite() && v >= 0.0 {
        Ok(Duration::from_secs_f64(v / 1000.0))
    } else {
        Err(format!("t_ms must be a number ≥ 0, got {v}"))
    }
}

/// Time since 1970 of `YYYY-MM-DD HH:MM:SS[.fraction]` (UTC, up to 9 fraction digits), exact
/// to the nanosecond.
pub(crate) fn parse_timestamp(s: &str) -> Option<Duration> {
    let (date, time) = s.split_once(' ')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, u32, u32) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let time = time.strip_suffix("+00:00").unwrap_or(time);
    let mut t = time.split(':');
    let (hh, mm): (u64, u64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let seconds = t.next()?;
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let ss: u64 = whole.parse().ok()?;
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Right-pad to nanoseconds without formatting: "68059" → 680590000.
    let nanos = fraction
        .bytes()
        .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'))
        * 10u32.pow(9 - fraction.len() as u32);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(Duration::new(
        days * 86_400 + hh * 3600 + mm * 60 + ss,
        nanos,
    ))
}

impl TraceReader for LineTrace {
    fn next_arrival(&mut self) -> Option<Result<Arrival, TraceError>> {
        loop {
            match self.read_line() {
                Err(e) => return Some(Err(e)),
                Ok(false) => return None,
                Ok(true) => {}
            }
            if self.buf.trim().is_empty() {
                continue;
            }
            let (t, model, input_tokens, output_tokens, prefix) = match self.parse() {
                Ok(v) => v,
                Err(message) => return Some(Err(self.error(message))),
            };
            if let Some(last) = self.last.filter(|last| t < *last) {
                return Some(Err(self.error(format!(
                    "arrivals must be sorted by time: {:.3} s comes after {:.3} s",
                    t.as_secs_f64(),
                    last.as_secs_f64()
                ))));
            }
            self.last = Some(t);
            let Some(at) = window(t, &self.options) else {
                if self.options.to.is_some_and(|to| t >= to) {
                    return None;
                }
                continue;
            };
            let deployment = self.deployment_index(model.as_deref());
            return Some(Ok(Arrival {
                at,
                deployment,
                input_tokens,
                output_tokens,
                service: None,
                prefix,
            }));
        }
    }

    fn deployments(&self) -> &[String] {
        &self.names
    }
}
