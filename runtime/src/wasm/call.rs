//! Running one entry point of a deployed module in a fresh instance, and turning how it
//! ended into a value or a [`CallError`].

use super::error::cut_text;
use super::error::{CallError, Violation};
use super::state::{CallState, Entry};
use super::{DeployedModule, WasmHost};
use crate::store::Transaction;
use ferrovex_model::abi::output;
use ferrovex_model::limits::MAX_ERROR_MESSAGE_BYTES;
use ferrovex_model::Value;
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
