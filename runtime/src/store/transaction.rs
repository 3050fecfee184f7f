//! A transaction: reads at its begin timestamp, writes into an overlay it reads back, and a
//! read set of the index key intervals it actually consumed.
//!
//! Nothing here touches storage for writing: dropping a transaction discards it whole, and
//! only the committer turns an overlay into stored writes, so a failure of any kind leaves
//! nothing half-written.

use super::catalog::{
    check_name, id_from_index_key, index_key, table_catalog_key, Catalog, IndexInfo, TableInfo,
    TableNumber,
};
use super::document::{validate_fields, Document, StoredDocument};
use super::engine::{KeyRange, Order, Space, Timestamp};
use super::error::StoreError;
use super::index_range::IndexRange;
use super::read_set::ReadSet;
use super::{Published, Shared};
use ferrovex_model::limits::*;
use ferrovex_model::{DocumentId, Object, Value};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

/// One document's change in the overlay: `old` is the committed version at the begin
/// timestamp (`None` if it did not exist), `new` the version to commit (`None` deletes).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DocumentWrite {
    pub table: TableNumber,
    pub old: Option<StoredDocument>,
    pub new: Option<StoredDocument>,
}

/// Counters checked against the limits of `ferrovex_model::limits`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub documents_read: usize,
    pub bytes_read: usize,
    pub index_ranges_read: usize,
    pub documents_written: usize,
    pub bytes_written: usize,
}

/// A mutation's outcome as its commit records it: `key` in the receipts space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Receipt {
    pub key: Vec<u8>,
    pub outcome: Vec<u8>,
}

/// The overlay as it was at some point, to return to if what follows fails. The documents
/// are not copied: the transaction keeps, from the savepoint on, what each document it
/// writes held before its first write (`Transaction::undo`). A serial group of 256 transfers
/// copied its whole overlay once per member before (`BTreeMap::clone` and
/// `Transaction::savepoint` 12.5% of the server's samples in `bench --only bank-transfer`,
/// Zipf 1.5), and compared all of it after each member.
pub(crate) struct Savepoint {
    pub new_tables: BTreeMap<String, Arc<TableInfo>>,
    last_creation_time: HashMap<TableNumber, f64>,
}

/// One page of an index scan.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub documents: Vec<Document>,
    /// Where the next page starts: pass it back as `after` to continue the same scan.
    pub cursor: Option<Vec<u8>>,
    /// True when the range holds nothing beyond this page.
    pub is_done: bool,
    /// The key of the document in the middle of the page (the last of its first half), when
    /// it has two or more: where the page can be split in two.
    pub split_cursor: Option<Vec<u8>>,
}

/// Why an inline attempt (`Store::run_mutation_async`, an HTTP query run on an async
/// worker) was stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Its code ran past its bound (`HostConfig::inline_ticks`).
    RanLong,
    /// It came to a read that would wait on the network (`Transaction::engine_read`).
    NetworkRead,
}

/// A patch: `Some(value)` sets a field, `None` removes it.
pub type Patch = BTreeMap<String, Option<Value>>;

pub struct Transaction {
    pub(crate) shared: Arc<Shared>,
    pub(crate) begin_ts: Timestamp,
    pub(crate) catalog: Arc<Catalog>,
    read_only: bool,
    pub(crate) new_tables: BTreeMap<String, Arc<TableInfo>>,
    pub(crate) writes: BTreeMap<DocumentId, DocumentWrite>,
    pub(crate) reads: ReadSet,
    /// The receipt this transaction's commit writes, if it has writes (see `set_receipt`).
    pub(crate) receipt: Option<Receipt>,
    usage: Usage,
    rng_state: u64,
    now_ms: f64,
    last_creation_time: HashMap<TableNumber, f64>,
    /// The newest creation time per table as of the begin timestamp, so this transaction's
    /// inserts sort after every committed one in its own reads too.
    committed_creation_time: Arc<HashMap<TableNumber, f64>>,
    /// Whether this attempt runs inline on an async worker, which it must not hold long (set
    /// by `Store::run_mutation_async`).
    inline: bool,
    /// Why this inline attempt was stopped before its end, if it was.
    stopped: Option<Stop>,
    /// Attempts of the same mutation before this one that went to a commit (set by the
    /// store's drivers; see `earlier_attempts`).
    earlier_attempts: u32,
    /// From the last savepoint on: each document written since, with what the overlay held
    /// for it before (`None`: nothing). `None` when there is no savepoint.
    undo: Option<BTreeMap<DocumentId, Option<DocumentWrite>>>,
    /// The committed documents this transaction read by id, as stored at its begin timestamp
    /// (which nothing changes under it), so a read-modify-write (a `get`, then a `patch` of
    /// the same document) asks the engine once: each ask was a RocksDB iterator, 11.6% of the
    /// server's samples in `bench --only bank-transfer` with two of four asks repeats. Every
    /// read is still charged and recorded; queries and scans read through.
    point_reads: HashMap<DocumentId, Option<Committed>>,
    /// The bytes of the documents in `point_reads`.
    point_reads_bytes: usize,
}

