//! The `transactions` target: random operations of up to three interleaved transactions on
//! two tables, index definitions, clean restarts and crashes of the store, checked against a
//! model (differential).
//!
//! The model is the committed state (id to fields, for both tables), the catalog (the number
//! of each table, whether the index `by_a` exists), the newest commit timestamp, and per open
//! transaction the state it began at, its own writes, and what it read. It checks:
//! - every read (get, scan by creation time or by `by_a`) shows the begin snapshot with the
//!   transaction's own writes; scans in index order, creation times strictly increasing;
//! - a write to a missing document fails with `NotFound`, and any access to an id of a table
//!   the transaction cannot see with `UnknownTableOfId`, changing nothing;
//! - a commit with writes conflicts exactly when a commit since its begin wrote a document it
//!   read (a get, a patch or delete, its own new ids, or any document of the table after a
//!   scan) or created a table it created, and otherwise applies its writes, all of them, with
//!   a timestamp above every earlier one; a commit without writes is a no-op;
//! - a new id is never one an earlier commit used;
//! - an aborted transaction, or one open when the store restarts or crashes, leaves nothing;
//! - after a restart (the store closed and reopened on the same files), after a crash and at
//!   the end, the tables, their indexes and the newest timestamp are exactly the model's.
//!
//! Crashes are injected, deterministically: a `Crash` op arms `FaultyEngine`, a wrapper of the
//! RocksDB engine, to die at the k-th next durable write, either before the write reaches
//! RocksDB or after RocksDB made it durable but before the store hears so. The commit (or
//! index definition) in flight gets an error; from then on the engine fails every write, and
//! the store must refuse every later commit and index definition without even trying to
//! write. Then the store is dropped without the memtable flush of a clean close and reopened
//! on the same files, so RocksDB recovers from its write-ahead log as after a crash. Every
//! acknowledged commit must be there; the one in flight is there entirely or not at all (the
//! model takes either, by the newest timestamp, then compares everything), and, as this
//! engine's fault implies, absent for a crash before the write and present for one after
//! it. A commit right after the reopen must succeed above every surviving timestamp.
//!
//! One store serves many runs (opening RocksDB costs more than a run); each run has tables of
//! its own, so runs do not see each other.

