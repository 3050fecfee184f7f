//! Per-call state held by the wasmtime `Store`: the transaction, handles, logs, the outcome,
//! and the memory limiter. A fresh one per call, so nothing leaks from one call to the next.

use super::error::Violation;
use super::{ActionServices, FunctionInfo};
use crate::caller::Identity;
use crate::store::{Store, Transaction};
use ferrovex_model::abi::{AppSchema, MAX_LIVE_HANDLES};
use ferrovex_model::limits::MAX_UNREAD_HANDLE_BYTES;
use ferrovex_model::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::{Memory, ResourceLimiter};

/// Which entry point runs, which decides what `output` may carry and whether `db_*` may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Describe,
    Schema,
    AuthConfig,
    Crons,
    Query,
    Mutation,
    /// An action or an HTTP action: no transaction, real time and randomness, and the
    /// imports that reach outside (`run_function`, `fetch`, `env_var`).
    Action,
}

impl Entry {
    pub fn name(self) -> &'static str {
        match self {
            Entry::Describe => "a describe export",
            Entry::Schema => "the schema export",
            Entry::AuthConfig => "the auth-config export",
            Entry::Crons => "the crons export",
            Entry::Query => "a query",
            Entry::Mutation => "a mutation",
            Entry::Action => "an action",
        }
    }
}

pub struct CallState {
    pub entry: Entry,
    /// `None` for describe and schema entries, which have no database.
    pub tx: Option<Transaction>,
    pub store: Option<Arc<Store>>,
    pub schema: Arc<AppSchema>,
    /// The module's functions, which `schedule` checks a path against.
    pub functions: Arc<BTreeMap<String, FunctionInfo>>,
    /// What an action reaches outside its instance; `None` for every other entry.
    pub services: Option<Arc<dyn ActionServices>>,
    /// Jobs this call scheduled, bounded by `MAX_JOBS_SCHEDULED_PER_CALL`.
    pub jobs_scheduled: usize,
    pub memory: Option<Memory>,
    pub handles: Handles,
    pub logs: Vec<String>,
    pub output: Option<(i32, Value)>,
    pub panic_message: Option<String>,
    pub now_ms: f64,
    pub seed: u64,
    /// The caller's identity, for `auth_identity`.
    pub identity: Option<Identity>,
    pub limiter: MemoryLimiter,
    /// Where the call's paginated reads ended last time, in the order they ran (the query's
    /// journal, passed back by the client): each keeps its end, so pages stay gapless.
    pub page_ends_in: Vec<Vec<u8>>,
    /// Where this call's paginated reads ended, in order: its journal.
    pub page_ends_out: Vec<Vec<u8>>,
}

impl CallState {
    pub fn new(
        entry: Entry,
        memory_limit: usize,
        schema: Arc<AppSchema>,
        functions: Arc<BTreeMap<String, FunctionInfo>>,
    ) -> Self {
        CallState {
            entry,
            tx: None,
            store: None,
            schema,
            functions,
            services: None,
            jobs_scheduled: 0,
            memory: None,
            handles: Handles::default(),
            logs: Vec::new(),
            output: None,
            panic_message: None,
            now_ms: 0.0,
            seed: 0,
            identity: None,
            limiter: MemoryLimiter { max: memory_limit },
            page_ends_in: Vec::new(),
            page_ends_out: Vec::new(),
        }
    }
}

/// Bytes the host holds for the guest until it reads them. Handle `n` is slot `n - 1`; a
/// slot is emptied when read, so a stale handle is as unknown as a forged one.
#[derive(Default)]
pub struct Handles {
    slots: Vec<Option<Slot>>,
    live: usize,
    /// Bytes of the answers held unread, bounded by `MAX_UNREAD_HANDLE_BYTES`.
    answer_bytes: usize,
}

struct Slot {
    bytes: Vec<u8>,
    /// An import's answer, charged to `answer_bytes` (the call's arguments are not: they are
    /// bounded by `MAX_ARGS_OR_RESULT_BYTES` before the call).
    answer: bool,
}

impl Handles {
    /// Holds the call's arguments for the guest to read.
    pub fn insert_arguments(&mut self, bytes: Vec<u8>) -> (u32, u32) {
        self.push(bytes, false)
    }

    /// Holds `bytes`, the answer of `import`, for the guest to read.
    pub fn insert(
        &mut self,
        import: &'static str,
        bytes: Vec<u8>,
    ) -> Result<(u32, u32), Violation> {
        if self.live >= MAX_LIVE_HANDLES {
            return Err(Violation::TooManyHandles {
                max: MAX_LIVE_HANDLES,
            });
        }
        // An answer is never refused for its own size (reads are bounded by the read limits,
        // and one page may be large): only answers held unread count, with the new one.
        let held = self.answer_bytes;
        if held > 0 && held + bytes.len() > MAX_UNREAD_HANDLE_BYTES {
            return Err(Violation::UnreadHandleBytes {
                import,
                held,
                adding: bytes.len(),
            });
        }
        self.answer_bytes += bytes.len();
        Ok(self.push(bytes, true))
    }

    fn push(&mut self, bytes: Vec<u8>, answer: bool) -> (u32, u32) {
        let len = bytes.len() as u32;
        self.slots.push(Some(Slot { bytes, answer }));
        self.live += 1;
        (self.slots.len() as u32, len)
    }

    /// Takes the bytes of `handle` if it is live and holds exactly `len` bytes.
    pub fn take(&mut self, handle: u32, len: u32) -> Result<Vec<u8>, Violation> {
        let slot = (handle as usize)
            .checked_sub(1)
            .and_then(|i| self.slots.get_mut(i))
            .ok_or(Violation::UnknownHandle { handle })?;
        let expected = slot
            .as_ref()
            .ok_or(Violation::UnknownHandle { handle })?
            .bytes
            .len() as u32;
        if expected != len {
            return Err(Violation::HandleLength {
                handle,
                expected,
                given: len,
            });
        }
        let Slot { bytes, answer } = slot.take().expect("checked above");
        self.live -= 1;
        if answer {
            self.answer_bytes -= bytes.len();
        }
        Ok(bytes)
    }
}

/// Caps guest memory; growing past the cap traps with a `MemoryLimit` violation instead of
/// returning -1, so the caller learns which limit was hit.
pub struct MemoryLimiter {
    pub max: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            return Err(wasmtime::Error::new(Violation::MemoryLimit {
                max: self.max,
                requested: desired,
            }));
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; the pool caps their size.
        Ok(desired <= 100_000)
    }
}
