//! The sync server without sockets or tasks: a store, a [`SyncEngine`] whose refresh rounds
//! the caller runs, and sessions that do what `runtime::sync::session` does with each frame,
//! one step at a time. The simulation and the `protocol` target drive it; the order of every
//! step is theirs, so a run is a function of its input.
//!
//! A session here mirrors `session.rs`: frames are handled in order (`handle_frame`),
//! mutations run one at a time in the order sent and are recorded in the engine's mutation
//! log under a receipt, a successful answer awaits a transition at its timestamp, and a
//! transition is built only when the engine woke the connection.

use model::Value;
use runtime::store::Store;
use runtime::sync::connection::ConnectionState;
use runtime::sync::engine::{ConnectionId, SyncEngine};
use runtime::sync::mutation_log::Outcome;
use runtime::sync::protocol::{
    parse_client_message, ClientMessage, FunctionError, ServerMessage, TokenType,
};
use runtime::wasm::{CallError, CallFailure, CallOptions, DeployedModule, HostConfig, WasmHost};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::Notify;

/// One wasm host for the process: compiled modules are cached on disk, so a store opened per
/// run deploys in milliseconds.
pub fn host() -> Arc<WasmHost> {
    static HOST: OnceLock<(Arc<WasmHost>, tempfile::TempDir)> = OnceLock::new();
    HOST.get_or_init(|| {
        let cache = tempfile::tempdir().expect("temp dir");
        let config = HostConfig {
            // Generous: a call that hits a wall-clock limit on a loaded machine would make a
            // run depend on timing.
            timeout: Duration::from_secs(30),
            cache_dir: Some(cache.path().to_owned()),
            ..HostConfig::default()
        };
        let host = WasmHost::new(config).expect("the wasm host starts");
        (Arc::new(host), cache)
    })
    .0
    .clone()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("fuzz/checks is two levels down")
        .to_owned()
}

/// The `channels` guest of the host tests (`runtime/tests/guests/channels`): `channels:send`
/// inserts a message, `channels:list` reads one channel's ten newest through an index. Built
/// once per process, into `$CARGO_TARGET_DIR/guests` as the runtime's tests do.
pub fn channels_wasm() -> Vec<u8> {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        // Under cargo-fuzz (a nightly toolchain without the wasm target) the module built by
        // `cargo test` is named instead.
        if let Some(path) = std::env::var_os("FUZZ_CHANNELS_WASM") {
            return std::fs::read(&path)
                .unwrap_or_else(|e| panic!("reading FUZZ_CHANNELS_WASM {path:?}: {e}"));
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"))
            .join("guests");
        let dir = repo_root().join("runtime/tests/guests/channels");
        let path = runtime::wasm::build_app(&dir, &target)
            .unwrap_or_else(|e| panic!("building the channels guest: {e}"));
        std::fs::read(path).expect("reading the channels guest")
    })
    .clone()
}

/// A running server over the store in `dir`.
pub struct Server {
    pub store: Arc<Store>,
    pub engine: Arc<SyncEngine>,
    pub sessions: BTreeMap<ConnectionId, Session>,
}

impl Server {
    /// Opens the store in `dir` (creating it), deploys `wasm`, and starts an engine whose
    /// refresh rounds are run by [`Server::refresh`].
    pub fn start(dir: &Path, wasm: &[u8]) -> Server {
        let store = Arc::new(Store::open(dir).expect("open the store"));
        let host = host();
        let module = Arc::new(host.deploy(&store, wasm).expect("deploy"));
        let engine = Arc::new(SyncEngine::new(store.clone(), host, module));
        Server {
            store,
            engine,
            sessions: BTreeMap::new(),
        }
    }

    pub fn module(&self) -> Arc<DeployedModule> {
        self.engine.module()
    }

    /// A new connection (the socket upgraded, nothing read yet).
    pub fn accept(&mut self) -> ConnectionId {
        let id = self.engine.new_connection_id();
        self.sessions.insert(id, Session::new(id));
        id
    }

    /// One refresh round of the engine.
    pub fn refresh(&self) {
        self.engine.refresh();
    }

