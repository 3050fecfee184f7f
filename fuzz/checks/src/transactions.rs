//! The `transactions` target: random operations of up to three interleaved transactions on
//! one table, and restarts of the store, checked against a model (differential).
//!
//! The model is the committed state (id to fields) plus, per open transaction, the state it
//! began at, its own writes, and what it read. It checks:
//! - every read (get, full scan) shows the begin snapshot with the transaction's own writes;
//!   scans in creation-time order, creation times strictly increasing;
//! - a write to a missing document fails with `NotFound` and changes nothing;
//! - a commit with writes conflicts exactly when a commit since its begin wrote a document it
//!   read (a get, a patch or delete, or any document of the table after a scan), and
//!   otherwise applies its writes, all of them, to the model; a commit without writes is a
//!   no-op;
//! - an aborted transaction, or one open when the store restarts, leaves nothing;
//! - after a restart (the store closed and reopened on the same files) and at the end, the
//!   table holds exactly the model's committed state.
//!
//! One store serves many runs (opening RocksDB costs more than a run); each run has a table of
//! its own, so runs do not see each other.

use arbitrary::{Arbitrary, Unstructured};
use model::{DocumentId, Object, Value};
use runtime::store::{IndexRange, Order, Store, StoreError, Transaction, BY_CREATION_TIME};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

const SLOTS: usize = 3;

#[derive(Arbitrary, Debug)]
enum Op {
    Begin { slot: u8 },
    Insert { slot: u8, a: i8 },
    Patch { slot: u8, pick: u8, a: Option<i8> },
    Replace { slot: u8, pick: u8, b: i8 },
    Delete { slot: u8, pick: u8 },
    Get { slot: u8, pick: u8 },
    Scan { slot: u8, desc: bool },
    Commit { slot: u8 },
    Abort { slot: u8 },
    Restart,
}

type Fields = Object;

struct Open {
    tx: Transaction,
    /// The committed state it began at, and how many commits the model had seen then.
    begin: BTreeMap<DocumentId, Fields>,
    commits_at_begin: usize,
    /// Its own writes: `None` is a delete.
    writes: BTreeMap<DocumentId, Option<Fields>>,
    read_ids: BTreeSet<DocumentId>,
    scanned: bool,
}

impl Open {
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
}

struct Shared {
    dir: tempfile::TempDir,
    store: Option<Store>,
    runs: u64,
}

/// Runs per store: reopening replays the write-ahead log, which grows with every commit, so
/// a store serves this many runs and is then replaced by a fresh one.
const RUNS_PER_STORE: u64 = 64;

fn fresh() -> Shared {
    let dir = crate::scratch_dir();
    let store = Store::open(&data_path(&dir)).expect("open the store");
    Shared {
        dir,
        store: Some(store),
        runs: 0,
    }
}

fn shared() -> &'static Mutex<Shared> {
    static SHARED: OnceLock<Mutex<Shared>> = OnceLock::new();
    SHARED.get_or_init(|| Mutex::new(fresh()))
}

fn data_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data")
}

