//! The document store: tables of documents with indexes, and serializable transactions that
//! are all-or-nothing and durable before they are visible.
//!
//! - [`engine`]: the narrow storage trait (multi-version: a snapshot is a timestamp).
//! - [`rocks`]: its RocksDB implementation, the embedded default.
//! - [`postgres`]: its PostgreSQL implementation, for data in a database server.
//! - [`catalog`]: tables, indexes and how documents map to index keys.
//! - [`transaction`]: reads, the write overlay and the read set.
//! - [`committer`]: validation, group commit, publication.

pub mod catalog;
mod commit_wire;
pub mod committer;
pub mod counts;
pub mod document;
pub mod engine;
pub mod error;
mod follower;
pub mod index_range;
pub(crate) mod newest;
pub mod postgres;
pub mod read_set;
mod recent;
pub mod rocks;
mod serial;
pub mod transaction;

pub use catalog::{TableInfo, BY_CREATION_TIME, BY_ID};
pub use document::Document;
pub use engine::{Order, StorageEngine, Timestamp};
pub use error::StoreError;
pub use index_range::IndexRange;
pub use transaction::{Page, Patch, Stop, Transaction, Usage};

use catalog::{check_name, index_key, Catalog, IndexInfo, TableNumber};
pub use commit_wire::CommitReply;
pub use committer::CommittedKeys;
use committer::{CommitRequest, CommitterState, Reply};
use document::StoredDocument;
use engine::{CommitRecord, KeyRange, Space, Write};
use ferrovex_model::DocumentId;
use follower::Role;
pub use follower::{LeaderLink, LinkError};
use parking_lot::{Condvar, Mutex, RwLock};
use recent::RecentOutcomes;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering as AtomicOrdering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Optimistic attempts before a mutation runs serially against the latest state.
pub const OPTIMISTIC_ATTEMPTS: u32 = 3;
/// Attempts of a mutation on a follower, which has no serial lane (the committer it would
/// hold is the leader's): each retry after a conflict first applies everything the leader had
/// committed when it refused, so only commits made during one round trip can conflict again,
/// and waits longer each time (`follower_backoff`: about 2.5 s over all of them), so that it
/// gives way to a burst on a hot document rather than fail during it.
pub const FOLLOWER_ATTEMPTS: u32 = 32;
/// Of the last 64 attempts of a function run inline (`Store::run_mutation_async`), how many
/// ran long for its mutations to start on the blocking pool instead. A short mutation runs
/// long inline only when a tick of the host's clock falls within it (a 100 µs call under a
/// 10 ms tick: 1 in 100), far below this; a function that mostly takes a good part of a tick
/// or more reaches it.
pub const LONG_OVERRUNS: u32 = 8;
/// While a function's mutations start on the blocking pool, one in this many still runs
/// inline first, so that the record notices when its calls are short again.
pub const LONG_PROBE_EVERY: u64 = 16;

/// What readers may see: the newest durable commit and the catalog as of it.
pub(crate) struct Published {
    pub ts: Timestamp,
    pub catalog: Arc<Catalog>,
    pub last_creation_time: Arc<HashMap<TableNumber, f64>>,
}

pub(crate) struct Shared {
    pub engine: Box<dyn StorageEngine>,
    /// The newest versions of the documents written lately, which reads by id take first.
    pub newest: newest::NewestVersions,
    published: RwLock<Arc<Published>>,
    pub state: Mutex<CommitterState>,
    next_table_number: AtomicU32,
    next_index_id: AtomicU32,
    pub stats: MutationStats,
    /// Begin timestamps of open transactions, with how many began at each.
    active_snapshots: Mutex<BTreeMap<Timestamp, usize>>,
    commit_listeners: RwLock<Vec<CommitListener>>,
    role: RwLock<Role>,
    /// Whether `role` is `Leader`, readable without the lock (and shared: `Store::leadership`).
    leading: Arc<AtomicBool>,
    /// The published timestamp, for threads waiting until a commit is visible here.
    visible: Mutex<Timestamp>,
    visible_changed: Condvar,
    /// Set to make a follower's tail read the log now rather than after its idle wait.
    tail_wake: Mutex<bool>,
    tail_woken: Condvar,
    closing: AtomicBool,
}

/// Called on the committer thread, in commit order, right after commits become visible; it
/// must return quickly (hand the keys to another thread).
pub type CommitListener = Box<dyn Fn(&[CommittedKeys]) + Send + Sync>;

/// A pinned read timestamp: while it lives, no version it can read is discarded, so any
/// number of read-only transactions can read exactly this state.
pub struct Snapshot {
    shared: Arc<Shared>,
    published: Arc<Published>,
}

impl Snapshot {
    pub fn ts(&self) -> Timestamp {
        self.published.ts
    }

    /// A read-only transaction at this snapshot.
    pub fn begin_read_only(&self) -> Transaction {
        self.shared.register_snapshot(self.published.ts);
        Transaction::at(self.shared.clone(), self.published.clone(), true)
    }

    /// The tables as of this snapshot.
    pub fn tables(&self) -> Vec<Arc<TableInfo>> {
        self.published.catalog.tables().cloned().collect()
    }

