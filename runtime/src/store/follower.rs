//! A store on a node that does not hold the writer lease: it follows the leader's commits by
//! tailing the commit log, and sends its own transactions' commits to the leader.
//!
//! - **Reads** are local: a follower publishes each logged commit as the leader did (catalog,
//!   creation times, what each commit wrote), so its transactions, snapshots and live queries
//!   read its own published timestamp, and its commit listeners (subscriptions, the dashboard)
//!   hear every commit in order, exactly as on the leader.
//! - **Writes**: a transaction runs here, against this node's snapshot, and its commit request
//!   (begin timestamp, read set, writes, receipt: `commit_wire`) goes to the leader, whose
//!   committer validates it against everything committed since that begin, like one of its
//!   own. The answer is returned only once this node has applied the commit, so a client of
//!   this node reads its own writes here.
//! - **Promotion**: when this node takes the lease, it applies the log to its end (the lease
//!   fences the old leader, so the log is final up to there) and its committer takes commits.
//!
//! The committed keys of a logged commit are derived from its writes: index entries it wrote,
//! and, for each document it wrote, the document's entry in every index of its table (a write
//! that leaves an index key unchanged logs no index write, yet the document behind it
//! changed). That is the set the leader's committer announced.

use super::catalog::{self, index_key, TableInfo};
use super::commit_wire::{self, CommitReply};
use super::committer::{CommitRequest, CommittedKeys, CommitterState};
use super::document::StoredDocument;
use super::engine::{CommitRecord, EngineError, Space, Timestamp};
use super::error::StoreError;
use super::Shared;
use ferrovex_model::DocumentId;
use std::sync::Arc;
use std::time::Duration;

/// How a follower reaches the leader: sends an encoded commit request (`commit_wire`) and
/// returns the encoded reply. Implemented by the cluster layer (HTTP with the admin key).
pub trait LeaderLink: Send + Sync + 'static {
    fn send(&self, request: &[u8]) -> Result<Vec<u8>, LinkError>;
}

/// Why a request did not reach the leader, and whether it may have committed.
#[derive(Debug)]
pub enum LinkError {
    /// Nothing was sent (no leader known, the connection refused): safe to send again.
    NotSent(String),
    /// Refused before it reached the leader's store (the admin key, the size): not committed,
    /// and sending it again would be refused again.
    Refused(String),
    /// Sent, and no answer came back: it may or may not have committed.
    Unknown(String),
}

/// Which role the store plays in its deployment.
pub(crate) enum Role {
    /// Commits through its own committer (a single server, or the lease holder).
    Leader,
    /// Follows the log; commits through the leader.
    Follower(Arc<dyn LeaderLink>),
}

/// Log entries read per round trip while catching up.
const TAIL_BATCH: usize = 1024;
/// How long the tail waits before asking the log again when it found nothing new, unless a
/// commit of this node's is waiting to be applied (then it asks at once). A round trip to
/// the log costs the database about 50 µs; every 2 ms is 500 a second per follower.
const TAIL_IDLE: Duration = Duration::from_millis(2);
/// How long the tail waits after the log could not be read before trying again.
const TAIL_RETRY: Duration = Duration::from_millis(200);
/// How long a forwarded commit waits for this node to apply it before saying so.
const APPLY_WAIT: Duration = Duration::from_secs(30);
/// How long a commit waits for a leader while none can take it (the old one died: its lease
/// of 10 s runs out, then a node takes it and applies the log), sending again every
/// `FAILOVER_RETRY`: a failover costs clients a pause, not an error.
const FAILOVER_WAIT: Duration = Duration::from_secs(30);
const FAILOVER_RETRY: Duration = Duration::from_millis(100);

/// The tail: applies the log's new commits until the store is promoted or closed.
pub(crate) fn tail(shared: Arc<Shared>) {
    let mut failing = false;
    loop {
        if shared.closing() || shared.is_leader() {
            return;
        }
        match catch_up_once(&shared) {
            Ok(0) => {
                failing = false;
                shared.wait_for_tail_wake(TAIL_IDLE);
            }
            Ok(_) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!("following the commit log: {e}; trying again");
                }
                failing = true;
                std::thread::sleep(TAIL_RETRY);
            }
        }
    }
}

/// Applies one batch of the log after what this node has applied; returns how many commits.
pub(crate) fn catch_up_once(shared: &Shared) -> Result<usize, StoreError> {
    let after = shared.state.lock().last_ts;
    let records = shared.engine.log_after(after, TAIL_BATCH)?;
    if records.is_empty() {
        return Ok(0);
    }
    let mut state = shared.state.lock();
    // Promotion may have applied some of these meanwhile.
    let records: Vec<CommitRecord> = records
        .into_iter()
        .filter(|r| r.ts > state.last_ts)
        .collect();
    apply_records(shared, &mut state, records)
}