    /// The connection is gone: its query set leaves the shared subscriptions; a mutation it
    /// already ran stays recorded in the mutation log, queued ones are dropped.
    pub fn close(&mut self, id: ConnectionId) {
        if let Some(mut session) = self.sessions.remove(&id) {
            session.release(&self.engine);
        }
    }

    /// Stops: every connection dropped, then the engine and the store (which waits for its
    /// committer). Returns once the store's files are closed.
    pub fn stop(mut self) {
        let ids: Vec<ConnectionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
        let Server { store, engine, .. } = self;
        drop(engine);
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "the store is still shared after the engine stopped"
        );
        drop(store);
    }
}

struct Pending {
    request_id: u64,
    udf_path: String,
    args: Value,
}

/// One connection's session.
pub struct Session {
    pub id: ConnectionId,
    wake: Arc<Notify>,
    session_id: Option<String>,
    /// Frames the client sent, not yet read.
    pub inbox: VecDeque<String>,
    /// Frames for the client, not yet delivered.
    pub outbox: VecDeque<String>,
    queued: VecDeque<Pending>,
    /// A mutation that ran and is not yet answered.
    ran: Option<(u64, Outcome)>,
    /// Set after a `FatalError`: nothing more is read or sent; the server closes it.
    pub fatal: Option<String>,
}

impl Session {
    fn new(id: ConnectionId) -> Session {
        Session {
            id,
            wake: Arc::new(Notify::new()),
            session_id: None,
            inbox: VecDeque::new(),
            outbox: VecDeque::new(),
            queued: VecDeque::new(),
            ran: None,
            fatal: None,
        }
    }

    /// Reads one frame of the inbox, if any; a protocol violation queues the `FatalError`.
    /// Returns whether there was a frame.
    pub fn read_one(&mut self, engine: &SyncEngine) -> bool {
        if self.fatal.is_some() {
            return false;
        }
        let Some(text) = self.inbox.pop_front() else {
            return false;
        };
        if let Err(reason) = self.handle_frame(engine, &text) {
            assert!(!reason.is_empty(), "a FatalError without a reason");
            self.outbox.push_back(
                ServerMessage::FatalError {
                    error: reason.clone(),
                }
                .to_frame(),
            );
            self.fatal = Some(reason);
            self.release(engine);
        }
        true
    }

