//! The shared side of the sync endpoint: one [`Subscriptions`] for every connection, the
//! query set of each connection, and the background task that brings results up to date
//! after commits.
//!
//! Locking: everything mutable lives in one [`EngineState`] behind a `tokio::sync::Mutex`.
//! The refresh holds it on the blocking pool (`blocking_lock`) while it re-runs queries;
//! sessions take it with `lock().await`, so the reactor never blocks on it. Holding one lock
//! for results and the timestamp they were computed at is what makes every transition show
//! one snapshot (guarantee 1): whenever the lock is free, every result held is valid at
//! `EngineState::ts`.
//!
//! Fan-out: a refresh costs time in the subscriptions a commit changed and the connections
//! watching them (`Subscriptions::watchers`, plus the connections in `waiting`), never in
//! every connection. For each of those it computes the next transition while it holds the
//! lock anyway (letting it go every `PREPARE_CHUNK` connections), and leaves it in the
//! connection's outbox; connections sent the same message
//! share one `Outgoing`, serialized once. The session's task then only writes it. Measured
//! with `bench --only fanout` (1,000 subscribers of one query, two shared cores): 21 µs of
//! server CPU per delivery before, when each of 1,000 tasks took the lock in turn to diff
//! and serialize its own copy, and 13 µs after, against 10.3 µs for the raw-broadcast
//! baseline (the same frame written to the same sockets by a minimal tokio server).
//!
//! Back-pressure: the engine never queues transitions. An outbox holds one at most; a
//! connection whose task has not written it yet is only woken again, and its task then diffs
//! what it has sent against the current results. A slow client therefore gets one transition
//! folding every commit it missed, and the server buffers nothing per commit.

use super::connection::ConnectionState;
use super::mutation_log::MutationLog;
use super::subscriptions::{advance, advance_without_queries, CommitFeed, Subscriptions};
use crate::auth::Access;
use crate::store::{Store, Timestamp};
use crate::wasm::{DeployedModule, WasmHost};
use parking_lot::RwLock;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Mutex, Notify};

pub use super::subscriptions::ConnectionId;

/// Connections a refresh prepares transitions for while it holds the engine's lock, before
/// it lets others take it. Holding it for all 10,000 subscribers of one query kept the
/// writer's own `MutationResponse` waiting 99 ms at p50 (`bench --only fanout`).
const PREPARE_CHUNK: usize = 64;

/// What the engine guards with its one lock.
pub struct EngineState {
    pub subscriptions: Subscriptions,
    /// The module new subscriptions run (the latest deployed); every subscription is keyed
    /// to it, since a deploy re-keys them all.
    pub module: Arc<DeployedModule>,
    /// The modules subscriptions may name, by hash: the current one.
    modules: HashMap<String, Arc<DeployedModule>>,
    /// The snapshot every held result is valid at (the latest commit at start).
    pub ts: Timestamp,
    pub connections: HashMap<ConnectionId, ConnectionState>,
    /// Connections owed a transition for something other than a changed result
    /// ([`ConnectionState::is_waiting`]): looked at after every refresh, with the watchers
    /// of the results that changed. Every other connection costs a refresh nothing.
    pub waiting: HashSet<ConnectionId>,
}

pub struct SyncEngine {
    pub store: Arc<Store>,
    pub host: Arc<WasmHost>,
    /// The admin key and the sign-in providers of the module being served.
    pub access: Arc<Access>,
    /// Where `Action` frames run.
    pub actions: Arc<crate::actions::Actions>,
    /// The module mutations and HTTP calls run: the latest deployed. Readable without the
    /// engine's lock, which a refresh holds while queries run.
    current: RwLock<Arc<DeployedModule>>,
    feed: Arc<CommitFeed>,
    pub state: Mutex<EngineState>,
    /// Outcomes by (sessionId, requestId), for exactly-once mutations across reconnects.
    pub mutations: MutationLog,
    /// Asks the refresh task for another round: a commit arrived, a query set changed, or a
    /// session waits for a timestamp (read your writes).
    refresh_wanted: Arc<Notify>,
    next_connection: AtomicU64,
    /// Sessions alive, so that shutdown can wait for them (an upgraded connection has left
    /// hyper's hands and its graceful shutdown).
    live_sessions: AtomicUsize,
    sessions_gone: Notify,
    stop_sender: watch::Sender<bool>,
}

