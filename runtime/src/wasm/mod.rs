//! The WebAssembly host: deploys guest modules built with `ferrovex-sdk` and runs each query or
//! mutation call in a fresh wasmtime instance over a store transaction.
//!
//! - [`engine`]: the one engine, its configuration and limits, the epoch ticker.
//! - [`cache`]: compiled modules on disk, keyed by module hash and engine hash.
//! - [`abi_check`]: the ABI version a module declares, and its imports and exports, checked
//!   against `ferrovex_model::abi` at deploy time.
//! - [`imports`]: the host side of every import.
//! - [`state`]: the per-call state (transaction, handles, logs, memory limiter).
//! - [`call`]: one execution and how it ended.
//! - [`build`]: building an app crate to wasm with cargo.
//!
//! Invariants: the guest never touches the store except through `imports`; a query runs on a
//! read-only transaction; a mutation's writes are committed only if the call produced a
//! result, so any failure (its `Err`, a panic, a trap, a limit) leaves nothing written.

// A failed call carries its error and log lines by value: it is the rare path, and callers
// match on it directly.
#![allow(clippy::result_large_err)]

mod abi_check;
pub mod build;
mod cache;
mod call;
mod engine;
pub mod error;
mod execution_log;
mod imports;
mod state;

pub use abi_check::declared_versions;
pub use build::{build_app, BuildError};
pub use cache::module_hash;
pub use engine::HostConfig;
pub use error::{CallError, CallFailure, DeployError, Violation};
pub use execution_log::{ExecutionLog, ExecutionRecord};

use crate::caller::Caller;
use crate::fetch::{FetchError, FetchRequest, FetchResponse};
use crate::jobs;
use crate::store::read_set::ReadSet;
use crate::store::{Stop, Store, StoreError, Timestamp, Transaction};
use call::{Execution, Invocation};
use engine::EpochTicker;
use ferrovex_model::abi::{
    AppSchema, AuthConfig, Crons, FunctionDescription, FunctionKind, HttpRoute, Visibility,
    AUTH_CONFIG_EXPORT, CRONS_EXPORT, MEMORY_EXPORT, SCHEMA_EXPORT,
};
use ferrovex_model::limits::MAX_ARGS_OR_RESULT_BYTES;
use ferrovex_model::DocumentId;
use ferrovex_model::{binary, Value};
use state::{CallState, Entry};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use wasmtime::{Engine, InstancePre, Linker, ModuleExport};

/// The engine, the import linker and the epoch ticker, shared by every deployed module.
pub struct WasmHost {
    engine: Engine,
    linker: Linker<CallState>,
    config: HostConfig,
    /// Every execution, for `runtime logs`.
    pub executions: ExecutionLog,
    /// Calls run, for giving one in `SLOT_RELEASE_EVERY_CALLS` its pages back (`call.rs`).
    calls: std::sync::atomic::AtomicU64,
    _ticker: EpochTicker,
}

/// One function of a deployed module.
#[derive(Clone)]
pub struct FunctionInfo {
    pub path: String,
    pub description: FunctionDescription,
    call_export: ModuleExport,
}

/// A module ready to run: compiled, checked, described, with its `InstancePre`. Cloning is
/// cheap: the compiled code is shared.
#[derive(Clone)]
pub struct DeployedModule {
    /// SHA-256 of the wasm bytes: the module version.
    pub hash: String,
    /// When it was deployed, in milliseconds since the Unix epoch.
    pub deployed_at_ms: f64,
    pub schema: Arc<AppSchema>,
    /// The sign-in providers the app declares (`#[auth_config]`), settings not yet read.
    pub auth_config: Arc<AuthConfig>,
    /// The cron jobs the app declares (`#[crons]`), checked at deploy.
    pub crons: Arc<Crons>,
    functions: Arc<BTreeMap<String, FunctionInfo>>,
    pre: InstancePre<CallState>,
    memory_export: ModuleExport,
}

impl DeployedModule {
    /// Every function, by path.
    pub fn functions(&self) -> impl Iterator<Item = &FunctionInfo> {
        self.functions.values()
    }

    pub fn function(&self, path: &str) -> Option<&FunctionInfo> {
        self.functions.get(path)
    }

    /// The function at `path` if `caller` may call it: an internal function is, to any
    /// caller but an admin, as absent as a function that does not exist.
    pub fn callable(&self, path: &str, caller: &Caller) -> Option<&FunctionInfo> {
        self.functions
            .get(path)
            .filter(|f| caller.admin || f.description.visibility == Visibility::Public)
    }

    /// The HTTP actions' routes, with their functions' paths.
    pub fn routes(&self) -> impl Iterator<Item = (&HttpRoute, &str)> {
        self.functions
            .values()
            .filter_map(|f| Some((f.description.route.as_ref()?, f.path.as_str())))
    }

