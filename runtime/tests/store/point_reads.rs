//! Reads by id: within one transaction the committed version of a document is fetched from
//! the engine once however often the transaction reads it (a `get` then a `patch`, the usual
//! read-modify-write), and every read is still charged against the transaction's limits;
//! across transactions, the newest versions the store wrote lately are read from memory by
//! every snapshot that sees them.

use crate::intercept::{Intercept, Intercepted};
use ferrovex_model::limits::{MAX_BYTES_READ, MAX_DOCUMENT_BYTES};
use ferrovex_model::{obj, Value};
use ferrovex_runtime::store::engine::{EngineResult, Space, StorageEngine};
use ferrovex_runtime::store::rocks::RocksEngine;
use ferrovex_runtime::store::{Order, Patch, Store, StoreError, Timestamp, Transaction};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts the documents asked for by id.
struct CountDocumentGets(Arc<AtomicUsize>);

impl Intercept for CountDocumentGets {
    fn get(
        &self,
        inner: &dyn StorageEngine,
        space: Space,
        key: &[u8],
        ts: Timestamp,
    ) -> EngineResult<Option<Vec<u8>>> {
        if space == Space::Documents {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        inner.get(space, key, ts)
    }
}

fn counting_store() -> (Store, Arc<AtomicUsize>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (store, document_gets) = counting_store_in(dir.path());
    (store, document_gets, dir)
}

fn counting_store_in(dir: &std::path::Path) -> (Store, Arc<AtomicUsize>) {
    let document_gets = Arc::new(AtomicUsize::new(0));
    let engine = Intercepted {
        inner: RocksEngine::open(&dir.join("data")).unwrap(),
        intercept: CountDocumentGets(document_gets.clone()),
    };
    (Store::with_engine(Box::new(engine)).unwrap(), document_gets)
}

#[test]
fn a_read_modify_write_fetches_the_document_once() {
    let (store, _, dir) = counting_store();
    let mut tx = store.begin();
    let id = tx.insert("accounts", obj! { "balance" => 10i64 }).unwrap();
    let other = tx.insert("accounts", obj! { "balance" => 5i64 }).unwrap();
    store.commit(tx).unwrap();
    // Reopened: the newest versions a store keeps in memory are only those it wrote since.
    drop(store);
    let (store, document_gets) = counting_store_in(dir.path());

    let before = document_gets.load(Ordering::SeqCst);
    let mut tx = store.begin();
    let balance = tx.get(id).unwrap().unwrap().fields["balance"].clone();
    assert_eq!(balance, Value::from(10i64));
    let mut patch = Patch::new();
    patch.insert("balance".into(), Some(Value::from(9i64)));
    tx.patch(id, patch).unwrap();
    // The transaction's own write, then the committed version again: neither asks.
    assert_eq!(
        tx.get(id).unwrap().unwrap().fields["balance"],
        Value::from(9i64)
    );
    assert_eq!(document_gets.load(Ordering::SeqCst) - before, 1);
    // Another document is its own fetch; its second read is not.
    for _ in 0..3 {
        assert_eq!(
            tx.get(other).unwrap().unwrap().fields["balance"],
            Value::from(5i64)
        );
    }
    assert_eq!(document_gets.load(Ordering::SeqCst) - before, 2);
    store.commit(tx).unwrap();

    // A new transaction reads the new commit, not what the last one fetched: the version
    // the store just wrote, kept in memory, without asking the engine.
    let mut tx = store.begin();
    assert_eq!(
        tx.get(id).unwrap().unwrap().fields["balance"],
        Value::from(9i64)
    );
    assert_eq!(document_gets.load(Ordering::SeqCst) - before, 2);
}

/// Re-reads that the engine is not asked for still count as reads: reading one large
/// document over and over reaches `MAX_BYTES_READ` as before.
#[test]
fn rereading_a_document_is_still_charged_against_the_read_limit() {
    let (store, document_gets, _dir) = counting_store();
    let mut tx = store.begin();
    let body = "x".repeat(MAX_DOCUMENT_BYTES - 1024);
    let id = tx
        .insert("pages", obj! { "body" => body.as_str() })
        .unwrap();
    store.commit(tx).unwrap();

    let before = document_gets.load(Ordering::SeqCst);
    let mut tx = store.begin();
    let fits = MAX_BYTES_READ / (MAX_DOCUMENT_BYTES - 1024);
    for _ in 0..fits {
        tx.get(id).unwrap();
    }
    match tx.get(id).unwrap_err() {
        StoreError::LimitExceeded { limit, given, .. } => {
            assert_eq!(limit, "MAX_BYTES_READ");
            assert!(given > MAX_BYTES_READ, "{given}");
        }
        other => panic!("expected the read limit, got {other}"),
    }
    assert_eq!(document_gets.load(Ordering::SeqCst) - before, 1);
}

/// What a transaction keeps is bounded: past four of the largest documents, a read goes to
/// the engine each time. A query keeps nothing (it does not read, then write).
#[test]
fn what_a_transaction_keeps_is_bounded_and_queries_keep_nothing() {
    let (store, document_gets, _dir) = counting_store();
    let body = "x".repeat(MAX_DOCUMENT_BYTES - 1024);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let mut tx = store.begin();
        ids.push(
            tx.insert("pages", obj! { "body" => body.as_str() })
                .unwrap(),
        );
        store.commit(tx).unwrap();
    }

