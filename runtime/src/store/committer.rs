//! The single committer: validates each transaction's read set against the writes committed
//! since it began (optimistic concurrency, serializable), assigns commit timestamps, writes a
//! whole group of commits with one synced write, and only then publishes the new timestamp
//! to readers. Durable before visible: nothing is readable or acknowledged before the sync.

use super::catalog::{
    check_name, index_id_of_key, index_key, table_catalog_key, Catalog, TableInfo, TableNumber,
};
use super::engine::{CommitRecord, EngineError, Space, Timestamp, Write};
use super::error::StoreError;
use super::read_set::{key_bits, NormalizedReadSet};
use super::transaction::{DocumentWrite, Receipt};
use super::{Published, Shared};
use ferrovex_model::limits::{MAX_COMMIT_GROUP, MAX_RECENT_COMMITS, MAX_TABLES};
use ferrovex_model::DocumentId;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

pub(crate) struct CommitRequest {
    pub begin_ts: Timestamp,
    pub reads: NormalizedReadSet,
    pub writes: BTreeMap<DocumentId, DocumentWrite>,
    pub new_tables: Vec<Arc<TableInfo>>,
    pub receipt: Option<Receipt>,
}

/// Where a commit's outcome goes: a thread blocked on it, or a task awaiting it (which
/// leaves its thread free while the group is written: see `Store::commit_async`).
pub(crate) enum Reply {
    Blocking(SyncSender<Result<Timestamp, StoreError>>),
    Async(tokio::sync::oneshot::Sender<Result<Timestamp, StoreError>>),
}

impl Reply {
    /// Hands the outcome over; a waiter that has gone (a cancelled task) loses nothing: the
    /// commit stands either way.
    fn send(self, outcome: Result<Timestamp, StoreError>) {
        match self {
            Reply::Blocking(sender) => {
                let _ = sender.send(outcome);
            }
            Reply::Async(sender) => {
                let _ = sender.send(outcome);
            }
        }
    }
}

/// What a commit wrote, as index and catalog keys: what conflicts and subscriptions match.
#[derive(Clone, Debug)]
pub struct CommittedKeys {
    pub ts: Timestamp,
    pub keys: Arc<Vec<(Space, Vec<u8>)>>,
    /// Each table the commit wrote documents of, with how its document count changed
    /// (inserts less deletes; 0 when it only changed documents), in table-number order: what
    /// keeps the dashboard's counts exact without a scan per commit.
    pub tables: Arc<Vec<(TableNumber, i64)>>,
}