    /// The paths `caller` may call, for the error that answers an unknown path.
    pub fn callable_paths(&self, caller: &Caller) -> Vec<String> {
        self.functions
            .values()
            .filter(|f| caller.admin || f.description.visibility == Visibility::Public)
            .map(|f| f.path.clone())
            .collect()
    }
}

/// Who a call runs for (its identity, and whether it may call internal functions), frozen
/// time and seed of a call (by default the transaction's time and a seed derived from the
/// function, its arguments and the snapshot), and where its paginated reads ended last time
/// (a query's journal: see `db_scan` in `ferrovex_model::abi`).
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    pub caller: Caller,
    pub now_ms: Option<f64>,
    pub seed: Option<u64>,
    pub page_ends: Vec<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QueryOutcome {
    pub value: Value,
    pub log_lines: Vec<String>,
    /// The snapshot the query read.
    pub ts: Timestamp,
    /// What the result depends on, for subscriptions.
    pub read_set: ReadSet,
    /// Where its paginated reads ended, in order: the journal that keeps its pages' ends
    /// when it runs again. Empty when it paginated nothing.
    pub page_ends: Vec<Vec<u8>>,
}

/// A query execution, successful or not, with what it read.
#[derive(Debug)]
pub struct QueryRun {
    pub outcome: Result<QueryOutcome, CallFailure>,
    /// The snapshot the query read.
    pub ts: Timestamp,
    pub read_set: ReadSet,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MutationOutcome {
    pub value: Value,
    pub log_lines: Vec<String>,
    /// The commit timestamp (the begin timestamp if the mutation wrote nothing).
    pub ts: Timestamp,
}

/// A finished action: its value and log lines.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionOutcome {
    pub value: Value,
    pub log_lines: Vec<String>,
}

/// What an action reaches beyond its own instance, provided by the layer that runs actions
/// (`crate::actions`). Each method blocks its thread (an action runs on the blocking pool).
pub trait ActionServices: Send + Sync {
    /// Runs a query, mutation or action of the same module for the same caller, as a call of
    /// its own.
    fn run_function(
        &self,
        kind: FunctionKind,
        path: &str,
        args: &Value,
    ) -> Result<Value, CallFailure>;
    /// An outbound HTTP request, through the deployment's guard and limits.
    fn fetch(&self, request: FetchRequest) -> Result<FetchResponse, FetchError>;
    /// The deployment's environment variable `name`.
    fn env_var(&self, name: &str) -> Option<String>;
}

/// What makes a mutation run at most once: the key its commit records the outcome under,
/// and whether a run under that key can have committed before the request arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Once {
    pub key: Vec<u8>,
    /// `false` only when no run under `key` can have committed yet: a request its client
    /// has not sent before (a new request id on the first socket of its session,
    /// docs/PROTOCOL.md section 3, guarantee 6). The first attempt of such a request reads
    /// the receipt's absence without looking it up (`Transaction::receipt_absent`); the
    /// lookup, a RocksDB point read of a key that is almost never there, was 2.9-3.6% of
    /// the server's samples in `bench --only chat-send` and `bank-transfer` (BENCHMARKS.md).
    pub maybe_ran: bool,
}

impl Once {
    fn commit_with(&self) -> CommitWith<'_> {
        CommitWith::Receipt {
            key: &self.key,
            maybe_ran: self.maybe_ran,
        }
    }
}

/// What a mutation's commit carries besides the mutation's own writes.
#[derive(Clone, Copy, Debug)]
pub enum CommitWith<'a> {
    Nothing,
    /// Its outcome under this receipt key (exactly once per key). Without `maybe_ran`, the
    /// first attempt reads the receipt's absence without looking it up (see
    /// [`Once::maybe_ran`]); every later attempt looks (`Transaction::earlier_attempts`).
    Receipt {
        key: &'a [u8],
        maybe_ran: bool,
    },
    /// The scheduled job it runs: it runs and commits only while the job is pending, and the
    /// same commit marks the job a success, so a job's mutation commits exactly once.
    Job(DocumentId),
}

impl WasmHost {
    pub fn new(config: HostConfig) -> Result<WasmHost, String> {
        let engine =
            engine::build_engine(&config).map_err(|e| format!("configuring wasmtime: {e:#}"))?;
        let linker =
            imports::linker(&engine).map_err(|e| format!("defining host imports: {e:#}"))?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick);
        Ok(WasmHost {
            engine,
            linker,
            config,
            executions: ExecutionLog::default(),
            calls: Default::default(),
            _ticker: ticker,
        })
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Instances alive right now (pool slots in use): zero whenever no call runs.
    pub fn live_instances(&self) -> u64 {
        self.engine
            .pooling_allocator_metrics()
            .map(|m| m.core_instances())
            .unwrap_or(0)
    }

