//! One connection's view of the subscriptions: its query set, what it has been sent, and
//! how the next transition is computed from the difference (docs/PROTOCOL.md section 3).
//!
//! Lives inside the engine's state, under its lock, so that the refresh task can tell which
//! connections have something new and the session can build a transition from results that
//! all belong to one snapshot.

use super::invalidation::SubscriptionId;
use super::protocol::{
    FunctionError, Outgoing, QueryModification, QuerySetModification, ServerMessage, StateVersion,
};
use super::subscriptions::{ConnectionId, QueryKey, QueryResult, Subscriptions};
use crate::caller::Caller;
use crate::store::Timestamp;
use crate::wasm::DeployedModule;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::Notify;

/// Where the refresh leaves a connection's next transition. The refresh computes it while it
/// holds the engine's lock anyway, so the connection's task writes it without taking the
/// lock: with 1,000 subscribers of one query, each of 1,000 tasks took the lock in turn
/// after every commit to build its own. Holds one transition at most:
/// a connection whose task has not written the last one yet gets its next one computed by
/// the task itself, folding every commit since (the engine queues nothing per commit).
#[derive(Default)]
pub struct Outbox {
    slot: parking_lot::Mutex<Slot>,
    /// Notified (at most one permit) when the connection may have a transition to send.
    pub wake: Notify,
}

#[derive(Default)]
struct Slot {
    ready: Option<Arc<Outgoing>>,
    /// A refresh found the slot full and had news for the connection: once the task takes
    /// what is in the slot it must come back for the rest (its one wake-up permit may
    /// already be spent on the transition in the slot).
    behind: bool,
}

impl Outbox {
    /// The transition the refresh left, if any. If a later refresh found it still here, the
    /// task is woken again to compute what came since.
    pub fn take(&self) -> Option<Arc<Outgoing>> {
        let mut slot = self.slot.lock();
        let ready = slot.ready.take();
        if std::mem::take(&mut slot.behind) {
            self.wake.notify_one();
        }
        ready
    }

    /// Whether the slot is full; if it is, the task is told to come back after the one it
    /// has. Only the refresh fills the slot, under the engine's lock, so an empty slot stays
    /// empty until that refresh [`Outbox::put`]s.
    fn full_so_behind(&self) -> bool {
        let mut slot = self.slot.lock();
        slot.behind |= slot.ready.is_some();
        slot.ready.is_some()
    }

    fn put(&self, outgoing: Arc<Outgoing>) {
        self.slot.lock().ready = Some(outgoing);
    }
}

/// A query of the client's set (by the client's `queryId`).
struct ClientQuery {
    subscription: SubscriptionId,
    /// The result last sent for it; `None` until its first transition.
    sent: Option<Arc<QueryResult>>,
}

pub struct ConnectionState {
    id: ConnectionId,
    /// The query-set version the client asked for last (guarantee 3 acknowledges it).
    query_set_version: u64,
    /// How many `Authenticate` messages were accepted: the identity version the next
    /// transition acknowledges.
    identity_version: u64,
    /// Ordered by query id so that transitions list queries in a stable order.
    queries: BTreeMap<u64, ClientQuery>,
    /// Removed queries not yet announced with `QueryRemoved`.
    removed: Vec<u64>,
    /// The last `endVersion` sent (guarantee 2: the next `startVersion`).
    sent_version: StateVersion,
    /// A successful mutation's commit timestamp, answered but not yet followed by a
    /// transition at or after it (guarantee 5).
    awaiting_ts: Option<Timestamp>,
    /// The session's task's outbox and wake-up.
    pub outbox: Arc<Outbox>,
}

impl ConnectionState {
    pub fn new(id: ConnectionId, outbox: Arc<Outbox>) -> Self {
        ConnectionState {
            id,
            query_set_version: 0,
            identity_version: 0,
            queries: BTreeMap::new(),
            removed: Vec::new(),
            sent_version: StateVersion::INITIAL,
            awaiting_ts: None,
            outbox,
        }
    }

    /// Applies a `ModifyQuerySet` after checking its versions; subscribes and unsubscribes in
    /// the shared `subscriptions`, added queries running for `caller` (the connection's, which
    /// the session holds). An error is fatal for the connection and leaves the set as it was.
    pub fn modify_query_set(
        &mut self,
        subscriptions: &mut Subscriptions,
        module: &DeployedModule,
        caller: &Caller,
        base_version: u64,
        new_version: u64,
        modifications: Vec<QuerySetModification>,
    ) -> Result<(), String> {
        if base_version != self.query_set_version {
            return Err(format!(
                "ModifyQuerySet: baseVersion must equal the query-set version the server holds ({}), got {base_version}",
                self.query_set_version
            ));
        }
        if new_version != base_version + 1 {
            return Err(format!(
                "ModifyQuerySet: newVersion must be baseVersion + 1 ({}), got {new_version}",
                base_version + 1
            ));
        }
        check_query_ids(&self.queries, &modifications)?;
        for modification in modifications {
            match modification {
                QuerySetModification::Add {
                    query_id,
                    udf_path,
                    args,
                    journal,
                } => {
                    let key =
                        QueryKey::from_wire(module, &udf_path, &args, journal.as_deref(), caller);
                    let subscription = subscriptions.subscribe_for(key, self.id);
                    self.queries.insert(
                        query_id,
                        ClientQuery {
                            subscription,
                            sent: None,
                        },
                    );
                }
                QuerySetModification::Remove { query_id } => {
                    let query = self.queries.remove(&query_id).expect("checked above");
                    subscriptions.unsubscribe_for(query.subscription, self.id);
                    self.removed.push(query_id);
                }
            }
        }
        self.query_set_version = new_version;
        Ok(())
    }