/// The position of the first of `recent` committed after `ts`: the commits a transaction
/// that began at `ts` must be checked against. Sought from the back, where a transaction's
/// snapshot almost always is (it began a few groups ago), in steps that double, then by
/// bisection within the last step: a few loads of recently written entries. Bisecting all
/// of `recent` (up to `MAX_RECENT_COMMITS`, megabytes) began with loads from its cold
/// middle: 0.53-0.78% of the server's samples in `bench --only chat-send` (BENCHMARKS.md).
fn first_after(recent: &VecDeque<(CommittedKeys, u128)>, ts: Timestamp) -> usize {
    let newer = |at: usize| recent[at].0.ts > ts;
    // Everything from `high` on is newer; find `low` with everything before it not.
    let mut high = recent.len();
    let mut step = 1;
    let mut low = loop {
        let probe = high.saturating_sub(step);
        if probe == high {
            break high;
        }
        if !newer(probe) {
            break probe + 1;
        }
        high = probe;
        step *= 2;
    };
    while low < high {
        let middle = low + (high - low) / 2;
        if newer(middle) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    low
}

pub(crate) struct CommitterState {
    pub last_ts: Timestamp,
    pub catalog: Arc<Catalog>,
    /// Each with the `key_bits` of its keys OR-ed.
    recent: VecDeque<(CommittedKeys, u128)>,
    /// Commits at or before this timestamp are no longer in `recent`.
    horizon: Timestamp,
    last_creation_time: HashMap<TableNumber, f64>,
    failed: Option<String>,
}

impl CommitterState {
    pub fn new(
        last_ts: Timestamp,
        catalog: Arc<Catalog>,
        last_creation_time: HashMap<TableNumber, f64>,
    ) -> Self {
        CommitterState {
            last_ts,
            catalog,
            recent: VecDeque::new(),
            horizon: last_ts,
            last_creation_time,
            failed: None,
        }
    }

    /// The next commit timestamp: nanoseconds since the epoch, kept strictly increasing.
    pub fn next_ts(&self) -> Timestamp {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        now.max(self.last_ts + 1)
    }

    fn table_of_key(&self, space: Space, key: &[u8]) -> String {
        match space {
            Space::Catalog => key
                .get(1..)
                .and_then(|k| ferrovex_model::key::decode(k).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "?".into()),
            _ => index_id_of_key(key)
                .and_then(|i| self.catalog.table_of_index(i))
                .map(|t| t.name.clone())
                .unwrap_or_else(|| "?".into()),
        }
    }

    /// Serializable validation: no commit after `begin_ts` wrote a key this one read.
    fn validate(&self, request: &CommitRequest) -> Result<(), StoreError> {
        if request.begin_ts < self.horizon {
            let table = request
                .writes
                .values()
                .next()
                .and_then(|w| self.catalog.table_by_number(w.table))
                .map(|t| t.name.clone())
                .unwrap_or_else(|| "?".into());
            return Err(StoreError::Conflict { table, attempts: 1 });
        }
        self.check_tables(request)?;
        let first_newer = first_after(&self.recent, request.begin_ts);
        for (commit, written) in self.recent.range(first_newer..) {
            // Most commits share no key with a mutation that read by id: the filter says so
            // without comparing keys (`contains` per key was 2.3% of chat-send's samples).
            if !request.reads.may_meet(*written) {
                continue;
            }
            for (space, key) in commit.keys.iter() {
                if request.reads.contains(*space, key) {
                    return Err(StoreError::Conflict {
                        table: self.table_of_key(*space, key),
                        attempts: 1,
                    });
                }
            }
        }
        Ok(())
    }

    /// A request's tables must fit the catalog: each written table exists or is created by
    /// the request, and a created table takes a name, a number and index ids nobody has. A
    /// local transaction always passes (one node allocates numbers, and a table's creation
    /// reads its catalog key); a forwarded one was made against another node's catalog, which
    /// may have lagged this one.
    fn check_tables(&self, request: &CommitRequest) -> Result<(), StoreError> {
        let mut numbers = std::collections::HashSet::new();
        let mut index_ids = std::collections::HashSet::new();
        for table in &request.new_tables {
            // The shape every table has (`TableInfo::new`), and numbers unique within the
            // request: a forwarded request is checked, not trusted.
            let malformed = |what: &str| {
                Err(StoreError::Corrupt(format!(
                    "a commit creates table {:?} (number {}) {what}",
                    table.name, table.number
                )))
            };
            if !super::catalog::is_system_table(&table.name) {
                check_name("table", &table.name)?;
            }
            let shaped = table.indexes.len() >= 2
                && table.by_id().name == super::catalog::BY_ID
                && table.by_id().fields.is_empty()
                && table.by_creation_time().name == super::catalog::BY_CREATION_TIME
                && table.by_creation_time().fields == [super::catalog::CREATION_TIME_FIELD];
            if !shaped {
                return malformed("without its by_id and by_creation_time indexes first");
            }
            if table.number == 0
                || table.number == TableNumber::MAX
                || !numbers.insert(table.number)
            {
                return malformed("with a number that is reserved or used twice");
            }
            if !table.indexes.iter().all(|i| index_ids.insert(i.id)) {
                return malformed("with an index id used twice");
            }
            if self.catalog.table_count() + request.new_tables.len() > MAX_TABLES {
                return Err(StoreError::LimitExceeded {
                    limit: "MAX_TABLES",
                    what: "tables".into(),
                    max: MAX_TABLES,
                    given: self.catalog.table_count() + request.new_tables.len(),
                });
            }
        }
        for table in &request.new_tables {
            let taken = self.catalog.table(&table.name).is_some()
                || self.catalog.table_by_number(table.number).is_some()
                || table
                    .indexes
                    .iter()
                    .any(|i| self.catalog.table_of_index(i.id).is_some());
            if taken {
                // Made against a catalog that lagged: a retry reads the newer one.
                return Err(StoreError::Conflict {
                    table: table.name.clone(),
                    attempts: 1,
                });
            }
        }
        for write in request.writes.values() {
            let known = self.catalog.table_by_number(write.table).is_some()
                || request.new_tables.iter().any(|t| t.number == write.table);
            if !known {
                return Err(StoreError::Corrupt(format!(
                    "a commit writes a document of table number {}, which neither the catalog nor the commit creates",
                    write.table
                )));
            }
        }
        Ok(())
    }

    /// Turns a validated request into stored writes at `ts`, settling creation times and
    /// recording its keys for later validations.
    fn apply(&mut self, request: CommitRequest, ts: Timestamp) -> (CommitRecord, CommittedKeys) {
        let mut writes = Vec::new();
        let mut keys = Vec::new();
        for table in &request.new_tables {
            let key = table_catalog_key(&table.name);
            writes.push(Write {
                space: Space::Catalog,
                key: key.clone(),
                value: Some(table.encode()),
            });
            keys.push((Space::Catalog, key));
        }
        if !request.new_tables.is_empty() {
            // One copy of the catalog per commit, not one per new table.
            self.catalog = Arc::new(self.catalog.with_all(&request.new_tables));
        }
        let mut writes_in = request.writes;
        // Creation times are strictly increasing per table, in commit order; inserts of one
        // transaction keep the order their provisional times give them.
        let mut inserts: Vec<(f64, DocumentId)> = writes_in
            .iter()
            .filter(|(_, w)| w.old.is_none() && w.new.is_some())
            .map(|(id, w)| (w.new.as_ref().expect("insert").creation_time, *id))
            .collect();
        inserts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (_, id) in inserts {
            let write = writes_in.get_mut(&id).expect("listed above");
            let doc = write.new.as_mut().expect("insert");
            let last = self
                .last_creation_time
                .entry(write.table)
                .or_insert(f64::MIN);
            if doc.creation_time <= *last {
                doc.creation_time = last.next_up();
            }
            *last = doc.creation_time;
        }
        let mut tables: Vec<(TableNumber, i64)> = Vec::new();
        for (id, write) in writes_in {
            let delta = i64::from(write.new.is_some()) - i64::from(write.old.is_some());
            match tables.iter_mut().find(|(t, _)| *t == write.table) {
                Some((_, total)) => *total += delta,
                None => tables.push((write.table, delta)),
            }
            let table = self
                .catalog
                .table_by_number(write.table)
                .expect("a written table is in the catalog or created by the same commit")
                .clone();
            let new = write.new;
            writes.push(Write {
                space: Space::Documents,
                key: id.as_bytes().to_vec(),
                value: new.as_ref().map(|d| d.encode()),
            });
            for index in &table.indexes {
                let old_key = write.old.as_ref().map(|d| index_key(index, &id, d));
                let new_key = new.as_ref().map(|d| index_key(index, &id, d));
                if old_key != new_key {
                    if let Some(k) = &old_key {
                        writes.push(Write {
                            space: Space::Indexes,
                            key: k.clone(),
                            value: None,
                        });
                    }
                    if let Some(k) = &new_key {
                        writes.push(Write {
                            space: Space::Indexes,
                            key: k.clone(),
                            value: Some(Vec::new()),
                        });
                    }
                }
                // Both keys conflict even when equal: the document behind them changed.
                keys.extend(old_key.into_iter().map(|k| (Space::Indexes, k)));
                keys.extend(new_key.into_iter().map(|k| (Space::Indexes, k)));
            }
        }
        if let Some(receipt) = request.receipt {
            // Stamped here, where the commit timestamp is known; not a key anyone reads
            // through an index, so subscriptions never match it.
            let mut value = receipt.outcome;
            value.extend_from_slice(&ts.to_be_bytes());
            // A transaction that read this receipt's absence (`Transaction::receipt`, the
            // same request re-sent elsewhere) conflicts with this commit.
            keys.push((Space::Receipts, receipt.key.clone()));
            writes.push(Write {
                space: Space::Receipts,
                key: receipt.key,
                value: Some(value),
            });
        }
        keys.sort();
        keys.dedup();
        tables.sort_unstable();
        let committed = CommittedKeys {
            ts,
            keys: Arc::new(keys),
            tables: Arc::new(tables),
        };
        self.remember(committed.clone());
        self.last_ts = ts;
        (CommitRecord { ts, writes }, committed)
    }

    /// What readers may see once the commits applied so far are durable.
    pub fn published(&self) -> Published {
        Published {
            ts: self.last_ts,
            catalog: self.catalog.clone(),
            last_creation_time: Arc::new(self.last_creation_time.clone()),
        }
    }

    /// A logged insert's creation time (a follower replaying the log): the next insert of
    /// the table after a promotion must come later.
    pub fn note_creation_time(&mut self, table: TableNumber, creation_time: f64) {
        let last = self.last_creation_time.entry(table).or_insert(f64::MIN);
        if creation_time > *last {
            *last = creation_time;
        }
    }

    pub fn remember(&mut self, committed: CommittedKeys) {
        let written = committed
            .keys
            .iter()
            .fold(0, |bits, (space, key)| bits | key_bits(*space, key));
        self.recent.push_back((committed, written));
        while self.recent.len() > MAX_RECENT_COMMITS {
            let (dropped, _) = self.recent.pop_front().expect("non-empty");
            self.horizon = dropped.ts;
        }
    }

    pub fn fail(&mut self, error: &EngineError) {
        self.failed = Some(error.0.clone());
    }

    /// Writes `records` durably and records their documents as the newest versions (before
    /// the caller publishes them, see `newest`). On failure the outcome is unknown (the write
    /// may be on disk all the same) and this state runs ahead of the disk, so every later
    /// commit is refused until [`CommitterState::recover`] learns from the engine which it
    /// is; the newest versions are forgotten, as `recover` may publish the group without them.
    pub fn write_durably(
        &mut self,
        shared: &Shared,
        records: &[CommitRecord],
    ) -> Result<(), EngineError> {
        match shared.engine.write(records) {
            Ok(()) => {
                shared.newest.record(records);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "durable write failed; commits are refused until the store says what it holds");
                shared.newest.clear();
                self.fail(&e);
                Err(e)
            }
        }
    }

    /// After a failed write: asks the engine which commit is the newest durable one, and
    /// settles the group in doubt (the one write that failed; later groups were refused before
    /// they were applied). Landed whole: it is published and announced, as if the write had
    /// returned. Absent: this state forgets it and goes back to what was published. Nothing
    /// changes while the engine cannot tell (unreachable, fenced, or an engine that cannot
    /// know without a restart).
    pub fn recover(&mut self, shared: &Shared) -> Result<(), String> {
        let Some(reason) = self.failed.clone() else {
            return Ok(());
        };
        let durable = shared
            .engine
            .durable_ts()
            .map_err(|e| format!("{reason}; and now: {}", e.0))?;
        let published = shared.published();
        if durable == self.last_ts {
            let landed: Vec<CommittedKeys> = self
                .recent
                .iter()
                .filter(|(c, _)| c.ts > published.ts)
                .map(|(c, _)| c.clone())
                .collect();
            shared.publish(self.published());
            shared.notify(&landed);
        } else if durable == published.ts {
            self.last_ts = published.ts;
            self.catalog = published.catalog.clone();
            self.last_creation_time = (*published.last_creation_time).clone();
            while self.recent.back().is_some_and(|(c, _)| c.ts > published.ts) {
                self.recent.pop_back();
            }
        } else {
            return Err(format!(
                "{reason}; and the newest durable commit ({durable}) is neither the last published ({}) nor the last written ({})",
                published.ts, self.last_ts
            ));
        }
        tracing::warn!(
            durable,
            "the store is reachable again and holds every commit it acknowledged: commits resume"
        );
        self.failed = None;
        Ok(())
    }

    /// Refuses while a durable write's outcome is in doubt (see `fail` and `recover`).
    pub fn refuse_if_failed(&mut self, shared: &Shared) -> Result<(), StoreError> {
        self.recover(shared).map_err(|reason| failed_error(&reason))
    }
}