use arbitrary::{Arbitrary, Unstructured};
use ferrovex_model::{DocumentId, Object, Value};
use ferrovex_runtime::store::engine::{
    CommitRecord, EngineError, EngineResult, KeyRange, Scan, Space, StorageEngine,
};
use ferrovex_runtime::store::rocks::RocksEngine;
use ferrovex_runtime::store::{
    IndexRange, Order, Store, StoreError, Timestamp, Transaction, BY_CREATION_TIME, BY_ID,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

const SLOTS: usize = 3;
/// Clean restarts and armed crashes per run: each reopens RocksDB, which costs more than the
/// rest of a run.
const MAX_RESTARTS: usize = 1;
const MAX_CRASHES: usize = 2;
const BY_A: &str = "by_a";

/// `InsertOther` inserts into the run's second table, which the first such commit creates;
/// `DefineIndex` declares the index `by_a` on field `a` of the first table; `Crash` arms a
/// crash at the `(after % 4) + 1`-th durable write from now.
#[derive(Arbitrary, Debug)]
enum Op {
    Begin { slot: u8 },
    Insert { slot: u8, a: i8 },
    InsertOther { slot: u8, a: i8 },
    Patch { slot: u8, pick: u8, a: Option<i8> },
    Replace { slot: u8, pick: u8, b: i8 },
    Delete { slot: u8, pick: u8 },
    Get { slot: u8, pick: u8 },
    Scan { slot: u8, desc: bool, by_a: bool },
    Commit { slot: u8 },
    Abort { slot: u8 },
    DefineIndex,
    Restart,
    Crash { after: u8, point: CrashPoint },
}

/// Where an injected crash strikes the durable write it hits.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
enum CrashPoint {
    /// Before the write reaches RocksDB: the commit is lost.
    BeforeWrite,
    /// Once RocksDB has made the write durable, before the store hears so: the commit
    /// survives although its caller got an error.
    AfterWrite,
}

type Fields = Object;

/// The crash a `FaultyEngine` is armed with, and what happened once it struck.
#[derive(Default)]
struct FaultState {
    /// Durable writes still let through, and where the next one dies.
    armed: Option<(u8, CrashPoint)>,
    /// Where the crash struck and the commit timestamps of the write it hit.
    fired: Option<(CrashPoint, Vec<Timestamp>)>,
    /// Writes the store attempted after the crash: a store that refuses to commit once a
    /// durable write failed never makes one.
    writes_after: usize,
}

#[derive(Default)]
struct Fault(Mutex<FaultState>);

impl Fault {
    fn state(&self) -> MutexGuard<'_, FaultState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The RocksDB engine with a crash that strikes a chosen durable write. Once it has struck,
/// every write fails, and dropping it closes RocksDB as a crash leaves it: without writing
/// the memtables out, so the next open replays the write-ahead log.
struct FaultyEngine {
    inner: Option<RocksEngine>,
    fault: Arc<Fault>,
}

fn crashed() -> EngineError {
    EngineError("the process crashed (injected by the transactions target)".into())
}

impl FaultyEngine {
    fn inner(&self) -> &RocksEngine {
        self.inner
            .as_ref()
            .expect("the engine is open until dropped")
    }
}

/// Reads pass through even after the crash (they see what the crash left on disk), so that
/// a store which went on to write after a failed write would reach `write`, and be caught.
impl StorageEngine for FaultyEngine {
    fn get(&self, space: Space, key: &[u8], ts: Timestamp) -> EngineResult<Option<Vec<u8>>> {
        self.inner().get(space, key, ts)
    }

    fn scan(&self, space: Space, range: &KeyRange, ts: Timestamp, order: Order) -> Scan<'_> {
        self.inner().scan(space, range, ts, order)
    }

    fn write(&self, commits: &[CommitRecord]) -> EngineResult<()> {
        let mut state = self.fault.state();
        if state.fired.is_some() {
            state.writes_after += 1;
            return Err(crashed());
        }
        match state.armed {
            Some((0, point)) => {
                state.armed = None;
                if point == CrashPoint::AfterWrite {
                    self.inner().write(commits)?;
                }
                state.fired = Some((point, commits.iter().map(|c| c.ts).collect()));
                Err(crashed())
            }
            Some((left, point)) => {
                state.armed = Some((left - 1, point));
                drop(state);
                self.inner().write(commits)
            }
            None => {
                drop(state);
                self.inner().write(commits)
            }
        }
    }

    fn latest_ts(&self) -> Timestamp {
        self.inner().latest_ts()
    }

    fn log_after(&self, after: Timestamp, limit: usize) -> EngineResult<Vec<CommitRecord>> {
        self.inner().log_after(after, limit)
    }

    fn discard_before(&self, horizon: Timestamp) {
        self.inner().discard_before(horizon);
    }

    fn compact(&self) -> EngineResult<()> {
        self.inner().compact()
    }
}

impl Drop for FaultyEngine {
    fn drop(&mut self) {
        if self.fault.state().fired.is_some() {
            if let Some(inner) = self.inner.take() {
                inner.close_without_flush();
            }
        }
    }
}

struct Shared {
    dir: tempfile::TempDir,
    store: Option<Store>,
    fault: Arc<Fault>,
    runs: u64,
}

/// Runs per store: reopening replays the write-ahead log, which grows with every commit, so
/// a store serves this many runs and is then replaced by a fresh one.
const RUNS_PER_STORE: u64 = 64;

fn open_store(dir: &tempfile::TempDir) -> (Store, Arc<Fault>) {
    let fault = Arc::new(Fault::default());
    let engine = RocksEngine::open(&dir.path().join("data")).expect("open RocksDB");
    let store = Store::with_engine(Box::new(FaultyEngine {
        inner: Some(engine),
        fault: fault.clone(),
    }))
    .expect("open the store");
    (store, fault)
}

fn fresh() -> Shared {
    let dir = crate::scratch_dir();
    let (store, fault) = open_store(&dir);
    Shared {
        dir,
        store: Some(store),
        fault,
        runs: 0,
    }
}

fn shared() -> &'static Mutex<Shared> {
    static SHARED: OnceLock<Mutex<Shared>> = OnceLock::new();
    SHARED.get_or_init(|| Mutex::new(fresh()))
}

