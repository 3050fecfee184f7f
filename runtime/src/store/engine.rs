//! The narrow storage trait every layer above talks to.
//!
//! A storage engine is a multi-version ordered key-value store: every write carries the commit
//! timestamp it belongs to, and every read names the timestamp it reads as of, so "a snapshot"
//! is just a timestamp. That is the model of the distributed stores a later backend will sit on
//! (TiKV, Postgres-wire distributed SQL), and it keeps RocksDB types out of this module.
//!
//! Keys within a space must be prefix-free (no key is a proper prefix of another): index keys
//! end with a fixed-width document id and document keys are fixed-width ids, so this holds.

use std::fmt;
use std::ops::Bound;

/// A commit timestamp. Strictly increasing, one per committed transaction; 0 is "before
/// everything".
pub type Timestamp = u64;

/// The key spaces of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// Document id (20 bytes) to the stored document.
    Documents,
    /// Index key (index id, encoded fields, document id) to an empty value.
    Indexes,
    /// Catalog entries: tables and indexes, versioned like data so they change in transactions.
    Catalog,
    /// Receipts of mutations run for a client's (session, request id): the outcome, written in
    /// the mutation's own commit, so a re-sent mutation is answered, not run again, even after
    /// a restart. Kept `RECEIPT_RETENTION_NANOS` behind the newest commit. Each key is
    /// written once (its commit conflicts with any transaction that read its absence), so an
    /// engine may keep it unversioned, stamped with its commit (RocksDB does).
    Receipts,
}

impl Space {
    /// The space's byte in stored and sent forms (the commit log, forwarded commits).
    pub const fn code(self) -> u8 {
        match self {
            Space::Documents => 0,
            Space::Indexes => 1,
            Space::Catalog => 2,
            Space::Receipts => 3,
        }
    }

    pub const fn from_code(code: u8) -> Option<Space> {
        match code {
            0 => Some(Space::Documents),
            1 => Some(Space::Indexes),
            2 => Some(Space::Catalog),
            3 => Some(Space::Receipts),
            _ => None,
        }
    }
}

pub const ALL_SPACES: [Space; 4] = [
    Space::Documents,
    Space::Indexes,
    Space::Catalog,
    Space::Receipts,
];

// Each space sits at the index of its code: read sets keep their intervals in an array
// indexed by it (`read_set::NormalizedReadSet`).
const _: () = {
    let mut i = 0;
    while i < ALL_SPACES.len() {
        assert!(ALL_SPACES[i].code() as usize == i);
        i += 1;
    }
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

/// A half-open or closed range of keys in one space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    pub fn contains(&self, key: &[u8]) -> bool {
        let after_start = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let before_end = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        after_start && before_end
    }

    pub fn point(key: Vec<u8>) -> Self {
        KeyRange {
            start: Bound::Included(key.clone()),
            end: Bound::Included(key),
        }
    }
}

/// One key written by a commit: `None` deletes it as of the commit's timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub space: Space,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// One committed transaction as the engine stores it and as the commit log replays it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRecord {
    pub ts: Timestamp,
    pub writes: Vec<Write>,
}

#[derive(Debug)]
pub struct EngineError(pub String);

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage engine: {}", self.0)
    }
}

impl std::error::Error for EngineError {}

pub type EngineResult<T> = Result<T, EngineError>;

/// A lazy scan of live entries as of a timestamp; each item is `(key, value)`.
pub type Scan<'a> = Box<dyn Iterator<Item = EngineResult<(Vec<u8>, Vec<u8>)>> + 'a>;

pub trait StorageEngine: Send + Sync + 'static {
    /// The value of `key` as of `ts`: the newest version at or before `ts`, unless deleted.
    fn get(&self, space: Space, key: &[u8], ts: Timestamp) -> EngineResult<Option<Vec<u8>>>;

    /// [`StorageEngine::get`] of each of `keys`, answers in the same order. An engine may
    /// answer them all with one cursor: RocksDB makes an iterator for every `get`.
    fn get_many(
        &self,
        space: Space,
        keys: &[&[u8]],
        ts: Timestamp,
    ) -> EngineResult<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|key| self.get(space, key, ts)).collect()
    }

    /// Live entries of `range` as of `ts`, in `order`. Lazy: it reads only what is consumed.
    fn scan(&self, space: Space, range: &KeyRange, ts: Timestamp, order: Order) -> Scan<'_>;

    /// Writes a group of commits atomically, and returns only once they are durable on disk.
    /// Timestamps in the group are strictly increasing and above every earlier commit.
    fn write(&self, commits: &[CommitRecord]) -> EngineResult<()>;

    /// The newest durable commit timestamp (0 for an empty store).
    fn latest_ts(&self) -> Timestamp;

    /// Committed records with `ts > after`, oldest first, at most `limit` of them: the ordered
    /// commit log another process can tail (a follower node). The log keeps at least
    /// `LOG_RETENTION_NANOS` of commits behind the newest one. An engine no other process can
    /// open keeps no log and refuses (RocksDB: one process holds its folder).
    fn log_after(&self, after: Timestamp, limit: usize) -> EngineResult<Vec<CommitRecord>>;

    /// No reader will ask for a timestamp below `horizon` again: a version at or before it
    /// that a newer version at or before it shadows may be discarded. Never lowered.
    fn discard_before(&self, horizon: Timestamp);

    /// Compacts all data now, applying `discard_before` (maintenance and tests).
    fn compact(&self) -> EngineResult<()>;

    /// After a `write` that failed (its outcome unknown): the newest commit that is durable,
    /// read again from where the data lives. `Err` while that cannot be reached, or when the
    /// engine cannot tell without a restart (the default: RocksDB's failed write leaves its
    /// state unknown to itself).
    fn durable_ts(&self) -> EngineResult<Timestamp> {
        Err(EngineError(
            "this engine cannot tell what a failed write left; restart the server".into(),
        ))
    }

    /// Whether `get` and `scan` read from this machine (its memory and disk) rather than
    /// waiting on the network: only then may an attempt run inline on an async worker
    /// (`Store::run_mutation_async`) read the engine. Otherwise it stops at its first read
    /// and is made again on the blocking pool (`Transaction::engine_read`): a worker must
    /// not wait on a round trip.
    fn reads_locally(&self) -> bool {
        true
    }

    /// About how many bytes the data takes where it is stored, if the engine can tell
    /// cheaply (the dashboard shows it); `None` otherwise.
    fn size_bytes(&self) -> Option<u64> {
        None
    }
}

/// How much commit log (in commit-timestamp nanoseconds) is kept behind the newest commit
/// for followers that tail it: ten minutes.
pub const LOG_RETENTION_NANOS: u64 = 10 * 60 * 1_000_000_000;

/// How long a mutation's receipt is kept: a client that reconnects within a day and re-sends
/// a mutation it got no answer for gets the original outcome.
pub const RECEIPT_RETENTION_NANOS: u64 = 24 * 60 * 60 * 1_000_000_000;