    /// Checks an `Authenticate`'s `baseVersion` against the identity version held. An error
    /// is fatal for the connection.
    pub fn check_identity_base(&self, base_version: u64) -> Result<(), String> {
        if base_version != self.identity_version {
            return Err(format!(
                "Authenticate: baseVersion must equal the identity version the server holds ({}), got {base_version}",
                self.identity_version
            ));
        }
        Ok(())
    }

    /// Accepts an `Authenticate` sent at `base_version` (the identity version the client
    /// holds) for `caller`: every query of the set is re-keyed to the new caller, and the next
    /// transition carries the new identity version with every result of the set at one
    /// snapshot (it waits until the re-keyed queries have run). Results the new identity does
    /// not change are not sent again. An error is fatal for the connection.
    pub fn authenticate(
        &mut self,
        subscriptions: &mut Subscriptions,
        base_version: u64,
        caller: &Caller,
    ) -> Result<(), String> {
        self.check_identity_base(base_version)?;
        self.identity_version += 1;
        for query in self.queries.values_mut() {
            let Some(old) = subscriptions.key(query.subscription) else {
                continue;
            };
            if old.caller == *caller {
                continue;
            }
            let key = QueryKey {
                caller: caller.clone(),
                ..old.clone()
            };
            let rekeyed = subscriptions.subscribe_for(key, self.id);
            subscriptions.unsubscribe_for(query.subscription, self.id);
            query.subscription = rekeyed;
        }
        Ok(())
    }

    /// The identity version of the last transition sent (an `AuthError`'s `baseVersion`).
    pub fn sent_identity_version(&self) -> u64 {
        self.sent_version.identity
    }

    /// Moves every query of the set to `module` (a deploy): same function and arguments,
    /// new code. What was sent is kept, so only results the new code changes are sent.
    pub fn rebind(&mut self, subscriptions: &mut Subscriptions, module: &DeployedModule) {
        for query in self.queries.values_mut() {
            let Some(old) = subscriptions.key(query.subscription) else {
                continue;
            };
            if old.module == module.hash {
                continue;
            }
            let key = QueryKey {
                module: module.hash.clone(),
                ..old.clone()
            };
            let rebound = subscriptions.subscribe_for(key, self.id);
            subscriptions.unsubscribe_for(query.subscription, self.id);
            query.subscription = rebound;
        }
    }

    /// Whether this connection is owed a transition for something other than a changed
    /// result: a query set or an identity not yet acknowledged, or a commit it was answered
    /// and has not been shown. The engine keeps such connections in its `waiting` set and
    /// looks at them after every refresh; the others only when a result they hold changes.
    pub fn is_waiting(&self) -> bool {
        self.query_set_version != self.sent_version.query_set
            || self.identity_version != self.sent_version.identity
            || self.awaiting_ts.is_some()
    }

    /// Computes the transition to results valid at `ts` for the task to write, unless it has
    /// not written the last one yet (then it is told to come back for the rest once it has).
    /// Returns whether the task should be woken.
    pub fn prepare(
        &mut self,
        subscriptions: &Subscriptions,
        ts: Timestamp,
        shared: &mut HashMap<Vec<u64>, Arc<Outgoing>>,
    ) -> bool {
        if self.outbox.full_so_behind() {
            // Its task is woken (or still busy) and comes back for the rest.
            return true;
        }
        let Some((start, end, modifications)) = self.take_transition(subscriptions, ts) else {
            return false;
        };
        let key = transition_key(&start, &end, &modifications);
        let outgoing = shared.entry(key).or_insert_with(|| {
            Arc::new(Outgoing::new(ServerMessage::Transition {
                start,
                end,
                modifications,
            }))
        });
        self.outbox.put(outgoing.clone());
        true
    }

    /// [`ConnectionState::take_transition`] as a message of this connection's own (the
    /// session's task computing it, not a refresh sharing it among connections).
    pub fn take_outgoing(
        &mut self,
        subscriptions: &Subscriptions,
        ts: Timestamp,
    ) -> Option<Arc<Outgoing>> {
        let (start, end, modifications) = self.take_transition(subscriptions, ts)?;
        Some(Arc::new(Outgoing::new(ServerMessage::Transition {
            start,
            end,
            modifications,
        })))
    }

