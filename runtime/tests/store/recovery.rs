//! Resuming after a failed durable write, on an engine that can say what became durable (as
//! the PostgreSQL engine does): the RocksDB engine wrapped so that one write fails either
//! before it reaches the disk or after (the outcome the caller cannot know). The next commit
//! settles it: a group that landed is published and announced, one that did not is
//! forgotten, and commits go on; in both cases nothing acknowledged is lost.

use crate::intercept::{Intercept, Intercepted};
use ferrovex_model::{obj, DocumentId, Value};
use ferrovex_runtime::store::engine::{CommitRecord, EngineError, EngineResult, StorageEngine};
use ferrovex_runtime::store::rocks::RocksEngine;
use ferrovex_runtime::store::{Order, Store, StoreError, Timestamp};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// What the next write does.
const NORMAL: u8 = 0;
const FAIL_BEFORE: u8 = 1;
const FAIL_AFTER: u8 = 2;

/// Fails the next write as `next` says, then writes normally; knows what is durable (the
/// newest commit on disk), as the PostgreSQL engine does.
struct Flaky {
    next: Arc<AtomicU8>,
}

impl Intercept for Flaky {
    fn write(&self, inner: &dyn StorageEngine, commits: &[CommitRecord]) -> EngineResult<()> {
        match self.next.swap(NORMAL, Ordering::SeqCst) {
            FAIL_BEFORE => Err(EngineError(
                "the connection dropped before the write".into(),
            )),
            FAIL_AFTER => {
                inner.write(commits)?;
                Err(EngineError(
                    "the connection dropped before the answer".into(),
                ))
            }
            _ => inner.write(commits),
        }
    }
    fn durable_ts(&self, inner: &dyn StorageEngine) -> EngineResult<Timestamp> {
        Ok(inner.latest_ts())
    }
}

fn flaky_store() -> (Store, Arc<AtomicU8>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let next = Arc::new(AtomicU8::new(NORMAL));
    let engine = Intercepted {
        inner: RocksEngine::open(&dir.path().join("data")).unwrap(),
        intercept: Flaky { next: next.clone() },
    };
    (Store::with_engine(Box::new(engine)).unwrap(), next, dir)
}

fn insert(store: &Store, n: i64) -> Result<DocumentId, StoreError> {
    store
        .run_mutation(|tx| tx.insert("t", obj! { "n" => n }))
        .map(|c| c.value)
}

fn numbers(store: &Store) -> Vec<i64> {
    store
        .begin_read_only()
        .query(
            "t",
            "by_creation_time",
            &Default::default(),
            Order::Asc,
            100,
        )
        .unwrap()
        .into_iter()
        .map(|d| match d.fields["n"] {
            Value::Int64(n) => n,
            _ => unreachable!(),
        })
        .collect()
}

#[test]
fn a_failed_write_that_did_not_land_is_forgotten_and_commits_go_on() {
    let (store, next, _dir) = flaky_store();
    insert(&store, 1).unwrap();
    let announced = Arc::new(Mutex::new(0usize));
    let seen = announced.clone();
    store.on_commit(Box::new(move |commits| {
        *seen.lock().unwrap() += commits.len()
    }));
    next.store(FAIL_BEFORE, Ordering::SeqCst);
    let failed = insert(&store, 2).unwrap_err();
    assert!(
        failed
            .to_string()
            .contains("the connection dropped before the write"),
        "{failed}"
    );
    insert(&store, 3).unwrap();
    assert_eq!(numbers(&store), [1, 3]);
    assert_eq!(
        *announced.lock().unwrap(),
        1,
        "only the commit that happened is announced"
    );
}

#[test]
fn a_failed_write_that_landed_is_published_and_announced_once() {
    let (store, next, _dir) = flaky_store();
    insert(&store, 1).unwrap();
    let announced = Arc::new(Mutex::new(Vec::new()));
    let seen = announced.clone();
    store.on_commit(Box::new(move |commits| {
        seen.lock().unwrap().extend(commits.iter().map(|c| c.ts))
    }));
    next.store(FAIL_AFTER, Ordering::SeqCst);
    let before = store.latest_ts();
    let failed = insert(&store, 2).unwrap_err();
    assert!(failed.to_string().contains("before the answer"), "{failed}");
    // Not visible yet: nobody was told it committed.
    assert_eq!(store.latest_ts(), before);
    assert_eq!(numbers(&store), [1]);
    // The next commit learns it landed: it becomes visible, then the new one after it.
    insert(&store, 3).unwrap();
    assert_eq!(numbers(&store), [1, 2, 3]);
    let announced = announced.lock().unwrap().clone();
    assert_eq!(announced.len(), 2, "{announced:?}");
    assert!(announced[0] < announced[1]);
}

#[test]
fn an_index_defined_after_a_failed_write_sees_the_settled_state() {
    let (store, next, _dir) = flaky_store();
    insert(&store, 1).unwrap();
    next.store(FAIL_AFTER, Ordering::SeqCst);
    insert(&store, 2).unwrap_err();
    // Settled before the catalog is read: the index covers the document that landed.
    store.define_index("t", "by_n", &["n"]).unwrap();
    let found = store
        .begin_read_only()
        .query("t", "by_n", &Default::default(), Order::Asc, 10)
        .unwrap();
    assert_eq!(found.len(), 2);
}

/// The newest version of a document kept in memory is forgotten when a write fails: the
/// version that landed with it is published by the next commit, and reads by id see it.
#[test]
fn a_failed_write_that_landed_replaces_the_version_reads_by_id_see() {
    let (store, next, _dir) = flaky_store();
    let id = insert(&store, 1).unwrap();
    let read =
        |store: &Store| store.begin_read_only().get(id).unwrap().unwrap().fields["n"].clone();
    assert_eq!(read(&store), Value::from(1i64));
    next.store(FAIL_AFTER, Ordering::SeqCst);
    store
        .run_mutation(|tx| {
            let mut patch = ferrovex_runtime::store::Patch::new();
            patch.insert("n".into(), Some(Value::from(2i64)));
            tx.patch(id, patch)
        })
        .unwrap_err();
    insert(&store, 3).unwrap();
    assert_eq!(read(&store), Value::from(2i64));
}