impl SyncEngine {
    /// Creates the engine and registers it for the store's commits. Call [`SyncEngine::run`]
    /// to start refreshing.
    pub fn new(
        store: Arc<Store>,
        host: Arc<WasmHost>,
        module: Arc<DeployedModule>,
        access: Arc<Access>,
        actions: Arc<crate::actions::Actions>,
    ) -> Self {
        let feed = CommitFeed::attach(&store);
        let refresh_wanted = Arc::new(Notify::new());
        let on_commit = refresh_wanted.clone();
        // Registered after the feed's own listener, so the feed already holds the commits
        // when the refresh task wakes.
        store.on_commit(Box::new(move |_| on_commit.notify_one()));
        let modules = HashMap::from([(module.hash.clone(), module.clone())]);
        // No results yet, so every result is valid at the latest commit: a client's first
        // transition is never behind what it saw before a reconnect or a restart.
        let ts = store.latest_ts();
        SyncEngine {
            store,
            host,
            access,
            actions,
            current: RwLock::new(module.clone()),
            feed,
            state: Mutex::new(EngineState {
                subscriptions: Subscriptions::default(),
                module,
                modules,
                ts,
                connections: HashMap::new(),
                waiting: HashSet::new(),
            }),
            mutations: MutationLog::default(),
            refresh_wanted,
            next_connection: AtomicU64::new(0),
            live_sessions: AtomicUsize::new(0),
            sessions_gone: Notify::new(),
            stop_sender: watch::channel(false).0,
        }
    }

    /// Refreshes subscriptions whenever asked, until [`SyncEngine::shutdown`]. One round at a
    /// time; requests arriving during a round fold into the next one.
    pub async fn run(self: Arc<Self>) {
        let mut stop = self.stop_sender.subscribe();
        loop {
            tokio::select! {
                () = self.refresh_wanted.notified() => {}
                _ = stop.wait_for(|stopping| *stopping) => return,
            }
            if self.round_without_queries().await {
                continue;
            }
            let engine = self.clone();
            // Queries run wasm: keep them off the reactor.
            if let Err(e) = tokio::task::spawn_blocking(move || engine.refresh()).await {
                tracing::error!("the sync engine's refresh failed: {e}");
            }
        }
    }

