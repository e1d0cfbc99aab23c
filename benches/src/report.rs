//! The side-by-side table: one column per target, one row per figure, each followed by its
//! comparisons — throughput as a ratio to direct and to nginx, latency as what the proxy adds
//! over direct, costs (CPU, memory) as a ratio to nginx.

/// The figures the benchmark reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Figure {
    /// Requests per second at saturation, 1 KiB chat body.
    Rps1k,
    /// Requests per second at saturation, 64 KiB chat body.
    Rps64k,
    /// Proxy CPU microseconds per request at saturation (1 KiB).
    CpuSaturated,
    /// Proxy CPU microseconds per request at a fixed 1,000 req/s.
    CpuAt1k,
    /// Median latency at a fixed 1,000 req/s, ms.
    P50At1k,
    /// 99th percentile latency at a fixed 1,000 req/s, ms.
    P99At1k,
    /// Median latency at a fixed 200 req/s, ms.
    P50At200,
    /// 99th percentile latency at a fixed 200 req/s, ms.
    P99At200,
    /// Median time to the first byte of an SSE stream, ms.
    SseFirstByte,
    /// Resident KiB per idle keep-alive connection.
    RssIdle,
    /// Resident KiB per open SSE stream.
    RssStream,
}

enum Kind {
    Throughput,
    Latency,
    Cost,
}

impl Figure {
    const ALL: [Figure; 11] = [
        Figure::Rps1k,
        Figure::Rps64k,
        Figure::CpuSaturated,
        Figure::CpuAt1k,
        Figure::P50At1k,
        Figure::P99At1k,
        Figure::P50At200,
        Figure::P99At200,
        Figure::SseFirstByte,
        Figure::RssIdle,
        Figure::RssStream,
    ];

    fn label(self) -> &'static str {
        match self {
            Figure::Rps1k => "req/s, 1 KiB body",
            Figure::Rps64k => "req/s, 64 KiB body",
            Figure::CpuSaturated => "CPU µs/req, saturated",
            Figure::CpuAt1k => "CPU µs/req at 1k req/s",
            Figure::P50At1k => "p50 ms at 1k req/s",
            Figure::P99At1k => "p99 ms at 1k req/s",
            Figure::P50At200 => "p50 ms at 200 req/s",
            Figure::P99At200 => "p99 ms at 200 req/s",
            Figure::SseFirstByte => "SSE first byte p50 ms",
            Figure::RssIdle => "KiB per idle connection",
            Figure::RssStream => "KiB per open stream",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Figure::Rps1k | Figure::Rps64k => Kind::Throughput,
            Figure::P50At1k
            | Figure::P99At1k
            | Figure::P50At200
            | Figure::P99At200
            | Figure::SseFirstByte => Kind::Latency,
            _ => Kind::Cost,
        }
    }
}

/// Figures by target, filled in as they are measured.
pub struct Table {
    targets: Vec<String>,
    values: Vec<[Option<f64>; Figure::ALL.len()]>,
}

impl Table {
    /// An empty table with one column per target, in this order (`direct` first if present).
    pub fn new(targets: &[&str]) -> Self {
        Table {
            targets: targets.iter().map(|t| t.to_string()).collect(),
            values: vec![[None; Figure::ALL.len()]; targets.len()],
        }
    }

    /// Records a figure of target number `target`.
    pub fn set(&mut self, figure: Figure, target: usize, value: f64) {
        if let Some(row) = self.values.get_mut(target) {
            row[figure as usize] = Some(value).filter(|v| v.is_finite());
        }
    }

    fn get(&self, figure: Figure, name: &str) -> Option<f64> {
        let i = self.targets.iter().position(|t| t == name)?;
        // A ratio to nothing says nothing (nginx preallocates its connections: 0 KiB each).
        self.values[i][figure as usize].filter(|v| *v > 0.0)
    }

    /// Prints the table (markdown, so README can keep it as printed).
    pub fn print(&self) {
        let mut header = String::from("| figure |");
        let mut rule = String::from("|---|");
        for t in &self.targets {
            header.push_str(&format!(" {t} |"));
            rule.push_str("---|");
        }
        println!("{header}\n{rule}");
        for figure in Figure::ALL {
            let cells: Vec<Option<f64>> = (0..self.targets.len())
                .map(|i| self.values[i][figure as usize])
                .collect();
            if cells.iter().all(Option::is_none) {
                continue;
            }
            self.row(figure.label(), &cells, |v| format_value(figure, v));
            let direct = self.get(figure, "direct");
            let nginx = self.get(figure, "nginx");
            match figure.kind() {
                Kind::Throughput => {
                    if let Some(d) = direct {
                        self.row("  × direct", &cells, |v| format!("{:.2}", v / d));
                    }
                    if let Some(n) = nginx {
                        self.row("  × nginx", &cells, |v| format!("{:.2}", v / n));
                    }
                }
                Kind::Latency => {
                    if let Some(d) = direct {
                        self.row("  added µs", &cells, |v| {
                            format!("{:.0}", (v - d) * 1000.0)
                        });
                    }
                }
                Kind::Cost => {
                    if let Some(n) = nginx {
                        self.row("  × nginx", &cells, |v| format!("{:.2}", v / n));
                    }
                }
            }
        }
    }

    fn row(&self, label: &str, cells: &[Option<f64>], show: impl Fn(f64) -> String) {
        let mut line = format!("| {label} |");
        for cell in cells {
            line.push_str(&format!(" {} |", cell.map_or("—".to_string(), &show)));
        }
        println!("{line}");
    }
}

fn format_value(figure: Figure, v: f64) -> String {
    match figure.kind() {
        Kind::Throughput => format!("{v:.0}"),
        Kind::Latency => format!("{v:.3}"),
        Kind::Cost => format!("{v:.1}"),
    }
}