/// Commits a group of requests with one durable write and publishes the result.
pub(crate) fn commit_group(
    shared: &Shared,
    state: &mut CommitterState,
    requests: Vec<CommitRequest>,
) -> Vec<Result<Timestamp, StoreError>> {
    if let Err(reason) = state.recover(shared) {
        return requests
            .iter()
            .map(|_| Err(failed_error(&reason)))
            .collect();
    }
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut records = Vec::new();
    let mut committed = Vec::new();
    for request in requests {
        match state.validate(&request) {
            Ok(()) => {
                // Numbers a forwarded request's tables took are taken here too, so that this
                // node never allocates them again (a local request's were allocated here).
                for table in &request.new_tables {
                    shared.claim_table_number(table.number);
                    for index in &table.indexes {
                        shared.claim_index_id(index.id);
                    }
                }
                let ts = state.next_ts();
                let (record, keys) = state.apply(request, ts);
                records.push(record);
                committed.push(keys);
                outcomes.push(Ok(ts));
            }
            Err(conflict) => outcomes.push(Err(conflict)),
        }
    }
    if records.is_empty() {
        return outcomes;
    }
    if let Err(e) = state.write_durably(shared, &records) {
        return outcomes
            .into_iter()
            .map(|o| o.and_then(|_| Err(failed_error(&e.0))))
            .collect();
    }
    shared.publish(state.published());
    shared.notify(&committed);
    shared.engine.discard_before(shared.gc_horizon());
    outcomes
}

