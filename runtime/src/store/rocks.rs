//! The RocksDB storage engine: multi-version keys over column families.
//!
//! Each stored key is the logical key followed by the bitwise complement of its commit
//! timestamp (8 bytes, big-endian), so the versions of one key sit together, newest first.
//! A value is `[1] ++ bytes`, or `[0]` for a deletion. The `meta` family holds the format
//! marker and the newest commit's timestamp, written with every group; no commit log is kept
//! (the `log` family only holds what data folders of earlier versions wrote there; nothing
//! new reaches it, so only a full compaction, `compact`, lets its filter drop that). All of a
//! group of commits goes into one `WriteBatch` written with `sync`, so a group is durable or
//! absent as a whole.
//!
//! Receipts are the exception to versioning: each is written once (the commit that writes one
//! conflicts with any transaction that read its absence), so their family keeps one entry per
//! key, valued `commit timestamp (8 bytes, big-endian) ++ [1] ++ bytes`, and a read is a point
//! lookup a Bloom filter usually answers, not an iterator: the versioned lookup every mutation
//! made was 6% of a chat message's server CPU (BENCHMARKS.md).

use super::engine::*;
use rocksdb::compaction_filter::{CompactionFilter, Decision};
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DBRawIterator, IteratorMode, Options,
    ReadOptions, WriteBatch, WriteOptions, DB,
};
use std::ffi::CStr;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

const CF_DOCUMENTS: &str = "documents";
const CF_INDEXES: &str = "indexes";
const CF_CATALOG: &str = "catalog";
const CF_LOG: &str = "log";
const CF_META: &str = "meta";
const CF_RECEIPTS: &str = "receipts_by_key";
/// Where data folders of earlier versions kept receipts, versioned like data: moved into
/// `CF_RECEIPTS` and dropped at open.
const CF_VERSIONED_RECEIPTS: &str = "receipts";
/// Every column family, in the order they are opened.
const ALL_FAMILIES: [&str; 6] = [
    CF_DOCUMENTS,
    CF_INDEXES,
    CF_CATALOG,
    CF_LOG,
    CF_META,
    CF_RECEIPTS,
];
const FORMAT_KEY: &[u8] = b"format";
/// The newest commit's timestamp, written with every group of commits (in `CF_META`).
const LATEST_KEY: &[u8] = b"latest";
/// The write-ahead log RocksDB keeps before it flushes the families holding its oldest part:
/// what a restart after a crash may have to replay. 64 MiB kept it to 0.28 s at 10^6
/// documents while every commit also went into a commit log family (large values, cheap to
/// replay); without that family the same bytes hold more keys, and it took 1.7-1.8 s. At
/// 16 MiB: 0.49 s (`bench --only scale`, restart to ready after kill -9).
const MAX_WAL_BYTES: u64 = 16 * 1024 * 1024;

/// Write-ahead log files kept to be written over, instead of deleted, once their data is in
/// tables. Appending to a new file changes its size, so every `fdatasync` also wrote the inode
/// (a second synchronous write); overwriting a recycled file within its size does not: 2.2
/// block requests per `fdatasync` instead of 3.0 in chat-send once logs are recycled
/// (BENCHMARKS.md). The benchmark's RocksDB baseline recycles as many.
pub const WAL_FILES_RECYCLED: usize = 2;
/// Written on creation and checked on every open, so a folder of something else is refused.
pub const FORMAT: &[u8] = b"runtime-store/1";

pub struct RocksEngine {
    db: DB,
    latest: Arc<AtomicU64>,
    /// Versions shadowed at or before this timestamp are dropped by compaction.
    horizon: Arc<AtomicU64>,
    path: PathBuf,
    /// Whether dropping writes the memtables out (see `Drop`); `close_without_flush` clears it.
    flush_at_close: bool,
    /// The default read options, made once: every mutation looks its receipt up, and
    /// `get_pinned_cf` would allocate and free a set per lookup.
    point_read: ReadOptions,
}

fn err(e: impl std::fmt::Display) -> EngineError {
    EngineError(e.to_string())
}

fn versioned(key: &[u8], ts: Timestamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 8);
    versioned_into(&mut out, key, ts);
    out
}

/// Appends the stored form of `key` at `ts`: the key, then the timestamp inverted, so that a
/// key's newer versions sort before its older ones.
fn versioned_into(out: &mut Vec<u8>, key: &[u8], ts: Timestamp) {
    out.extend_from_slice(key);
    out.extend_from_slice(&(!ts).to_be_bytes());
}

/// What a seek to `key`'s stored form at the reader's timestamp found: the value of the
/// version it landed on, or none when it landed past the key.
fn version_found(
    iter: &rocksdb::DBRawIteratorWithThreadMode<'_, DB>,
    key: &[u8],
) -> EngineResult<Option<Vec<u8>>> {
    iter.status().map_err(err)?;
    match (iter.key(), iter.value()) {
        (Some(stored), Some(value)) if is_version_of(stored, key) => unwrap_value(value),
        _ => Ok(None),
    }
}

