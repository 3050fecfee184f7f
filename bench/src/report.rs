//! What a run found: one row per measured case, printed as one table, written as JSON, and
//! drawn as SVG plots (see [`crate::svg`]).

use crate::stats::Latency;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// Seconds of CPU the server and the clients spent over a measured stretch
/// (`server::CpuMeter`); `None` where /proc could not be read.
pub struct CpuSpent {
    pub server: Option<f64>,
    pub clients: Option<f64>,
}

/// One measured case of a scenario.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    /// `chat-send`, `bank-transfer`, `fanout`, `calls`, `scale`, `scheduler`, `actions`,
    /// `dashboard`, `nodes` or `baseline`.
    pub scenario: String,
    pub case: String,
    /// Operations per second, for throughput cases.
    pub ops_per_s: Option<f64>,
    pub latency: Option<Latency>,
    /// A figure that is neither a rate nor a latency (seconds to restart, bytes per
    /// connection), with its unit.
    pub value: Option<f64>,
    pub unit: Option<String>,
    /// How this case compares with its baselines: `value` is this case's figure divided by
    /// the baseline's, `what` says which figures.
    pub ratios: Vec<Ratio>,
    pub note: String,
    /// For cost-against-load plots: the line this row belongs to and its load (subscribers,
    /// documents).
    pub series: Option<String>,
    pub load: Option<f64>,
    /// The server's CPU time (user and system, every thread) over the calls it answered,
    /// in microseconds: the figure to compare per core with other systems.
    pub cpu_us_per_call: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub baseline: String,
    pub value: f64,
    /// `throughput` (higher is better: 1.0 is the baseline's rate) or `latency` (lower is
    /// better: 1.0 is the baseline's time).
    pub what: &'static str,
}

impl Row {
    pub fn new(scenario: &str, case: impl Into<String>) -> Row {
        Row {
            scenario: scenario.into(),
            case: case.into(),
            ..Row::default()
        }
    }

    pub fn throughput(mut self, ops_per_s: f64) -> Row {
        self.ops_per_s = Some(ops_per_s);
        self
    }

    pub fn latency(mut self, latency: Latency) -> Row {
        self.latency = Some(latency);
        self
    }

    pub fn value(mut self, value: f64, unit: &str) -> Row {
        self.value = Some(value);
        self.unit = Some(unit.into());
        self
    }

    pub fn at_load(mut self, series: &str, load: f64) -> Row {
        self.series = Some(series.into());
        self.load = Some(load);
        self
    }

    /// The server's CPU microseconds per call: `cpu_seconds` of CPU time for `calls` calls.
    pub fn cpu_per_call(mut self, cpu_seconds: f64, calls: usize) -> Row {
        if calls > 0 {
            self.cpu_us_per_call = Some(cpu_seconds * 1e6 / calls as f64);
        }
        self
    }

    /// The server's CPU per call, and the clients' added to the note (`CpuMeter`).
    pub fn cpu_spent(mut self, spent: &CpuSpent, calls: usize) -> Row {
        if let Some(cpu) = spent.server {
            self = self.cpu_per_call(cpu, calls);
        }
        if let Some(cpu) = spent.clients.filter(|_| calls > 0) {
            let per_call = cpu * 1e6 / calls as f64;
            self.note
                .push_str(&format!("; the clients' CPU {per_call:.0} us per call"));
        }
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    /// This row's throughput against a baseline row's.
    pub fn throughput_ratio(mut self, baseline: &Row) -> Row {
        if let (Some(a), Some(b)) = (self.ops_per_s, baseline.ops_per_s) {
            if b > 0.0 {
                self.ratios.push(Ratio {
                    baseline: baseline.label(),
                    value: a / b,
                    what: "throughput",
                });
            }
        }
        self
    }

    /// This row's p50 latency against a baseline figure in milliseconds.
    pub fn latency_ratio(mut self, baseline: impl Into<String>, baseline_ms: f64) -> Row {
        if let (Some(latency), true) = (&self.latency, baseline_ms > 0.0) {
            self.ratios.push(Ratio {
                baseline: baseline.into(),
                value: latency.p50_ms / baseline_ms,
                what: "latency",
            });
        }
        self
    }

    /// This row's value against a baseline value (same unit).
    pub fn value_ratio(mut self, baseline: impl Into<String>, baseline_value: f64) -> Row {
        if let (Some(v), true) = (self.value, baseline_value > 0.0) {
            self.ratios.push(Ratio {
                baseline: baseline.into(),
                value: v / baseline_value,
                what: "latency",
            });
        }
        self
    }

    pub fn label(&self) -> String {
        if self.scenario == "baseline" {
            self.case.clone()
        } else {
            format!("{} {}", self.scenario, self.case)
        }
    }
}

/// The machine a run came from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// /proc/loadavg when the run started and ended: other work on the machine shows here.
    pub load_at_start: String,
    pub load_at_end: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("unknown")
            .trim()
            .to_owned();
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_at_start: loadavg(),
            load_at_end: String::new(),
        }
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub quick: bool,
    pub machine: Machine,
    pub started_unix_s: u64,
    pub duration_s: f64,
    pub rows: Vec<Row>,
    /// Scenarios or baselines that did not run, and why.
    pub skipped: Vec<String>,
}

fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn ratio_text(r: &Ratio) -> String {
    match r.what {
        "throughput" => format!("{:.2}x the rate of {}", r.value, r.baseline),
        _ => format!("{:.2}x the time of {}", r.value, r.baseline),
    }
}

impl Report {
    /// The table: one line per row, ratios after the figures.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<14} {:<46} {:>9} {:>8} {:>8} {:>8} {:>10} {:>13}  against baselines; note",
            "scenario", "case", "ops/s", "p50 ms", "p99 ms", "max ms", "cpu us/op", "other"
        );
        let _ = writeln!(out, "{}", "-".repeat(131));
        for row in &self.rows {
            let opt = |v: Option<f64>| v.map(num).unwrap_or_else(|| "-".into());
            let latency = row.latency.as_ref();
            let other = match (row.value, &row.unit) {
                (Some(v), Some(u)) => format!("{} {u}", num(v)),
                _ => "-".into(),
            };
            let mut tail: Vec<String> = row.ratios.iter().map(ratio_text).collect();
            if !row.note.is_empty() {
                tail.push(row.note.clone());
            }
            let _ = writeln!(
                out,
                "{:<14} {:<46} {:>9} {:>8} {:>8} {:>8} {:>10} {:>13}  {}",
                row.scenario,
                row.case,
                opt(row.ops_per_s),
                opt(latency.map(|l| l.p50_ms)),
                opt(latency.map(|l| l.p99_ms)),
                opt(latency.map(|l| l.max_ms)),
                opt(row.cpu_us_per_call),
                other,
                tail.join("; "),
            );
        }
        for skipped in &self.skipped {
            let _ = writeln!(out, "not run: {skipped}");
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }
}