    /// Bytes the idle memory slots keep mapped for the next call, each at most
    /// `SLOT_KEEP_RESIDENT_BYTES`: what resetting a slot clears on every call.
    pub fn idle_memory_bytes_resident(&self) -> usize {
        self.engine
            .pooling_allocator_metrics()
            .map(|m| m.unused_memory_bytes_resident())
            .unwrap_or(0)
    }

    /// Compiles (or loads from the cache) and checks a module, asks it to describe its
    /// functions and schema, and declares the schema's indexes in `store`.
    pub fn deploy(&self, store: &Store, wasm: &[u8]) -> Result<DeployedModule, DeployError> {
        abi_check::check_version(wasm)?;
        let hash = module_hash(wasm);
        let module =
            cache::load_or_compile(&self.engine, self.config.cache_dir.as_deref(), wasm, &hash)
                .map_err(DeployError::Compile)?;
        let checked = abi_check::check(&module).map_err(DeployError::Abi)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| DeployError::Abi(vec![format!("{e:#}")]))?;
        let export = |name: &str| module.get_export_index(name).expect("checked by abi_check");
        let mut deployed = DeployedModule {
            hash,
            deployed_at_ms: crate::metrics::now_ms(),
            schema: Arc::new(AppSchema::default()),
            auth_config: Arc::new(AuthConfig::default()),
            crons: Arc::new(Crons::default()),
            functions: Arc::new(BTreeMap::new()),
            pre,
            memory_export: export(MEMORY_EXPORT),
        };
        if checked.has_schema {
            let value = self.describe(
                &deployed,
                Entry::Schema,
                &export(SCHEMA_EXPORT),
                SCHEMA_EXPORT,
            )?;
            let schema = AppSchema::from_value(&value).map_err(|reason| DeployError::Describe {
                export: SCHEMA_EXPORT.into(),
                reason,
            })?;
            for table in &schema.tables {
                for (index, fields) in &table.indexes {
                    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
                    store
                        .define_index(&table.name, index, &fields)
                        .map_err(DeployError::Store)?;
                }
            }
            deployed.schema = Arc::new(schema);
        }
        if checked.has_auth_config {
            let value = self.describe(
                &deployed,
                Entry::AuthConfig,
                &export(AUTH_CONFIG_EXPORT),
                AUTH_CONFIG_EXPORT,
            )?;
            let config =
                AuthConfig::from_value(&value).map_err(|reason| DeployError::Describe {
                    export: AUTH_CONFIG_EXPORT.into(),
                    reason,
                })?;
            deployed.auth_config = Arc::new(config);
        }
        let mut functions = BTreeMap::new();
        for function in checked.functions {
            let describe_export = export(&function.describe_export);
            let value = self.describe(
                &deployed,
                Entry::Describe,
                &describe_export,
                &function.describe_export,
            )?;
            let description = FunctionDescription::from_value(&value).map_err(|reason| {
                DeployError::Describe {
                    export: function.describe_export.clone(),
                    reason,
                }
            })?;
            functions.insert(
                function.path.clone(),
                FunctionInfo {
                    path: function.path,
                    description,
                    call_export: export(&function.call_export),
                },
            );
        }
        check_routes(&functions)?;
        deployed.functions = Arc::new(functions);
        if checked.has_crons {
            let value =
                self.describe(&deployed, Entry::Crons, &export(CRONS_EXPORT), CRONS_EXPORT)?;
            let describe_error = |reason: String| DeployError::Describe {
                export: CRONS_EXPORT.into(),
                reason,
            };
            let crons = Crons::from_value(&value).map_err(describe_error)?;
            for cron in &crons.jobs {
                check_cron(cron, &deployed).map_err(describe_error)?;
            }
            deployed.crons = Arc::new(crons);
        }
        Ok(deployed)
    }

    fn describe(
        &self,
        module: &DeployedModule,
        entry: Entry,
        export: &ModuleExport,
        name: &str,
    ) -> Result<Value, DeployError> {
        let state = CallState::new(
            entry,
            self.config.memory_limit,
            module.schema.clone(),
            module.functions.clone(),
        );
        self.execute(module, state, Invocation::NoArgs(export))
            .outcome
            .map_err(|e| DeployError::Describe {
                export: name.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Runs a query on a read-only snapshot of the latest commit.
    pub fn run_query(
        &self,
        store: &Arc<Store>,
        module: &DeployedModule,
        path: &str,
        args: &Value,
        options: CallOptions,
    ) -> Result<QueryOutcome, CallFailure> {
        self.run_query_in(store, module, path, args, store.begin_read_only(), options)
            .outcome
    }

    /// Runs a query in a given read-only transaction (for instance one of a pinned
    /// `store::Snapshot`, so several queries read one state). The read set comes back whether
    /// the query succeeded or failed: a failed result can change too.
    pub fn run_query_in(
        &self,
        store: &Arc<Store>,
        module: &DeployedModule,
        path: &str,
        args: &Value,
        tx: Transaction,
        options: CallOptions,
    ) -> QueryRun {
        self.run_query_logged(store, module, path, args, tx, options)
            .0
    }

    /// Runs a query on the caller's async worker, on a snapshot of the latest commit, as a
    /// mutation's first attempt runs (`HostConfig::inline_ticks`): no hand-off to a thread
    /// that may block. `None` when the query was stopped (it ran longer, or came to a read
    /// that waits on the network), or was not started (`Store::begin_inline_read`): the
    /// caller then runs it with `run_query` where it may block, and nothing of the stopped
    /// run is kept or recorded.
    pub fn try_run_query_inline(
        &self,
        store: &Arc<Store>,
        module: &DeployedModule,
        path: &str,
        args: &Value,
        options: CallOptions,
    ) -> Option<Result<QueryOutcome, CallFailure>> {
        self.config.inline_deadline_ticks()?;
        let tx = store.begin_inline_read(path)?;
        let (run, stopped) = self.run_query_logged(store, module, path, args, tx, options);
        store.inline_read_ended(path, stopped);
        stopped.is_none().then_some(run.outcome)
    }

    /// A query's run, recorded for `runtime logs` unless it ran inline and was stopped (it
    /// runs again, and that run is recorded); and why it was stopped, if it was.
    fn run_query_logged(
        &self,
        store: &Arc<Store>,
        module: &DeployedModule,
        path: &str,
        args: &Value,
        tx: Transaction,
        options: CallOptions,
    ) -> (QueryRun, Option<Stop>) {
        let started = ExecutionClock::start();
        let fail = |error: CallError, log_lines: Vec<String>| CallFailure {
            path: path.to_owned(),
            error,
            log_lines,
        };
        let ts = tx.begin_ts();
        let (function, args_bytes) =
            match self.prepare(module, path, FunctionKind::Query, args, &options.caller) {
                Ok(prepared) => prepared,
                Err(e) => {
                    let run = QueryRun {
                        outcome: Err(fail(e, vec![])),
                        ts,
                        read_set: ReadSet::default(),
                    };
                    self.record_query(started, path, &run);
                    return (run, None);
                }
            };
        let state = self.call_state(store, module, Entry::Query, tx, path, &args_bytes, options);
        let Execution {
            tx,
            outcome,
            log_lines,
            page_ends,
        } = self.execute(
            module,
            state,
            Invocation::Call(&function.call_export, args_bytes),
        );
        let stopped = tx.as_ref().and_then(|tx| tx.stopped());
        let read_set = tx.map(|tx| tx.read_set().clone()).unwrap_or_default();
        let outcome = outcome
            .and_then(|v| check_result(function, v))
            .map_err(|e| fail(e, log_lines.clone()))
            .map(|value| QueryOutcome {
                value,
                log_lines,
                ts,
                read_set: read_set.clone(),
                page_ends,
            });
        let run = QueryRun {
            outcome,
            ts,
            read_set,
        };
        if stopped.is_none() {
            self.record_query(started, path, &run);
        }
        (run, stopped)
    }

    /// Records a query's run for `runtime logs`.
    fn record_query(&self, started: ExecutionClock, path: &str, run: &QueryRun) {
        let lines = run.outcome.as_ref().map(|o| o.log_lines.as_slice());
        self.record_execution(started, path, "query", lines);
    }

    /// Records one execution for `runtime logs`: how it ended and the lines it logged.
    fn record_execution(
        &self,
        started: ExecutionClock,
        path: &str,
        kind: &'static str,
        outcome: Result<&[String], &CallFailure>,
    ) {
        let (error, log_lines) = match outcome {
            Ok(log_lines) => (None, log_lines),
            // Whatever the failure, the log keeps a bounded message.
            Err(failure) => (
                Some(error::cut_text(
                    failure.to_string(),
                    ferrovex_model::limits::MAX_ERROR_MESSAGE_BYTES,
                    "MAX_ERROR_MESSAGE_BYTES",
                )),
                failure.log_lines.as_slice(),
            ),
        };
        self.executions
            .record(started.finish(path, kind, error, log_lines.to_vec()));
    }

    /// Runs a mutation through `Store::run_mutation`: retried on conflict, committed only if
    /// the call produced a result, durable and visible when this returns `Ok`.
    pub fn run_mutation(
        &self,
        store: &Arc<Store>,
        module: &DeployedModule,
        path: &str,
        args: &Value,
        options: CallOptions,
    ) -> Result<MutationOutcome, CallFailure> {
        self.run_mutation_with(store, module, path, args, options, CommitWith::Nothing)
    }

    /// Runs a mutation at most once per `receipt_key`: if a commit already recorded an
    /// outcome under it, that outcome is returned and nothing runs; otherwise the mutation
    /// runs and its commit records the outcome under the key (only a mutation that wrote
    /// something commits, so a mutation without writes, or a failed one, runs again, which
    /// changes nothing in the store).
    ///
    /// Callers must not run the same key concurrently (the sync engine's mutation log
    /// serializes them).
    pub fn run_mutation_once(
        &self,
        store: &Arc<Store>,
        module: &DeployedModule,
        path: &str,
        args: &Value,
        options: CallOptions,
        once: &Once,
    ) -> Result<MutationOutcome, CallFailure> {
        // The receipt is looked for once, in the mutation's own transaction (see
        // `attempt_mutation`), not also in a read-only one before it: that second lookup (a
        // RocksDB iterator made, sought and dropped) was 6% of the server's CPU in `bench
        // --only chat-send`, for the rare re-sent request it answers.
        self.run_mutation_with(store, module, path, args, options, once.commit_with())
    }

    /// Runs a mutation whose commit also carries `with` (see [`CommitWith`]).
    pub fn run_mutation_with(
        &self,
        store: &Arc<Store>,
        module: &DeployedModule,
        path: &str,
        args: &Value,
        options: CallOptions,
        with: CommitWith,
    ) -> Result<MutationOutcome, CallFailure> {
        let started = ExecutionClock::start();
        let answer = match self.prepare_mutation(store, module, path, args, &options, &with) {
            Err(answer) => answer,
            Ok((function, args_bytes)) => {
                let mut logs = Vec::new();
                let committed = store.run_mutation_of(Some(path), |tx| {
                    self.attempt_mutation(
                        store,
                        module,
                        function,
                        path,
                        &args_bytes,
                        &options,
                        &with,
                        tx,
                        &mut logs,
                    )
                });
                settle_mutation(path, committed, logs)
            }
        };
        self.record_mutation(started, path, answer)
    }

    /// [`WasmHost::run_mutation_with`] for a caller on an async runtime (a WebSocket session,
    /// an HTTP request): the same rules and outcome, at most once per `once` when one is
    /// given (as [`WasmHost::run_mutation_once`]), with the first attempt run inline on
    /// the caller's worker (stopped and made again on the blocking pool if it runs past
    /// `HostConfig::inline_ticks` or comes to a read over the network), the others on the
    /// pool, and every commit awaited rather than blocked on (see
    /// `Store::run_mutation_async`). The arguments are checked and encoded in the first
    /// attempt, not before it, so a function whose attempts start on the pool has none of it
    /// done on the worker.
    pub async fn run_mutation_async(
        self: &Arc<Self>,
        store: &Arc<Store>,
        module: Arc<DeployedModule>,
        path: String,
        args: Value,
        options: CallOptions,
        once: Option<Once>,
    ) -> Result<MutationOutcome, CallFailure> {
        let started = ExecutionClock::start();
        // What the attempts log, kept by whichever thread runs the last one.
        let logs = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let attempt = {
            let (host, store, path, logs) =
                (self.clone(), store.clone(), path.clone(), logs.clone());
            let mut args_bytes = None;
            move |tx: &mut Transaction| {
                let with = once.as_ref().map_or(CommitWith::Nothing, Once::commit_with);
                let (function, args_bytes) = match &args_bytes {
                    Some(bytes) => (module.function(&path).expect("prepared before"), bytes),
                    None => {
                        let (function, bytes) = host
                            .prepare_mutation(&store, &module, &path, &args, &options, &with)
                            .map_err(|answer| MutationAbort::Answered(Box::new(answer)))?;
                        (function, &*args_bytes.insert(bytes))
                    }
                };
                host.attempt_mutation(
                    &store,
                    &module,
                    function,
                    &path,
                    args_bytes,
                    &options,
                    &with,
                    tx,
                    &mut logs.lock(),
                )
            }
        };
        let inline = self.config.inline_deadline_ticks().is_some();
        let committed = store.run_mutation_async(&path, inline, attempt).await;
        let logs = std::mem::take(&mut *logs.lock());
        let answer = settle_mutation(&path, committed, logs);
        self.record_mutation(started, &path, answer)
    }

    /// Records a mutation's execution for `runtime logs`, unless its outcome was read from
    /// a receipt (it ran earlier, and was recorded then).
    fn record_mutation(
        &self,
        started: ExecutionClock,
        path: &str,
        (result, ran): (Result<MutationOutcome, CallFailure>, Ran),
    ) -> Result<MutationOutcome, CallFailure> {
        if ran == Ran::Executed {
            let lines = result.as_ref().map(|o| o.log_lines.as_slice());
            self.record_execution(started, path, "mutation", lines);
        }
        result
    }

    /// Finds a mutation and checks its arguments; on failure, the answer. A request re-sent
    /// after a deploy that changed or removed its function still gets the outcome it
    /// committed with, from its receipt.
    #[allow(clippy::type_complexity)]
    fn prepare_mutation<'m>(
        &self,
        store: &Arc<Store>,
        module: &'m DeployedModule,
        path: &str,
        args: &Value,
        options: &CallOptions,
        with: &CommitWith,
    ) -> Result<(&'m FunctionInfo, Vec<u8>), (Result<MutationOutcome, CallFailure>, Ran)> {
        let fail = |error: CallError| CallFailure {
            path: path.to_owned(),
            error,
            log_lines: Vec::new(),
        };
        let error = match self.prepare(module, path, FunctionKind::Mutation, args, &options.caller)
        {
            Ok(prepared) => return Ok(prepared),
            Err(error) => error,
        };
        if let CommitWith::Receipt {
            key,
            maybe_ran: true,
        } = with
        {
            match store.begin_read_only().receipt(key) {
                Ok(Some((outcome, ts))) => return Err(from_receipt(path, &outcome, ts)),
                Ok(None) => {}
                Err(e) => return Err((Err(fail(CallError::Store(e))), Ran::Executed)),
            }
        }
        Err((Err(fail(error)), Ran::Executed))
    }

    /// One attempt of a mutation in `tx`: what both drivers run, on whichever thread. The
    /// lines the call logged are left in `logs`, for the outcome of the attempt that counts.
    #[allow(clippy::too_many_arguments)]
    fn attempt_mutation(
        &self,
        store: &Arc<Store>,
        module: &DeployedModule,
        function: &FunctionInfo,
        path: &str,
        args_bytes: &[u8],
        options: &CallOptions,
        with: &CommitWith,
        tx: &mut Transaction,
        logs: &mut Vec<String>,
    ) -> Result<Value, MutationAbort> {
        // What an earlier attempt logged is not this one's, even if this one fails before
        // its call (an attempt thrown away, or one that conflicted).
        logs.clear();
        if let CommitWith::Receipt { key, maybe_ran } = *with {
            // Read in the transaction: a commit of the same receipt made since its begin
            // (the same request run on another node) conflicts with this one, and the retry
            // finds the receipt.
            if maybe_ran || tx.earlier_attempts() > 0 {
                if let Some((outcome, ts)) = tx.receipt(key)? {
                    return Err(MutationAbort::Done(outcome, ts));
                }
            } else {
                tx.receipt_absent(key);
            }
        }
        if let CommitWith::Job(id) = with {
            // Read in the transaction: a cancel (or another run) committed since its begin
            // conflicts with this commit.
            match jobs::get(tx, *id)? {
                Some(job) if job.state == jobs::JobState::Pending => {}
                _ => return Err(MutationAbort::Call(CallError::JobNotPending)),
            }
        }
        // The wasmtime store must own what it holds, so the transaction moves in for the
        // call and back out for the commit; a read-only placeholder fills the gap.
        let owned = std::mem::replace(tx, store.begin_read_only());
        let state = self.call_state(
            store,
            module,
            Entry::Mutation,
            owned,
            path,
            args_bytes,
            options.clone(),
        );
        let Execution {
            tx: back,
            outcome,
            log_lines,
            ..
        } = self.execute(
            module,
            state,
            Invocation::Call(&function.call_export, args_bytes.to_vec()),
        );
        *tx = back.expect("a call gives its transaction back");
        *logs = log_lines;
        let value = outcome
            .and_then(|v| check_result(function, v))
            .map_err(MutationAbort::Call)?;
        match with {
            CommitWith::Nothing => {}
            CommitWith::Receipt { key, .. } => {
                tx.set_receipt(key.to_vec(), encode_receipt(&value, logs))
            }
            CommitWith::Job(id) => {
                let now = tx.now_ms();
                jobs::set_state(tx, *id, &jobs::JobState::Success, Some(now))?;
            }
        }
        Ok(value)
    }

    /// Runs an action (or, with `kind` [`FunctionKind::HttpAction`], an HTTP action whose
    /// arguments are the request): no transaction, real time and randomness, and `services`
    /// for what it reaches outside; at most `MAX_ACTION_SECONDS` of wall-clock time.
    pub fn run_action(
        &self,
        store: &Arc<Store>,
        module: &DeployedModule,
        kind: FunctionKind,
        path: &str,
        args: &Value,
        options: CallOptions,
        services: Arc<dyn ActionServices>,
    ) -> Result<ActionOutcome, CallFailure> {
        let started = ExecutionClock::start();
        let fail = |error: CallError, log_lines: Vec<String>| CallFailure {
            path: path.to_owned(),
            error,
            log_lines,
        };
        let result = match self.prepare(module, path, kind, args, &options.caller) {
            Err(e) => Err(fail(e, vec![])),
            Ok((function, args_bytes)) => {
                let mut state = CallState::new(
                    Entry::Action,
                    self.config.memory_limit,
                    module.schema.clone(),
                    module.functions.clone(),
                );
                state.store = Some(store.clone());
                state.identity = options.caller.identity;
                state.services = Some(services);
                // Not deterministic: the seed comes from the operating system.
                state.seed = options
                    .seed
                    .unwrap_or_else(|| getrandom::u64().unwrap_or(0));
                let Execution {
                    outcome, log_lines, ..
                } = self.execute(
                    module,
                    state,
                    Invocation::Call(&function.call_export, args_bytes),
                );
                match outcome.and_then(|v| check_result(function, v)) {
                    Ok(value) => Ok(ActionOutcome { value, log_lines }),
                    Err(e) => Err(fail(e, log_lines)),
                }
            }
        };
        let lines = result.as_ref().map(|o| o.log_lines.as_slice());
        self.record_execution(started, path, kind.as_str(), lines);
        result
    }

    fn prepare<'m>(
        &self,
        module: &'m DeployedModule,
        path: &str,
        kind: FunctionKind,
        args: &Value,
        caller: &Caller,
    ) -> Result<(&'m FunctionInfo, Vec<u8>), CallError> {
        // An HTTP action is reached through its route, whoever sends the request.
        let function = match kind {
            FunctionKind::HttpAction => module.function(path),
            _ => module.callable(path, caller),
        }
        .ok_or_else(|| CallError::UnknownFunction {
            available: module.callable_paths(caller),
        })?;
        if function.description.kind != kind {
            return Err(CallError::WrongKind {
                expected: kind.as_str(),
                actual: function.description.kind.as_str(),
            });
        }
        if !matches!(args, Value::Object(_)) {
            return Err(CallError::InvalidArguments(format!(
                "arguments must be an object, got {}",
                args.type_name()
            )));
        }
        let size = binary::encoded_len(args);
        if size > MAX_ARGS_OR_RESULT_BYTES {
            return Err(CallError::InvalidArguments(format!(
                "arguments exceed the limit MAX_ARGS_OR_RESULT_BYTES ({MAX_ARGS_OR_RESULT_BYTES} bytes): got {size} bytes"
            )));
        }
        function.description.args.check(args).map_err(|e| {
            CallError::InvalidArguments(format!(
                "{e} (expected {})",
                function.description.args.describe()
            ))
        })?;
        Ok((function, binary::encode(args)))
    }

    #[allow(clippy::too_many_arguments)]
    fn call_state(
        &self,
        store: &Arc<Store>,
        module: &DeployedModule,
        entry: Entry,
        mut tx: Transaction,
        path: &str,
        args: &[u8],
        options: CallOptions,
    ) -> CallState {
        let now_ms = options.now_ms.unwrap_or_else(|| tx.now_ms());
        let seed = options.seed.unwrap_or_else(|| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (path, args, tx.begin_ts()).hash(&mut hasher);
            hasher.finish()
        });
        tx.set_now_ms(now_ms);
        tx.set_seed(seed);
        let mut state = CallState::new(
            entry,
            self.config.memory_limit,
            module.schema.clone(),
            module.functions.clone(),
        );
        state.tx = Some(tx);
        state.store = Some(store.clone());
        state.now_ms = now_ms;
        state.seed = seed;
        state.identity = options.caller.identity;
        state.page_ends_in = options.page_ends;
        state
    }
}

