//! Running actions: at most `MAX_CONCURRENT_ACTIONS` at once, fewer on a host with few
//! instance slots ([`action_slots`]; a client's action waits for a slot, up to
//! `MAX_WAITING_ACTIONS` waiting), each on the blocking pool, off the path of
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
    /// Running slots in all (see [`action_slots`]).
    slots: usize,
    waiting: AtomicUsize,
}

/// Actions that may run at once on `host`: `MAX_CONCURRENT_ACTIONS`, or fewer on a host with
/// fewer instance slots, so that actions in their worst case (each nested `MAX_ACTION_DEPTH`
/// deep and calling a query there: `MAX_ACTION_DEPTH + 2` instances) hold at most half of
/// them and queries and mutations always have the rest.
pub fn action_slots(max_instances: usize) -> usize {
    (max_instances / 2 / (MAX_ACTION_DEPTH + 2)).clamp(1, MAX_CONCURRENT_ACTIONS)
}

impl Actions {
    pub fn new(
        store: Arc<Store>,
        host: Arc<WasmHost>,
        access: Arc<Access>,
        policy: OutboundPolicy,
    ) -> Arc<Actions> {
        let slots = action_slots(host.config().max_instances as usize);
        Arc::new(Actions {
            store,
            host,
            access,
            fetcher: Fetcher::new(policy),
            running: Arc::new(Semaphore::new(slots)),
            slots,
            waiting: AtomicUsize::new(0),
        })
    }

    /// Refuses every action not yet running from now on (graceful shutdown): waiters get an
    /// error at once instead of holding up the end of their requests.
    pub fn stop(&self) {
        self.running.close();
    }

    /// Runs the action (or HTTP action) at `path` of `module` for `caller`, waiting for a
    /// running slot when all are taken (up to `MAX_WAITING_ACTIONS` wait).
    pub async fn run(
        self: &Arc<Self>,
        module: Arc<DeployedModule>,
        kind: FunctionKind,
        path: &str,
        args: Value,
        caller: Caller,
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
                if waiting >= MAX_WAITING_ACTIONS {
                    return Err(busy(format!(
                        "all {} action slots are running (MAX_CONCURRENT_ACTIONS) and MAX_WAITING_ACTIONS ({MAX_WAITING_ACTIONS}) are waiting; try again later",
                        self.slots
                    )));
                }
                match self.slot().await {
                    Some(slot) => slot,
                    None => return Err(busy(STOPPING.into())),
                }
            }
        };
        self.run_reserved(slot, module, kind, path, args, caller)
            .await
    }

    /// A running slot, if one is free now.
    fn reserve(&self) -> Option<OwnedSlot> {
        let permit = self.running.clone().try_acquire_owned().ok()?;
        Some(OwnedSlot { _permit: permit })
    }

    /// A running slot, once one is free (in turn with every other waiter); `None` once the
    /// server is stopping. The scheduler's way in: it holds no request, so it does not count
    /// against `MAX_WAITING_ACTIONS`.
    pub async fn slot(&self) -> Option<OwnedSlot> {
        let permit = self.running.clone().acquire_owned().await.ok()?;
        Some(OwnedSlot { _permit: permit })
    }

    /// Runs an action in a slot from [`Actions::slot`].
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
        let failed_path = path.clone();
        // The slot lives as long as the action, on its thread: a caller that goes away (a
        // closed socket, a dropped request) does not give it back while the action runs.
        let ran = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            this.run_blocking(&module, kind, &path, &args, caller, 0)
        })
        .await;
        joined(ran, &failed_path)
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

const STOPPING: &str = "the server is stopping; try again once it is back";

/// A blocking task's outcome: a panic goes on unwinding; a task the runtime dropped while
/// shutting down is the server stopping.
fn joined<T>(
    ran: Result<Result<T, CallFailure>, tokio::task::JoinError>,
    path: &str,
) -> Result<T, CallFailure> {
    match ran {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(CallFailure {
            path: path.to_owned(),
            error: CallError::Host(STOPPING.into()),
            log_lines: Vec::new(),
        }),
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
    fn on_own_thread<T: Send + 'static>(
        &self,
        path: &str,
        f: impl FnOnce() -> Result<T, CallFailure> + Send + 'static,
    ) -> Result<T, CallFailure> {
        joined(self.handle.block_on(tokio::task::spawn_blocking(f)), path)
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
            FunctionKind::Query => self.on_own_thread(&path.clone(), move || {
                actions
                    .host
                    .run_query(&actions.store, &module, &path, &args, options)
                    .map(|o| o.value)
            }),
            FunctionKind::Mutation => self.on_own_thread(&path.clone(), move || {
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
                self.on_own_thread(&path.clone(), move || {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_in_their_worst_case_hold_at_most_half_the_instances() {
        for max_instances in [1usize, 8, 16, 64, 128, 1024, 100_000] {
            let slots = action_slots(max_instances);
            assert!((1..=MAX_CONCURRENT_ACTIONS).contains(&slots));
            if max_instances >= 2 * (MAX_ACTION_DEPTH + 2) {
                assert!(
                    slots * (MAX_ACTION_DEPTH + 2) <= max_instances / 2,
                    "{max_instances} instances, {slots} slots"
                );
            }
        }
        assert_eq!(action_slots(128), 16.min(MAX_CONCURRENT_ACTIONS));
    }
}