/// A committed document's stored bytes: read from the engine, or shared with the newest
/// versions the store keeps in memory (`Shared::newest`).
enum Committed {
    Read(Vec<u8>),
    Newest(Arc<[u8]>),
}

impl std::ops::Deref for Committed {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Committed::Read(bytes) => bytes,
            Committed::Newest(bytes) => bytes,
        }
    }
}

/// Bytes of committed documents one transaction keeps in `point_reads`: four of the largest
/// documents, more than a read-modify-write touches; past it, reads go to the engine.
const POINT_READS_KEPT_BYTES: usize = 4 * ferrovex_model::limits::MAX_DOCUMENT_BYTES;

/// Documents a scan fetches from the engine at once (`StorageEngine::get_many`) before
/// charging them to the read limits: a scan past `MAX_BYTES_READ` holds at most this many
/// of the largest documents more than reading one at a time would.
const FETCH_BATCH: usize = 16;

impl Transaction {
    pub(crate) fn new(shared: Arc<Shared>, read_only: bool) -> Self {
        let published = shared.begin_snapshot();
        Self::at(shared, published, read_only)
    }

    /// A transaction at `published`, which the caller has registered with `begin_snapshot`
    /// or `register_snapshot`; this transaction's drop ends that registration.
    pub(crate) fn at(shared: Arc<Shared>, published: Arc<Published>, read_only: bool) -> Self {
        let begin_ts = published.ts;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        Transaction {
            shared,
            begin_ts,
            catalog: published.catalog.clone(),
            read_only,
            new_tables: BTreeMap::new(),
            writes: BTreeMap::new(),
            reads: ReadSet::default(),
            receipt: None,
            usage: Usage::default(),
            rng_state: begin_ts ^ (now_ms.to_bits()).rotate_left(17),
            now_ms,
            last_creation_time: HashMap::new(),
            committed_creation_time: published.last_creation_time.clone(),
            inline: false,
            stopped: None,
            earlier_attempts: 0,
            undo: None,
            point_reads: HashMap::new(),
            point_reads_bytes: 0,
        }
    }