/// Splits a stored key into the logical key and its commit timestamp.
fn split(stored: &[u8]) -> EngineResult<(&[u8], Timestamp)> {
    if stored.len() < 8 {
        return Err(EngineError(format!(
            "stored key of {} bytes has no version",
            stored.len()
        )));
    }
    let (key, version) = stored.split_at(stored.len() - 8);
    Ok((
        key,
        !u64::from_be_bytes(version.try_into().expect("8 bytes")),
    ))
}

fn is_version_of(stored: &[u8], key: &[u8]) -> bool {
    stored.len() == key.len() + 8 && stored.starts_with(key)
}

/// `None` for a deletion marker.
fn unwrap_value(stored: &[u8]) -> EngineResult<Option<Vec<u8>>> {
    match stored.split_first() {
        Some((1, rest)) => Ok(Some(rest.to_vec())),
        Some((0, [])) => Ok(None),
        _ => Err(EngineError("stored value has a bad marker".into())),
    }
}

fn fsync_dir(path: &Path) -> EngineResult<()> {
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| EngineError(format!("syncing directory {}: {e}", path.display())))
}

impl RocksEngine {
    /// Opens the store in `path`, creating it if the folder is absent or empty. A non-empty
    /// folder that is not a store of this format is refused with an error that says so.
    pub fn open(path: &Path) -> EngineResult<Self> {
        let existed_nonempty = std::fs::read_dir(path)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false);
        if existed_nonempty && !path.join("CURRENT").exists() {
            return Err(EngineError(format!(
                "{} is not empty and is not a data folder of this runtime; choose an empty or new folder",
                path.display()
            )));
        }
        if !path.exists() {
            std::fs::create_dir_all(path)
                .map_err(|e| EngineError(format!("creating {}: {e}", path.display())))?;
            // The new directory entry itself must survive a crash.
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsync_dir(parent)?;
            }
        }

        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.increase_parallelism(2);
        options.set_max_background_jobs(2);
        // A crash is followed by replaying the write-ahead log beyond the last flush. By
        // default the log may grow to four times the memtables of every family (hundreds of
        // MiB) before RocksDB flushes to trim it: restart after kill -9 took 1.4 s at 10^6
        // documents. Past this size the families holding the oldest log are flushed, which
        // bounds the replay: 0.28 s after kill -9 at 10^6 documents (`bench --only scale`).
        options.set_max_total_wal_size(MAX_WAL_BYTES);
        options.set_recycle_log_file_num(WAL_FILES_RECYCLED);
        let latest = Arc::new(AtomicU64::new(0));
        let horizon = Arc::new(AtomicU64::new(0));
        let families = ALL_FAMILIES.into_iter().map(|name| {
            let mut family = Options::default();
            match name {
                CF_LOG => family.set_compaction_filter_factory(LogRetention {
                    latest: latest.clone(),
                }),
                CF_RECEIPTS => {
                    family.set_compaction_filter_factory(ReceiptRetention {
                        latest: latest.clone(),
                    });
                    // Almost every lookup is of a receipt that does not exist (a mutation
                    // sent for the first time): filters in the tables and the memtable
                    // answer most of them without a search.
                    let mut tables = BlockBasedOptions::default();
                    tables.set_bloom_filter(10.0, false);
                    family.set_block_based_table_factory(&tables);
                    family.set_memtable_prefix_bloom_ratio(0.05);
                    family.set_memtable_whole_key_filtering(true);
                }
                CF_META => {}
                _ => family.set_compaction_filter_factory(VersionRetention {
                    horizon: horizon.clone(),
                }),
            }
            ColumnFamilyDescriptor::new(name, family)
        });
        let families: Vec<_> = families.collect();
        let earlier_receipts = existed_nonempty
            && DB::list_cf(&options, path)
                .map_err(err)?
                .iter()
                .any(|name| name == CF_VERSIONED_RECEIPTS);
        let db = if earlier_receipts {
            let mut all = families;
            all.push(ColumnFamilyDescriptor::new(
                CF_VERSIONED_RECEIPTS,
                Options::default(),
            ));
            let mut db = DB::open_cf_descriptors(&options, path, all).map_err(err)?;
            move_versioned_receipts(&mut db)?;
            db
        } else {
            DB::open_cf_descriptors(&options, path, families).map_err(err)?
        };
        fsync_dir(path)?;

        let meta = db.cf_handle(CF_META).expect("meta family");
        match db.get_cf(meta, FORMAT_KEY).map_err(err)? {
            Some(found) if found == FORMAT => {}
            Some(found) => {
                return Err(EngineError(format!(
                    "{} holds data of format {:?}, this runtime reads {:?}",
                    path.display(),
                    String::from_utf8_lossy(&found),
                    String::from_utf8_lossy(FORMAT)
                )))
            }
            None if existed_nonempty => {
                return Err(EngineError(format!(
                    "{} is a RocksDB database but not a data folder of this runtime",
                    path.display()
                )))
            }
            None => {
                let mut sync = WriteOptions::default();
                sync.set_sync(true);
                let mut batch = WriteBatch::default();
                batch.put_cf(meta, FORMAT_KEY, FORMAT);
                db.write_opt(batch, &sync).map_err(err)?;
            }
        }

        let last_commit = match db.get_cf(meta, LATEST_KEY).map_err(err)? {
            Some(stored) => u64::from_be_bytes(stored.as_slice().try_into().map_err(|_| {
                EngineError(format!(
                    "the newest commit's timestamp in {} is {} bytes long, not 8",
                    path.display(),
                    stored.len()
                ))
            })?),
            None => last_logged_commit(&db)?,
        };
        latest.store(last_commit, AtomicOrdering::Release);
        Ok(RocksEngine {
            db,
            latest,
            horizon,
            path: path.to_owned(),
            flush_at_close: true,
            point_read: ReadOptions::default(),
        })
    }
}