    /// How many documents `table` holds at this snapshot (0 for a table that does not exist).
    pub fn count_documents(&self, table: &str) -> Result<u64, StoreError> {
        let Some(info) = self.published.catalog.table(table) else {
            return Ok(0);
        };
        let range = IndexRange::all().to_key_range(table, info.by_id())?;
        let mut count = 0;
        for entry in self
            .shared
            .engine
            .scan(Space::Indexes, &range, self.published.ts, Order::Asc)
        {
            entry?;
            count += 1;
        }
        Ok(count)
    }

    /// Every document of `table` at this snapshot, oldest first, read straight from storage
    /// without a transaction's limits: for exports, which read everything once. Memory stays
    /// bounded: documents are read one at a time as the iterator advances.
    pub fn documents(
        &self,
        table: &str,
    ) -> Result<impl Iterator<Item = Result<Document, StoreError>> + '_, StoreError> {
        let info = self.published.catalog.table(table).cloned();
        let range = match &info {
            Some(info) => Some(IndexRange::all().to_key_range(table, info.by_creation_time())?),
            None => None,
        };
        let ts = self.published.ts;
        let entries = range
            .map(|range| {
                self.shared
                    .engine
                    .scan(Space::Indexes, &range, ts, Order::Asc)
            })
            .into_iter()
            .flatten();
        Ok(entries.map(move |entry| {
            let (key, _) = entry?;
            let id = catalog::id_from_index_key(&key)
                .ok_or_else(|| StoreError::Corrupt("index key without a document id".into()))?;
            let bytes = self
                .shared
                .engine
                .get(Space::Documents, id.as_bytes(), ts)?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("index entry for {id} has no document"))
                })?;
            Ok(Document::from_stored(id, StoredDocument::decode(&bytes)?))
        }))
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.shared.end_snapshot(self.published.ts);
    }
}

impl Shared {
    pub fn publish(&self, published: Published) {
        let ts = published.ts;
        *self.published.write() = Arc::new(published);
        *self.visible.lock() = ts;
        self.visible_changed.notify_all();
    }

    /// Waits until a commit at `ts` or later is visible here, at most `timeout`; whether it is.
    pub(crate) fn wait_visible(&self, ts: Timestamp, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut visible = self.visible.lock();
        while *visible < ts {
            if !self.is_leader() {
                self.wake_tail();
            }
            if self
                .visible_changed
                .wait_until(&mut visible, deadline)
                .timed_out()
            {
                return *visible >= ts;
            }
        }
        true
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.leading.load(AtomicOrdering::Acquire)
    }

    pub(crate) fn closing(&self) -> bool {
        self.closing.load(AtomicOrdering::Acquire)
    }

    pub(crate) fn wake_tail(&self) {
        *self.tail_wake.lock() = true;
        self.tail_woken.notify_one();
    }

    /// The tail's idle wait: returns after `timeout`, or at once when woken.
    pub(crate) fn wait_for_tail_wake(&self, timeout: std::time::Duration) {
        let mut woken = self.tail_wake.lock();
        if !*woken {
            self.tail_woken.wait_for(&mut woken, timeout);
        }
        *woken = false;
    }

    pub(crate) fn published(&self) -> Arc<Published> {
        self.published.read().clone()
    }

    /// The latest published state, registered as read until `end_snapshot`, so that no
    /// version it needs is discarded. Registration and the read happen under one lock, which
    /// `gc_horizon` also takes: a horizon never passes a snapshot being taken.
    pub(crate) fn begin_snapshot(&self) -> Arc<Published> {
        let mut active = self.active_snapshots.lock();
        let published = self.published();
        *active.entry(published.ts).or_insert(0) += 1;
        published
    }

    /// One more reader at `ts`, which an existing registration keeps above the horizon.
    pub(crate) fn register_snapshot(&self, ts: Timestamp) {
        *self.active_snapshots.lock().entry(ts).or_insert(0) += 1;
    }

    /// Tells every commit listener what the commits just published wrote.
    pub(crate) fn notify(&self, committed: &[CommittedKeys]) {
        if committed.is_empty() {
            return;
        }
        for listener in self.commit_listeners.read().iter() {
            listener(committed);
        }
    }

    pub(crate) fn end_snapshot(&self, ts: Timestamp) {
        let mut active = self.active_snapshots.lock();
        if let Some(count) = active.get_mut(&ts) {
            *count -= 1;
            if *count == 0 {
                active.remove(&ts);
            }
        }
    }

    /// The oldest timestamp any reader may still read at.
    pub(crate) fn gc_horizon(&self) -> Timestamp {
        let active = self.active_snapshots.lock();
        let latest = self.published().ts;
        active
            .keys()
            .next()
            .map_or(latest, |oldest| (*oldest).min(latest))
    }

    pub fn allocate_table_number(&self) -> TableNumber {
        self.next_table_number.fetch_add(1, AtomicOrdering::Relaxed)
    }

    /// Takes `number` for a new table if no table can have had it yet (it is at or past the
    /// next number to allocate), moving allocation past it. Numbers below that may belong to
    /// a table or to a transaction that has not committed, so they are never claimed.
    pub fn claim_table_number(&self, number: TableNumber) -> bool {
        if number == 0 || number == TableNumber::MAX {
            return false;
        }
        let mut next = self.next_table_number.load(AtomicOrdering::Relaxed);
        while number >= next {
            match self.next_table_number.compare_exchange_weak(
                next,
                number + 1,
                AtomicOrdering::Relaxed,
                AtomicOrdering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => next = actual,
            }
        }
        false
    }