pub fn transactions(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while ops.len() < 64 {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    run(&ops);
}

fn run(ops: &[Op]) {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let table = format!("t{}", RUN.fetch_add(1, Ordering::Relaxed));
    let mut shared = shared().lock().unwrap_or_else(|e| e.into_inner());
    let shared = &mut *shared;
    shared.runs += 1;
    if shared.runs > RUNS_PER_STORE {
        shared.store = None;
        *shared = fresh();
        shared.runs = 1;
    }
    let mut committed: BTreeMap<DocumentId, Fields> = BTreeMap::new();
    // What each commit of the model wrote, in order.
    let mut history: Vec<BTreeSet<DocumentId>> = Vec::new();
    let mut known: Vec<DocumentId> = Vec::new();
    let mut open: [Option<Open>; SLOTS] = [None, None, None];
    let mut restarts = 0;
    // The table exists from the start (an id of a table no one can see yet is another error,
    // `UnknownTableOfId`, which the unit tests of the store cover).
    {
        let store = shared.store.as_ref().expect("open");
        let mut tx = store.begin();
        let marker = Object::from([("marker".to_owned(), Value::Boolean(true))]);
        let id = tx.insert(&table, marker.clone()).expect("insert");
        store.commit(tx).expect("the first commit of a table");
        committed.insert(id, marker);
        history.push(BTreeSet::from([id]));
    }

    for op in ops {
        let store = shared.store.as_ref().expect("open");
        match *op {
            Op::Begin { slot } => {
                open[slot as usize % SLOTS] = Some(Open {
                    tx: store.begin(),
                    begin: committed.clone(),
                    commits_at_begin: history.len(),
                    writes: BTreeMap::new(),
                    read_ids: BTreeSet::new(),
                    scanned: false,
                });
            }
            Op::Insert { slot, a } => {
                let Some(t) = open[slot as usize % SLOTS].as_mut() else {
                    continue;
                };
                let fields = Object::from([("a".to_owned(), Value::Int64(a as i64))]);
                let id = t.tx.insert(&table, fields.clone()).expect("insert");
                assert!(t.view(&id).is_none(), "a new id {id} is already taken");
                t.writes.insert(id, Some(fields));
                known.push(id);
            }
            Op::Patch { slot, pick, a } => {
                let Some(t) = open[slot as usize % SLOTS].as_mut() else {
                    continue;
                };
                let Some(id) = pick_id(&known, pick) else {
                    continue;
                };
                let mut patch = BTreeMap::new();
                patch.insert("a".to_owned(), a.map(|a| Value::Int64(a as i64)));
                let result = t.tx.patch(id, patch);
                t.read_ids.insert(id);
                expect_write(t, id, result, |mut f| {
                    match a {
                        Some(a) => f.insert("a".into(), Value::Int64(a as i64)),
                        None => f.remove("a"),
                    };
                    Some(f)
                });
            }
            Op::Replace { slot, pick, b } => {
                let Some(t) = open[slot as usize % SLOTS].as_mut() else {
                    continue;
                };
                let Some(id) = pick_id(&known, pick) else {
                    continue;
                };
                let fields = Object::from([("b".to_owned(), Value::Int64(b as i64))]);
                let result = t.tx.replace(id, fields.clone());
                t.read_ids.insert(id);
                expect_write(t, id, result, |_| Some(fields));
            }
            Op::Delete { slot, pick } => {
                let Some(t) = open[slot as usize % SLOTS].as_mut() else {
                    continue;
                };
                let Some(id) = pick_id(&known, pick) else {
                    continue;
                };
                let result = t.tx.delete(id);
                t.read_ids.insert(id);
                expect_write(t, id, result, |_| None);
            }
            Op::Get { slot, pick } => {
                let Some(t) = open[slot as usize % SLOTS].as_mut() else {
                    continue;
                };
                let Some(id) = pick_id(&known, pick) else {
                    continue;
                };
                let got = t.tx.get(id).expect("get");
                t.read_ids.insert(id);
                assert_eq!(got.map(|d| d.fields), t.view(&id), "get {id}");
            }
            Op::Scan { slot, desc } => {
                let Some(t) = open[slot as usize % SLOTS].as_mut() else {
                    continue;
                };
                let order = if desc { Order::Desc } else { Order::Asc };
                let docs =
                    t.tx.query(&table, BY_CREATION_TIME, &IndexRange::all(), order, 10_000)
                        .expect("scan");
                t.scanned = true;
                check_scan(&docs, desc, &t.view_all());
            }
            Op::Commit { slot } => {
                let Some(t) = open[slot as usize % SLOTS].take() else {
                    continue;
                };
                let conflicting = history[t.commits_at_begin..].iter().any(|written| {
                    (t.scanned && !written.is_empty()) || !written.is_disjoint(&t.read_ids)
                });
                let has_writes = !t.writes.is_empty();
                match store.commit(t.tx) {
                    Ok(_) if !has_writes => {}
                    Ok(_) => {
                        assert!(
                            !conflicting,
                            "a commit succeeded although a later commit wrote what it read"
                        );
                        for (id, w) in &t.writes {
                            match w {
                                Some(f) => committed.insert(*id, f.clone()),
                                None => committed.remove(id),
                            };
                        }
                        history.push(t.writes.keys().copied().collect());
                    }
                    Err(StoreError::Conflict { .. }) => {
                        assert!(has_writes, "a transaction without writes conflicted");
                        assert!(conflicting, "a conflict without a conflicting commit");
                    }
                    Err(e) => panic!("commit failed: {e}"),
                }
            }
            Op::Abort { slot } => {
                open[slot as usize % SLOTS] = None;
            }
            Op::Restart => {
                if restarts == 1 {
                    continue;
                }
                restarts += 1;
                open = [None, None, None];
                shared.store = None;
                shared.store = Some(Store::open(&data_path(&shared.dir)).expect("reopen"));
                check_committed(shared.store.as_ref().expect("open"), &table, &committed);
            }
        }
    }
    drop(open);
    check_committed(shared.store.as_ref().expect("open"), &table, &committed);
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
    t: &mut Open,
    id: DocumentId,
    result: Result<(), StoreError>,
    change: impl FnOnce(Fields) -> Option<Fields>,
) {
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
    docs: &[runtime::store::Document],
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

fn check_committed(store: &Store, table: &str, committed: &BTreeMap<DocumentId, Fields>) {
    let mut tx = store.begin_read_only();
    let docs = tx
        .query(
            table,
            BY_CREATION_TIME,
            &IndexRange::all(),
            Order::Asc,
            10_000,
        )
        .expect("scan");
    check_scan(&docs, false, committed);
}
