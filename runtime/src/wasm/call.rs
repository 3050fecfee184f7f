//! Running one entry point of a deployed module in a fresh instance, and turning how it
//! ended into a value or a [`CallError`].

use super::error::cut_text;
use super::error::{CallError, Violation};
use super::state::{CallState, Entry};
use super::{DeployedModule, WasmHost};
use crate::store::Transaction;
use ferrovex_model::abi::output;
use ferrovex_model::limits::{MAX_ERROR_MESSAGE_BYTES, SLOT_RELEASE_EVERY_CALLS};
use ferrovex_model::Value;
use std::sync::atomic::Ordering;
use wasmtime::{ModuleExport, Trap};

/// What one execution produced; the transaction comes back so a mutation can commit it.
pub(crate) struct Execution {
    pub tx: Option<Transaction>,
    pub outcome: Result<Value, CallError>,
    pub log_lines: Vec<String>,
    /// Where its paginated reads ended, in order (`CallState::page_ends_out`).
    pub page_ends: Vec<Vec<u8>>,
}

/// An entry point and what it receives.
pub(crate) enum Invocation<'a> {
    /// `() -> ()` exports: describe and schema.
    NoArgs(&'a ModuleExport),
    /// A function's call export with its encoded arguments.
    Call(&'a ModuleExport, Vec<u8>),
}

impl WasmHost {
    pub(crate) fn execute(
        &self,
        module: &DeployedModule,
        mut state: CallState,
        invocation: Invocation,
    ) -> Execution {
        let (export, args) = match invocation {
            Invocation::Call(export, bytes) => {
                (export, Some(state.handles.insert_arguments(bytes)))
            }
            Invocation::NoArgs(export) => (export, None),
        };
        // A fresh store and instance per call: nothing survives from one call to the next.
        let mut store = wasmtime::Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // An attempt run inline on an async worker gets a tick or so, not the call's limit:
        // if it runs longer it is stopped here and made again on the blocking pool.
        let inline_ticks = match &store.data().tx {
            Some(tx) if tx.runs_inline() => self.config.inline_deadline_ticks(),
            _ => None,
        };
        store.set_epoch_deadline(inline_ticks.unwrap_or_else(|| {
            self.config
                .deadline_ticks(self.time_limit(store.data().entry))
        }));
        let result = self.run_instance(&mut store, module, export, args);
        let count = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if count.is_multiple_of(SLOT_RELEASE_EVERY_CALLS) {
            release_pages(&store);
        }
        let mut state = store.into_data();
        let outcome = match result {
            Ok(()) => outcome_of(&mut state),
            Err(error) => {
                let interrupted = matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt));
                if let (Some(_), true, Some(tx)) = (inline_ticks, interrupted, state.tx.as_mut()) {
                    tx.mark_overran();
                }
                Err(self.classify(error, &state))
            }
        };
        Execution {
            tx: state.tx,
            outcome,
            log_lines: state.logs,
            page_ends: state.page_ends_out,
        }
    }

    fn run_instance(
        &self,
        store: &mut wasmtime::Store<CallState>,
        module: &DeployedModule,
        export: &ModuleExport,
        args: Option<(u32, u32)>,
    ) -> wasmtime::Result<()> {
        let instance = module.pre.instantiate(&mut *store)?;
        let memory = instance
            .get_module_export(&mut *store, &module.memory_export)
            .and_then(|e| e.into_memory())
            .ok_or_else(|| {
                wasmtime::Error::new(Violation::NoMemory {
                    import: "instantiate",
                })
            })?;
        store.data_mut().memory = Some(memory);
        let func = instance
            .get_module_export(&mut *store, export)
            .and_then(|e| e.into_func())
            .ok_or_else(|| wasmtime::Error::msg("entry point missing from the instance"))?;
        match args {
            Some(args) => func
                .typed::<(u32, u32), ()>(&*store)?
                .call(&mut *store, args),
            None => func.typed::<(), ()>(&*store)?.call(&mut *store, ()),
        }
    }

    fn time_limit(&self, entry: Entry) -> std::time::Duration {
        match entry {
            Entry::Action => self.config.action_timeout,
            _ => self.config.timeout,
        }
    }

    fn classify(&self, error: wasmtime::Error, state: &CallState) -> CallError {
        let error = match error.downcast::<Violation>() {
            Ok(violation) => return CallError::Violation(violation),
            Err(error) => error,
        };
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Timeout {
                limit: self.time_limit(state.entry),
            },
            Some(Trap::StackOverflow) => CallError::StackOverflow {
                max_wasm_stack: self.config.max_wasm_stack,
            },
            Some(trap) => match &state.panic_message {
                Some(message) => CallError::Panic {
                    message: message.clone(),
                },
                None => CallError::Trap {
                    message: trap.to_string(),
                },
            },
            None if error
                .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some() =>
            {
                CallError::Host(format!(
                    "{error:#}: all {} instance slots are busy (HostConfig::max_instances)",
                    self.config.max_instances
                ))
            }
            None => CallError::Trap {
                message: format!("{error:#}"),
            },
        }
    }
}

/// Gives every page of a finished call's linear memory back to the kernel, before the pool
/// resets its slot: the reset then finds nothing to clear, and the slot keeps no page for the
/// next call. Without it, pages one large call wrote stay in the slot and count as dirty at
/// every later reset there (see `SLOT_KEEP_RESIDENT_BYTES` in `engine.rs`): done for one
/// call in `SLOT_RELEASE_EVERY_CALLS`, this bounds how long. Costs that call one `madvise`
/// (a TLB shootdown) and the next call in the slot the page faults of what it touches.
fn release_pages(store: &wasmtime::Store<CallState>) {
    let Some(memory) = store.data().memory else {
        return;
    };
    let (base, len) = (memory.data_ptr(store), memory.data_size(store));
    if len == 0 {
        return;
    }
    // SAFETY: `base..base + len` is this store's linear memory, which nothing uses any more:
    // the call has returned, and wasm memories are not shared (threads are off). On Linux
    // the pool maps a slot privately, its initial image copy-on-write from the module's
    // image and the rest anonymous, so `MADV_DONTNEED` brings every page back to what a
    // fresh instance would see, the contents the pool's own reset restores (elsewhere the
    // pool maps the slot afresh at its reset, whatever the pages hold). It changes no
    // mapping or protection, and `base` is page-aligned (a slot starts on a page).
    let status = unsafe { libc::madvise(base.cast(), len, libc::MADV_DONTNEED) };
    // On failure nothing changed, and the pool's reset restores the slot as always.
    debug_assert_eq!(
        status, 0,
        "madvise(MADV_DONTNEED) of a finished call's memory"
    );
}

/// Moves the output out of the finished call's state (a result can be large: no copy).
fn outcome_of(state: &mut CallState) -> Result<Value, CallError> {
    match state.output.take() {
        Some((output::ERROR, Value::Object(mut error))) => Err(CallError::User {
            message: match error.remove("message") {
                Some(Value::String(message)) => {
                    cut_text(message, MAX_ERROR_MESSAGE_BYTES, "MAX_ERROR_MESSAGE_BYTES")
                }
                _ => "(no message)".to_owned(),
            },
            data: error.remove("data"),
        }),
        Some((output::ERROR, other)) => Err(CallError::User {
            message: format!("{other:?}"),
            data: None,
        }),
        Some((_, value)) => Ok(value),
        None => Err(CallError::NoOutput),
    }
}