/// Moves the versioned receipts of a data folder of an earlier version into `CF_RECEIPTS` (the
/// newest version of each key, which is its only one) and drops their family, durably.
fn move_versioned_receipts(db: &mut DB) -> EngineResult<()> {
    {
        let from = db.cf_handle(CF_VERSIONED_RECEIPTS).expect("opened");
        let to = db.cf_handle(CF_RECEIPTS).expect("opened");
        let mut batch = WriteBatch::default();
        let mut last: Vec<u8> = Vec::new();
        for entry in db.iterator_cf(from, IteratorMode::Start) {
            let (stored, value) = entry.map_err(err)?;
            let (key, ts) = split(&stored)?;
            // Versions of a key come newest first.
            if !last.is_empty() && key == last.as_slice() {
                continue;
            }
            last.clear();
            last.extend_from_slice(key);
            batch.put_cf(to, key, receipt_value(ts, &value));
        }
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        db.write_opt(batch, &sync).map_err(err)?;
    }
    db.drop_cf(CF_VERSIONED_RECEIPTS).map_err(err)
}

/// A receipt as `CF_RECEIPTS` stores it: its commit timestamp, then the tagged value.
fn receipt_value(ts: Timestamp, tagged: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + tagged.len());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(tagged);
    out
}

/// A stored receipt's commit timestamp and tagged value.
fn split_receipt(stored: &[u8]) -> EngineResult<(Timestamp, &[u8])> {
    match stored.split_first_chunk::<8>() {
        Some((ts, tagged)) => Ok((u64::from_be_bytes(*ts), tagged)),
        None => Err(EngineError(format!(
            "a stored receipt of {} bytes, shorter than its timestamp",
            stored.len()
        ))),
    }
}

/// The newest commit in the commit log a data folder of an earlier version kept: its
/// newest commit's timestamp, before `LATEST_KEY` held it.
fn last_logged_commit(db: &DB) -> EngineResult<Timestamp> {
    let mut iter = db.raw_iterator_cf(db.cf_handle(CF_LOG).expect("log family"));
    iter.seek_to_last();
    iter.status().map_err(err)?;
    match iter.key() {
        Some(k) => Ok(u64::from_be_bytes(
            k.try_into()
                .map_err(|_| EngineError("bad commit log key".into()))?,
        )),
        None => Ok(0),
    }
}

impl RocksEngine {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes without writing the memtables out: what a crash leaves, so the next open
    /// replays the write-ahead log. For crash tests.
    pub fn close_without_flush(mut self) {
        self.flush_at_close = false;
    }

    /// `scan` of the receipts, stored one entry per key (see the module's doc).
    fn scan_receipts(&self, range: &KeyRange, ts: Timestamp, order: Order) -> Scan<'_> {
        let mode = match (order, &range.start, &range.end) {
            (Order::Asc, Bound::Included(s) | Bound::Excluded(s), _) => {
                IteratorMode::From(s, rocksdb::Direction::Forward)
            }
            (Order::Desc, _, Bound::Included(e) | Bound::Excluded(e)) => {
                IteratorMode::From(e, rocksdb::Direction::Reverse)
            }
            (Order::Asc, Bound::Unbounded, _) => IteratorMode::Start,
            (Order::Desc, _, Bound::Unbounded) => IteratorMode::End,
        };
        let range = range.clone();
        let entries = self.db.iterator_cf(self.cf(Space::Receipts), mode);
        Box::new(
            entries
                .skip_while({
                    let range = range.clone();
                    move |entry| entry.as_ref().is_ok_and(|(key, _)| !range.contains(key))
                })
                .take_while(move |entry| {
                    entry.as_ref().map_or(true, |(key, _)| range.contains(key))
                })
                .filter_map(move |entry| {
                    let (key, stored) = match entry {
                        Ok(entry) => entry,
                        Err(e) => return Some(Err(err(e))),
                    };
                    match split_receipt(&stored) {
                        Ok((written, tagged)) if written <= ts => unwrap_value(tagged)
                            .transpose()
                            .map(|value| value.map(|value| (key.into_vec(), value))),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    }
                }),
        )
    }

    fn cf(&self, space: Space) -> &ColumnFamily {
        let name = match space {
            Space::Documents => CF_DOCUMENTS,
            Space::Indexes => CF_INDEXES,
            Space::Catalog => CF_CATALOG,
            Space::Receipts => CF_RECEIPTS,
        };
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }
}