    /// One round: every subscription brought up to one new snapshot, and the next transition
    /// of every connection with something new computed and left in its outbox (one message,
    /// serialized once, for all the connections that are sent the same one). Public so that a
    /// deterministic simulation can run rounds itself, in an order it chooses, instead of the
    /// task of [`SyncEngine::run`].
    pub fn refresh(&self) {
        let mut guard = self.state.blocking_lock();
        let state = &mut *guard;
        let (ts, changed) = advance(
            &mut state.subscriptions,
            &self.feed,
            &self.host,
            &self.store,
            &state.modules,
        );
        state.ts = state.ts.max(ts);
        let mut candidates: Vec<ConnectionId> = state.waiting.iter().copied().collect();
        for &id in &changed {
            candidates.extend(state.subscriptions.watchers(id));
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut shared = HashMap::new();
        for (n, chunk) in candidates.chunks(PREPARE_CHUNK).enumerate() {
            if n > 0 {
                // Let a mutation's answer or a query-set change in between: every result
                // held is still valid at `ts` (only a refresh changes results), and each
                // connection is prepared from the state it has when its turn comes.
                drop(guard);
                guard = self.state.blocking_lock();
            }
            let state = &mut *guard;
            // A session may have moved the results on while the lock was free (see
            // `SessionCore::answer_mutation`): never prepare a transition older than that.
            let ts = state.ts.max(ts);
            for &id in chunk {
                let Some(connection) = state.connections.get_mut(&id) else {
                    state.waiting.remove(&id);
                    continue;
                };
                if connection.prepare(&state.subscriptions, ts, &mut shared) {
                    connection.outbox.wake.notify_one();
                }
                if !connection.is_waiting() {
                    state.waiting.remove(&id);
                }
            }
        }
    }

    /// The round [`SyncEngine::refresh`] would make, made here when it would run no query and
    /// prepare no transition: no connection waits for one, no query is new or re-keyed, and
    /// the commits since the last round invalidate no subscription. It then only moves the
    /// results held to the latest commit, and needs no hand-off to the blocking pool, which
    /// cost a thread wake-up per commit group (`bench --only chat-send`, where nothing is
    /// subscribed). Returns whether that was the whole round; if not, what it marked stale
    /// is re-run by the full round.
    async fn round_without_queries(&self) -> bool {
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if !state.waiting.is_empty() || state.subscriptions.has_stale() {
            return false;
        }
        let latest = self.store.latest_ts();
        self.advance_in_place(state, latest)
    }

    /// Moves the results held to the latest commit if no query has to run for it (see
    /// [`advance_without_queries`]); returns whether they are now at or after `ts`. Called
    /// with the engine's lock held, by a session that must not wait for a round.
    pub fn advance_in_place(&self, state: &mut EngineState, ts: Timestamp) -> bool {
        if state.ts < ts {
            if let Some(now) =
                advance_without_queries(&mut state.subscriptions, &self.feed, &self.store, state.ts)
            {
                state.ts = now;
            }
        }
        state.ts >= ts
    }

    /// Runs a round if one was asked for since the last (a commit, a query-set change, an
    /// answered mutation), as [`SyncEngine::run`] would; returns whether it ran. For a
    /// deterministic driver: the simulation refreshes only when the server would.
    pub fn refresh_if_requested(&self) -> bool {
        let mut requested = std::pin::pin!(self.refresh_wanted.notified());
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let ran = requested.as_mut().poll(&mut context).is_ready();
        if ran {
            self.refresh();
        }
        ran
    }

    /// The module calls run now: the latest deployed.
    pub fn module(&self) -> Arc<DeployedModule> {
        self.current.read().clone()
    }

    /// Makes `module` the one every call runs, without closing a connection: each
    /// connection's queries are re-keyed to it and re-run at the next snapshot, and clients
    /// get a transition only for results the new code changes. Mutations already running
    /// finish on the module they started with.
    pub async fn deploy(&self, module: Arc<DeployedModule>) {
        {
            let mut state = self.state.lock().await;
            let state = &mut *state;
            *self.current.write() = module.clone();
            for connection in state.connections.values_mut() {
                connection.rebind(&mut state.subscriptions, &module);
            }
            state.modules = HashMap::from([(module.hash.clone(), module.clone())]);
            state.module = module;
        }
        self.request_refresh();
    }

    /// WebSocket sessions open now (clients' and `runtime logs`' alike).
    pub fn connections(&self) -> usize {
        self.live_sessions.load(Ordering::Acquire)
    }

    pub fn request_refresh(&self) {
        self.refresh_wanted.notify_one();
    }

    pub fn new_connection_id(&self) -> ConnectionId {
        self.next_connection.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Tells every session and the refresh task to stop, and waits until every session has
    /// closed its socket (each finishes the mutation it is running first).
    pub async fn shutdown(&self) {
        let _ = self.stop_sender.send(true);
        loop {
            let gone = self.sessions_gone.notified();
            if self.live_sessions.load(Ordering::Acquire) == 0 {
                return;
            }
            gone.await;
        }
    }

    /// Resolves once shutdown has begun.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop_sender.subscribe()
    }

    /// Counts a session as alive until the guard drops.
    pub fn session_guard(self: &Arc<Self>) -> SessionGuard {
        self.live_sessions.fetch_add(1, Ordering::AcqRel);
        SessionGuard {
            engine: self.clone(),
        }
    }
}

pub struct SessionGuard {
    engine: Arc<SyncEngine>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.engine.live_sessions.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.engine.sessions_gone.notify_waiters();
        }
    }
}
