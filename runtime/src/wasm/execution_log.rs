//! Every function execution, as `runtime logs` shows it: when, which function, how long,
//! how it ended, and its log lines. The newest [`RECENT_EXECUTIONS`] are kept for a reader
//! that connects later; live readers get each one as it ends. A reader that falls behind
//! loses the oldest (and is told how many), so a slow reader never holds memory.

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
    /// `query` or `mutation`.
    pub kind: &'static str,
    pub duration_us: u64,
    /// `None` for success, or the error message.
    pub error: Option<String>,
    pub log_lines: Vec<String>,
}

pub struct ExecutionLog {
    recent: Mutex<VecDeque<Arc<ExecutionRecord>>>,
    live: broadcast::Sender<Arc<ExecutionRecord>>,
}

impl Default for ExecutionLog {
    fn default() -> Self {
        ExecutionLog {
            recent: Mutex::new(VecDeque::with_capacity(RECENT_EXECUTIONS)),
            live: broadcast::channel(RECENT_EXECUTIONS).0,
        }
    }
}

impl ExecutionLog {
    pub fn record(&self, record: ExecutionRecord) {
        let record = Arc::new(record);
        let mut recent = self.recent.lock();
        if recent.len() == RECENT_EXECUTIONS {
            recent.pop_front();
        }
        recent.push_back(record.clone());
        // Sent under the lock, so a reader that subscribes and copies `recent` under it sees
        // every execution exactly once. No readers is not an error.
        let _ = self.live.send(record);
    }

    /// The executions kept so far, and a receiver of every later one.
    pub fn follow(
        &self,
    ) -> (
        Vec<Arc<ExecutionRecord>>,
        broadcast::Receiver<Arc<ExecutionRecord>>,
    ) {
        let recent = self.recent.lock();
        (recent.iter().cloned().collect(), self.live.subscribe())
    }
}