impl StorageEngine for RocksEngine {
    fn get(&self, space: Space, key: &[u8], ts: Timestamp) -> EngineResult<Option<Vec<u8>>> {
        if space == Space::Receipts {
            let found = self
                .db
                .get_pinned_cf_opt(self.cf(space), key, &self.point_read)
                .map_err(err)?;
            let Some(stored) = found else {
                return Ok(None);
            };
            // Written once: a receipt committed after `ts` had no earlier version.
            return match split_receipt(&stored)? {
                (written, tagged) if written <= ts => unwrap_value(tagged),
                _ => Ok(None),
            };
        }
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(versioned(key, 0));
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(space), options);
        iter.seek(versioned(key, ts));
        version_found(&iter, key)
    }

    /// One iterator seeks every key in turn: making and dropping an iterator was 9 of the 20
    /// points a versioned `get` cost (`chat:get_messages`, 50 documents, profiled).
    fn get_many(
        &self,
        space: Space,
        keys: &[&[u8]],
        ts: Timestamp,
    ) -> EngineResult<Vec<Option<Vec<u8>>>> {
        if space == Space::Receipts || keys.len() < 2 {
            return keys.iter().map(|key| self.get(space, key, ts)).collect();
        }
        // No upper bound: each seek lands on the key's newest version at or before `ts`,
        // or past the key, which `is_version_of` tells apart.
        let mut iter = self.db.raw_iterator_cf(self.cf(space));
        let mut stored_key = Vec::new();
        keys.iter()
            .map(|key| {
                stored_key.clear();
                versioned_into(&mut stored_key, key, ts);
                iter.seek(&stored_key);
                version_found(&iter, key)
            })
            .collect()
    }

    fn scan(&self, space: Space, range: &KeyRange, ts: Timestamp, order: Order) -> Scan<'_> {
        if space == Space::Receipts {
            return self.scan_receipts(range, ts, order);
        }
        let mut options = ReadOptions::default();
        match &range.start {
            Bound::Included(s) | Bound::Excluded(s) => options.set_iterate_lower_bound(s.clone()),
            Bound::Unbounded => {}
        }
        match &range.end {
            Bound::Included(e) => options.set_iterate_upper_bound(versioned(e, 0)),
            Bound::Excluded(e) => options.set_iterate_upper_bound(e.clone()),
            Bound::Unbounded => {}
        }
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(space), options);
        match order {
            Order::Asc => iter.seek_to_first(),
            Order::Desc => iter.seek_to_last(),
        }
        Box::new(VersionedScan {
            iter,
            ts,
            order,
            range: range.clone(),
            done: false,
        })
    }

    fn write(&self, commits: &[CommitRecord]) -> EngineResult<()> {
        let mut batch = WriteBatch::default();
        let meta = self.db.cf_handle(CF_META).expect("meta family");
        let mut stored = Vec::new();
        for commit in commits {
            for write in &commit.writes {
                stored.clear();
                match &write.value {
                    Some(v) => {
                        stored.push(1);
                        stored.extend_from_slice(v);
                    }
                    None => stored.push(0),
                }
                let cf = self.cf(write.space);
                if write.space == Space::Receipts {
                    batch.put_cf(cf, &write.key, receipt_value(commit.ts, &stored));
                } else {
                    batch.put_cf(cf, versioned(&write.key, commit.ts), &stored);
                }
            }
        }
        if let Some(last) = commits.last() {
            batch.put_cf(meta, LATEST_KEY, last.ts.to_be_bytes());
        }
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(batch, &sync).map_err(err)?;
        if let Some(last) = commits.last() {
            self.latest.store(last.ts, AtomicOrdering::Release);
        }
        Ok(())
    }

    fn latest_ts(&self) -> Timestamp {
        self.latest.load(AtomicOrdering::Acquire)
    }

    /// One process holds a RocksDB folder, so nobody can tail its log: none is kept. It was
    /// once written with every commit, a copy of all it wrote: 39% of the bytes a chat
    /// message put on disk (`bench --only chat-send`, BENCHMARKS.md).
    fn log_after(&self, _after: Timestamp, _limit: usize) -> EngineResult<Vec<CommitRecord>> {
        Err(EngineError(format!(
            "the RocksDB engine in {} keeps no commit log to follow (one process holds its folder); nodes that follow a leader share a PostgreSQL database (`runtime serve --store postgres://...`)",
            self.path.display()
        )))
    }

    fn discard_before(&self, horizon: Timestamp) {
        self.horizon.fetch_max(horizon, AtomicOrdering::AcqRel);
    }

    fn compact(&self) -> EngineResult<()> {
        for name in [CF_DOCUMENTS, CF_INDEXES, CF_CATALOG, CF_LOG, CF_RECEIPTS] {
            let cf = self
                .db
                .cf_handle(name)
                .expect("column family created at open");
            self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// The table files and the memtables of every family: properties RocksDB keeps, read
    /// without touching the disk.
    fn size_bytes(&self) -> Option<u64> {
        let mut total = 0u64;
        for name in [
            CF_DOCUMENTS,
            CF_INDEXES,
            CF_CATALOG,
            CF_LOG,
            CF_META,
            CF_RECEIPTS,
        ] {
            let cf = self.db.cf_handle(name)?;
            for property in [
                "rocksdb.total-sst-files-size",
                "rocksdb.cur-size-all-mem-tables",
            ] {
                total += self.db.property_int_value_cf(cf, property).ok()??;
            }
        }
        Some(total)
    }
}

impl Drop for RocksEngine {
    /// A clean close writes the memtables out, so the next open reads tables instead of
    /// replaying the write-ahead log (1.4 s of a restart at a million documents). A crash
    /// skips this and the log replays as before: durability never depends on it.
    fn drop(&mut self) {
        if !self.flush_at_close {
            return;
        }
        let families: Vec<&ColumnFamily> = ALL_FAMILIES
            .iter()
            .filter_map(|name| self.db.cf_handle(name))
            .collect();
        if let Err(e) = self
            .db
            .flush_cfs_opt(&families, &rocksdb::FlushOptions::default())
        {
            tracing::warn!(
                "flushing memtables at close failed (the next open replays the log): {e}"
            );
        }
    }
}

/// Drops versions that no reader can see any more: for each key, every version older than
/// the newest one at or before the horizon. Compaction presents a key's versions together,
/// newest first; a key whose versions span two compaction runs just keeps a few more.
struct VersionRetention {
    horizon: Arc<AtomicU64>,
}

struct VersionFilter {
    horizon: Timestamp,
    key: Vec<u8>,
    kept_one_at_horizon: bool,
}

impl CompactionFilterFactory for VersionRetention {
    type Filter = VersionFilter;

    fn create(&mut self, _: CompactionFilterContext) -> VersionFilter {
        VersionFilter {
            horizon: self.horizon.load(AtomicOrdering::Acquire),
            key: Vec::new(),
            kept_one_at_horizon: false,
        }
    }

    fn name(&self) -> &CStr {
        c"version-retention"
    }
}

impl CompactionFilter for VersionFilter {
    fn filter(&mut self, _level: u32, stored: &[u8], _value: &[u8]) -> Decision {
        let Ok((key, ts)) = split(stored) else {
            return Decision::Keep;
        };
        if key != self.key.as_slice() {
            self.key.clear();
            self.key.extend_from_slice(key);
            self.kept_one_at_horizon = false;
        }
        if ts > self.horizon {
            Decision::Keep
        } else if !self.kept_one_at_horizon {
            // The version a reader at the horizon sees.
            self.kept_one_at_horizon = true;
            Decision::Keep
        } else {
            Decision::Remove
        }
    }

    fn name(&self) -> &CStr {
        c"version-retention"
    }
}

/// Drops receipts written more than `RECEIPT_RETENTION_NANOS` before the newest commit.
struct ReceiptRetention {
    latest: Arc<AtomicU64>,
}

struct ReceiptFilter {
    keep_from: Timestamp,
}

impl CompactionFilterFactory for ReceiptRetention {
    type Filter = ReceiptFilter;

    fn create(&mut self, _: CompactionFilterContext) -> ReceiptFilter {
        ReceiptFilter {
            keep_from: self
                .latest
                .load(AtomicOrdering::Acquire)
                .saturating_sub(RECEIPT_RETENTION_NANOS),
        }
    }

    fn name(&self) -> &CStr {
        c"receipt-retention"
    }
}

impl CompactionFilter for ReceiptFilter {
    fn filter(&mut self, _level: u32, _key: &[u8], stored: &[u8]) -> Decision {
        match split_receipt(stored) {
            Ok((ts, _)) if ts < self.keep_from => Decision::Remove,
            _ => Decision::Keep,
        }
    }

    fn name(&self) -> &CStr {
        c"receipt-retention"
    }
}

/// Drops commit log entries older than `LOG_RETENTION_NANOS` behind the newest commit.
struct LogRetention {
    latest: Arc<AtomicU64>,
}

struct LogFilter {
    keep_from: Timestamp,
}

impl CompactionFilterFactory for LogRetention {
    type Filter = LogFilter;

    fn create(&mut self, _: CompactionFilterContext) -> LogFilter {
        LogFilter {
            keep_from: self
                .latest
                .load(AtomicOrdering::Acquire)
                .saturating_sub(LOG_RETENTION_NANOS),
        }
    }

    fn name(&self) -> &CStr {
        c"log-retention"
    }
}

impl CompactionFilter for LogFilter {
    fn filter(&mut self, _level: u32, key: &[u8], _value: &[u8]) -> Decision {
        match key.try_into().map(u64::from_be_bytes) {
            Ok(ts) if ts < self.keep_from => Decision::Remove,
            _ => Decision::Keep,
        }
    }

    fn name(&self) -> &CStr {
        c"log-retention"
    }
}

/// Walks stored versions and yields, per logical key, the newest version at or before `ts`.
struct VersionedScan<'a> {
    iter: DBRawIterator<'a>,
    ts: Timestamp,
    order: Order,
    range: KeyRange,
    done: bool,
}