    pub fn allocate_index_id(&self) -> catalog::IndexId {
        self.next_index_id.fetch_add(1, AtomicOrdering::Relaxed)
    }

    /// Moves index id allocation past `id`, which another node allocated.
    pub fn claim_index_id(&self, id: catalog::IndexId) {
        self.next_index_id
            .fetch_max(id.saturating_add(1), AtomicOrdering::Relaxed);
    }
}

/// Counters of how mutations committed, for benchmarks and diagnostics.
#[derive(Debug, Default)]
pub struct MutationStats {
    pub committed: AtomicU64,
    pub conflict_retries: AtomicU64,
    pub serial_runs: AtomicU64,
    /// Attempts and queries run inline that ran long and were made again on the blocking pool
    /// (`Store::run_mutation_async`, `Store::begin_inline_read`).
    pub inline_overruns: AtomicU64,
    /// Attempts and queries run inline that came to a read waiting on the network, and were
    /// made again on the blocking pool (`Stop::NetworkRead`).
    pub inline_network_reads: AtomicU64,
}

/// The result of a committed mutation.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed<T> {
    pub value: T,
    pub ts: Timestamp,
    /// 1 when the first optimistic attempt committed.
    pub attempts: u32,
}

impl<T> Committed<T> {
    fn new(value: T, ts: Timestamp, attempts: u32) -> Self {
        Committed {
            value,
            ts,
            attempts,
        }
    }
}

pub struct Store {
    shared: Arc<Shared>,
    serial: serial::SerialLane,
    /// Per function, whether its recent optimistic commits conflicted (`serial::HOT_CONFLICTS`).
    contention: RecentOutcomes,
    /// Per function, whether its recent attempts run inline ran long (`LONG_OVERRUNS`).
    overruns: RecentOutcomes,
    requests: Option<mpsc::Sender<(CommitRequest, Reply)>>,
    committer: Option<JoinHandle<()>>,
    /// A follower's log tail (see `follower`).
    tail: Option<JoinHandle<()>>,
}