/// A cron's schedule parses, and its function is a mutation or action whose arguments match.
fn check_cron(cron: &ferrovex_model::abi::CronSpec, module: &DeployedModule) -> Result<(), String> {
    crate::crons::Schedule::parse(&cron.schedule)
        .map_err(|e| format!("cron {:?}: {e}", cron.name))?;
    let function = module.function(&cron.function).ok_or_else(|| {
        format!(
            "cron {:?} runs {}, which is not a function of the app",
            cron.name, cron.function
        )
    })?;
    if !matches!(
        function.description.kind,
        FunctionKind::Mutation | FunctionKind::Action
    ) {
        return Err(format!(
            "cron {:?} runs {}, a {}; crons run mutations and actions",
            cron.name, cron.function, function.description.kind
        ));
    }
    function.description.args.check(&cron.args).map_err(|e| {
        format!(
            "cron {:?}: invalid arguments for {}: {e}",
            cron.name, cron.function
        )
    })
}

/// Two HTTP actions may not serve the same method and path (or prefix).
fn check_routes(functions: &BTreeMap<String, FunctionInfo>) -> Result<(), DeployError> {
    let mut seen: BTreeMap<(&str, &str, bool), &str> = BTreeMap::new();
    for f in functions.values() {
        let Some(route) = &f.description.route else {
            continue;
        };
        let key = (route.method.as_str(), route.path.as_str(), route.prefix);
        if let Some(other) = seen.insert(key, &f.path) {
            return Err(DeployError::Describe {
                export: f.path.clone(),
                reason: format!(
                    "the route {} {}{} is also {other}'s: each method and path has one HTTP action",
                    route.method,
                    route.path,
                    if route.prefix { "*" } else { "" }
                ),
            });
        }
    }
    Ok(())
}