    let before = document_gets.load(Ordering::SeqCst);
    let mut tx = store.begin();
    for _ in 0..2 {
        for id in &ids {
            tx.get(*id).unwrap().unwrap();
        }
    }
    // Four kept; the fifth fetched on each read.
    assert_eq!(document_gets.load(Ordering::SeqCst) - before, 6);

    let before = document_gets.load(Ordering::SeqCst);
    let mut query = store.begin_read_only();
    query.get(ids[0]).unwrap().unwrap();
    query.get(ids[0]).unwrap().unwrap();
    assert_eq!(document_gets.load(Ordering::SeqCst) - before, 2);
}

/// How many documents `accounts` holds, through its `by_creation_time` index.
fn all_accounts(query: &mut Transaction) -> usize {
    query
        .query(
            "accounts",
            "by_creation_time",
            &Default::default(),
            Order::Asc,
            100,
        )
        .unwrap()
        .len()
}

/// The newest versions the store wrote are read by id, and by index scans, without asking
/// the engine; after a restart they come from the engine again.
#[test]
fn documents_written_lately_are_read_without_asking_the_engine() {
    let (store, document_gets, dir) = counting_store();
    let mut ids = Vec::new();
    for n in 0..20i64 {
        let mut tx = store.begin();
        ids.push(tx.insert("accounts", obj! { "balance" => n }).unwrap());
        store.commit(tx).unwrap();
    }
    let mut query = store.begin_read_only();
    for (n, id) in ids.iter().enumerate() {
        let doc = query.get(*id).unwrap().unwrap();
        assert_eq!(doc.fields["balance"], Value::from(n as i64));
    }
    assert_eq!(all_accounts(&mut query), 20);
    assert_eq!(document_gets.load(Ordering::SeqCst), 0);

    drop(query);
    drop(store);
    let (store, document_gets) = counting_store_in(dir.path());
    let mut query = store.begin_read_only();
    query.get(ids[0]).unwrap().unwrap();
    assert_eq!(all_accounts(&mut query), 20);
    assert_eq!(document_gets.load(Ordering::SeqCst), 21);
}

/// A snapshot taken before the newest version reads the version it sees, from the engine;
/// snapshots after it read the newest, a deletion included.
#[test]
fn a_snapshot_older_than_the_newest_version_reads_its_own() {
    let (store, document_gets, _dir) = counting_store();
    let mut tx = store.begin();
    let id = tx.insert("accounts", obj! { "balance" => 1i64 }).unwrap();
    store.commit(tx).unwrap();

    let mut older = store.begin_read_only();
    let mut tx = store.begin();
    let mut patch = Patch::new();
    patch.insert("balance".into(), Some(Value::from(2i64)));
    tx.patch(id, patch).unwrap();
    store.commit(tx).unwrap();

    assert_eq!(
        older.get(id).unwrap().unwrap().fields["balance"],
        Value::from(1i64)
    );
    assert_eq!(document_gets.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.begin_read_only().get(id).unwrap().unwrap().fields["balance"],
        Value::from(2i64)
    );
    assert_eq!(document_gets.load(Ordering::SeqCst), 1);

    let mut tx = store.begin();
    tx.delete(id).unwrap();
    store.commit(tx).unwrap();
    assert!(store.begin_read_only().get(id).unwrap().is_none());
    assert_eq!(
        older.get(id).unwrap().unwrap().fields["balance"],
        Value::from(1i64)
    );
    assert_eq!(document_gets.load(Ordering::SeqCst), 2);
}