impl Store {
    /// Opens (or creates) the RocksDB store in `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::with_engine(Box::new(rocks::RocksEngine::open(path)?))
    }

    /// Opens the store in the PostgreSQL database at `url`, as its one writer
    /// ([`postgres::PgEngine::open`]).
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        Self::with_engine(Box::new(postgres::PgEngine::open(url)?))
    }

    /// Opens a store over any storage engine, as the one that commits.
    pub fn with_engine(engine: Box<dyn StorageEngine>) -> Result<Store, StoreError> {
        Self::open_as(engine, Role::Leader)
    }

    /// Opens a store that follows the commits another node makes on the same storage (the
    /// engine's commit log) and sends its own commits through `leader` (see `follower`),
    /// until [`Store::promote`].
    pub fn follower(
        engine: Box<dyn StorageEngine>,
        leader: Arc<dyn LeaderLink>,
    ) -> Result<Store, StoreError> {
        let mut store = Self::open_as(engine, Role::Follower(leader))?;
        store.tail = Some(
            std::thread::Builder::new()
                .name("log-tail".into())
                .spawn({
                    let shared = store.shared.clone();
                    move || follower::tail(shared)
                })
                .expect("spawning the log tail thread"),
        );
        Ok(store)
    }

    fn open_as(engine: Box<dyn StorageEngine>, role: Role) -> Result<Store, StoreError> {
        let ts = engine.latest_ts();
        let mut catalog = Catalog::default();
        let everything = KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        };
        for entry in engine.scan(Space::Catalog, &everything, ts, Order::Asc) {
            let (_, value) = entry?;
            let table = TableInfo::decode(&value).map_err(StoreError::Corrupt)?;
            catalog = catalog.with(Arc::new(table));
        }
        let mut last_creation_time = HashMap::new();
        for table in catalog.tables() {
            let index = table.by_creation_time();
            let range = IndexRange::all().to_key_range(&table.name, index)?;
            if let Some(entry) = engine.scan(Space::Indexes, &range, ts, Order::Desc).next() {
                let (key, _) = entry?;
                if let Ok((Some(ferrovex_model::Value::Float64(ct)), _)) =
                    ferrovex_model::key::decode_prefix(&key[4..])
                {
                    last_creation_time.insert(table.number, ct);
                }
            }
        }
        let catalog = Arc::new(catalog);
        let shared = Arc::new(Shared {
            newest: newest::NewestVersions::new(),
            next_table_number: AtomicU32::new(catalog.max_table_number() + 1),
            next_index_id: AtomicU32::new(catalog.max_index_id() + 1),
            published: RwLock::new(Arc::new(Published {
                ts,
                catalog: catalog.clone(),
                last_creation_time: Arc::new(last_creation_time.clone()),
            })),
            state: Mutex::new(CommitterState::new(ts, catalog, last_creation_time)),
            engine,
            stats: MutationStats::default(),
            active_snapshots: Mutex::new(BTreeMap::new()),
            commit_listeners: RwLock::new(Vec::new()),
            leading: Arc::new(AtomicBool::new(matches!(role, Role::Leader))),
            role: RwLock::new(role),
            visible: Mutex::new(ts),
            visible_changed: Condvar::new(),
            tail_wake: Mutex::new(false),
            tail_woken: Condvar::new(),
            closing: AtomicBool::new(false),
        });
        let (sender, receiver) = mpsc::channel();
        let committer = std::thread::Builder::new()
            .name("committer".into())
            .spawn({
                let shared = shared.clone();
                move || committer::run(shared, receiver)
            })
            .expect("spawning the committer thread");
        Ok(Store {
            shared,
            serial: serial::SerialLane::default(),
            contention: RecentOutcomes::new(serial::HOT_CONFLICTS, serial::PROBE_EVERY),
            overruns: RecentOutcomes::new(LONG_OVERRUNS, LONG_PROBE_EVERY),
            requests: Some(sender),
            committer: Some(committer),
            tail: None,
        })
    }

    /// Whether this store commits itself (a single server, or the node holding the writer
    /// lease) rather than through a leader.
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// A flag that is true while this store commits itself (see [`Store::is_leader`]), for
    /// listeners that must not hold the store.
    pub fn leadership(&self) -> Arc<AtomicBool> {
        self.shared.leading.clone()
    }

    /// Makes a follower the one that commits, once its node holds the writer lease: applies
    /// the log to its end (the lease fences the old leader, so nothing more lands before it),
    /// then takes commits. Transactions that began before keep their snapshot and are
    /// validated against everything committed since, as always.
    pub fn promote(&self) -> Result<(), StoreError> {
        let mut state = self.shared.state.lock();
        loop {
            let records = self.shared.engine.log_after(state.last_ts, 1024)?;
            if records.is_empty() {
                break;
            }
            follower::apply_records(&self.shared, &mut state, records)?;
        }
        *self.shared.role.write() = Role::Leader;
        self.shared.leading.store(true, AtomicOrdering::Release);
        Ok(())
    }

    /// The oldest timestamp a reader of this store may still read at: what a node reports so
    /// that the leader's garbage collection keeps what this node's readers need.
    pub fn gc_horizon(&self) -> Timestamp {
        self.shared.gc_horizon()
    }

    /// Commits a request another node's transaction made (`commit_wire`'s bytes), as one of
    /// this store's own, and answers with the encoded [`CommitReply`]. Refused unless this
    /// store is the leader.
    pub fn commit_forwarded(&self, request: &[u8]) -> Vec<u8> {
        let reply = if !self.is_leader() {
            CommitReply::NotLeader(
                "this node does not hold the writer lease (it follows the leader): send commits to the leader".into(),
            )
        } else {
            match commit_wire::decode_request(request) {
                Err(e) => CommitReply::Refused(format!("a forwarded commit: {e}")),
                Ok(request) => {
                    let result = self.send_to_committer(request);
                    follower::reply_of(result, self.latest_ts())
                }
            }
        };
        commit_wire::encode_reply(&reply)
    }

    /// The newest durable, visible commit timestamp.
    pub fn latest_ts(&self) -> Timestamp {
        self.shared.published().ts
    }

    pub fn engine(&self) -> &dyn StorageEngine {
        self.shared.engine.as_ref()
    }

    /// Compacts storage now, discarding versions no open transaction can read.
    pub fn compact(&self) -> Result<(), StoreError> {
        self.shared.engine.discard_before(self.shared.gc_horizon());
        Ok(self.shared.engine.compact()?)
    }

    pub fn stats(&self) -> &MutationStats {
        &self.shared.stats
    }

    /// The tables that exist as of the latest commit.
    pub fn tables(&self) -> Vec<Arc<TableInfo>> {
        self.shared.published().catalog.tables().cloned().collect()
    }

    /// A read-write transaction at the latest commit.
    pub fn begin(&self) -> Transaction {
        Transaction::new(self.shared.clone(), false)
    }

    /// Pins the latest commit for reading (see [`Snapshot`]).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            published: self.shared.begin_snapshot(),
            shared: self.shared.clone(),
        }
    }

    /// Calls `listener` after every group of commits becomes visible, with what each wrote.
    pub fn on_commit(&self, listener: CommitListener) {
        self.shared.commit_listeners.write().push(listener);
    }

    /// A read-only transaction at the latest commit: every write is refused.
    pub fn begin_read_only(&self) -> Transaction {
        Transaction::new(self.shared.clone(), true)
    }

    /// A read-only snapshot for a query that an async worker runs itself, as a mutation's
    /// first attempt is run (`run_mutation_async`): whoever runs code in it stops when it runs
    /// long ([`Transaction::runs_inline`]), or at a read that would wait on the network, and
    /// reports with [`Store::inline_read_ended`]. `None` for a function whose recent inline
    /// runs were stopped: run that query where it may block.
    pub fn begin_inline_read(&self, function: &str) -> Option<Transaction> {
        if !self.may_run_inline(RecentOutcomes::record_of(function)) {
            return None;
        }
        let mut tx = self.begin_read_only();
        tx.set_inline();
        Some(tx)
    }

    /// How a query's inline run (`begin_inline_read`) ended: stopped, or not.
    pub fn inline_read_ended(&self, function: &str, stopped: Option<Stop>) {
        self.inline_run_ended(RecentOutcomes::record_of(function), stopped);
    }

    /// Whether code of the function behind `record` may run inline on an async worker: not
    /// while its recent inline runs were stopped (`LONG_OVERRUNS`), for running long or at a
    /// read that would wait on the network (over PostgreSQL, a function that reads what
    /// memory does not hold).
    fn may_run_inline(&self, record: usize) -> bool {
        !self.overruns.skip(record)
    }

    /// Records how an inline run of the function behind `record` ended, counting a stop.
    fn inline_run_ended(&self, record: usize, stopped: Option<Stop>) {
        self.overruns.record(record, stopped.is_some());
        let counter = match stopped {
            None => return,
            Some(Stop::RanLong) => &self.shared.stats.inline_overruns,
            Some(Stop::NetworkRead) => &self.shared.stats.inline_network_reads,
        };
        counter.fetch_add(1, AtomicOrdering::Relaxed);
    }

    fn request(mut tx: Transaction) -> CommitRequest {
        CommitRequest {
            begin_ts: tx.begin_ts,
            reads: tx.reads.normalize(),
            writes: std::mem::take(&mut tx.writes),
            new_tables: std::mem::take(&mut tx.new_tables).into_values().collect(),
            receipt: tx.receipt.take(),
        }
    }

    /// Commits once, without retrying: `Err(Conflict)` if a concurrent commit changed what
    /// `tx` read. Returns the commit timestamp once the commit is durable and visible.
    /// A transaction without writes commits nothing and returns its begin timestamp.
    pub fn commit(&self, tx: Transaction) -> Result<Timestamp, StoreError> {
        if !tx.has_writes() {
            return Ok(tx.begin_ts);
        }
        let leader = match &*self.shared.role.read() {
            Role::Leader => None,
            Role::Follower(link) => Some(link.clone()),
        };
        let result = match leader {
            None => self.send_to_committer(Self::request(tx)),
            Some(link) => follower::commit_remote(&self.shared, link.as_ref(), &Self::request(tx)),
        };
        if result.is_ok() {
            self.shared
                .stats
                .committed
                .fetch_add(1, AtomicOrdering::Relaxed);
        }
        result
    }

    fn send_to_committer(&self, request: CommitRequest) -> Result<Timestamp, StoreError> {
        let (reply, outcome) = mpsc::sync_channel(1);
        self.enqueue(request, Reply::Blocking(reply))?;
        outcome.recv().map_err(|_| committer_stopped())?
    }

    fn enqueue(&self, request: CommitRequest, reply: Reply) -> Result<(), StoreError> {
        self.requests
            .as_ref()
            .expect("committer runs while the store is open")
            .send((request, reply))
            .map_err(|_| committer_stopped())
    }

    /// [`Store::commit`] on the leader, awaited instead of blocking: the caller's thread is
    /// free while the committer writes the group. A follower's commit goes to the leader
    /// over the network, blocking: there, use `commit`.
    pub fn commit_async(
        &self,
        tx: Transaction,
    ) -> impl std::future::Future<Output = Result<Timestamp, StoreError>> + Send + 'static {
        let sent = if !tx.has_writes() {
            Err(Ok(tx.begin_ts))
        } else {
            let (reply, outcome) = tokio::sync::oneshot::channel();
            match self.enqueue(Self::request(tx), Reply::Async(reply)) {
                Ok(()) => Ok(outcome),
                Err(e) => Err(Err(e)),
            }
        };
        let shared = self.shared.clone();
        async move {
            let outcome = match sent {
                Ok(outcome) => outcome.await.map_err(|_| committer_stopped())?,
                Err(settled) => return settled,
            };
            if outcome.is_ok() {
                shared.stats.committed.fetch_add(1, AtomicOrdering::Relaxed);
            }
            outcome
        }
    }

    /// Runs `body` as a mutation: optimistically up to `OPTIMISTIC_ATTEMPTS` times, retrying
    /// on conflict with a short randomized backoff (or at once, when the serial lane is busy:
    /// what conflicts then is hot), then once more in the serial lane, against
    /// the latest state with the committer held, where it cannot conflict (see `serial`). So a
    /// mutation on a hot document always makes progress instead of failing after retries.
    /// `body` may run more than once and must have no effects outside the transaction.
    pub fn run_mutation<T, E: From<StoreError>>(
        &self,
        body: impl FnMut(&mut Transaction) -> Result<T, E>,
    ) -> Result<Committed<T>, E> {
        self.run_mutation_of(None, body)
    }

    /// [`Store::run_mutation`] for a mutation of `function` (its path): its optimistic
    /// commits are recorded under it, and while most recent ones conflicted it starts in the
    /// serial lane directly (`serial::HOT_CONFLICTS`). Without a function, nothing is recorded
    /// and the mutation always starts optimistically.
    pub fn run_mutation_of<T, E: From<StoreError>>(
        &self,
        function: Option<&str>,
        mut body: impl FnMut(&mut Transaction) -> Result<T, E>,
    ) -> Result<Committed<T>, E> {
        let record = function.map(RecentOutcomes::record_of);
        let mut attempt = 0;
        let serially_first = self.shared.is_leader() && self.starts_serially(record);
        if !serially_first {
            loop {
                attempt += 1;
                let follower = !self.shared.is_leader();
                let mut tx = self.begin();
                tx.set_earlier_attempts(attempt - 1);
                let value = body(&mut tx)?;
                let writes = tx.has_writes();
                let committed = self.commit(tx);
                if follower {
                    match committed {
                        Ok(ts) => return Ok(Committed::new(value, ts, attempt)),
                        Err(StoreError::Conflict { table, .. }) => {
                            self.shared
                                .stats
                                .conflict_retries
                                .fetch_add(1, AtomicOrdering::Relaxed);
                            // No serial lane here: the committer is the leader's.
                            if attempt >= FOLLOWER_ATTEMPTS {
                                return Err(StoreError::Conflict {
                                    table,
                                    attempts: attempt,
                                }
                                .into());
                            }
                            follower_backoff(attempt);
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                match self.after_attempt(committed, writes, attempt, record) {
                    Attempted::Committed(ts) => return Ok(Committed::new(value, ts, attempt)),
                    Attempted::Failed(e) => return Err(e.into()),
                    Attempted::RetryAfter(pause) => std::thread::sleep(pause),
                    Attempted::Serially => break,
                }
            }
        }
        self.run_serially(&mut body, attempt + 1)
    }

    /// [`Store::run_mutation`] for a caller on an async runtime (the WebSocket sessions):
    /// each commit is awaited, not blocked on, so the thread that ran the attempt goes on to
    /// other work while the group is written. A mutation used to hold a blocking thread
    /// through its commit: 3.7 context switches per call before, 2.9 after (`perf stat
    /// --per-thread` during `bench --only chat-send`).
    ///
    /// With `inline`, the first optimistic attempt runs on the caller's own thread, an async
    /// worker, rather than on the blocking pool: the hand-off to a pool thread and back was
    /// about a third of the server's CPU time per chat message (173 and 145 µs per call with
    /// it, 95 and 93 µs without, alternating runs of `bench --only chat-send`). A worker must
    /// not be held long, so `body` is told (`Transaction::runs_inline`) and must stop early
    /// and say so (`Transaction::mark_overran`) when the attempt runs long; the attempt is
    /// then thrown away and made again on the blocking pool, which is safe because nothing of
    /// it was committed and a mutation has no other effects. A function whose recent inline
    /// attempts ran long starts on the pool (`LONG_OVERRUNS`). Over an engine whose reads wait
    /// on the network (`StorageEngine::reads_locally`), an inline attempt stops the same way
    /// at its first read that memory does not answer (`Stop::NetworkRead`). On a follower
    /// (whose commits go to the leader over the network), the attempt runs blocking on the
    /// pool, as in `run_mutation`; in the serial lane it is queued for the lane's drain task
    /// (`serial`), and awaited.
    pub async fn run_mutation_async<T, E, B>(
        self: &Arc<Self>,
        function: &str,
        inline: bool,
        mut body: B,
    ) -> Result<Committed<T>, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        B: FnMut(&mut Transaction) -> Result<T, E> + Send + 'static,
    {
        let record = RecentOutcomes::record_of(function);
        let mut inline = inline && self.may_run_inline(record);
        let mut attempt = 0;
        if !self.shared.is_leader() || !self.starts_serially(Some(record)) {
            loop {
                let store = self.clone();
                if !self.shared.is_leader() {
                    // A follower from the start, or since the last attempt.
                    let function = function.to_owned();
                    return on_blocking_pool(move || store.run_mutation_of(Some(&function), body))
                        .await;
                }
                let (tx, value) = if inline {
                    inline = false;
                    let mut tx = self.begin();
                    tx.set_inline();
                    tx.set_earlier_attempts(attempt);
                    let value = body(&mut tx);
                    self.inline_run_ended(record, tx.stopped());
                    if tx.stopped().is_some() {
                        continue;
                    }
                    (tx, value)
                } else {
                    let (returned, tx, value) = on_blocking_pool(move || {
                        let mut tx = store.begin();
                        tx.set_earlier_attempts(attempt);
                        let value = body(&mut tx);
                        (body, tx, value)
                    })
                    .await;
                    body = returned;
                    (tx, value)
                };
                attempt += 1;
                let value = value?;
                let writes = tx.has_writes();
                let committed = self.commit_async(tx).await;
                match self.after_attempt(committed, writes, attempt, Some(record)) {
                    Attempted::Committed(ts) => return Ok(Committed::new(value, ts, attempt)),
                    Attempted::Failed(e) => return Err(e.into()),
                    Attempted::RetryAfter(pause) => tokio::time::sleep(pause).await,
                    Attempted::Serially => break,
                }
            }
        }
        self.run_serially_async(body, attempt + 1).await
    }

    /// The last attempt of an async caller: queued for the serial lane's drain task (started
    /// here when none runs), awaited without holding a thread.
    async fn run_serially_async<T, E, B>(
        self: &Arc<Self>,
        body: B,
        attempts: u32,
    ) -> Result<Committed<T>, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        B: FnMut(&mut Transaction) -> Result<T, E> + Send + 'static,
    {
        self.shared
            .stats
            .serial_runs
            .fetch_add(1, AtomicOrdering::Relaxed);
        let _occupied = self.serial.occupy();
        let (answer, start) = self.serial.submit(body, attempts);
        if start {
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.serial.drain(&store.shared));
        }
        match answer.await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            // The drain task ended without running it: the runtime is shutting down.
            Err(_) => Err(serial::abandoned().into()),
        }
    }

    /// What follows a leader's optimistic attempt whose commit ended in `committed`: the
    /// retry rules shared by both drivers of a mutation, with no waiting of their own.
    fn after_attempt(
        &self,
        committed: Result<Timestamp, StoreError>,
        writes: bool,
        attempt: u32,
        record: Option<usize>,
    ) -> Attempted {
        if let Some(record) = record.filter(|_| writes) {
            self.contention.record(
                record,
                committed.as_ref().is_err_and(StoreError::is_conflict),
            );
        }
        match committed {
            Ok(ts) => Attempted::Committed(ts),
            Err(e) if e.is_conflict() => {
                self.shared
                    .stats
                    .conflict_retries
                    .fetch_add(1, AtomicOrdering::Relaxed);
                // When the lane is busy, what conflicts now is hot: join it at once.
                if attempt >= OPTIMISTIC_ATTEMPTS || self.serial.is_busy() {
                    Attempted::Serially
                } else {
                    Attempted::RetryAfter(backoff(attempt))
                }
            }
            Err(e) => Attempted::Failed(e),
        }
    }

    /// Whether a mutation recorded under `record` starts in the serial lane.
    fn starts_serially(&self, record: Option<usize>) -> bool {
        record.is_some_and(|record| self.contention.skip(record))
    }

    /// The last attempt: in the serial lane, where it cannot conflict. Blocks.
    fn run_serially<T, E: From<StoreError>>(
        &self,
        body: &mut dyn FnMut(&mut Transaction) -> Result<T, E>,
        attempts: u32,
    ) -> Result<Committed<T>, E> {
        self.shared
            .stats
            .serial_runs
            .fetch_add(1, AtomicOrdering::Relaxed);
        // The lane counts what it commits (a mutation that wrote nothing commits nothing).
        self.serial.run(&self.shared, body, attempts)
    }

    /// Declares an index over `fields` (dot-separated paths) of `table`, creating the table if
    /// needed and filling the index from existing documents in the same commit. Declaring an
    /// index that exists with the same fields does nothing.
    pub fn define_index(
        &self,
        table: &str,
        name: &str,
        fields: &[&str],
    ) -> Result<Timestamp, StoreError> {
        check_name("table", table)?;
        check_index_definition(table, name, fields)?;
        let mut state = self.shared.state.lock();
        // A write in doubt is settled before the catalog is read.
        state.refuse_if_failed(&self.shared)?;
        let existing = state.catalog.table(table).cloned();
        if let Some(index) = existing.as_ref().and_then(|t| t.index(name)) {
            return if index
                .fields
                .iter()
                .map(String::as_str)
                .eq(fields.iter().copied())
            {
                Ok(state.last_ts)
            } else {
                Err(StoreError::IndexExists {
                    table: table.into(),
                    index: name.into(),
                })
            };
        }
        let mut info = match &existing {
            Some(t) => (**t).clone(),
            None => TableInfo::new(self.shared.allocate_table_number(), table, || {
                self.shared.allocate_index_id()
            }),
        };
        let index = IndexInfo {
            id: self.shared.allocate_index_id(),
            name: name.to_owned(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
        };
        let mut keys = Vec::new();
        let mut writes = Vec::new();
        // Backfill from every existing document of the table.
        let table_docs = KeyRange {
            start: Bound::Included(info.number.to_be_bytes().to_vec()),
            end: Bound::Excluded((info.number + 1).to_be_bytes().to_vec()),
        };
        for entry in
            self.shared
                .engine
                .scan(Space::Documents, &table_docs, state.last_ts, Order::Asc)
        {
            let (id_bytes, bytes) = entry?;
            let id = DocumentId::from_bytes(&id_bytes)
                .ok_or_else(|| StoreError::Corrupt("document key is not an id".into()))?;
            let doc = StoredDocument::decode(&bytes)?;
            let key = index_key(&index, &id, &doc);
            keys.push((Space::Indexes, key.clone()));
            writes.push(Write {
                space: Space::Indexes,
                key,
                value: Some(Vec::new()),
            });
        }
        info.indexes.push(index);
        self.commit_table_change(&mut state, info, writes, keys)
    }

    /// Makes `table` ready to receive imported documents (`Transaction::insert_imported`):
    /// creates it, numbered `preferred_number` when no table can have that number (so the
    /// imported ids keep their text) and with a new number otherwise, or takes it as it is
    /// if it exists and holds no document. Either way it ends with every index of `indexes`
    /// (name, fields); an index that exists with other fields is an error. A table that
    /// holds documents is refused: imported ids and creation times could collide with them.
    pub fn prepare_import_table(
        &self,
        table: &str,
        preferred_number: TableNumber,
        indexes: &[(String, Vec<String>)],
    ) -> Result<Arc<TableInfo>, StoreError> {
        check_name("table", table)?;
        // The host's own tables are not imported (nor exported).
        if catalog::is_system_table(table) {
            return Err(StoreError::InvalidName {
                kind: "table (a system table, which only the host writes)".into(),
                given: table.into(),
            });
        }
        for (name, fields) in indexes {
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            check_index_definition(table, name, &fields)?;
        }
        let mut state = self.shared.state.lock();
        // A write in doubt is settled before the catalog is read.
        state.refuse_if_failed(&self.shared)?;
        let mut info = match state.catalog.table(table) {
            Some(existing) => {
                let by_id = IndexRange::all().to_key_range(table, existing.by_id())?;
                let mut entries =
                    self.shared
                        .engine
                        .scan(Space::Indexes, &by_id, state.last_ts, Order::Asc);
                if entries.next().transpose()?.is_some() {
                    return Err(StoreError::TableNotEmpty {
                        table: table.to_owned(),
                    });
                }
                (**existing).clone()
            }
            None => {
                let number = if self.shared.claim_table_number(preferred_number) {
                    preferred_number
                } else {
                    self.shared.allocate_table_number()
                };
                TableInfo::new(number, table, || self.shared.allocate_index_id())
            }
        };
        let mut changed = state.catalog.table(table).is_none();
        for (name, fields) in indexes {
            match info.index(name) {
                Some(index) if &index.fields == fields => {}
                Some(_) => {
                    return Err(StoreError::IndexExists {
                        table: table.into(),
                        index: name.clone(),
                    })
                }
                None => {
                    info.indexes.push(IndexInfo {
                        id: self.shared.allocate_index_id(),
                        name: name.clone(),
                        fields: fields.clone(),
                    });
                    changed = true;
                }
            }
        }
        if changed {
            // The table is empty under the committer's lock: no index needs filling.
            self.commit_table_change(&mut state, info, Vec::new(), Vec::new())?;
        }
        Ok(state.catalog.table(table).expect("exists now").clone())
    }

    /// Writes `info` as the table's catalog entry, with `writes` (index entries that fill
    /// its new indexes), as one commit made under the committer's lock, then publishes it.
    fn commit_table_change(
        &self,
        state: &mut CommitterState,
        info: TableInfo,
        mut writes: Vec<Write>,
        mut keys: Vec<(Space, Vec<u8>)>,
    ) -> Result<Timestamp, StoreError> {
        if !self.is_leader() {
            return Err(StoreError::Follower {
                what: format!("change table {:?} (its indexes)", info.name),
            });
        }
        state.refuse_if_failed(&self.shared)?;
        // The invariant allocation keeps (commits of other nodes' tables claim their numbers):
        // a table's number and index ids belong to no other table.
        let foreign = |table: &TableInfo| table.name != info.name;
        let taken = state
            .catalog
            .table_by_number(info.number)
            .is_some_and(|t| foreign(t))
            || info.indexes.iter().any(|i| {
                state
                    .catalog
                    .table_of_index(i.id)
                    .is_some_and(|t| foreign(t))
            });
        if taken {
            return Err(StoreError::Corrupt(format!(
                "table {:?} was given a number or an index id another table has; nothing was written",
                info.name
            )));
        }
        let ts = state.next_ts();
        let catalog_key = catalog::table_catalog_key(&info.name);
        keys.push((Space::Catalog, catalog_key.clone()));
        let info = Arc::new(info);
        writes.push(Write {
            space: Space::Catalog,
            key: catalog_key,
            value: Some(info.encode()),
        });
        // Applied to the state before the write, as a group's commits are: if the write
        // fails, the state runs ahead of what may be on disk, commits are refused, and
        // `CommitterState::recover` settles it either way (published if it landed).
        state.catalog = Arc::new(state.catalog.with(info));
        state.last_ts = ts;
        keys.sort();
        let committed = CommittedKeys {
            ts,
            keys: Arc::new(keys),
            tables: Arc::default(),
        };
        state.remember(committed.clone());
        state.write_durably(&self.shared, &[CommitRecord { ts, writes }])?;
        self.shared.publish(state.published());
        self.shared.notify(&[committed]);
        self.shared.engine.discard_before(self.shared.gc_horizon());
        Ok(ts)
    }
}

/// Index names follow the name rule; fields are non-empty dot-separated paths.
fn check_index_definition(table: &str, name: &str, fields: &[&str]) -> Result<(), StoreError> {
    check_name("index", name)?;
    if fields.is_empty()
        || fields
            .iter()
            .any(|f| f.is_empty() || f.starts_with('$') || f.split('.').any(str::is_empty))
    {
        return Err(StoreError::InvalidRange {
            table: table.into(),
            index: name.into(),
            reason: format!("index fields must be non-empty dot-separated paths, got {fields:?}"),
        });
    }
    Ok(())
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shared.closing.store(true, AtomicOrdering::Release);
        self.shared.wake_tail();
        if let Some(tail) = self.tail.take() {
            let _ = tail.join();
        }
        // Closing the channel ends the committer once it has answered every request.
        self.requests.take();
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
    }
}

/// A follower's backoff after a conflict: 1 ms doubling to at most 100 ms, randomized by up
/// to half either way.
fn committer_stopped() -> StoreError {
    StoreError::Corrupt("the committer has stopped".into())
}

fn follower_backoff(attempt: u32) {
    let base = (1u64 << attempt.min(7)).min(100) * 1000;
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let micros = base / 2 + jitter % base;
    std::thread::sleep(std::time::Duration::from_micros(micros));
}

/// Randomized backoff: spreads retries of transactions that collided so they do not
/// collide again in lockstep.
fn backoff(attempt: u32) -> std::time::Duration {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let micros = (50u64 << attempt.min(6)) + jitter % 200;
    std::time::Duration::from_micros(micros)
}

/// What follows a leader's optimistic attempt (see `Store::after_attempt`).
enum Attempted {
    Committed(Timestamp),
    Failed(StoreError),
    RetryAfter(std::time::Duration),
    Serially,
}

/// Runs `work` on the blocking pool and awaits it; a panic in it continues in the caller, as
/// if it had run there.
async fn on_blocking_pool<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled only when the runtime shuts down, which drops this task too.
            Err(e) => panic!("a mutation's blocking work did not finish: {e}"),
        },
    }
}