    /// What `session.rs` does with one text frame.
    fn handle_frame(&mut self, engine: &SyncEngine, text: &str) -> Result<(), String> {
        if text.len() > runtime::sync::session::MAX_CLIENT_FRAME_BYTES {
            return Err(format!("a frame of {} bytes exceeds the limit", text.len()));
        }
        let message = parse_client_message(text).map_err(|e| e.0)?;
        match message {
            ClientMessage::Connect { .. } if self.session_id.is_some() => {
                return Err("Connect: sent twice on one connection".into());
            }
            ClientMessage::Connect { session_id, .. } => {
                let mut state = engine.state.blocking_lock();
                state
                    .connections
                    .insert(self.id, ConnectionState::new(self.wake.clone()));
                self.session_id = Some(session_id);
            }
            _ if self.session_id.is_none() => {
                return Err("the first message on a connection must be Connect".into());
            }
            ClientMessage::ModifyQuerySet {
                base_version,
                new_version,
                modifications,
            } => {
                {
                    let mut state = engine.state.blocking_lock();
                    let state = &mut *state;
                    let connection = state
                        .connections
                        .get_mut(&self.id)
                        .expect("registered at Connect");
                    connection.modify_query_set(
                        &mut state.subscriptions,
                        &state.module,
                        base_version,
                        new_version,
                        modifications,
                    )?;
                }
                self.wake.notify_one();
            }
            ClientMessage::Mutation {
                request_id,
                udf_path,
                args,
            } => self.queued.push_back(Pending {
                request_id,
                udf_path,
                args,
            }),
            ClientMessage::Authenticate { token_type, .. } => {
                if token_type != TokenType::None {
                    return Err(format!(
                        "Authenticate: tokenType {token_type:?} is not supported"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Mutations read and not yet run (a flood is bounded by what the caller lets in).
    pub fn queued_mutations(&self) -> usize {
        self.queued.len()
    }

    /// Runs the oldest queued mutation unless one waits for its answer. Returns whether one
    /// ran.
    pub fn run_one(&mut self, engine: &SyncEngine) -> bool {
        if self.fatal.is_some() || self.ran.is_some() {
            return false;
        }
        let Some(next) = self.queued.pop_front() else {
            return false;
        };
        let session_id = self
            .session_id
            .clone()
            .expect("mutations come after Connect");
        let outcome = engine.mutations.run_once(&session_id, next.request_id, || {
            engine
                .host
                .run_mutation_once(
                    &engine.store,
                    &engine.module(),
                    &next.udf_path,
                    &next.args,
                    CallOptions::default(),
                    &receipt_key(&session_id, next.request_id),
                )
                .map_err(|failure| (function_error(&failure), failure.log_lines))
        });
        self.ran = Some((next.request_id, outcome));
        true
    }

    /// Answers the mutation that ran; a success then awaits a transition at its timestamp.
    pub fn answer(&mut self, engine: &SyncEngine) -> bool {
        if self.fatal.is_some() {
            return false;
        }
        let Some((request_id, outcome)) = self.ran.take() else {
            return false;
        };
        let (response, ts) = match outcome {
            Ok(success) => (
                ServerMessage::MutationResponse {
                    request_id,
                    outcome: Ok((success.value, success.ts)),
                    log_lines: success.log_lines,
                },
                Some(success.ts),
            ),
            Err((error, log_lines)) => (
                ServerMessage::MutationResponse {
                    request_id,
                    outcome: Err(error),
                    log_lines,
                },
                None,
            ),
        };
        self.outbox.push_back(response.to_frame());
        if let Some(ts) = ts {
            let mut state = engine.state.blocking_lock();
            if let Some(connection) = state.connections.get_mut(&self.id) {
                connection.await_ts(ts);
            }
            drop(state);
            self.wake.notify_one();
        }
        true
    }

    /// Sends a transition if the engine woke this connection and there is one to send.
    /// Returns whether it was woken.
    pub fn send_transition(&mut self, engine: &SyncEngine) -> bool {
        if self.fatal.is_some() || !take_permit(&self.wake) {
            return false;
        }
        let transition = {
            let mut state = engine.state.blocking_lock();
            let state = &mut *state;
            let Some(connection) = state.connections.get_mut(&self.id) else {
                return true;
            };
            connection.take_transition(&state.subscriptions, state.ts)
        };
        if let Some((start, end, modifications)) = transition {
            self.outbox.push_back(
                ServerMessage::Transition {
                    start,
                    end,
                    modifications,
                }
                .to_frame(),
            );
        }
        true
    }

    fn release(&mut self, engine: &SyncEngine) {
        self.queued.clear();
        let mut state = engine.state.blocking_lock();
        let state = &mut *state;
        if let Some(connection) = state.connections.remove(&self.id) {
            connection.release(&mut state.subscriptions);
        }
    }
}

/// Takes the wake-up the engine stored, if any (a `Notify` holds at most one).
fn take_permit(notify: &Notify) -> bool {
    let mut notified = pin!(notify.notified());
    let mut context = Context::from_waker(Waker::noop());
    matches!(notified.as_mut().poll(&mut context), Poll::Ready(()))
}

/// The receipt key of `session.rs`: the session id's length, the session id, the request id.
fn receipt_key(session_id: &str, request_id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + session_id.len() + 8);
    key.extend_from_slice(&(session_id.len() as u32).to_be_bytes());
    key.extend_from_slice(session_id.as_bytes());
    key.extend_from_slice(&request_id.to_be_bytes());
    key
}

fn function_error(failure: &CallFailure) -> FunctionError {
    let data = match &failure.error {
        CallError::User { data, .. } => data.clone(),
        _ => None,
    };
    FunctionError {
        message: failure.to_string(),
        data,
    }
}