impl Shared {
    fn store(&self) -> &Store {
        self.store.as_ref().expect("open")
    }

    /// Closes the store (cleanly, or as the crash left it) and opens it again on its files.
    fn reopen(&mut self) {
        self.store = None;
        let (store, fault) = open_store(&self.dir);
        self.store = Some(store);
        self.fault = fault;
    }
}

/// What a committed transaction wrote, as far as conflicts go.
struct Written {
    /// Documents whose index entries it changed: those that existed before it or after it.
    ids: BTreeSet<DocumentId>,
    /// Whether one of them is in the first table (what a scan of it conflicts with).
    first_table: bool,
    /// Whether it created the second table.
    created_other: bool,
}

struct Model {
    table: String,
    other: String,
    number: u32,
    /// The second table's number once a commit created it.
    other_number: Option<u32>,
    by_a: bool,
    committed: BTreeMap<DocumentId, Fields>,
    /// What each commit of the model wrote, in order.
    history: Vec<Written>,
    /// Every committed id, with the commit (index in `history`) that first wrote it.
    first_commit: BTreeMap<DocumentId, usize>,
    /// The newest commit's timestamp.
    last_ts: Timestamp,
    known: Vec<DocumentId>,
    restarts: usize,
    crashes: usize,
}

/// The model of an open transaction.
struct OpenModel {
    /// The committed state it began at, and how many commits the model had seen then.
    begin: BTreeMap<DocumentId, Fields>,
    commits_at_begin: usize,
    /// The second table's number as it sees it (committed at its begin, or its own).
    other_number: Option<u32>,
    /// Whether its own insert creates the second table.
    creates_other: bool,
    sees_by_a: bool,
    /// Its own writes: `None` is a delete.
    writes: BTreeMap<DocumentId, Option<Fields>>,
    read_ids: BTreeSet<DocumentId>,
    scanned: bool,
}

struct Open {
    tx: Transaction,
    m: OpenModel,
}

impl OpenModel {
    fn view(&self, id: &DocumentId) -> Option<Fields> {
        match self.writes.get(id) {
            Some(w) => w.clone(),
            None => self.begin.get(id).cloned(),
        }
    }

    fn view_all(&self) -> BTreeMap<DocumentId, Fields> {
        let mut all = self.begin.clone();
        for (id, w) in &self.writes {
            match w {
                Some(f) => all.insert(*id, f.clone()),
                None => all.remove(id),
            };
        }
        all
    }

    fn has_writes(&self) -> bool {
        !self.writes.is_empty() || self.creates_other
    }
}

impl Model {
    fn sees(&self, t: &OpenModel, id: &DocumentId) -> bool {
        id.table_number() == self.number || Some(id.table_number()) == t.other_number
    }

    fn conflicts(&self, t: &OpenModel) -> bool {
        self.history[t.commits_at_begin..].iter().any(|w| {
            (t.scanned && w.first_table)
                || !w.ids.is_disjoint(&t.read_ids)
                || (t.creates_other && w.created_other)
        })
    }

    /// Applies a commit that succeeded (or survived a crash) at `ts`.
    fn apply(&mut self, t: &OpenModel, ts: Timestamp) {
        assert!(
            ts > self.last_ts,
            "commit timestamp {ts} is not above the previous one {}",
            self.last_ts
        );
        self.last_ts = ts;
        let index = self.history.len();
        let mut written = Written {
            ids: BTreeSet::new(),
            first_table: false,
            created_other: t.creates_other,
        };
        for (id, w) in &t.writes {
            if w.is_some() || t.begin.contains_key(id) {
                written.ids.insert(*id);
                written.first_table |= id.table_number() == self.number;
            }
            match w {
                Some(f) => {
                    self.committed.insert(*id, f.clone());
                    self.first_commit.entry(*id).or_insert(index);
                }
                None => {
                    self.committed.remove(id);
                }
            }
        }
        if t.creates_other {
            assert_eq!(
                self.other_number, None,
                "the second table was created twice"
            );
            self.other_number = t.other_number;
        }
        self.history.push(written);
    }

    fn documents_of(&self, number: u32) -> BTreeMap<DocumentId, Fields> {
        self.committed
            .iter()
            .filter(|(id, _)| id.table_number() == number)
            .map(|(id, f)| (*id, f.clone()))
            .collect()
    }
}

