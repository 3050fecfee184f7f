//! Live query results: each distinct query (module version, function, arguments) is computed
//! once however many clients subscribe to it, is marked stale only when a commit writes a key
//! it read, and is re-run with every other stale query at one snapshot, so a set of results
//! always shows one state of the database.

use super::invalidation::{SubscriptionId, SubscriptionIndex};
use super::protocol::{canonical_udf_path, decode_journal, encode_journal, Args};
use crate::caller::Caller;
use crate::store::{CommittedKeys, Snapshot, Store, Timestamp};
use crate::wasm::{CallError, CallFailure, CallOptions, DeployedModule, WasmHost};
use ferrovex_model::{binary, Value};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

/// Identifies one WebSocket connection inside the engine.
pub type ConnectionId = u64;

/// What identifies a result: the module version, the function, its arguments (in their
/// binary encoding, which is canonical), and the caller (identity and admin or not), which is
/// an input of the call like its arguments: two users never share a result, and callers with
/// one identity share one computation.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct QueryKey {
    pub module: String,
    /// The canonical function path, or the path as sent when it is not a valid one.
    pub path: String,
    /// The arguments in binary form, or the message of the call's failure when the path or
    /// the arguments are not valid: such a query fails without running, like a call of an
    /// unknown function, and the client's other queries go on.
    pub args: Result<Vec<u8>, String>,
    /// The journal the client sent: where the query's pages ended when it last saw them.
    pub page_ends: Vec<Vec<u8>>,
    pub caller: Caller,
}

impl QueryKey {
    /// A query of a valid path with arguments that are a value, and no journal.
    pub fn new(module: &DeployedModule, path: &str, args: &Value, caller: Caller) -> Self {
        QueryKey {
            module: module.hash.clone(),
            path: path.to_owned(),
            args: Ok(binary::encode(args)),
            page_ends: Vec::new(),
            caller,
        }
    }

    /// The query a client asked for with `udf_path`, `args` and `journal` as they came on
    /// the wire.
    pub fn from_wire(
        module: &DeployedModule,
        udf_path: &str,
        args: &Args,
        journal: Option<&str>,
        caller: &Caller,
    ) -> Self {
        let checked = canonical_udf_path(udf_path).and_then(|path| {
            let args = args
                .to_value()
                .map(|value| binary::encode(&value))
                .map_err(|reason| invalid_arguments(&path, reason))?;
            let page_ends = journal
                .map(decode_journal)
                .transpose()
                .map_err(|reason| format!("{path}: {reason}"))?
                .unwrap_or_default();
            Ok((path, args, page_ends))
        });
        let (path, args, page_ends) = match checked {
            Ok((path, args, page_ends)) => (path, Ok(args), page_ends),
            Err(message) => (udf_path.to_owned(), Err(message), Vec::new()),
        };
        QueryKey {
            module: module.hash.clone(),
            path,
            args,
            page_ends,
            caller: caller.clone(),
        }
    }
}

/// A call's failure for arguments that are not valid values, in the host's words.
pub fn invalid_arguments(path: &str, reason: String) -> String {
    CallFailure {
        path: path.to_owned(),
        error: CallError::InvalidArguments(reason),
        log_lines: Vec::new(),
    }
    .to_string()
}

/// A query's result at one timestamp: its value or its error message and data.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub ts: Timestamp,
    pub outcome: Result<Value, (String, Option<Value>)>,
    pub log_lines: Vec<String>,
    /// Where its pages ended, for the client to send back (`None` if it paginated nothing).
    pub journal: Option<String>,
    /// Its JSON in a transition, serialized once however many connections are sent it.
    pub prepared: OnceLock<Arc<str>>,
}

struct Entry {
    key: QueryKey,
    subscribers: usize,
    /// The connections subscribed (with how many of their queries), so that a refresh wakes
    /// only the connections of the results that changed, not every connection.
    watchers: HashMap<ConnectionId, u32>,
    result: Option<Arc<QueryResult>>,
    /// Where the query's pages end: the client's journal at first, then what each run
    /// returned, so every re-run keeps the same page ends (pages grow and shrink in place
    /// instead of shifting, and a client's pages stay gapless). Clients that subscribe later
    /// with the same arguments share these ends.
    page_ends: Vec<Vec<u8>>,
}

/// The subscribed queries, their last results, and what their results depend on.
#[derive(Default)]
pub struct Subscriptions {
    index: SubscriptionIndex,
    next_id: SubscriptionId,
    by_key: HashMap<QueryKey, SubscriptionId>,
    entries: HashMap<SubscriptionId, Entry>,
    /// Queries to re-run at the next refresh (new ones, and those a commit touched): kept
    /// apart so a refresh costs time in them, not in every subscription.
    stale: HashSet<SubscriptionId>,
    /// Query executions so far (for tests and metrics: invalidation precision).
    pub runs: u64,
}