    /// The commit timestamp this transaction reads as of.
    pub fn begin_ts(&self) -> Timestamp {
        self.begin_ts
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Seeds the generator behind new document ids, so that a re-execution of the same call
    /// makes the same writes.
    pub fn set_seed(&mut self, seed: u64) {
        self.rng_state = seed;
    }

    /// Freezes the time this transaction sees (milliseconds since the Unix epoch).
    pub fn set_now_ms(&mut self, now_ms: f64) {
        self.now_ms = now_ms;
    }

    pub fn now_ms(&self) -> f64 {
        self.now_ms
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The index key intervals read so far: what a subscription to this transaction's
    /// result depends on.
    pub fn read_set(&self) -> &ReadSet {
        &self.reads
    }

    /// The receipt a committed transaction recorded under `key` with
    /// [`Transaction::set_receipt`], as of this transaction's snapshot: its outcome bytes and
    /// commit timestamp. The read is part of the read set, so a commit of the same key made
    /// meanwhile (a re-sent mutation on another node) conflicts with this transaction's.
    /// Receipts are kept for `RECEIPT_RETENTION_NANOS` behind the newest commit.
    pub fn receipt(&mut self, key: &[u8]) -> Result<Option<(Vec<u8>, Timestamp)>, StoreError> {
        self.reads
            .add(Space::Receipts, KeyRange::point(key.to_vec()));
        self.engine_read()?;
        let Some(mut value) = self
            .shared
            .engine
            .get(Space::Receipts, key, self.begin_ts)?
        else {
            return Ok(None);
        };
        let Some(split) = value.len().checked_sub(8) else {
            return Err(StoreError::Corrupt(format!(
                "a receipt of {} bytes, shorter than its timestamp",
                value.len()
            )));
        };
        let stamp = value.split_off(split);
        let committed = Timestamp::from_be_bytes(stamp.try_into().expect("8 bytes"));
        Ok(Some((value, committed)))
    }

    /// Reads the absence of a receipt under `key` without looking it up: for a request no
    /// run of which can have committed before this transaction began (`wasm::Once`). The
    /// key is in the read set as [`Transaction::receipt`] puts it there, so a run committed
    /// since this transaction began conflicts with its commit, and the attempt after that
    /// looks the receipt up.
    pub fn receipt_absent(&mut self, key: &[u8]) {
        self.reads
            .add(Space::Receipts, KeyRange::point(key.to_vec()));
    }

    /// Records `outcome` under `key` in the receipts space, in this transaction's own commit
    /// (if it commits writes), stamped with its commit timestamp: see
    /// [`Transaction::receipt`]. A later call replaces an earlier one.
    pub fn set_receipt(&mut self, key: Vec<u8>, outcome: Vec<u8>) {
        self.receipt = Some(Receipt { key, outcome });
    }

    /// Whether this attempt runs inline on an async worker: then whoever runs code in it
    /// must stop early when that code runs long, and say so with [`Transaction::mark_overran`].
    pub fn runs_inline(&self) -> bool {
        self.inline
    }

    /// Makes this the inline attempt `runs_inline` tells of (`Store::run_mutation_async`).
    pub(crate) fn set_inline(&mut self) {
        self.inline = true;
    }

    /// How many attempts of the same mutation before this one went to a commit, and so
    /// conflicted (or it would not be made again). An attempt stopped inline (`Stop`) is not
    /// one: it committed nothing. Only the first of a request never sent before may take
    /// its receipt as absent (`receipt_absent`): a later one may have conflicted with a
    /// commit of that very receipt.
    pub fn earlier_attempts(&self) -> u32 {
        self.earlier_attempts
    }

    /// Says how many attempts before this one went to a commit (the store's drivers).
    pub(crate) fn set_earlier_attempts(&mut self, attempts: u32) {
        self.earlier_attempts = attempts;
    }

    /// Why this inline attempt was stopped before its end, if it was: the store throws it
    /// away and makes it again on the blocking pool.
    pub(crate) fn stopped(&self) -> Option<Stop> {
        self.stopped
    }

    /// Says that this inline attempt was stopped for running long: the store throws it away
    /// and makes it again on the blocking pool, with no time bound but the call's own.
    pub fn mark_overran(&mut self) {
        debug_assert!(self.inline, "only an inline attempt can overrun");
        self.stopped = Some(Stop::RanLong);
    }

    /// Before a read of the engine: an inline attempt must not wait on the network, so over
    /// an engine whose reads do (`StorageEngine::reads_locally`, PostgreSQL) it stops at its
    /// first read that memory cannot answer, and is made again on the blocking pool. One that
    /// reads nothing there (a chat message's insert, a transfer between accounts written
    /// lately) runs to its end inline, with no hand-off to the pool and back: over
    /// PostgreSQL, chat-send's server samples were 17% `finish_task_switch` with every
    /// attempt on the pool (BENCHMARKS.md).
    fn engine_read(&mut self) -> Result<(), StoreError> {
        if self.inline && !self.shared.engine.reads_locally() {
            self.stopped = Some(Stop::NetworkRead);
            return Err(StoreError::InlineNetworkRead);
        }
        Ok(())
    }

    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty() || !self.new_tables.is_empty()
    }

    /// Marks the state to return to (`restore`) or to diff against (`take_changes`).
    pub(crate) fn savepoint(&mut self) -> Savepoint {
        self.undo = Some(BTreeMap::new());
        Savepoint {
            new_tables: self.new_tables.clone(),
            last_creation_time: self.last_creation_time.clone(),
        }
    }

    /// Returns to `savepoint`, undoing every write made since.
    pub(crate) fn restore(&mut self, savepoint: Savepoint) {
        self.receipt = None;
        for (id, before) in self.undo.take().expect("restore follows a savepoint") {
            match before {
                Some(write) => self.writes.insert(id, write),
                None => self.writes.remove(&id),
            };
        }
        self.new_tables = savepoint.new_tables;
        self.last_creation_time = savepoint.last_creation_time;
    }

    /// Ends the savepoint: each document written since it, with what the overlay held for it
    /// at the savepoint and holds now.
    pub(crate) fn take_changes(
        &mut self,
    ) -> impl Iterator<Item = (DocumentId, Option<DocumentWrite>, &DocumentWrite)> {
        let undo = self
            .undo
            .take()
            .expect("changes are taken after a savepoint");
        let writes = &self.writes;
        undo.into_iter()
            .map(move |(id, before)| (id, before, &writes[&id]))
    }

    /// Puts `write` in the overlay, first keeping what it replaces when a savepoint is open.
    fn put_write(&mut self, id: DocumentId, write: DocumentWrite) {
        let before = self.writes.insert(id, write);
        if let Some(undo) = &mut self.undo {
            undo.entry(id).or_insert(before);
        }
    }

    /// Starts the next mutation of a serial group on this shared transaction, after
    /// `earlier_attempts` of it that went to a commit: limits count per mutation.
    pub(crate) fn start_next_mutation(&mut self, earlier_attempts: u32) {
        self.usage = Usage::default();
        self.receipt = None;
        self.earlier_attempts = earlier_attempts;
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: tiny, fast, and plenty for unique ids from a 64-bit seed.
        self.rng_state = self.rng_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn table_by_name(&mut self, name: &str) -> Option<Arc<TableInfo>> {
        if let Some(t) = self
            .new_tables
            .get(name)
            .or_else(|| self.catalog.table(name))
        {
            return Some(t.clone());
        }
        // Record that the table was absent, so its creation by another transaction is a
        // conflict for a writer and an invalidation for a subscriber.
        self.reads
            .add(Space::Catalog, KeyRange::point(table_catalog_key(name)));
        None
    }

    /// The table `name` as this transaction sees it (its own new tables included), without
    /// recording a read.
    pub fn table_info(&self, name: &str) -> Option<Arc<TableInfo>> {
        self.new_tables
            .get(name)
            .or_else(|| self.catalog.table(name))
            .cloned()
    }

    /// The table a document id belongs to, as this transaction sees it.
    pub fn table_of_id(&self, id: &DocumentId) -> Option<Arc<TableInfo>> {
        self.table_by_number(id.table_number())
    }

    fn table_by_number(&self, number: TableNumber) -> Option<Arc<TableInfo>> {
        self.catalog
            .table_by_number(number)
            .or_else(|| self.new_tables.values().find(|t| t.number == number))
            .cloned()
    }

    fn ensure_writable(&self, operation: &'static str, table: &str) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                operation,
                table: table.to_owned(),
            });
        }
        Ok(())
    }

    fn table_for_write(&mut self, name: &str) -> Result<Arc<TableInfo>, StoreError> {
        if let Some(table) = self.table_by_name(name) {
            return Ok(table);
        }
        check_name("table", name)?;
        check_limit(
            "MAX_NEW_TABLES_PER_TRANSACTION",
            "tables created by one transaction",
            MAX_NEW_TABLES_PER_TRANSACTION,
            self.new_tables.len() + 1,
        )?;
        check_limit(
            "MAX_TABLES",
            "tables in the deployment",
            MAX_TABLES,
            self.catalog.table_count() + self.new_tables.len() + 1,
        )?;
        let number = self.shared.allocate_table_number();
        let table = Arc::new(TableInfo::new(number, name, || {
            self.shared.allocate_index_id()
        }));
        self.new_tables.insert(name.to_owned(), table.clone());
        Ok(table)
    }

    fn count_range(&mut self) -> Result<(), StoreError> {
        self.usage.index_ranges_read += 1;
        check_limit(
            "MAX_INDEX_RANGES_READ",
            "index ranges read in one transaction",
            MAX_INDEX_RANGES_READ,
            self.usage.index_ranges_read,
        )
    }

    fn count_read(&mut self, bytes: usize) -> Result<(), StoreError> {
        self.usage.documents_read += 1;
        self.usage.bytes_read += bytes;
        check_limit(
            "MAX_DOCUMENTS_READ",
            "documents read in one transaction",
            MAX_DOCUMENTS_READ,
            self.usage.documents_read,
        )?;
        check_limit(
            "MAX_BYTES_READ",
            "bytes read in one transaction",
            MAX_BYTES_READ,
            self.usage.bytes_read,
        )
    }

    fn count_write(&mut self, bytes: usize, new_document: bool) -> Result<(), StoreError> {
        self.usage.documents_written += new_document as usize;
        self.usage.bytes_written += bytes;
        check_limit(
            "MAX_DOCUMENTS_WRITTEN",
            "documents written in one transaction",
            MAX_DOCUMENTS_WRITTEN,
            self.usage.documents_written,
        )?;
        check_limit(
            "MAX_BYTES_WRITTEN",
            "bytes written in one transaction",
            MAX_BYTES_WRITTEN,
            self.usage.bytes_written,
        )
    }

    /// The stored bytes of a document's committed version at the begin timestamp: the
    /// newest version kept in memory when this snapshot sees it, else the engine's.
    fn committed(&mut self, id: &DocumentId) -> Result<Option<Committed>, StoreError> {
        if let Some(kept) = self.kept(id) {
            return Ok(kept);
        }
        self.engine_read()?;
        let read = self
            .shared
            .engine
            .get(Space::Documents, id.as_bytes(), self.begin_ts)?;
        Ok(read.map(Committed::Read))
    }

    /// The newest version of a document kept in memory, if this snapshot sees it (`Some(None)`
    /// when it is a deletion); `None`: ask the engine.
    fn kept(&self, id: &DocumentId) -> Option<Option<Committed>> {
        let newest = self.shared.newest.get(id, self.begin_ts)?;
        Some(newest.map(Committed::Newest))
    }

    /// Reads the committed version of a document at the begin timestamp.
    fn read_committed(&mut self, id: &DocumentId) -> Result<Option<StoredDocument>, StoreError> {
        match self.committed(id)? {
            Some(bytes) => {
                self.count_read(bytes.len())?;
                Ok(Some(StoredDocument::decode(&bytes)?))
            }
            None => Ok(None),
        }
    }

    /// [`Transaction::read_committed`] for a read by id, kept in `point_reads` by a
    /// transaction that may write (the one that reads, then patches) while they hold at most
    /// `POINT_READS_KEPT_BYTES`; a query reads through.
    fn read_committed_by_id(
        &mut self,
        id: &DocumentId,
    ) -> Result<Option<StoredDocument>, StoreError> {
        if self.read_only {
            return self.read_committed(id);
        }
        let fetched;
        let stored = if self.point_reads.contains_key(id) {
            &self.point_reads[id]
        } else {
            let got = self.committed(id)?;
            let size = got.as_ref().map_or(0, |bytes| bytes.len());
            if self.point_reads_bytes + size <= POINT_READS_KEPT_BYTES {
                self.point_reads_bytes += size;
                self.point_reads.entry(*id).or_insert(got)
            } else {
                fetched = got;
                &fetched
            }
        };
        let Some(bytes) = stored else {
            return Ok(None);
        };
        let doc = StoredDocument::decode(bytes)?;
        let len = bytes.len();
        self.count_read(len)?;
        Ok(Some(doc))
    }

    /// Reads a document by id, recording the point read.
    pub fn get(&mut self, id: DocumentId) -> Result<Option<Document>, StoreError> {
        let (_, current) = self.current(id)?;
        Ok(current.map(|doc| Document::from_stored(id, doc)))
    }

    /// Parses an id given as text, then reads it.
    pub fn get_str(&mut self, id: &str) -> Result<Option<Document>, StoreError> {
        self.get(DocumentId::parse(id)?)
    }

    /// The table of `id` and its current version as this transaction sees it.
    fn current(
        &mut self,
        id: DocumentId,
    ) -> Result<(Arc<TableInfo>, Option<StoredDocument>), StoreError> {
        let table = self.table_by_number(id.table_number()).ok_or_else(|| {
            StoreError::UnknownTableOfId {
                id: id.to_string(),
                table_number: id.table_number(),
            }
        })?;
        self.count_range()?;
        let by_id_key = by_id_key(table.by_id(), &id);
        self.reads.add(Space::Indexes, KeyRange::point(by_id_key));
        let current = match self.writes.get(&id) {
            // The transaction's own write, read back: charged like any read, so reading
            // what it wrote over and over cannot go past the read limits.
            Some(write) => {
                let current = write.new.clone();
                if let Some(doc) = &current {
                    self.count_read(doc.encoded_len())?;
                }
                current
            }
            None => self.read_committed_by_id(&id)?,
        };
        Ok((table, current))
    }

    /// Inserts a document into `table`, creating the table on first insert.
    pub fn insert(&mut self, table: &str, fields: Object) -> Result<DocumentId, StoreError> {
        self.ensure_writable("insert", table)?;
        let size = validate_fields(table, &fields)?;
        let info = self.table_for_write(table)?;
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&self.next_random().to_le_bytes());
        random[8..].copy_from_slice(&self.next_random().to_le_bytes()[..2]);
        let id = DocumentId::generated(info.number, self.now_ms.max(0.0) as u64, random);
        // A point read of the new id: two transactions that drew the same id conflict.
        self.reads.add(
            Space::Indexes,
            KeyRange::point(by_id_key(info.by_id(), &id)),
        );
        let now_ms = self.now_ms;
        self.add_insert(&info, id, now_ms, fields, size)?;
        Ok(id)
    }

    /// Inserts a document with the id and creation time it had where it was exported from
    /// (see `crate::transfer`). The table must exist and own the id's table number, and the
    /// id must be new. The creation time is kept unless the table already holds a newer one:
    /// then, as for every insert, the committer moves it just past that one, so creation
    /// times still strictly increase within the table.
    pub fn insert_imported(
        &mut self,
        table: &str,
        id: DocumentId,
        creation_time: f64,
        fields: Object,
    ) -> Result<(), StoreError> {
        self.ensure_writable("insert", table)?;
        let size = validate_fields(table, &fields)?;
        let info = self
            .table_by_name(table)
            .ok_or_else(|| StoreError::UnknownTable {
                table: table.to_owned(),
            })?;
        if id.table_number() != info.number {
            return Err(StoreError::IdOfAnotherTable {
                table: table.to_owned(),
                table_number: info.number,
                id: id.to_string(),
                id_table: id.table_number(),
            });
        }
        if !creation_time.is_finite() {
            return Err(StoreError::InvalidCreationTime {
                table: table.to_owned(),
                given: creation_time,
            });
        }
        // The point read makes a concurrent insert of the same id a conflict.
        let (_, current) = self.current(id)?;
        if current.is_some() {
            return Err(StoreError::DuplicateId {
                table: table.to_owned(),
                id: id.to_string(),
            });
        }
        self.add_insert(&info, id, creation_time, fields, size)
    }

    /// Adds a new document to the overlay with a provisional creation time of at least
    /// `wanted`: past every creation time this transaction has seen in the table. The
    /// committer moves it later only if a concurrent insert took it.
    fn add_insert(
        &mut self,
        info: &TableInfo,
        id: DocumentId,
        wanted: f64,
        fields: Object,
        size: usize,
    ) -> Result<(), StoreError> {
        let floor = self
            .last_creation_time
            .get(&info.number)
            .or_else(|| self.committed_creation_time.get(&info.number));
        let creation_time = match floor {
            Some(last) if *last >= wanted => last.next_up(),
            _ => wanted,
        };
        self.last_creation_time.insert(info.number, creation_time);
        self.put_write(
            id,
            DocumentWrite {
                table: info.number,
                old: None,
                new: Some(StoredDocument {
                    creation_time,
                    fields,
                }),
            },
        );
        self.count_write(size, true)
    }

    fn write_existing<E: From<StoreError>>(
        &mut self,
        id: DocumentId,
        operation: &'static str,
        change: impl FnOnce(&TableInfo, StoredDocument) -> Result<Option<StoredDocument>, E>,
    ) -> Result<(), E> {
        let (table, current) = self.current(id)?;
        self.ensure_writable(operation, &table.name)?;
        let current = current.ok_or_else(|| StoreError::NotFound {
            table: table.name.clone(),
            id: id.to_string(),
        })?;
        // Not in the overlay means `current` came from storage: it is the committed version.
        let (old, first_write) = match self.writes.get(&id) {
            Some(previous) => (previous.old.clone(), false),
            None => (Some(current.clone()), true),
        };
        let new = change(&table, current)?;
        let size = match &new {
            Some(doc) => validate_fields(&table.name, &doc.fields)?,
            None => 0,
        };
        self.put_write(
            id,
            DocumentWrite {
                table: table.number,
                old,
                new,
            },
        );
        Ok(self.count_write(size, first_write)?)
    }

    /// Shallow merge: each `Some` sets a top-level field, each `None` removes it.
    pub fn patch(&mut self, id: DocumentId, patch: Patch) -> Result<(), StoreError> {
        self.patch_checked(id, patch, |_, _| Ok(()))
    }

    /// [`Transaction::patch`] that first passes the merged fields to `check` (an app's
    /// schema), and writes nothing if it fails: the document is read and merged once.
    pub fn patch_checked<E: From<StoreError>>(
        &mut self,
        id: DocumentId,
        patch: Patch,
        check: impl FnOnce(&str, &Object) -> Result<(), E>,
    ) -> Result<(), E> {
        self.write_existing(id, "patch", |table, mut doc| {
            for (field, value) in patch {
                match value {
                    Some(v) => doc.fields.insert(field, v),
                    None => doc.fields.remove(&field),
                };
            }
            check(&table.name, &doc.fields)?;
            Ok(Some(doc))
        })
    }

    /// Replaces every user field, keeping `_id` and `_creationTime`.
    pub fn replace(&mut self, id: DocumentId, fields: Object) -> Result<(), StoreError> {
        self.write_existing(id, "replace", |_, doc| {
            Ok(Some(StoredDocument {
                creation_time: doc.creation_time,
                fields,
            }))
        })
    }

    pub fn delete(&mut self, id: DocumentId) -> Result<(), StoreError> {
        self.write_existing(id, "delete", |_, _| Ok(None))
    }

    /// Reads up to `limit` documents of `range` over `index` of `table`, in `order`,
    /// continuing after `after` (a page's cursor) if given. Records exactly the key interval
    /// consumed: the whole range when it is exhausted, else up to the last document returned.
    pub fn scan(
        &mut self,
        table: &str,
        index: &str,
        range: &IndexRange,
        order: Order,
        limit: usize,
        after: Option<&[u8]>,
    ) -> Result<Page, StoreError> {
        self.scan_until(table, index, range, order, limit, after, None)
    }

    /// [`Transaction::scan`] that also stops at `until` (a cursor of the same range,
    /// included): a page with a fixed end, which keeps its place among its neighbours while
    /// documents come and go. `is_done` then means the page reached `until` (or the range's
    /// end).
    #[allow(clippy::too_many_arguments)]
    pub fn scan_until(
        &mut self,
        table: &str,
        index: &str,
        range: &IndexRange,
        order: Order,
        limit: usize,
        after: Option<&[u8]>,
        until: Option<&[u8]>,
    ) -> Result<Page, StoreError> {
        self.count_range()?;
        let Some(info) = self.table_by_name(table) else {
            return Ok(Page {
                documents: vec![],
                cursor: None,
                is_done: true,
                split_cursor: None,
            });
        };
        let index_info = info
            .index(index)
            .ok_or_else(|| StoreError::UnknownIndex {
                table: table.to_owned(),
                index: index.to_owned(),
                available: info
                    .indexes
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?
            .clone();
        let mut key_range = range.to_key_range(table, &index_info)?;
        // Both cursors are keys of this range; anything else could read another index or
        // table.
        let foreign = [after, until]
            .into_iter()
            .flatten()
            .any(|cursor| !key_range.contains(cursor));
        if foreign {
            return Err(StoreError::InvalidCursor {
                table: table.to_owned(),
                index: index.to_owned(),
            });
        }
        if let Some(cursor) = after {
            match order {
                Order::Asc => key_range.start = Bound::Excluded(cursor.to_vec()),
                Order::Desc => key_range.end = Bound::Excluded(cursor.to_vec()),
            }
        }
        if let Some(until) = until {
            match order {
                Order::Asc => key_range.end = Bound::Included(until.to_vec()),
                Order::Desc => key_range.start = Bound::Included(until.to_vec()),
            }
        }

        // The overlay's documents in this range, in scan order; stored entries of documents
        // the overlay holds are skipped, since the overlay decides for them.
        let mut pending: Vec<(Vec<u8>, DocumentId, StoredDocument)> = self
            .writes
            .iter()
            .filter(|(_, w)| w.table == info.number)
            .filter_map(|(id, w)| {
                let doc = w.new.as_ref()?;
                let key = index_key(&index_info, id, doc);
                key_range.contains(&key).then(|| (key, *id, doc.clone()))
            })
            .collect();
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        if order == Order::Desc {
            pending.reverse();
        }
        let mut pending = pending.into_iter().peekable();

        self.engine_read()?;
        let shared = self.shared.clone();
        let mut stored = shared
            .engine
            .scan(Space::Indexes, &key_range, self.begin_ts, order)
            .filter(|entry| match entry {
                Ok((key, _)) => {
                    id_from_index_key(key).is_none_or(|id| !self.writes.contains_key(&id))
                }
                Err(_) => true,
            })
            .peekable();

        let mut documents = Vec::new();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        let mut fetched = Vec::new();
        // The transaction's own writes the page returns, charged once the scan is released.
        let mut own_reads = Vec::new();
        let is_done = loop {
            let next_stored = match stored.peek() {
                Some(Ok((key, _))) => Some(key.clone()),
                Some(Err(_)) => {
                    let Some(Err(e)) = stored.next() else {
                        unreachable!()
                    };
                    return Err(e.into());
                }
                None => None,
            };
            let take_pending = match (pending.peek(), &next_stored) {
                (None, None) => break true,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((pk, _, _)), Some(sk)) => match order {
                    Order::Asc => pk < sk,
                    Order::Desc => pk > sk,
                },
            };
            if documents.len() >= limit {
                break false;
            }
            if take_pending {
                let (key, id, doc) = pending.next().expect("peeked");
                own_reads.push(doc.encoded_len());
                documents.push(Document::from_stored(id, doc));
                keys.push(key.clone());
                last_key = Some(key);
            } else {
                let (key, _) = stored.next().expect("peeked").expect("checked");
                let id = id_from_index_key(&key)
                    .ok_or_else(|| StoreError::Corrupt("index key without a document id".into()))?;
                // Keep the document's position; fetch it once the scan is released.
                fetched.push((documents.len(), id));
                documents.push(Document {
                    id,
                    creation_time: 0.0,
                    fields: Object::new(),
                });
                keys.push(key.clone());
                last_key = Some(key);
            }
        };
        drop(stored);
        for bytes in own_reads {
            self.count_read(bytes)?;
        }
        for batch in fetched.chunks(FETCH_BATCH) {
            // The newest versions kept in memory first (a feed's recent documents), the
            // rest from the engine at once.
            let mut found: Vec<Option<Option<Committed>>> =
                batch.iter().map(|(_, id)| self.kept(id)).collect();
            let missing: Vec<&[u8]> = batch
                .iter()
                .zip(&found)
                .filter(|(_, known)| known.is_none())
                .map(|((_, id), _)| &id.as_bytes()[..])
                .collect();
            if !missing.is_empty() {
                let mut read = self
                    .shared
                    .engine
                    .get_many(Space::Documents, &missing, self.begin_ts)?
                    .into_iter();
                for known in found.iter_mut().filter(|known| known.is_none()) {
                    let bytes = read.next().expect("get_many answers every key");
                    *known = Some(bytes.map(Committed::Read));
                }
            }
            for (&(position, id), bytes) in batch.iter().zip(found.into_iter().flatten()) {
                let bytes = bytes.ok_or_else(|| {
                    StoreError::Corrupt(format!("index entry for {id} has no document"))
                })?;
                self.count_read(bytes.len())?;
                documents[position] = Document::from_stored(id, StoredDocument::decode(&bytes)?);
            }
        }

        let consumed = match (&last_key, is_done) {
            (Some(last), false) => match order {
                Order::Asc => KeyRange {
                    start: key_range.start.clone(),
                    end: Bound::Included(last.clone()),
                },
                Order::Desc => KeyRange {
                    start: Bound::Included(last.clone()),
                    end: key_range.end.clone(),
                },
            },
            _ => key_range,
        };
        self.reads.add(Space::Indexes, consumed);
        let split_cursor = (keys.len() >= 2).then(|| keys.swap_remove(keys.len() / 2 - 1));
        Ok(Page {
            documents,
            cursor: if is_done { None } else { last_key },
            is_done,
            split_cursor,
        })
    }

    /// All documents of a range, in order, up to `limit`.
    pub fn query(
        &mut self,
        table: &str,
        index: &str,
        range: &IndexRange,
        order: Order,
        limit: usize,
    ) -> Result<Vec<Document>, StoreError> {
        Ok(self
            .scan(table, index, range, order, limit, None)?
            .documents)
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.shared.end_snapshot(self.begin_ts);
    }
}

pub(crate) fn by_id_key(by_id: &IndexInfo, id: &DocumentId) -> Vec<u8> {
    let mut key = by_id.id.to_be_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

fn check_limit(
    limit: &'static str,
    what: &str,
    max: usize,
    given: usize,
) -> Result<(), StoreError> {
    if given > max {
        return Err(StoreError::LimitExceeded {
            limit,
            what: what.to_owned(),
            max,
            given,
        });
    }
    Ok(())
}
