//! Running actions: at most `MAX_CONCURRENT_ACTIONS` at once (a client's action waits for a
//! slot, up to `MAX_WAITING_ACTIONS` waiting), each on the blocking pool, off the path of
//! queries and mutations, with [`ActionServices`] for what it reaches outside: functions of
//! the same module (each its own call, on a thread of its own), outbound HTTP through
//! [`Fetcher`], and the deployment's environment variables.

use crate::auth::Access;
use crate::caller::Caller;
use crate::fetch::{FetchError, FetchRequest, FetchResponse, Fetcher, OutboundPolicy};
use crate::store::Store;
use crate::wasm::{
    ActionOutcome, ActionServices, CallError, CallFailure, CallOptions, DeployedModule, WasmHost,
};
use ferrovex_model::abi::FunctionKind;
use ferrovex_model::limits::{MAX_ACTION_DEPTH, MAX_CONCURRENT_ACTIONS, MAX_WAITING_ACTIONS};
use ferrovex_model::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

pub struct Actions {
    store: Arc<Store>,
    host: Arc<WasmHost>,
    access: Arc<Access>,
    fetcher: Fetcher,
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Actions {
    pub fn new(
        store: Arc<Store>,
        host: Arc<WasmHost>,
        access: Arc<Access>,
        policy: OutboundPolicy,
    ) -> Arc<Actions> {
        Arc::new(Actions {
            store,
            host,
            access,
            fetcher: Fetcher::new(policy),
            running: Arc::new(Semaphore::new(MAX_CONCURRENT_ACTIONS)),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Runs the action (or HTTP action) at `path` of `module` for `caller`. With `queue`
    /// false, a full house is refused at once instead of waited for.
    pub async fn run(
        self: &Arc<Self>,
        module: Arc<DeployedModule>,
        kind: FunctionKind,
        path: &str,
        args: Value,
        caller: Caller,
        queue: bool,
    ) -> Result<ActionOutcome, CallFailure> {
        let busy = |what: String| CallFailure {
            path: path.to_owned(),
            error: CallError::Host(what),
            log_lines: Vec::new(),
        };
        let slot = match self.reserve() {
            Some(slot) => slot,
            None => {
                let waiting = self.waiting.fetch_add(1, Ordering::AcqRel);
                let _leave = Leave(&self.waiting);
                if !queue || waiting >= MAX_WAITING_ACTIONS {
                    return Err(busy(format!(
                        "MAX_CONCURRENT_ACTIONS ({MAX_CONCURRENT_ACTIONS}) actions are running and MAX_WAITING_ACTIONS ({MAX_WAITING_ACTIONS}) are waiting; try again later"
                    )));
                }
                let permit = self.running.clone().acquire_owned().await;
                OwnedSlot {
                    _permit: permit.expect("the semaphore is never closed"),
                }
            }
        };
        self.run_reserved(slot, module, kind, path, args, caller)
            .await
    }

    /// A running slot, if one is free now (the scheduler starts an action job only with one).
    pub fn reserve(&self) -> Option<OwnedSlot> {
        let permit = self.running.clone().try_acquire_owned().ok()?;
        Some(OwnedSlot { _permit: permit })
    }

    /// Runs an action in a slot reserved with [`Actions::reserve`].
    pub async fn run_reserved(
        self: &Arc<Self>,
        slot: OwnedSlot,
        module: Arc<DeployedModule>,
        kind: FunctionKind,
        path: &str,
        args: Value,
        caller: Caller,
    ) -> Result<ActionOutcome, CallFailure> {
        let this = self.clone();
        let path = path.to_owned();
        let outcome = tokio::task::spawn_blocking(move || {
            this.run_blocking(&module, kind, &path, &args, caller, 0)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        drop(slot);
        outcome
    }

    /// On a blocking thread: the action itself.
    fn run_blocking(
        self: &Arc<Self>,
        module: &Arc<DeployedModule>,
        kind: FunctionKind,
        path: &str,
        args: &Value,
        caller: Caller,
        depth: usize,
    ) -> Result<ActionOutcome, CallFailure> {
        let services = Arc::new(Services {
            actions: self.clone(),
            module: module.clone(),
            caller: caller.clone(),
            depth,
            handle: Handle::current(),
        });
        let options = CallOptions {
            caller,
            ..Default::default()
        };
        self.host
            .run_action(&self.store, module, kind, path, args, options, services)
    }
}

/// A running slot held for an action (released when dropped).
pub struct OwnedSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Counts a waiter out when it stops waiting, however it stops.
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One running action's way out.
struct Services {
    actions: Arc<Actions>,
    module: Arc<DeployedModule>,
    caller: Caller,
    depth: usize,
    handle: Handle,
}

impl Services {
    /// Runs `f` on a blocking thread of its own and waits: a function an action calls gets a
    /// whole native stack, whatever the action's own stack holds.
    fn on_own_thread<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.handle
            .block_on(tokio::task::spawn_blocking(f))
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

impl ActionServices for Services {
    fn run_function(
        &self,
        kind: FunctionKind,
        path: &str,
        args: &Value,
    ) -> Result<Value, CallFailure> {
        let actions = self.actions.clone();
        let module = self.module.clone();
        // For the same user, and like any function's call, internal functions included.
        let caller = Caller {
            identity: self.caller.identity.clone(),
            admin: true,
        };
        let (path, args) = (path.to_owned(), args.clone());
        let options = CallOptions {
            caller: caller.clone(),
            ..Default::default()
        };
        match kind {
            FunctionKind::Query => self.on_own_thread(move || {
                actions
                    .host
                    .run_query(&actions.store, &module, &path, &args, options)
                    .map(|o| o.value)
            }),
            FunctionKind::Mutation => self.on_own_thread(move || {
                actions
                    .host
                    .run_mutation(&actions.store, &module, &path, &args, options)
                    .map(|o| o.value)
            }),
            _ => {
                let depth = self.depth + 1;
                if depth > MAX_ACTION_DEPTH {
                    return Err(CallFailure {
                        path,
                        error: CallError::Host(format!(
                            "actions called by actions nest deeper than MAX_ACTION_DEPTH ({MAX_ACTION_DEPTH})"
                        )),
                        log_lines: Vec::new(),
                    });
                }
                // Within its caller's slot: waiting for another could wait forever.
                self.on_own_thread(move || {
                    actions
                        .run_blocking(&module, FunctionKind::Action, &path, &args, caller, depth)
                        .map(|o| o.value)
                })
            }
        }
    }

    fn fetch(&self, request: FetchRequest) -> Result<FetchResponse, FetchError> {
        self.handle.block_on(self.actions.fetcher.fetch(request))
    }

    fn env_var(&self, name: &str) -> Option<String> {
        let vars = self.actions.access.env_vars()?.load().ok()?;
        vars.get(name).cloned()
    }
}
