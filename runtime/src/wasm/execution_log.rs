//! Every function execution, as `runtime logs` shows it: when, which function, how long,
//! how it ended, and its log lines. The newest [`RECENT_EXECUTIONS`] are kept for a reader
//! that connects later, at most `MAX_EXECUTION_LOG_BYTES` of them in all; live readers get
//! each one as it ends. A reader that falls behind loses the oldest (and is told how many),
//! so a slow reader never holds memory. A record keeps at most `MAX_ERROR_MESSAGE_BYTES` of
//! log lines (the caller got them all), so the live channel's buffer is bounded too.

use crate::metrics::FunctionMetrics;
use ferrovex_model::limits::{MAX_ERROR_MESSAGE_BYTES, MAX_EXECUTION_LOG_BYTES};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Executions kept for readers that connect later.
pub const RECENT_EXECUTIONS: usize = 1000;

#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionRecord {
    /// When the call started, in milliseconds since the Unix epoch.
    pub started_ms: f64,
    pub path: String,
    /// `query`, `mutation`, `action` or `httpAction`.
    pub kind: &'static str,
    pub duration_us: u64,
    /// `None` for success, or the error message.
    pub error: Option<String>,
    pub log_lines: Vec<String>,
}

impl ExecutionRecord {
    /// The bytes it holds (its text; the rest is small and fixed).
    fn bytes(&self) -> usize {
        self.path.len()
            + self.error.as_ref().map_or(0, String::len)
            + self.log_lines.iter().map(String::len).sum::<usize>()
            + 64
    }

    /// Keeps the first log lines up to `MAX_ERROR_MESSAGE_BYTES` in all, and says how many
    /// were left out.
    fn trim_log_lines(&mut self) {
        let mut kept = 0;
        let mut bytes = 0;
        for line in &self.log_lines {
            if bytes + line.len() > MAX_ERROR_MESSAGE_BYTES {
                break;
            }
            bytes += line.len();
            kept += 1;
        }
        if kept < self.log_lines.len() {
            let cut: Vec<String> = self.log_lines.split_off(kept);
            let cut_bytes: usize = cut.iter().map(String::len).sum();
            self.log_lines.push(format!(
                "[cut: {} more lines, {cut_bytes} bytes, left out of the execution log, MAX_ERROR_MESSAGE_BYTES]",
                cut.len()
            ));
        }
    }
}

struct Recent {
    records: VecDeque<Arc<ExecutionRecord>>,
    bytes: usize,
}

pub struct ExecutionLog {
    recent: Mutex<Recent>,
    live: broadcast::Sender<Arc<ExecutionRecord>>,
    /// Every execution counted per function, whoever reads the log or not.
    metrics: Mutex<FunctionMetrics>,
}

impl Default for ExecutionLog {
    fn default() -> Self {
        ExecutionLog {
            recent: Mutex::new(Recent {
                records: VecDeque::with_capacity(RECENT_EXECUTIONS),
                bytes: 0,
            }),
            live: broadcast::channel(RECENT_EXECUTIONS).0,
            metrics: Mutex::new(FunctionMetrics::default()),
        }
    }
}

impl ExecutionLog {
    pub fn record(&self, mut record: ExecutionRecord) {
        // Counted in the second the call ended, as its record says (no second clock read).
        let ended_s = (record.started_ms / 1000.0) as u64 + record.duration_us / 1_000_000;
        self.metrics.lock().record(
            ended_s,
            &record.path,
            record.kind,
            record.duration_us,
            record.error.is_some(),
        );
        record.trim_log_lines();
        let record = Arc::new(record);
        let size = record.bytes();
        let mut recent = self.recent.lock();
        while recent.records.len() == RECENT_EXECUTIONS
            || (!recent.records.is_empty() && recent.bytes + size > MAX_EXECUTION_LOG_BYTES)
        {
            let oldest = recent.records.pop_front().expect("not empty");
            recent.bytes -= oldest.bytes();
        }
        recent.bytes += size;
        recent.records.push_back(record.clone());
        // Sent under the lock, so a reader that subscribes and copies `recent` under it sees
        // every execution exactly once. No readers is not an error.
        let _ = self.live.send(record);
    }

    /// Reads every function's figures (calls, errors, latencies) under the log's lock.
    pub fn with_metrics<T>(&self, read: impl FnOnce(&FunctionMetrics) -> T) -> T {
        read(&self.metrics.lock())
    }

    /// The executions kept so far, and a receiver of every later one.
    pub fn follow(
        &self,
    ) -> (
        Vec<Arc<ExecutionRecord>>,
        broadcast::Receiver<Arc<ExecutionRecord>>,
    ) {
        let recent = self.recent.lock();
        (
            recent.records.iter().cloned().collect(),
            self.live.subscribe(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(error_bytes: usize, lines: usize, line_bytes: usize) -> ExecutionRecord {
        ExecutionRecord {
            started_ms: 0.0,
            path: "m:f".into(),
            kind: "query",
            duration_us: 1,
            error: Some("e".repeat(error_bytes)),
            log_lines: vec!["l".repeat(line_bytes); lines],
        }
    }

    #[test]
    fn the_log_is_bounded_in_bytes_and_a_record_in_log_lines() {
        let log = ExecutionLog::default();
        // Records of about 128 KiB each: the byte bound, not the count, decides.
        for _ in 0..RECENT_EXECUTIONS {
            log.record(record(MAX_ERROR_MESSAGE_BYTES, 256, 16 * 1024));
        }
        let (kept, _) = log.follow();
        let bytes: usize = kept.iter().map(|r| r.bytes()).sum();
        assert!(bytes <= MAX_EXECUTION_LOG_BYTES, "{bytes}");
        assert!(
            kept.len() < RECENT_EXECUTIONS && kept.len() > 400,
            "{}",
            kept.len()
        );
        let lines = &kept[0].log_lines;
        assert_eq!(lines.len(), 5, "four whole lines and the marker");
        assert_eq!(
            lines[4],
            "[cut: 252 more lines, 4128768 bytes, left out of the execution log, MAX_ERROR_MESSAGE_BYTES]"
        );
        // Small records: the count decides.
        for _ in 0..RECENT_EXECUTIONS + 10 {
            log.record(record(10, 1, 10));
        }
        assert_eq!(log.follow().0.len(), RECENT_EXECUTIONS);
    }
}