impl VersionedScan<'_> {
    fn step(&mut self) -> EngineResult<Option<(Vec<u8>, Vec<u8>)>> {
        loop {
            if !self.iter.valid() {
                self.iter.status().map_err(err)?;
                return Ok(None);
            }
            let (key, _) = split(self.iter.key().expect("valid"))?;
            let key = key.to_vec();
            let before_start = match &self.range.start {
                Bound::Included(s) => key.as_slice() < s.as_slice(),
                Bound::Excluded(s) => key.as_slice() <= s.as_slice(),
                Bound::Unbounded => false,
            };
            let after_end = match &self.range.end {
                Bound::Included(e) => key.as_slice() > e.as_slice(),
                Bound::Excluded(e) => key.as_slice() >= e.as_slice(),
                Bound::Unbounded => false,
            };
            // Walk every version of this key; keep the newest one visible at `ts`.
            let mut visible: Option<Vec<u8>> = None;
            while self.iter.valid() && is_version_of(self.iter.key().expect("valid"), &key) {
                let (_, version) = split(self.iter.key().expect("valid"))?;
                let newer_seen = visible.is_some() && self.order == Order::Asc;
                if version <= self.ts && !newer_seen {
                    visible = Some(self.iter.value().expect("valid").to_vec());
                }
                match self.order {
                    Order::Asc => self.iter.next(),
                    Order::Desc => self.iter.prev(),
                }
            }
            match self.order {
                Order::Asc if after_end => return Ok(None),
                Order::Desc if before_start => return Ok(None),
                _ if before_start || after_end => continue,
                _ => {}
            }
            if let Some(stored) = visible {
                if let Some(value) = unwrap_value(&stored)? {
                    return Ok(Some((key, value)));
                }
            }
        }
    }
}