pub(crate) fn failed_error(reason: &str) -> StoreError {
    StoreError::Engine(EngineError(format!(
        "an earlier durable write failed ({reason}); no commit is taken until the store can say what it holds (the PostgreSQL engine asks again at each commit; after a RocksDB failure, restart the server)"
    )))
}

/// The committer thread: takes whatever requests are waiting, up to `MAX_COMMIT_GROUP`, and
/// commits them as one group. Requests that arrive during a sync form the next group.
pub(crate) fn run(shared: Arc<Shared>, requests: Receiver<(CommitRequest, Reply)>) {
    while let Ok(first) = requests.recv() {
        let mut group = vec![first];
        while group.len() < MAX_COMMIT_GROUP {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (requests_only, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let outcomes = {
            let mut state = shared.state.lock();
            commit_group(&shared, &mut state, requests_only)
        };
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            reply.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::catalog::IndexInfo;
    use crate::store::read_set::ReadSet;

    fn table(number: TableNumber, name: &str, first_index: u32) -> TableInfo {
        let mut next = first_index;
        TableInfo::new(number, name, move || {
            next += 1;
            next
        })
    }

    fn creating(tables: Vec<TableInfo>) -> CommitRequest {
        CommitRequest {
            begin_ts: 10,
            reads: ReadSet::default().normalize(),
            writes: BTreeMap::new(),
            new_tables: tables.into_iter().map(Arc::new).collect(),
            receipt: None,
        }
    }

    /// The commits after a timestamp are found from the back as a bisection of the whole
    /// would find them: for every timestamp around, before and after those kept, over
    /// windows of every length up to 70 (gaps between timestamps included).
    #[test]
    fn the_commits_after_a_timestamp_are_found_from_the_back() {
        for len in 0..70u64 {
            let recent: VecDeque<(CommittedKeys, u128)> = (0..len)
                .map(|n| {
                    let committed = CommittedKeys {
                        ts: 10 + 3 * n,
                        keys: Arc::default(),
                        tables: Arc::default(),
                    };
                    (committed, 0)
                })
                .collect();
            for ts in 0..20 + 3 * len {
                let expected = recent.partition_point(|(c, _)| c.ts <= ts);
                assert_eq!(
                    first_after(&recent, ts),
                    expected,
                    "{len} commits, after {ts}"
                );
            }
        }
    }

    /// What another node may send: each new table is checked against the table shape, the
    /// request itself and the catalog before anything is applied.
    #[test]
    fn forwarded_tables_are_checked_not_trusted() {
        let existing = Arc::new(table(3, "messages", 10));
        let state = CommitterState::new(
            10,
            Arc::new(Catalog::default().with(existing)),
            HashMap::new(),
        );
        let mut one_index = table(4, "a", 20);
        one_index.indexes.truncate(1);
        let mut user_index_first = table(4, "a", 20);
        user_index_first.indexes.swap(0, 1);
        let mut extra = table(4, "a", 20);
        extra.indexes.push(IndexInfo {
            id: 21,
            name: "by_x".into(),
            fields: vec!["x".into()],
        });
        let cases: Vec<(&str, Vec<TableInfo>, &str)> = vec![
            (
                "one index",
                vec![one_index],
                "without its by_id and by_creation_time",
            ),
            (
                "swapped",
                vec![user_index_first],
                "without its by_id and by_creation_time",
            ),
            (
                "number 0",
                vec![table(0, "a", 20)],
                "reserved or used twice",
            ),
            (
                "one number twice",
                vec![table(4, "a", 20), table(4, "b", 30)],
                "reserved or used twice",
            ),
            ("an index id twice", vec![extra], "index id used twice"),
            (
                "a bad name",
                vec![table(4, "no spaces", 20)],
                "invalid table name",
            ),
        ];
        for (case, tables, expected) in cases {
            let error = state.validate(&creating(tables)).unwrap_err();
            assert!(
                error.to_string().contains(expected),
                "{case}: {error} lacks {expected:?}"
            );
        }
        // Taken by the catalog: made against a catalog that lagged, so a conflict (retried).
        for (case, taken) in [
            ("the name", table(4, "messages", 20)),
            ("the number", table(3, "a", 20)),
            ("an index id", table(4, "a", 10)),
        ] {
            let error = state.validate(&creating(vec![taken])).unwrap_err();
            assert!(error.is_conflict(), "{case}: {error}");
        }
        state
            .validate(&creating(vec![table(4, "a", 20), table(5, "b", 30)]))
            .expect("two well-formed new tables");
    }
}