impl Subscriptions {
    /// Subscribes to `key`: the same id for the same query, computed once.
    pub fn subscribe(&mut self, key: QueryKey) -> SubscriptionId {
        if let Some(id) = self.by_key.get(&key) {
            self.entries.get_mut(id).expect("indexed").subscribers += 1;
            return *id;
        }
        self.add(key)
    }

    /// [`Subscriptions::subscribe`] for connection `watcher`, which [`Subscriptions::watchers`]
    /// then lists.
    pub fn subscribe_for(&mut self, key: QueryKey, watcher: ConnectionId) -> SubscriptionId {
        let id = self.subscribe(key);
        let entry = self.entries.get_mut(&id).expect("subscribed");
        *entry.watchers.entry(watcher).or_default() += 1;
        id
    }

    /// Ends one subscription of connection `watcher` to `id`.
    pub fn unsubscribe_for(&mut self, id: SubscriptionId, watcher: ConnectionId) {
        if let Some(entry) = self.entries.get_mut(&id) {
            if let Some(count) = entry.watchers.get_mut(&watcher) {
                *count -= 1;
                if *count == 0 {
                    entry.watchers.remove(&watcher);
                }
            }
        }
        self.unsubscribe(id);
    }

    /// The connections subscribed to `id`.
    pub fn watchers(&self, id: SubscriptionId) -> impl Iterator<Item = ConnectionId> + '_ {
        self.entries
            .get(&id)
            .into_iter()
            .flat_map(|entry| entry.watchers.keys().copied())
    }

    fn add(&mut self, key: QueryKey) -> SubscriptionId {
        self.next_id += 1;
        let id = self.next_id;
        self.by_key.insert(key.clone(), id);
        let page_ends = key.page_ends.clone();
        self.entries.insert(
            id,
            Entry {
                key,
                subscribers: 1,
                watchers: HashMap::new(),
                result: None,
                page_ends,
            },
        );
        self.stale.insert(id);
        id
    }

    pub fn unsubscribe(&mut self, id: SubscriptionId) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        entry.subscribers -= 1;
        if entry.subscribers == 0 {
            let entry = self.entries.remove(&id).expect("present");
            self.by_key.remove(&entry.key);
            self.stale.remove(&id);
            self.index.remove(id);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What subscription `id` computes.
    pub fn key(&self, id: SubscriptionId) -> Option<&QueryKey> {
        Some(&self.entries.get(&id)?.key)
    }

    pub fn result(&self, id: SubscriptionId) -> Option<Arc<QueryResult>> {
        self.entries.get(&id)?.result.clone()
    }

    /// Whether some query has to run at the next refresh: new, re-keyed, or invalidated.
    pub fn has_stale(&self) -> bool {
        !self.stale.is_empty()
    }

    /// Marks stale every query that read a key these commits wrote; returns how many.
    pub fn invalidate(&mut self, commits: &[CommittedKeys]) -> usize {
        let keys = commits
            .iter()
            .flat_map(|c| c.keys.iter().map(|(space, key)| (*space, key.as_slice())));
        let hit = self.index.affected(keys);
        let mut marked = 0;
        for id in hit {
            if self.entries.contains_key(&id) && self.stale.insert(id) {
                marked += 1;
            }
        }
        marked
    }

    /// Re-runs every stale query at `snapshot`, returns the ids whose result changed (a
    /// result equal to the one held is not reported again).
    pub fn refresh(
        &mut self,
        host: &WasmHost,
        store: &Arc<Store>,
        modules: &HashMap<String, Arc<DeployedModule>>,
        snapshot: &Snapshot,
    ) -> Vec<SubscriptionId> {
        let stale: Vec<SubscriptionId> = self.stale.drain().collect();
        let mut changed = Vec::new();
        for id in stale {
            let entry = self.entries.get_mut(&id).expect("listed");
            let Some(module) = modules.get(&entry.key.module) else {
                // Its module is not deployed here (yet): keep it for a later refresh.
                self.stale.insert(id);
                continue;
            };
            let args = match &entry.key.args {
                Ok(args) => binary::decode(args).expect("encoded by QueryKey::from_wire"),
                Err(message) => {
                    // Fails the same way at every snapshot: it reads nothing, so no commit
                    // makes it stale again.
                    let result = QueryResult {
                        ts: snapshot.ts(),
                        outcome: Err((message.clone(), None)),
                        log_lines: Vec::new(),
                        journal: None,
                        prepared: OnceLock::new(),
                    };
                    if entry.result.is_none() {
                        changed.push(id);
                    }
                    entry.result = Some(Arc::new(result));
                    continue;
                }
            };
            let run = host.run_query_in(
                store,
                module,
                &entry.key.path,
                &args,
                snapshot.begin_read_only(),
                CallOptions {
                    caller: entry.key.caller.clone(),
                    page_ends: entry.page_ends.clone(),
                    ..CallOptions::default()
                },
            );
            self.runs += 1;
            let result = match run.outcome {
                Ok(outcome) => {
                    if !outcome.page_ends.is_empty() {
                        entry.page_ends = outcome.page_ends;
                    }
                    QueryResult {
                        ts: run.ts,
                        outcome: Ok(outcome.value),
                        log_lines: outcome.log_lines,
                        journal: encode_journal(&entry.page_ends),
                        prepared: OnceLock::new(),
                    }
                }
                Err(failure) => {
                    let data = match &failure.error {
                        CallError::User { data, .. } => data.clone(),
                        _ => None,
                    };
                    QueryResult {
                        ts: run.ts,
                        outcome: Err((failure.to_string(), data)),
                        log_lines: failure.log_lines,
                        journal: encode_journal(&entry.page_ends),
                        prepared: OnceLock::new(),
                    }
                }
            };
            let same = entry
                .result
                .as_ref()
                .is_some_and(|old| old.outcome == result.outcome);
            entry.result = Some(Arc::new(result));
            self.index.insert(id, &run.read_set.normalize());
            if !same {
                changed.push(id);
            }
        }
        changed
    }
}