impl Iterator for VersionedScan<'_> {
    type Item = EngineResult<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits one write of `key` in `space` at `ts`.
    fn write_one(
        engine: &RocksEngine,
        space: Space,
        ts: Timestamp,
        key: &[u8],
        value: Option<&[u8]>,
    ) {
        engine
            .write(&[CommitRecord {
                ts,
                writes: vec![Write {
                    space,
                    key: key.to_vec(),
                    value: value.map(<[u8]>::to_vec),
                }],
            }])
            .unwrap();
    }

    fn put(engine: &RocksEngine, ts: Timestamp, key: &[u8], value: Option<&[u8]>) {
        write_one(engine, Space::Documents, ts, key, value);
    }

    fn stored_versions(engine: &RocksEngine, key: &[u8]) -> Vec<Timestamp> {
        let mut iter = engine.db.raw_iterator_cf(engine.cf(Space::Documents));
        iter.seek(key);
        let mut out = Vec::new();
        while iter.valid() && is_version_of(iter.key().unwrap(), key) {
            out.push(split(iter.key().unwrap()).unwrap().1);
            iter.next();
        }
        out
    }

    #[test]
    fn compaction_drops_only_versions_no_reader_can_see() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RocksEngine::open(&dir.path().join("db")).unwrap();
        for ts in 1..=100u64 {
            put(&engine, ts, b"hot", Some(&ts.to_be_bytes()));
        }
        put(&engine, 101, b"gone", Some(b"x"));
        put(&engine, 102, b"gone", None);
        engine.discard_before(60);
        engine.compact().unwrap();
        // Versions after the horizon, and the one a reader at the horizon sees, remain.
        assert_eq!(
            stored_versions(&engine, b"hot"),
            (60..=100).rev().collect::<Vec<_>>()
        );
        assert_eq!(
            engine.get(Space::Documents, b"hot", 60).unwrap(),
            Some(60u64.to_be_bytes().to_vec())
        );
        assert_eq!(
            engine.get(Space::Documents, b"hot", 75).unwrap(),
            Some(75u64.to_be_bytes().to_vec())
        );
        // Nothing shadowed at the horizon yet: both versions of "gone" stay.
        assert_eq!(stored_versions(&engine, b"gone"), vec![102, 101]);
        engine.discard_before(200);
        engine.compact().unwrap();
        assert_eq!(stored_versions(&engine, b"hot"), vec![100]);
        assert_eq!(stored_versions(&engine, b"gone"), vec![102]);
        assert_eq!(engine.get(Space::Documents, b"gone", 200).unwrap(), None);
    }

    /// `get_many` answers what `get` answers for each key, whatever the order of the keys,
    /// repeated or absent ones included, at every snapshot.
    #[test]
    fn get_many_reads_each_key_as_get_does() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RocksEngine::open(&dir.path().join("db")).unwrap();
        put(&engine, 10, b"a", Some(b"a10"));
        put(&engine, 20, b"a", Some(b"a20"));
        put(&engine, 30, b"a", None);
        put(&engine, 15, b"ab", Some(b"ab15"));
        put(&engine, 20, b"b", Some(b"b20"));
        put(&engine, 25, b"c", Some(b"c25"));
        let keys: [&[u8]; 6] = [b"c", b"a", b"missing", b"ab", b"b", b"a"];
        for ts in [0, 5, 10, 15, 19, 20, 25, 29, 30, 99] {
            let one_by_one: Vec<_> = keys
                .iter()
                .map(|key| engine.get(Space::Documents, key, ts).unwrap())
                .collect();
            let many = engine.get_many(Space::Documents, &keys, ts).unwrap();
            assert_eq!(many, one_by_one, "at {ts}");
        }
        let at_20 = engine.get_many(Space::Documents, &keys, 20).unwrap();
        let expected: [Option<&[u8]>; 6] = [
            None,
            Some(b"a20"),
            None,
            Some(b"ab15"),
            Some(b"b20"),
            Some(b"a20"),
        ];
        assert_eq!(at_20, expected.map(|v| v.map(<[u8]>::to_vec)));
        let at_30 = engine
            .get_many(Space::Documents, &[b"a", b"c"], 30)
            .unwrap();
        assert_eq!(at_30, vec![None, Some(b"c25".to_vec())]);
    }

    /// The newest commit's timestamp outlives a restart, and the log is no longer written:
    /// the commits are in the data, not a second time beside it.
    #[test]
    fn a_reopened_store_knows_its_newest_commit_without_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let engine = RocksEngine::open(&path).unwrap();
        assert_eq!(engine.latest_ts(), 0);
        put(&engine, 7, b"a", Some(b"1"));
        put(&engine, 9, b"a", Some(b"2"));
        let log = engine.db.cf_handle(CF_LOG).unwrap();
        assert!(engine
            .db
            .iterator_cf(log, rocksdb::IteratorMode::Start)
            .next()
            .is_none());
        let refused = engine.log_after(0, 10).unwrap_err().to_string();
        assert!(refused.contains("keeps no commit log"), "{refused}");
        // What a crash leaves: the write-ahead log, replayed at the next open.
        engine.close_without_flush();
        let engine = RocksEngine::open(&path).unwrap();
        assert_eq!(engine.latest_ts(), 9);
        assert_eq!(
            engine.get(Space::Documents, b"a", 9).unwrap(),
            Some(b"2".to_vec())
        );
    }

    /// Once a log file's data is in tables, the file is written over by a later log
    /// (`WAL_FILES_RECYCLED`; RocksDB's own log says so), and a crash while a recycled file
    /// holds the newest commits, over an older log's leftover records, loses none of them.
    #[test]
    fn recycled_log_files_lose_nothing_in_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let engine = RocksEngine::open(&path).unwrap();
        let key = |ts: Timestamp| format!("k{ts:05}").into_bytes();
        let mut ts = 0;
        for _ in 0..5 {
            for _ in 0..50 {
                ts += 1;
                put(&engine, ts, &key(ts), Some(&ts.to_be_bytes()));
            }
            // Memtables to tables: the log that held them is done with.
            let families: Vec<&ColumnFamily> = ALL_FAMILIES
                .iter()
                .map(|name| engine.db.cf_handle(name).unwrap())
                .collect();
            engine
                .db
                .flush_cfs_opt(&families, &rocksdb::FlushOptions::default())
                .unwrap();
        }
        let flushed = ts;
        for _ in 0..10 {
            ts += 1;
            put(&engine, ts, &key(ts), Some(&ts.to_be_bytes()));
        }
        engine.close_without_flush();
        // One flush thread: a flush's new log comes after the flush two rounds back has put
        // its log on the recycle list. The info log is complete once the store is closed.
        let info = std::fs::read_to_string(path.join("LOG")).unwrap();
        assert!(info.contains("from recycle list"), "no log file was reused");

        let engine = RocksEngine::open(&path).unwrap();
        assert_eq!(engine.latest_ts(), ts);
        for t in 1..=ts {
            assert_eq!(
                engine.get(Space::Documents, &key(t), ts).unwrap(),
                Some(t.to_be_bytes().to_vec()),
                "commit {t} (the first {flushed} were in tables)"
            );
        }
    }

    /// A data folder of an earlier version kept the newest commit only as the last key of
    /// its commit log: it opens at that commit.
    #[test]
    fn an_earlier_folder_opens_at_its_newest_logged_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let engine = RocksEngine::open(&path).unwrap();
            let (meta, log) = (
                engine.db.cf_handle(CF_META).unwrap(),
                engine.db.cf_handle(CF_LOG).unwrap(),
            );
            let mut batch = WriteBatch::default();
            for ts in [3u64, 5] {
                batch.put_cf(log, ts.to_be_bytes(), b"");
            }
            batch.delete_cf(meta, LATEST_KEY);
            engine.db.write(batch).unwrap();
        }
        assert_eq!(RocksEngine::open(&path).unwrap().latest_ts(), 5);
    }

    fn put_receipt(engine: &RocksEngine, ts: Timestamp, key: &[u8], value: &[u8]) {
        write_one(engine, Space::Receipts, ts, key, Some(value));
    }

    fn receipts_scanned(engine: &RocksEngine, ts: Timestamp) -> Vec<(Vec<u8>, Vec<u8>)> {
        let all = KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        };
        engine
            .scan(Space::Receipts, &all, ts, Order::Asc)
            .collect::<EngineResult<_>>()
            .unwrap()
    }

    /// A receipt is one entry under its own key, read with a point lookup as of a snapshot:
    /// absent before its commit, present from it on, also after a crash.
    #[test]
    fn a_receipt_is_one_entry_read_as_of_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let engine = RocksEngine::open(&path).unwrap();
        put_receipt(&engine, 5, b"r1", b"outcome");
        put(&engine, 6, b"doc", Some(b"x"));
        assert_eq!(engine.get(Space::Receipts, b"r1", 4).unwrap(), None);
        for ts in [5, 6] {
            assert_eq!(
                engine.get(Space::Receipts, b"r1", ts).unwrap(),
                Some(b"outcome".to_vec())
            );
        }
        assert_eq!(engine.get(Space::Receipts, b"r2", 6).unwrap(), None);
        let stored: Vec<_> = engine
            .db
            .iterator_cf(engine.cf(Space::Receipts), IteratorMode::Start)
            .map(|entry| entry.unwrap().0.into_vec())
            .collect();
        assert_eq!(stored, vec![b"r1".to_vec()]);
        assert_eq!(receipts_scanned(&engine, 4), vec![]);
        assert_eq!(
            receipts_scanned(&engine, 6),
            vec![(b"r1".to_vec(), b"outcome".to_vec())]
        );
        engine.close_without_flush();
        let engine = RocksEngine::open(&path).unwrap();
        assert_eq!(
            engine.get(Space::Receipts, b"r1", 6).unwrap(),
            Some(b"outcome".to_vec())
        );
    }

    /// Compaction drops the receipts committed more than `RECEIPT_RETENTION_NANOS` before
    /// the newest commit, and only those.
    #[test]
    fn compaction_drops_receipts_past_their_retention() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RocksEngine::open(&dir.path().join("db")).unwrap();
        put_receipt(&engine, 1, b"old", b"a");
        put_receipt(&engine, 20, b"kept", b"b");
        let newest = RECEIPT_RETENTION_NANOS + 10;
        put(&engine, newest, b"doc", Some(b"x"));
        engine.compact().unwrap();
        assert_eq!(engine.get(Space::Receipts, b"old", newest).unwrap(), None);
        assert_eq!(
            engine.get(Space::Receipts, b"kept", newest).unwrap(),
            Some(b"b".to_vec())
        );
    }

    /// A data folder of an earlier version kept receipts versioned, in another family: they
    /// are moved at open (the newest version of each) and that family is dropped.
    #[test]
    fn an_earlier_folders_versioned_receipts_are_moved_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(RocksEngine::open(&path).unwrap());
        {
            let options = Options::default();
            let names = DB::list_cf(&options, &path).unwrap();
            let mut db = DB::open_cf(&options, &path, &names).unwrap();
            db.create_cf(CF_VERSIONED_RECEIPTS, &options).unwrap();
            let earlier = db.cf_handle(CF_VERSIONED_RECEIPTS).unwrap();
            let mut batch = WriteBatch::default();
            batch.put_cf(earlier, versioned(b"r1", 3), b"\x01first");
            batch.put_cf(earlier, versioned(b"r1", 7), b"\x01second");
            batch.put_cf(earlier, versioned(b"r2", 4), b"\x01other");
            db.write(batch).unwrap();
        }
        let engine = RocksEngine::open(&path).unwrap();
        assert_eq!(engine.get(Space::Receipts, b"r1", 2).unwrap(), None);
        assert_eq!(
            engine.get(Space::Receipts, b"r1", 9).unwrap(),
            Some(b"second".to_vec())
        );
        assert_eq!(
            engine.get(Space::Receipts, b"r2", 9).unwrap(),
            Some(b"other".to_vec())
        );
        drop(engine);
        let names = DB::list_cf(&Options::default(), &path).unwrap();
        assert!(
            !names.iter().any(|name| name == CF_VERSIONED_RECEIPTS),
            "{names:?}"
        );
        assert!(RocksEngine::open(&path).is_ok());
    }
}
