//! The newest committed version of the documents written lately, in memory, so that a read by
//! id whose snapshot already sees that version skips the engine.
//!
//! A point read asks the engine for the newest version at or below the reader's timestamp:
//! on RocksDB an iterator made, sought and dropped (15% of the server's CPU in `bench --only
//! bank-transfer`, two reads per transfer), on PostgreSQL a round trip. Most reads are of a
//! document's newest version, and the committer knows every newest version as it writes it.
//!
//! Why a hit is right: the committer records a group's writes after they are durable and
//! before it publishes their timestamp, oldest first, replacing what was known of each key
//! (or forgetting it, when the version cannot be kept). So an entry is always the newest
//! version of its document, and a reader at `ts` that finds one at or below `ts` reads what
//! the engine would give it: any newer version at or below `ts` was published before `ts`,
//! hence recorded before, and would have replaced it. An entry above `ts` is a miss.
//! A durable write that fails forgets everything: whether it landed is settled later
//! (`CommitterState::recover`) without passing through here. Only the committer records; a
//! follower's store, which replays a leader's commits instead, never knows an entry, and a
//! promoted one starts from nothing.

use super::engine::{CommitRecord, Space, Timestamp};
use ferrovex_model::limits::NEWEST_VERSIONS_BYTES;
use ferrovex_model::DocumentId;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Shards, each with its own lock and an equal share of the byte budget: readers on every
/// worker and the committer rarely meet on one.
const SHARDS: usize = 64;

/// What an entry costs beyond its document's bytes: the id, the timestamp, the map's slot and
/// the shared buffer's counts, rounded up.
const ENTRY_OVERHEAD_BYTES: usize = 96;

pub(crate) struct NewestVersions {
    shards: Box<[Mutex<Shard>]>,
    shard_budget: usize,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<DocumentId, Newest>,
    bytes: usize,
}

struct Newest {
    ts: Timestamp,
    /// The stored document; `None` for a deletion.
    stored: Option<Arc<[u8]>>,
}

fn cost(stored: &Option<Arc<[u8]>>) -> usize {
    ENTRY_OVERHEAD_BYTES + stored.as_ref().map_or(0, |s| s.len())
}

impl NewestVersions {
    pub fn new() -> Self {
        Self::with_budget(NEWEST_VERSIONS_BYTES)
    }

    fn with_budget(bytes: usize) -> Self {
        NewestVersions {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_budget: bytes / SHARDS,
        }
    }

    fn shard(&self, id: &DocumentId) -> &Mutex<Shard> {
        &self.shards[(id.random_tail() % SHARDS as u64) as usize]
    }

    /// What a reader at `at` reads of `id` if the newest version is known and visible to it:
    /// `Some(None)` when that version deleted the document. `None`: ask the engine.
    pub fn get(&self, id: &DocumentId, at: Timestamp) -> Option<Option<Arc<[u8]>>> {
        let shard = self.shard(id).lock();
        let newest = shard.entries.get(id)?;
        (newest.ts <= at).then(|| newest.stored.clone())
    }

    /// Records the documents `records` wrote, oldest first: call after they are durable and
    /// before their timestamps are published.
    pub fn record(&self, records: &[CommitRecord]) {
        for record in records {
            for write in &record.writes {
                if write.space != Space::Documents {
                    continue;
                }
                let Some(id) = DocumentId::from_bytes(&write.key) else {
                    debug_assert!(false, "a document key of {} bytes", write.key.len());
                    continue;
                };
                let stored = write.value.as_deref().map(Arc::<[u8]>::from);
                self.put(id, record.ts, stored);
            }
        }
    }

    fn put(&self, id: DocumentId, ts: Timestamp, stored: Option<Arc<[u8]>>) {
        let mut shard = self.shard(&id).lock();
        let shard = &mut *shard;
        // The version this replaces goes first, whatever follows: an entry left behind
        // would be read as the newest.
        if let Some(old) = shard.entries.remove(&id) {
            debug_assert!(old.ts < ts, "versions recorded out of order");
            shard.bytes -= cost(&old.stored);
        }
        let added = cost(&stored);
        if added > self.shard_budget {
            return;
        }
        while shard.bytes + added > self.shard_budget {
            // Half the entries go (the first of every two in the map's order, so one alone
            // goes too): whichever go, the ones left are still the newest versions of their
            // documents.
            let mut goes = false;
            let mut freed = 0;
            shard.entries.retain(|_, entry| {
                goes = !goes;
                if goes {
                    freed += cost(&entry.stored);
                }
                !goes
            });
            shard.bytes -= freed;
        }
        shard.bytes += added;
        shard.entries.insert(id, Newest { ts, stored });
    }

    /// Forgets every version: after a durable write whose outcome is unknown.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.entries.clear();
            shard.bytes = 0;
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::Write;
    use ferrovex_model::id::ID_BYTES;

    fn id(n: u8) -> DocumentId {
        let mut bytes = [0u8; ID_BYTES];
        bytes[3] = 1;
        bytes[4] = n;
        bytes[19] = n;
        DocumentId::from_bytes(&bytes).expect("20 bytes")
    }

