//! An engine wrapped so that a test takes over one or two of its calls: every call is
//! forwarded to the wrapped engine unless the test's [`Intercept`] says otherwise, so a new
//! method of `StorageEngine` (or a default one, such as `reads_locally`) is forwarded once,
//! here, not in each test's copy.

use ferrovex_runtime::store::engine::{
    CommitRecord, EngineResult, KeyRange, Scan, Space, StorageEngine,
};
use ferrovex_runtime::store::{Order, Timestamp};

/// The calls a test may take over; each default forwards to `inner`.
pub trait Intercept: Send + Sync + 'static {
    fn get(
        &self,
        inner: &dyn StorageEngine,
        space: Space,
        key: &[u8],
        ts: Timestamp,
    ) -> EngineResult<Option<Vec<u8>>> {
        inner.get(space, key, ts)
    }
    fn write(&self, inner: &dyn StorageEngine, commits: &[CommitRecord]) -> EngineResult<()> {
        inner.write(commits)
    }
    fn log_after(
        &self,
        inner: &dyn StorageEngine,
        after: Timestamp,
        limit: usize,
    ) -> EngineResult<Vec<CommitRecord>> {
        inner.log_after(after, limit)
    }
    fn durable_ts(&self, inner: &dyn StorageEngine) -> EngineResult<Timestamp> {
        inner.durable_ts()
    }
}

/// `inner`, with the calls `intercept` takes over.
pub struct Intercepted<E, I> {
    pub inner: E,
    pub intercept: I,
}

impl<E: StorageEngine, I: Intercept> StorageEngine for Intercepted<E, I> {
    fn get(&self, space: Space, key: &[u8], ts: Timestamp) -> EngineResult<Option<Vec<u8>>> {
        self.intercept.get(&self.inner, space, key, ts)
    }
    fn scan(&self, space: Space, range: &KeyRange, ts: Timestamp, order: Order) -> Scan<'_> {
        self.inner.scan(space, range, ts, order)
    }
    fn write(&self, commits: &[CommitRecord]) -> EngineResult<()> {
        self.intercept.write(&self.inner, commits)
    }
    fn latest_ts(&self) -> Timestamp {
        self.inner.latest_ts()
    }
    fn log_after(&self, after: Timestamp, limit: usize) -> EngineResult<Vec<CommitRecord>> {
        self.intercept.log_after(&self.inner, after, limit)
    }
    fn discard_before(&self, horizon: Timestamp) {
        self.inner.discard_before(horizon)
    }
    fn compact(&self) -> EngineResult<()> {
        self.inner.compact()
    }
    fn durable_ts(&self) -> EngineResult<Timestamp> {
        self.intercept.durable_ts(&self.inner)
    }
    fn reads_locally(&self) -> bool {
        self.inner.reads_locally()
    }
    fn size_bytes(&self) -> Option<u64> {
        self.inner.size_bytes()
    }
}