/// Commits as the committer announces them, buffered until the sync engine takes them.
/// The committer only appends here; the engine waits on it to catch up to a snapshot.
#[derive(Default)]
pub struct CommitFeed {
    pending: Mutex<(Timestamp, Vec<CommittedKeys>)>,
    arrived: Condvar,
}

impl CommitFeed {
    /// Registers the feed with `store`; every later commit lands in it.
    pub fn attach(store: &Store) -> Arc<CommitFeed> {
        let feed = Arc::new(CommitFeed::default());
        feed.pending.lock().0 = store.latest_ts();
        let sink = feed.clone();
        store.on_commit(Box::new(move |commits| {
            let mut pending = sink.pending.lock();
            if let Some(last) = commits.last() {
                pending.0 = pending.0.max(last.ts);
            }
            pending.1.extend_from_slice(commits);
            sink.arrived.notify_all();
        }));
        feed
    }

    /// Takes the commits up to and including `ts`, after waiting until the announcements
    /// reach it (a snapshot's timestamp is published a moment before it is announced).
    /// Later commits stay for the next call: they are not reflected at `ts`.
    pub fn take_through(&self, ts: Timestamp) -> Vec<CommittedKeys> {
        let mut pending = self.pending.lock();
        while pending.0 < ts {
            self.arrived.wait(&mut pending);
        }
        Self::split_through(&mut pending.1, ts)
    }

    /// [`CommitFeed::take_through`] without waiting: `None` if the announcements have not
    /// reached `ts` yet. For a caller on the reactor, which must not block.
    pub fn try_take_through(&self, ts: Timestamp) -> Option<Vec<CommittedKeys>> {
        let mut pending = self.pending.lock();
        (pending.0 >= ts).then(|| Self::split_through(&mut pending.1, ts))
    }

    fn split_through(pending: &mut Vec<CommittedKeys>, ts: Timestamp) -> Vec<CommittedKeys> {
        let later = pending.partition_point(|c| c.ts <= ts);
        let rest = pending.split_off(later);
        std::mem::replace(pending, rest)
    }
}

/// Moves every subscription to the latest snapshot if that needs no query to run: the
/// commits since the last round touched nothing any result read, and no query waits for a
/// run. Returns the new timestamp, or `None` (nothing taken from the feed) when a round of
/// [`advance`] is needed. Cheap and non-blocking, so a session can call it on the reactor:
/// a writer then gets its transition with its `MutationResponse` instead of after the next
/// refresh round.
pub fn advance_without_queries(
    subscriptions: &mut Subscriptions,
    feed: &CommitFeed,
    store: &Store,
    held: Timestamp,
) -> Option<Timestamp> {
    if subscriptions.has_stale() {
        return None;
    }
    let ts = store.latest_ts();
    if ts <= held {
        return Some(held);
    }
    let commits = feed.try_take_through(ts)?;
    // Stale marks made here stay for the next round, which re-runs them at a snapshot at or
    // after `ts` (it takes the later commits itself).
    (subscriptions.invalidate(&commits) == 0).then_some(ts)
}

/// Brings every subscription up to date at one new snapshot: takes the commits announced up
/// to it, marks what they invalidate, and re-runs exactly those queries there. Returns the
/// snapshot's timestamp and the subscriptions whose result changed.
pub fn advance(
    subscriptions: &mut Subscriptions,
    feed: &CommitFeed,
    host: &WasmHost,
    store: &Arc<Store>,
    modules: &HashMap<String, Arc<DeployedModule>>,
) -> (Timestamp, HashSet<SubscriptionId>) {
    let snapshot = store.snapshot();
    // Every commit up to the snapshot invalidates what it touched; a query untouched by all
    // of them has the same result at the snapshot as when it last ran.
    let commits = feed.take_through(snapshot.ts());
    subscriptions.invalidate(&commits);
    let changed = subscriptions.refresh(host, store, modules, &snapshot);
    (snapshot.ts(), changed.into_iter().collect())
}