fn check_result(function: &FunctionInfo, value: Value) -> Result<Value, CallError> {
    function
        .description
        .returns
        .check(&value)
        .map_err(|e| CallError::InvalidResult(e.to_string()))?;
    Ok(value)
}

/// A mutation's answer from how its attempts ended, with the lines the last one logged.
fn settle_mutation(
    path: &str,
    committed: Result<crate::store::Committed<Value>, MutationAbort>,
    logs: Vec<String>,
) -> (Result<MutationOutcome, CallFailure>, Ran) {
    let fail = |error: CallError, log_lines: Vec<String>| CallFailure {
        path: path.to_owned(),
        error,
        log_lines,
    };
    let answer = match committed {
        Ok(c) => Ok(MutationOutcome {
            value: c.value,
            log_lines: logs,
            ts: c.ts,
        }),
        Err(MutationAbort::Call(error)) => Err(fail(error, logs)),
        Err(MutationAbort::Done(outcome, ts)) => return from_receipt(path, &outcome, ts),
        Err(MutationAbort::Store(e)) => Err(fail(CallError::Store(e), logs)),
        Err(MutationAbort::Answered(answer)) => return *answer,
    };
    (answer, Ran::Executed)
}

/// The answer recorded in a receipt: the outcome of an earlier run.
fn from_receipt(
    path: &str,
    outcome: &[u8],
    ts: Timestamp,
) -> (Result<MutationOutcome, CallFailure>, Ran) {
    let answer = decode_receipt(outcome, ts).map_err(|reason| CallFailure {
        path: path.to_owned(),
        error: CallError::Store(StoreError::Corrupt(reason)),
        log_lines: Vec::new(),
    });
    (answer, Ran::FromReceipt)
}