/// The commit or index definition in flight when a crash struck.
enum InFlight {
    Commit(OpenModel),
    Index,
}

fn verbose() -> bool {
    std::env::var_os("FUZZ_CHECKS_VERBOSE").is_some()
}

pub fn transactions(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    // `arbitrary` reads zeros past the end of the input: stop there instead.
    while ops.len() < 64 && !u.is_empty() {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    run(&ops);
}

fn run(ops: &[Op]) {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let mut shared = shared().lock().unwrap_or_else(|e| e.into_inner());
    let shared = &mut *shared;
    shared.runs += 1;
    if shared.runs > RUNS_PER_STORE {
        shared.store = None;
        *shared = fresh();
        shared.runs = 1;
    }
    // Nothing of an earlier run that panicked carries over: no armed or struck crash.
    if shared.fault.state().fired.is_some() {
        shared.reopen();
    }
    shared.fault.state().armed = None;
    let table = format!("t{run}");
    // The first table exists from the start (an id of a table no one can see is
    // `UnknownTableOfId`, which the second table exercises).
    let (marker_id, ts) = {
        let store = shared.store();
        let mut tx = store.begin();
        let id = tx.insert(&table, marker()).expect("insert");
        (id, store.commit(tx).expect("the first commit of a table"))
    };
    let mut model = Model {
        other: format!("{table}x"),
        table,
        number: marker_id.table_number(),
        other_number: None,
        by_a: false,
        committed: BTreeMap::from([(marker_id, marker())]),
        history: vec![Written {
            ids: BTreeSet::from([marker_id]),
            first_table: true,
            created_other: false,
        }],
        first_commit: BTreeMap::from([(marker_id, 0)]),
        last_ts: ts,
        known: Vec::new(),
        restarts: 0,
        crashes: 0,
    };
    let mut open: [Option<Open>; SLOTS] = [None, None, None];

    for op in ops {
        if let Some(in_flight) = step(shared, &mut model, &mut open, op) {
            crash_and_reopen(shared, &mut model, &mut open, in_flight);
        }
    }
    shared.fault.state().armed = None;
    drop(open);
    check_committed(shared.store(), &model);
    if verbose() {
        eprintln!(
            "transactions run: {} ops, {} commits, {} restarts, {} crashes armed",
            ops.len(),
            model.history.len(),
            model.restarts,
            model.crashes
        );
    }
}

fn marker() -> Fields {
    Object::from([("marker".to_owned(), Value::Boolean(true))])
}

/// Runs one op; returns what was in flight if an injected crash struck it.
fn step(
    shared: &mut Shared,
    model: &mut Model,
    open: &mut [Option<Open>; SLOTS],
    op: &Op,
) -> Option<InFlight> {
    let store = shared.store();
    match *op {
        Op::Begin { slot } => {
            open[slot as usize % SLOTS] = Some(Open {
                tx: store.begin(),
                m: OpenModel {
                    begin: model.committed.clone(),
                    commits_at_begin: model.history.len(),
                    other_number: model.other_number,
                    creates_other: false,
                    sees_by_a: model.by_a,
                    writes: BTreeMap::new(),
                    read_ids: BTreeSet::new(),
                    scanned: false,
                },
            });
        }
        Op::Insert { slot, a } | Op::InsertOther { slot, a } => {
            let t = open[slot as usize % SLOTS].as_mut()?;
            let other = matches!(op, Op::InsertOther { .. });
            let name = if other { &model.other } else { &model.table };
            let fields = Object::from([("a".to_owned(), Value::Int64(a as i64))]);
            let id = t.tx.insert(name, fields.clone()).expect("insert");
            if !other {
                assert_eq!(id.table_number(), model.number, "an id of another table");
            } else if let Some(number) = t.m.other_number {
                assert_eq!(id.table_number(), number, "an id of another table");
            } else {
                assert_ne!(id.table_number(), model.number, "a new table took a number");
                t.m.other_number = Some(id.table_number());
                t.m.creates_other = true;
            }
            assert!(t.m.view(&id).is_none(), "a new id {id} is already taken");
            if let Some(&first) = model.first_commit.get(&id) {
                assert!(
                    first >= t.m.commits_at_begin,
                    "a new id {id} is one a commit before the transaction began used"
                );
            }
            // The store reads a new id (two transactions that drew the same one conflict).
            t.m.read_ids.insert(id);
            t.m.writes.insert(id, Some(fields));
            model.known.push(id);
        }
        Op::Patch { slot, pick, a } => {
            let t = open[slot as usize % SLOTS].as_mut()?;
            let id = pick_id(&model.known, pick)?;
            let mut patch = BTreeMap::new();
            patch.insert("a".to_owned(), a.map(|a| Value::Int64(a as i64)));
            let result = t.tx.patch(id, patch);
            expect_write(model, &mut t.m, id, result, |mut f| {
                match a {
                    Some(a) => f.insert("a".into(), Value::Int64(a as i64)),
                    None => f.remove("a"),
                };
                Some(f)
            });
        }
        Op::Replace { slot, pick, b } => {
            let t = open[slot as usize % SLOTS].as_mut()?;
            let id = pick_id(&model.known, pick)?;
            let fields = Object::from([("b".to_owned(), Value::Int64(b as i64))]);
            let result = t.tx.replace(id, fields.clone());
            expect_write(model, &mut t.m, id, result, |_| Some(fields));
        }
        Op::Delete { slot, pick } => {
            let t = open[slot as usize % SLOTS].as_mut()?;
            let id = pick_id(&model.known, pick)?;
            let result = t.tx.delete(id);
            expect_write(model, &mut t.m, id, result, |_| None);
        }
        Op::Get { slot, pick } => {
            let t = open[slot as usize % SLOTS].as_mut()?;
            let id = pick_id(&model.known, pick)?;
            let got = t.tx.get(id);
            if model.sees(&t.m, &id) {
                let got = got.unwrap_or_else(|e| panic!("get {id}: {e}"));
                t.m.read_ids.insert(id);
                assert_eq!(got.map(|d| d.fields), t.m.view(&id), "get {id}");
            } else {
                assert!(
                    matches!(got, Err(StoreError::UnknownTableOfId { .. })),
                    "get {id} of a table the transaction cannot see: {got:?}"
                );
            }
        }
        Op::Scan { slot, desc, by_a } => {
            let t = open[slot as usize % SLOTS].as_mut()?;
            let order = if desc { Order::Desc } else { Order::Asc };
            let index = if by_a { BY_A } else { BY_CREATION_TIME };
            let result =
                t.tx.query(&model.table, index, &IndexRange::all(), order, 10_000);
            if by_a && !t.m.sees_by_a {
                assert!(
                    matches!(result, Err(StoreError::UnknownIndex { .. })),
                    "a scan of an index the transaction cannot see: {result:?}"
                );
                return None;
            }
            let docs = result.expect("scan");
            t.m.scanned = true;
            let expected = t.m.view_all();
            let expected = expected
                .into_iter()
                .filter(|(id, _)| id.table_number() == model.number)
                .collect();
            if by_a {
                check_by_a(&docs, desc, &expected);
            } else {
                check_scan(&docs, desc, &expected);
            }
        }
        Op::Commit { slot } => {
            let Open { tx, m } = open[slot as usize % SLOTS].take()?;
            let conflicting = model.conflicts(&m);
            match store.commit(tx) {
                Ok(_) if !m.has_writes() => {}
                Ok(ts) => {
                    assert!(
                        !conflicting,
                        "a commit succeeded although a later commit wrote what it read"
                    );
                    model.apply(&m, ts);
                }
                Err(StoreError::Conflict { .. }) => {
                    assert!(m.has_writes(), "a transaction without writes conflicted");
                    assert!(conflicting, "a conflict without a conflicting commit");
                }
                Err(e) if shared.fault.state().fired.is_some() => {
                    assert!(!conflicting, "a conflicting commit reached the engine: {e}");
                    return Some(InFlight::Commit(m));
                }
                Err(e) => panic!("commit failed: {e}"),
            }
        }
        Op::Abort { slot } => {
            open[slot as usize % SLOTS] = None;
        }
        Op::DefineIndex => match store.define_index(&model.table, BY_A, &["a"]) {
            Ok(ts) if model.by_a => {
                assert_eq!(ts, model.last_ts, "declaring an existing index wrote");
            }
            Ok(ts) => {
                assert!(ts > model.last_ts, "an index defined at an old timestamp");
                model.last_ts = ts;
                model.by_a = true;
            }
            Err(_) if shared.fault.state().fired.is_some() && !model.by_a => {
                return Some(InFlight::Index);
            }
            Err(e) => panic!("defining {BY_A}: {e}"),
        },
        Op::Restart => {
            if model.restarts == MAX_RESTARTS {
                return None;
            }
            model.restarts += 1;
            *open = [None, None, None];
            shared.reopen();
            check_committed(shared.store(), model);
        }
        Op::Crash { after, point } => {
            let mut fault = shared.fault.state();
            if model.crashes == MAX_CRASHES || fault.armed.is_some() {
                return None;
            }
            model.crashes += 1;
            fault.armed = Some((after % 4, point));
        }
    }
    None
}

/// After an injected crash struck `in_flight`: the store refuses to commit, then it is
/// dropped as the crash left it and reopened; everything acknowledged is there, and the
/// crashed commit entirely or not at all.
fn crash_and_reopen(
    shared: &mut Shared,
    model: &mut Model,
    open: &mut [Option<Open>; SLOTS],
    in_flight: InFlight,
) {
    let (point, in_flight_ts) = shared
        .fault
        .state()
        .fired
        .clone()
        .expect("the crash struck");
    assert_eq!(in_flight_ts.len(), 1, "one commit per durable write here");
    let in_flight_ts = in_flight_ts[0];
    if verbose() {
        let what = match &in_flight {
            InFlight::Commit(m) => format!("a commit of {} writes", m.writes.len()),
            InFlight::Index => "the definition of by_a".into(),
        };
        eprintln!("transactions: crash {point:?} in {what} at {in_flight_ts}");
    }
    let store = shared.store();
    // Nothing more may commit: a durable write failed, so the store no longer knows what is
    // on disk.
    for slot in open.iter_mut() {
        if let Some(Open { tx, m }) = slot.take() {
            if m.has_writes() {
                let result = store.commit(tx);
                assert!(result.is_err(), "a commit after the crash: {result:?}");
            }
        }
    }
    let mut tx = store.begin();
    tx.insert(&model.table, marker()).expect("insert");
    let result = store.commit(tx);
    assert!(result.is_err(), "a commit after the crash: {result:?}");
    let result = store.define_index(&model.table, "by_b", &["b"]);
    assert!(
        result.is_err(),
        "an index defined after the crash: {result:?}"
    );
    assert_eq!(
        shared.fault.state().writes_after,
        0,
        "after a durable write failed, the store tried to write again instead of refusing"
    );

    shared.reopen();
    let latest = shared.store().latest_ts();
    assert!(
        latest == model.last_ts || latest == in_flight_ts,
        "after the crash the newest timestamp is {latest}: neither the last acknowledged \
         commit's {} nor the crashed one's {in_flight_ts}",
        model.last_ts
    );
    let survived = latest == in_flight_ts;
    assert_eq!(
        survived,
        point == CrashPoint::AfterWrite,
        "a crash {point:?} left the commit in flight {}",
        if survived { "present" } else { "absent" }
    );
    if survived {
        match in_flight {
            InFlight::Commit(m) => model.apply(&m, in_flight_ts),
            InFlight::Index => {
                model.by_a = true;
                model.last_ts = in_flight_ts;
            }
        }
    }
    check_committed(shared.store(), model);

    // The store commits again, above everything that survived.
    let store = shared.store();
    let mut tx = store.begin();
    let id = tx.insert(&model.table, marker()).expect("insert");
    assert!(
        !model.first_commit.contains_key(&id),
        "a new id {id} after the crash is one a commit used"
    );
    let ts = store.commit(tx).expect("a commit after the reopen");
    model.apply(
        &OpenModel {
            begin: BTreeMap::new(),
            commits_at_begin: model.history.len(),
            other_number: model.other_number,
            creates_other: false,
            sees_by_a: model.by_a,
            writes: BTreeMap::from([(id, Some(marker()))]),
            read_ids: BTreeSet::new(),
            scanned: false,
        },
        ts,
    );
    model.known.push(id);
}

fn pick_id(known: &[DocumentId], pick: u8) -> Option<DocumentId> {
    if known.is_empty() {
        None
    } else {
        Some(known[pick as usize % known.len()])
    }
}

/// A write to `id`: it succeeds exactly when the transaction sees the document, and then the
/// model applies `change` to its own writes.
fn expect_write(
    model: &Model,
    t: &mut OpenModel,
    id: DocumentId,
    result: Result<(), StoreError>,
    change: impl FnOnce(Fields) -> Option<Fields>,
) {
    if !model.sees(t, &id) {
        assert!(
            matches!(result, Err(StoreError::UnknownTableOfId { .. })),
            "write to {id} of a table the transaction cannot see: {result:?}"
        );
        return;
    }
    t.read_ids.insert(id);
    match (t.view(&id), result) {
        (Some(current), Ok(())) => {
            t.writes.insert(id, change(current));
        }
        (None, Err(StoreError::NotFound { .. })) => {}
        (seen, result) => {
            panic!("write to {id}: the model sees {seen:?}, the store says {result:?}")
        }
    }
}

fn check_scan(
    docs: &[ferrovex_runtime::store::Document],
    desc: bool,
    expected: &BTreeMap<DocumentId, Fields>,
) {
    let got: BTreeMap<DocumentId, Fields> = docs.iter().map(|d| (d.id, d.fields.clone())).collect();
    assert_eq!(got.len(), docs.len(), "a scan returned a document twice");
    assert_eq!(&got, expected, "scan");
    for pair in docs.windows(2) {
        let (first, second) = (pair[0].creation_time, pair[1].creation_time);
        let ordered = if desc { first > second } else { first < second };
        assert!(
            ordered,
            "creation times out of order: {first} then {second}"
        );
    }
}

/// A scan of `by_a`: the expected documents ordered by field `a` (absent first), then id.
fn check_by_a(
    docs: &[ferrovex_runtime::store::Document],
    desc: bool,
    expected: &BTreeMap<DocumentId, Fields>,
) {
    let got: Vec<(DocumentId, &Fields)> = docs.iter().map(|d| (d.id, &d.fields)).collect();
    let mut want: Vec<(DocumentId, &Fields)> = expected.iter().map(|(id, f)| (*id, f)).collect();
    let a = |f: &Fields| match f.get("a") {
        Some(Value::Int64(a)) => Some(*a),
        Some(other) => panic!("field a holds {other:?}"),
        None => None,
    };
    want.sort_by(|x, y| (a(x.1), x.0.as_bytes()).cmp(&(a(y.1), y.0.as_bytes())));
    if desc {
        want.reverse();
    }
    assert_eq!(got, want, "scan of {BY_A}");
}

/// The store holds exactly the model's committed state: both tables' documents, their
/// catalog entries (numbers, indexes), and `by_a` in step with its table.
fn check_committed(store: &Store, model: &Model) {
    let tables = store.tables();
    let info = tables
        .iter()
        .find(|t| t.name == model.table)
        .expect("the first table exists");
    assert_eq!(info.number, model.number, "the first table's number");
    let mut indexes = vec![BY_ID, BY_CREATION_TIME];
    if model.by_a {
        indexes.push(BY_A);
    }
    let names: Vec<&str> = info.indexes.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, indexes, "the first table's indexes");
    let other = tables.iter().find(|t| t.name == model.other);
    assert_eq!(
        other.map(|t| t.number),
        model.other_number,
        "the second table"
    );

    assert_eq!(store.latest_ts(), model.last_ts, "the newest timestamp");
    let mut tx = store.begin_read_only();
    let docs = tx
        .query(
            &model.table,
            BY_CREATION_TIME,
            &IndexRange::all(),
            Order::Asc,
            10_000,
        )
        .expect("scan");
    let first = model.documents_of(model.number);
    check_scan(&docs, false, &first);
    if model.by_a {
        let docs = tx
            .query(&model.table, BY_A, &IndexRange::all(), Order::Asc, 10_000)
            .expect("scan");
        check_by_a(&docs, false, &first);
    }
    if let Some(number) = model.other_number {
        let docs = tx
            .query(
                &model.other,
                BY_CREATION_TIME,
                &IndexRange::all(),
                Order::Asc,
                10_000,
            )
            .expect("scan");
        check_scan(&docs, false, &model.documents_of(number));
    }
}
