//! The sync server without sockets or tasks: a store, a [`SyncEngine`] whose refresh rounds
//! the caller runs, and sessions, each the server's own [`SessionCore`] (what
//! `ferrovex_runtime::sync::session` wraps around a socket) stepped one event at a time. The
//! simulation and the `protocol` target drive it; the order of every step is theirs, so a run
//! is a function of its input.

use ferrovex_runtime::actions::Actions;
use ferrovex_runtime::auth::{Access, AdminKeyFile, AuthSettings};
use ferrovex_runtime::fetch::OutboundPolicy;
use ferrovex_runtime::store::Store;
use ferrovex_runtime::sync::engine::{ConnectionId, SyncEngine};
use ferrovex_runtime::sync::mutation_log::Outcome;
use ferrovex_runtime::sync::protocol::{Outgoing, ServerMessage};
use ferrovex_runtime::sync::session_core::{Reply, SessionCore};
use ferrovex_runtime::wasm::{HostConfig, WasmHost};
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
        let cache = crate::scratch_dir();
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
        let path = ferrovex_runtime::wasm::build_app(&dir, &target)
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
        let (admin_key, _) = AdminKeyFile::open_or_create(dir).expect("the admin key");
        let access = Access::new(
            admin_key,
            AuthSettings::default(),
            None,
            &module.auth_config,
        )
        .expect("the channels guest declares no auth providers");
        let access = Arc::new(access);
        let actions = Actions::new(
            store.clone(),
            host.clone(),
            access.clone(),
            OutboundPolicy::default(),
        );
        let engine = Arc::new(SyncEngine::new(
            store.clone(),
            host,
            module,
            access,
            actions,
        ));
        Server {
            store,
            engine,
            sessions: BTreeMap::new(),
        }
    }

    /// A new connection (the socket upgraded, nothing read yet).
    pub fn accept(&mut self) -> ConnectionId {
        let session = Session::new(self.engine.clone());
        let id = session.id();
        self.sessions.insert(id, session);
        id
    }

    /// One refresh round of the engine.
    pub fn refresh(&self) {
        self.engine.refresh();
    }

    /// A refresh round if one was asked for since the last, as the server's refresh task
    /// runs them; whether it ran.
    pub fn refresh_if_requested(&self) -> bool {
        self.engine.refresh_if_requested()
    }

    /// The connection is gone: its query set leaves the shared subscriptions; a mutation it
    /// already ran stays recorded in the mutation log, queued ones are dropped.
    pub fn close(&mut self, id: ConnectionId) {
        if let Some(mut session) = self.sessions.remove(&id) {
            session.release();
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

/// One connection: the server's own [`SessionCore`] between an inbox and an outbox, each step
/// taken when the caller says, as `ferrovex_runtime::sync::session` takes them when the socket and the
/// blocking pool say.
pub struct Session {
    core: SessionCore,
    engine: Arc<SyncEngine>,
    /// Verifies `Authenticate` tokens (the app declares no providers; the admin key is the
    /// data folder's).
    access: Arc<Access>,
    /// Frames the client sent, not yet read.
    pub inbox: VecDeque<String>,
    /// Frames for the client, not yet delivered.
    pub outbox: VecDeque<String>,
    /// A mutation that ran and is not yet answered.
    ran: Option<(u64, Outcome)>,
    /// Set after a `FatalError`: nothing more is read or sent; the server closes it.
    pub fatal: Option<String>,
    /// Set after a reply that ends the connection (an `AuthError`): likewise over.
    pub closed: bool,
}

impl Session {
    fn new(engine: Arc<SyncEngine>) -> Session {
        Session {
            engine: engine.clone(),
            access: engine.access.clone(),
            core: SessionCore::new(engine),
            inbox: VecDeque::new(),
            outbox: VecDeque::new(),
            ran: None,
            fatal: None,
            closed: false,
        }
    }

    pub fn id(&self) -> ConnectionId {
        self.core.id()
    }

    /// Reads one frame of the inbox, if any; a protocol violation queues the `FatalError`.
    /// Returns whether there was a frame.
    pub fn read_one(&mut self) -> bool {
        if self.is_over() {
            return false;
        }
        let Some(text) = self.inbox.pop_front() else {
            return false;
        };
        let mut reply = now(self.core.handle_frame(&text));
        if let Ok(Reply::Verify(pending)) = reply {
            let verdict = now(pending.verify(&self.access));
            reply = now(self.core.finish_authenticate(verdict));
        }
        match reply {
            Ok(Reply::None | Reply::Verify(_)) => {}
            // An action runs on the blocking pool, outside the steps the caller orders: it
            // is answered at once.
            Ok(Reply::RunAction(call)) => {
                let answer = action_runtime().block_on(call.run(self.engine.clone()));
                self.outbox.push_back(answer.to_frame());
            }
            Ok(Reply::Send(message)) => self.outbox.push_back(message.to_frame()),
            Ok(Reply::SendAndClose(message)) => {
                self.outbox.push_back(message.to_frame());
                self.closed = true;
                self.release();
            }
            Err(reason) => {
                assert!(!reason.is_empty(), "a FatalError without a reason");
                self.outbox.push_back(
                    ServerMessage::FatalError {
                        error: reason.clone(),
                    }
                    .to_frame(),
                );
                self.fatal = Some(reason);
                self.release();
            }
        }
        true
    }

    /// After a `FatalError` or a reply that closes: nothing more is read, run or sent.
    pub fn is_over(&self) -> bool {
        self.fatal.is_some() || self.closed
    }

    /// Mutations read and not yet run (a flood is bounded by what the caller lets in).
    pub fn queued_mutations(&self) -> usize {
        self.core.queued_mutations()
    }

    /// Runs the oldest queued mutation unless one waits for its answer. Returns whether one
    /// ran.
    pub fn run_one(&mut self) -> bool {
        if self.is_over() {
            return false;
        }
        let Some(mutation) = self.core.next_mutation() else {
            return false;
        };
        let request_id = mutation.request_id();
        self.ran = Some((request_id, mutation.run()));
        true
    }

    /// Answers the mutation that ran; a success then awaits a transition at its timestamp.
    pub fn answer(&mut self) -> bool {
        if self.is_over() {
            return false;
        }
        let Some((request_id, outcome)) = self.ran.take() else {
            return false;
        };
        let answer = now(self.core.answer_mutation(request_id, outcome));
        if let Some(transition) = answer.before {
            self.outbox.push_back(transition.message.to_frame());
        }
        self.outbox.push_back(answer.response.to_frame());
        if let Some(transition) = answer.after {
            self.outbox.push_back(transition.message.to_frame());
        }
        true
    }

    /// Sends a transition if the engine woke this connection and there is one to send.
    /// Returns whether it was woken.
    pub fn send_transition(&mut self) -> bool {
        let Some(transition) = self.next_transition() else {
            return false;
        };
        if let Some(transition) = transition {
            self.outbox.push_back(transition.message.to_frame());
        }
        true
    }

    /// If the engine woke this connection: the transition it has to send now, if any (as
    /// the socket task takes it, the same `Outgoing` the refresh left for every connection
    /// sent the same message). `None` when it was not woken.
    pub fn next_transition(&mut self) -> Option<Option<Arc<Outgoing>>> {
        if self.is_over() || !take_permit(self.core.wake()) {
            return None;
        }
        Some(now(self.core.take_transition()))
    }

    fn release(&mut self) {
        now(self.core.release());
    }
}

/// Runs a step of the core to its end. Its only wait is the engine's lock, which nothing
/// else holds between the steps of one thread.
fn now<T>(step: impl Future<Output = T>) -> T {
    let mut step = pin!(step);
    match step.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a session step waited, but nothing else holds the engine's lock"),
    }
}

fn action_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime for actions")
    })
}

/// Takes the wake-up the engine stored, if any (a `Notify` holds at most one).
fn take_permit(notify: &Notify) -> bool {
    let mut notified = pin!(notify.notified());
    let mut context = Context::from_waker(Waker::noop());
    matches!(notified.as_mut().poll(&mut context), Poll::Ready(()))
}