/// Applies `records` (newer than the state, oldest first) and publishes them.
pub(crate) fn apply_records(
    shared: &Shared,
    state: &mut CommitterState,
    records: Vec<CommitRecord>,
) -> Result<usize, StoreError> {
    let mut committed = Vec::with_capacity(records.len());
    let mut failed = None;
    for record in records {
        match replay(shared, state, record) {
            Ok(keys) => committed.push(keys),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    // What was replayed is in the state: it is published and announced even when a later
    // record failed, so the state and what readers see never part.
    let applied = committed.len();
    if applied > 0 {
        shared.publish(state.published());
        shared.notify(&committed);
        shared.engine.discard_before(shared.gc_horizon());
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(applied),
    }
}

/// One logged commit into the state: its catalog changes, creation times, and keys.
fn replay(
    shared: &Shared,
    state: &mut CommitterState,
    record: CommitRecord,
) -> Result<CommittedKeys, StoreError> {
    assert!(
        record.ts > state.last_ts,
        "the log replays in commit order: {} after {}",
        record.ts,
        state.last_ts
    );
    let mut changed_tables: Vec<Arc<TableInfo>> = Vec::new();
    for write in record.writes.iter().filter(|w| w.space == Space::Catalog) {
        let Some(value) = &write.value else { continue };
        let table = TableInfo::decode(value).map_err(StoreError::Corrupt)?;
        shared.claim_table_number(table.number);
        for index in &table.indexes {
            shared.claim_index_id(index.id);
        }
        changed_tables.push(Arc::new(table));
    }
    if !changed_tables.is_empty() {
        state.catalog = Arc::new(state.catalog.with_all(&changed_tables));
    }
    let mut keys = Vec::new();
    let mut tables: Vec<(catalog::TableNumber, i64)> = Vec::new();
    for write in &record.writes {
        match write.space {
            Space::Catalog | Space::Receipts => keys.push((write.space, write.key.clone())),
            Space::Indexes => {
                keys.push((Space::Indexes, write.key.clone()));
                // A document's by-id entry comes and goes with the document: the count's change.
                let index = catalog::index_id_of_key(&write.key);
                let by_id = index
                    .and_then(|index| state.catalog.table_of_index(index))
                    .filter(|table| Some(table.by_id().id) == index);
                if let Some(table) = by_id {
                    let delta = if write.value.is_some() { 1 } else { -1 };
                    add_delta(&mut tables, table.number, delta);
                }
            }
            Space::Documents => {
                let id = DocumentId::from_bytes(&write.key).ok_or_else(|| {
                    StoreError::Corrupt("a logged document key is not an id".into())
                })?;
                add_delta(&mut tables, id.table_number(), 0);
                let Some(bytes) = &write.value else { continue };
                let document = StoredDocument::decode(bytes)?;
                let table = state
                    .catalog
                    .table_by_number(id.table_number())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "a logged write of {id}, whose table number no catalog entry names"
                        ))
                    })?
                    .clone();
                for index in &table.indexes {
                    keys.push((Space::Indexes, index_key(index, &id, &document)));
                }
                state.note_creation_time(table.number, document.creation_time);
            }
        }
    }
    keys.sort();
    keys.dedup();
    tables.sort_unstable();
    let committed = CommittedKeys {
        ts: record.ts,
        keys: Arc::new(keys),
        tables: Arc::new(tables),
    };
    state.remember(committed.clone());
    state.last_ts = record.ts;
    Ok(committed)
}

fn add_delta(
    tables: &mut Vec<(catalog::TableNumber, i64)>,
    table: catalog::TableNumber,
    delta: i64,
) {
    match tables.iter_mut().find(|(t, _)| *t == table) {
        Some((_, total)) => *total += delta,
        None => tables.push((table, delta)),
    }
}

/// Sends `request` to the leader and returns once this node has applied the outcome.
pub(crate) fn commit_remote(
    shared: &Shared,
    link: &dyn LeaderLink,
    request: &CommitRequest,
) -> Result<Timestamp, StoreError> {
    let bytes = commit_wire::encode_request(request);
    let deadline = std::time::Instant::now() + FAILOVER_WAIT;
    let reply = loop {
        let retry = |reason: &str| -> Result<(), StoreError> {
            if std::time::Instant::now() >= deadline {
                return Err(StoreError::Engine(EngineError(format!(
                    "{reason}; no leader took the commit within {FAILOVER_WAIT:?}: nothing was committed"
                ))));
            }
            std::thread::sleep(FAILOVER_RETRY);
            Ok(())
        };
        let reply = match link.send(&bytes) {
            Ok(reply) => reply,
            Err(LinkError::NotSent(reason)) => {
                retry(&reason)?;
                continue;
            }
            Err(LinkError::Refused(reason)) => return Err(StoreError::Engine(EngineError(reason))),
            Err(LinkError::Unknown(reason)) => {
                return Err(StoreError::Engine(EngineError(format!(
                    "{reason} (the commit may or may not have happened)"
                ))))
            }
        };
        match commit_wire::decode_reply(&reply).map_err(|e| {
            StoreError::Engine(EngineError(format!(
                "the leader's answer to a forwarded commit did not decode ({e}); the commit may have happened"
            )))
        })? {
            CommitReply::NotLeader(reason) => retry(&reason)?,
            reply => break reply,
        }
    };
    match reply {
        CommitReply::Committed(ts) => {
            if !shared.wait_visible(ts, APPLY_WAIT) {
                return Err(StoreError::Engine(EngineError(format!(
                    "the leader committed this at {ts}, but this node has not applied it within {APPLY_WAIT:?} (its log tail is behind): read it on another node, or retry"
                ))));
            }
            Ok(ts)
        }
        CommitReply::Conflict { table, leader_ts } => {
            // A retry should read what conflicted: wait (briefly) until it is applied here.
            shared.wait_visible(leader_ts, APPLY_WAIT);
            Err(StoreError::Conflict { table, attempts: 1 })
        }
        CommitReply::Refused(reason) | CommitReply::NotLeader(reason) => {
            Err(StoreError::Engine(EngineError(reason)))
        }
    }
}

/// How the leader answers a forwarded commit request (see `Store::commit_forwarded`).
pub(crate) fn reply_of(result: Result<Timestamp, StoreError>, leader_ts: Timestamp) -> CommitReply {
    match result {
        Ok(ts) => CommitReply::Committed(ts),
        Err(StoreError::Conflict { table, .. }) => CommitReply::Conflict { table, leader_ts },
        Err(e) => CommitReply::Refused(e.to_string()),
    }
}