    fn commit(ts: Timestamp, writes: &[(DocumentId, Option<&[u8]>)]) -> CommitRecord {
        CommitRecord {
            ts,
            writes: writes
                .iter()
                .map(|(id, value)| Write {
                    space: Space::Documents,
                    key: id.as_bytes().to_vec(),
                    value: value.map(<[u8]>::to_vec),
                })
                .collect(),
        }
    }

    fn read(newest: &NewestVersions, id: DocumentId, at: Timestamp) -> Option<Option<Vec<u8>>> {
        newest.get(&id, at).map(|stored| stored.map(|s| s.to_vec()))
    }

    #[test]
    fn a_version_is_read_only_by_snapshots_that_see_it() {
        let newest = NewestVersions::new();
        newest.record(&[commit(10, &[(id(1), Some(b"one"))])]);
        newest.record(&[
            commit(20, &[(id(1), Some(b"two"))]),
            commit(21, &[(id(2), None)]),
        ]);
        let cases: [(DocumentId, Timestamp, Option<Option<Vec<u8>>>); 7] = [
            // Below the newest version: the engine knows what this snapshot sees.
            (id(1), 9, None),
            (id(1), 10, None),
            (id(1), 19, None),
            (id(1), 20, Some(Some(b"two".to_vec()))),
            (id(1), 1000, Some(Some(b"two".to_vec()))),
            // A deletion is known too.
            (id(2), 21, Some(None)),
            // Never written here.
            (id(3), 1000, None),
        ];
        for (id, at, expected) in cases {
            assert_eq!(read(&newest, id, at), expected, "{id} at {at}");
        }
    }

    #[test]
    fn a_version_too_large_to_keep_forgets_the_one_it_replaces() {
        let newest = NewestVersions::with_budget(SHARDS * 1024);
        newest.record(&[commit(10, &[(id(1), Some(b"small"))])]);
        let large = vec![7u8; 2048];
        newest.record(&[commit(20, &[(id(1), Some(&large))])]);
        assert_eq!(
            read(&newest, id(1), 30),
            None,
            "the older version must not be read"
        );
        assert_eq!(newest.bytes(), 0);
    }

    #[test]
    fn a_full_shard_drops_entries_and_keeps_within_its_budget() {
        let budget = SHARDS * 4096;
        let newest = NewestVersions::with_budget(budget);
        let value = [1u8; 100];
        // Ids with the same byte 12 share a shard (`random_tail` modulo 64 is its low bits).
        let ids: Vec<DocumentId> = (0..200u8)
            .map(|n| {
                let mut bytes = [0u8; ID_BYTES];
                bytes[3] = 1;
                bytes[18] = n;
                DocumentId::from_bytes(&bytes).expect("20 bytes")
            })
            .collect();
        for (ts, id) in ids.iter().enumerate() {
            newest.record(&[commit(ts as Timestamp + 1, &[(*id, Some(&value))])]);
            assert!(newest.bytes() <= budget / SHARDS, "over budget after {ts}");
        }
        // The last one written is always kept; some of the first ones are gone.
        assert!(read(&newest, ids[199], 1000).is_some());
        assert!(ids.iter().any(|id| read(&newest, *id, 1000).is_none()));
        // Every one kept is the version that was written.
        for id in &ids {
            if let Some(found) = read(&newest, *id, 1000) {
                assert_eq!(found, Some(value.to_vec()));
            }
        }
    }

    /// One large entry makes room for another: a shard never holds more than its share.
    #[test]
    fn a_shard_holding_one_large_entry_drops_it_for_the_next() {
        let newest = NewestVersions::with_budget(SHARDS * 1024);
        let value = [3u8; 600];
        let same_shard = |n: u8| {
            let mut bytes = [0u8; ID_BYTES];
            bytes[3] = 1;
            bytes[18] = n;
            DocumentId::from_bytes(&bytes).expect("20 bytes")
        };
        newest.record(&[commit(10, &[(same_shard(1), Some(&value))])]);
        newest.record(&[commit(11, &[(same_shard(2), Some(&value))])]);
        assert!(newest.bytes() <= 1024, "{} bytes kept", newest.bytes());
        assert_eq!(read(&newest, same_shard(1), 20), None);
        assert_eq!(read(&newest, same_shard(2), 20), Some(Some(value.to_vec())));
    }

    /// The inserts of one millisecond share their ids' first 10 bytes: a shard chosen by
    /// those would take them all, and its budget would keep few of them.
    #[test]
    fn ids_generated_in_one_millisecond_spread_over_every_shard() {
        let newest = NewestVersions::new();
        let mut state = 7u64;
        let mut used = std::collections::HashSet::new();
        for _ in 0..2000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut random = [0u8; 10];
            random[..8].copy_from_slice(&state.to_le_bytes());
            random[8..].copy_from_slice(&state.to_be_bytes()[..2]);
            let id = DocumentId::generated(1, 1_700_000_000_000, random);
            used.insert(newest.shard(&id) as *const Mutex<Shard>);
        }
        assert_eq!(used.len(), SHARDS);
    }

    #[test]
    fn clearing_forgets_every_version() {
        let newest = NewestVersions::new();
        newest.record(&[commit(10, &[(id(1), Some(b"one")), (id(2), None)])]);
        newest.clear();
        assert_eq!(read(&newest, id(1), 10), None);
        assert_eq!(read(&newest, id(2), 10), None);
        assert_eq!(newest.bytes(), 0);
    }
}