/// Whether a mutation's answer comes from running it or from the receipt of an earlier run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ran {
    Executed,
    FromReceipt,
}

enum MutationAbort {
    Call(CallError),
    Store(StoreError),
    /// The receipt's mutation has committed already: its outcome and commit timestamp.
    Done(Vec<u8>, Timestamp),
    /// Answered before any attempt ran: the function could not be prepared.
    Answered(Box<(Result<MutationOutcome, CallFailure>, Ran)>),
}

impl From<StoreError> for MutationAbort {
    fn from(e: StoreError) -> Self {
        MutationAbort::Store(e)
    }
}

/// When an execution started, to record it once it ends.
struct ExecutionClock {
    wall_ms: f64,
    started: std::time::Instant,
}

impl ExecutionClock {
    fn start() -> Self {
        ExecutionClock {
            wall_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(0.0),
            started: std::time::Instant::now(),
        }
    }

    fn finish(
        self,
        path: &str,
        kind: &'static str,
        error: Option<String>,
        log_lines: Vec<String>,
    ) -> ExecutionRecord {
        ExecutionRecord {
            started_ms: self.wall_ms,
            path: path.to_owned(),
            kind,
            duration_us: self.started.elapsed().as_micros() as u64,
            error,
            log_lines,
        }
    }
}