    /// Records that a mutation committed at `ts` was answered: a transition at or after it
    /// must follow, even one with no modifications.
    pub fn await_ts(&mut self, ts: Timestamp) {
        self.awaiting_ts = Some(self.awaiting_ts.map_or(ts, |t| t.max(ts)));
    }

    /// The transition from what this connection was last sent to the results held now (all
    /// valid at `ts`), or `None` if there is nothing to send yet. Marks it as sent.
    ///
    /// Waits (returns `None`) while a query of the set has no result yet: its first run comes
    /// with the next refresh, and acknowledging the query set without it would break
    /// guarantee 3.
    pub fn take_transition(
        &mut self,
        subscriptions: &Subscriptions,
        ts: Timestamp,
    ) -> Option<(StateVersion, StateVersion, Vec<QueryModification>)> {
        // After a `MutationResponse` at `awaited`, nothing older is sent (guarantee 5): the
        // refresh that reaches it comes, and folds in what changed before.
        if self.awaiting_ts.is_some_and(|awaited| awaited > ts) {
            return None;
        }
        let mut current = Vec::with_capacity(self.queries.len());
        for (query_id, query) in &self.queries {
            current.push((*query_id, subscriptions.result(query.subscription)?));
        }
        let mut modifications: Vec<QueryModification> = self
            .removed
            .iter()
            .map(|&query_id| QueryModification::Removed { query_id })
            .collect();
        for (query_id, result) in current {
            let query = self.queries.get_mut(&query_id).expect("listed above");
            // Never repeat a result the client holds (guarantee 4).
            let already_held = query
                .sent
                .as_ref()
                .is_some_and(|sent| Arc::ptr_eq(sent, &result) || sent.outcome == result.outcome);
            if !already_held {
                modifications.push(modification(query_id, &result));
            }
            query.sent = Some(result);
        }
        let end = StateVersion {
            query_set: self.query_set_version,
            identity: self.identity_version,
            ts,
        };
        let read_your_writes_due = self.awaiting_ts.is_some_and(|awaited| awaited <= ts);
        if modifications.is_empty()
            && end.query_set == self.sent_version.query_set
            && end.identity == self.sent_version.identity
            && !read_your_writes_due
        {
            return None;
        }
        if read_your_writes_due {
            self.awaiting_ts = None;
        }
        self.removed.clear();
        let start = std::mem::replace(&mut self.sent_version, end);
        Some((start, end, modifications))
    }

    /// Unsubscribes every query of the set (the connection is closing).
    pub fn release(self, subscriptions: &mut Subscriptions) {
        for query in self.queries.into_values() {
            subscriptions.unsubscribe_for(query.subscription, self.id);
        }
    }
}

/// What makes two connections' transitions the same message: their versions and, for each
/// modification, the query id and the prepared result it carries (by address: one result
/// is prepared once).
fn transition_key(
    start: &StateVersion,
    end: &StateVersion,
    modifications: &[QueryModification],
) -> Vec<u64> {
    let mut key = Vec::with_capacity(6 + 2 * modifications.len());
    for version in [start, end] {
        key.extend([version.query_set, version.identity, version.ts]);
    }
    for modification in modifications {
        let (query_id, body) = match modification {
            QueryModification::Prepared { query_id, body } => {
                (*query_id, Arc::as_ptr(body) as *const u8 as u64)
            }
            QueryModification::Removed { query_id } => (*query_id, 0),
            // take_transition sends results prepared, and removals.
            other => unreachable!("an unprepared modification in a transition: {other:?}"),
        };
        key.extend([query_id, body]);
    }
    key
}

/// Within one `ModifyQuerySet`, applied in order: an added id must not be in the set, a
/// removed one must be.
fn check_query_ids(
    queries: &BTreeMap<u64, ClientQuery>,
    modifications: &[QuerySetModification],
) -> Result<(), String> {
    let mut present: HashSet<u64> = queries.keys().copied().collect();
    for modification in modifications {
        match modification {
            QuerySetModification::Add { query_id, .. } => {
                if !present.insert(*query_id) {
                    return Err(format!(
                        "ModifyQuerySet: Add of queryId {query_id}, which is already in the query set"
                    ));
                }
            }
            QuerySetModification::Remove { query_id } => {
                if !present.remove(query_id) {
                    return Err(format!(
                        "ModifyQuerySet: Remove of queryId {query_id}, which is not in the query set"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn modification(query_id: u64, result: &QueryResult) -> QueryModification {
    let body = result.prepared.get_or_init(|| {
        let full = match &result.outcome {
            Ok(value) => QueryModification::Updated {
                query_id,
                value: value.clone(),
                log_lines: result.log_lines.clone(),
                journal: result.journal.clone(),
            },
            Err((message, data)) => QueryModification::Failed {
                query_id,
                error: FunctionError {
                    message: message.clone(),
                    data: data.clone(),
                },
                log_lines: result.log_lines.clone(),
                journal: result.journal.clone(),
            },
        };
        full.prepare()
    });
    QueryModification::Prepared {
        query_id,
        body: body.clone(),
    }
}
