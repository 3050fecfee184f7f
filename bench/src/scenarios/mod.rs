//! The scenarios of the benchmark, each against a real `runtime serve`, and the baselines
//! they are compared with. Every load loop is bounded in time and count and stops by itself.

pub mod actions;
pub mod bank;
pub mod calls;
pub mod chat;
pub mod dashboard;
pub mod fanout;
pub mod nodes;
pub mod postgres;
pub mod rocks;
pub mod scale;
pub mod scheduler;

use crate::report::Row;
use crate::server::{workspace_root, RuntimeServer};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every scenario, in the order they run.
pub const ALL: [&str; 10] = [
    "baseline",
    "chat-send",
    "bank-transfer",
    "fanout",
    "calls",
    "scale",
    "scheduler",
    "actions",
    "dashboard",
    "nodes",
];

/// The app of the `scheduler` and `actions` scenarios (a guest crate of the bench's own).
pub const JOBS_APP: &str = "bench/apps/jobs";

/// Concurrent clients of the throughput scenarios.
pub const CLIENTS: usize = 64;
/// Accounts of the bank.
pub const ACCOUNTS: usize = 100_000;
/// Chat-sized message bodies, in bytes.
pub const BODY_BYTES: usize = 48;

/// What the scenarios share: settings, the binary, where data and logs go, the client
/// runtime, and the rows measured so far (later scenarios compare with earlier rows).
pub struct Context {
    pub quick: bool,
    /// How long each throughput case runs, when not the default (`bench --seconds N`).
    pub seconds: Option<u64>,
    pub runtime: PathBuf,
    /// A fresh folder for stores; removed at the end.
    pub data: PathBuf,
    /// Server logs.
    pub logs: PathBuf,
    pub clients: tokio::runtime::Runtime,
    pub rows: Vec<Row>,
    pub skipped: Vec<String>,
}

impl Context {
    /// How long each throughput case runs.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds.unwrap_or(if self.quick { 2 } else { 5 }))
    }

    pub fn app(&self, app: &str) -> PathBuf {
        workspace_root().join(app)
    }

    /// `runtime serve APP` over a store in `data/NAME` (fresh unless it was used before).
    pub fn serve(&self, app: &str, name: &str) -> Result<RuntimeServer, String> {
        self.serve_with(app, name, &[])
    }

    /// [`Context::serve`] with more flags of `runtime serve`.
    pub fn serve_with(
        &self,
        app: &str,
        name: &str,
        flags: &[&str],
    ) -> Result<RuntimeServer, String> {
        RuntimeServer::start_with(
            &self.runtime,
            &self.app(app),
            &self.data.join(name),
            &self.logs.join(format!("{name}.log")),
            flags,
        )
    }

    pub fn push(&mut self, row: Row) {
        println!("  {}", one_line(&row));
        self.rows.push(row);
    }

    /// A row measured earlier in this run.
    pub fn find(&self, scenario: &str, case: &str) -> Option<Row> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.case == case)
            .cloned()
    }

    pub fn store_dir(&self, name: &str) -> PathBuf {
        self.data.join(name)
    }

    pub fn data(&self) -> &Path {
        &self.data
    }
}

/// A row as it is measured, for the progress log.
fn one_line(row: &Row) -> String {
    let mut parts = vec![format!("{} {}:", row.scenario, row.case)];
    if let Some(v) = row.ops_per_s {
        parts.push(format!("{v:.0}/s"));
    }
    if let Some(l) = &row.latency {
        parts.push(format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.p50_ms, l.p99_ms, l.max_ms
        ));
    }
    if let (Some(v), Some(u)) = (row.value, &row.unit) {
        parts.push(format!("{v:.2} {u}"));
    }
    if !row.note.is_empty() {
        parts.push(format!("({})", row.note));
    }
    parts.join(" ")
}
