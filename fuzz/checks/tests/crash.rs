//! What the store does once a durable write failed.

use model::{Object, Value};
use runtime::store::engine::{
    CommitRecord, EngineError, EngineResult, KeyRange, Order, Scan, Space, StorageEngine,
};
use runtime::store::rocks::RocksEngine;
use runtime::store::{Store, Timestamp};

fn int(v: u64) -> Value {
    Value::Int64(v as i64)
}

/// A RocksDB engine whose `fail_at`-th write fails, made durable first when `durable` (the
/// store cannot tell which), and whose other writes succeed, as after a transient error.
struct FailingEngine {
    inner: RocksEngine,
    fail_at: usize,
    durable: bool,
    writes: std::sync::Mutex<usize>,
}

impl StorageEngine for FailingEngine {
    fn get(&self, space: Space, key: &[u8], ts: Timestamp) -> EngineResult<Option<Vec<u8>>> {
        self.inner.get(space, key, ts)
    }

    fn scan(&self, space: Space, range: &KeyRange, ts: Timestamp, order: Order) -> Scan<'_> {
        self.inner.scan(space, range, ts, order)
    }

    fn write(&self, commits: &[CommitRecord]) -> EngineResult<()> {
        let mut writes = self.writes.lock().unwrap();
        *writes += 1;
        if *writes != self.fail_at {
            return self.inner.write(commits);
        }
        if self.durable {
            self.inner.write(commits)?;
        }
        Err(EngineError("injected failure".into()))
    }

    fn latest_ts(&self) -> Timestamp {
        self.inner.latest_ts()
    }

    fn log_after(&self, after: Timestamp, limit: usize) -> EngineResult<Vec<CommitRecord>> {
        self.inner.log_after(after, limit)
    }

    fn discard_before(&self, horizon: Timestamp) {
        self.inner.discard_before(horizon)
    }

    fn compact(&self) -> EngineResult<()> {
        self.inner.compact()
    }
}

/// Once a durable write failed, nothing may commit, index definitions included: the store no
/// longer knows what is on disk. An index definition whose write failed may be on disk
/// (here it is) while the store's catalog lacks it; had documents been written after it,
/// they would have left the index without their entries.
#[test]
fn no_commit_after_a_failed_write() {
    for (fail_at, durable) in [(2, false), (2, true), (3, false), (3, true)] {
        let dir = fuzz_checks::scratch_dir();
        let engine = FailingEngine {
            inner: RocksEngine::open(&dir.path().join("data")).expect("open"),
            fail_at,
            durable,
            writes: std::sync::Mutex::new(0),
        };
        let store = Store::with_engine(Box::new(engine)).expect("open the store");
        // Write 1: a table with a document.
        let mut tx = store.begin();
        tx.insert("t", Object::from([("a".into(), int(1))]))
            .expect("insert");
        store.commit(tx).expect("the first write");
        // Write 2: a commit or an index definition, failing when `fail_at` is 2.
        let failed = if fail_at == 2 {
            store.define_index("t", "by_a", &["a"]).is_err()
        } else {
            store.define_index("t", "by_a", &["a"]).expect("an index");
            let mut tx = store.begin();
            tx.insert("t", Object::from([("a".into(), int(2))]))
                .expect("insert");
            store.commit(tx).is_err()
        };
        assert!(failed, "the write that fails");
        let mut tx = store.begin();
        tx.insert("t", Object::from([("a".into(), int(3))]))
            .expect("insert");
        let commit = store.commit(tx);
        assert!(
            commit.is_err(),
            "fail_at {fail_at}, durable {durable}: a commit after a failed write: {commit:?}"
        );
        let index = store.define_index("t", "by_b", &["b"]);
        assert!(
            index.is_err(),
            "fail_at {fail_at}, durable {durable}: an index defined after a failed write: {index:?}"
        );
    }
}