/// A committed mutation's outcome as its receipt stores it (the commit adds the timestamp).
fn encode_receipt(value: &Value, log_lines: &[String]) -> Vec<u8> {
    let mut receipt = ferrovex_model::Object::new();
    receipt.insert("value".into(), value.clone());
    receipt.insert(
        "logLines".into(),
        Value::Array(log_lines.iter().cloned().map(Value::String).collect()),
    );
    ferrovex_model::binary::encode(&Value::Object(receipt))
}

fn decode_receipt(bytes: &[u8], ts: Timestamp) -> Result<MutationOutcome, String> {
    let malformed = |what: &str| format!("a malformed mutation receipt: {what}");
    let Value::Object(mut receipt) =
        ferrovex_model::binary::decode(bytes).map_err(|e| malformed(&e.to_string()))?
    else {
        return Err(malformed("not an object"));
    };
    let value = receipt
        .remove("value")
        .ok_or_else(|| malformed("no value"))?;
    let Some(Value::Array(lines)) = receipt.remove("logLines") else {
        return Err(malformed("no logLines"));
    };
    let log_lines = lines
        .into_iter()
        .map(|line| match line {
            Value::String(line) => Ok(line),
            _ => Err(malformed("a log line that is not a string")),
        })
        .collect::<Result<_, _>>()?;
    Ok(MutationOutcome {
        value,
        log_lines,
        ts,
    })
}
