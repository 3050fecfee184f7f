//! Exact document counts per table, kept current from the commits' announcements instead of
//! a scan per request: a table is counted once, by a scan at a snapshot, and from then on
//! each commit's inserts less deletes (`CommittedKeys::tables`) are added. A scan at 10^6
//! documents takes a fraction of a second; a count kept this way costs a few additions per
//! commit.

use super::catalog::TableNumber;
use super::committer::CommittedKeys;
use super::engine::Timestamp;
use super::{Snapshot, Store, StoreError};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Commits whose count changes are kept for a table being counted meanwhile: a scan that
/// more commits than this overtook is done again.
const RECENT_CHANGES: usize = 4096;

/// Scans of one table before giving up on keeping its count (a store committing faster than
/// a table can be scanned): the count is then answered from the last scan, uncached.
const MAX_RECOUNTS: usize = 3;

pub struct DocumentCounts {
    inner: Mutex<Inner>,
}

struct Known {
    count: i64,
    /// The snapshot it was counted at: commits at or before it are in `count` already.
    counted_at: Timestamp,
}

struct Inner {
    known: HashMap<TableNumber, Known>,
    /// The newest commit announced.
    seen_through: Timestamp,
    /// Every commit after `recent_from` with its count changes, oldest first.
    recent: VecDeque<(Timestamp, Arc<Vec<(TableNumber, i64)>>)>,
    recent_from: Timestamp,
}

impl Inner {
    fn apply(&mut self, commit: &CommittedKeys) {
        for (table, delta) in commit.tables.iter() {
            if let Some(known) = self.known.get_mut(table) {
                if commit.ts > known.counted_at {
                    known.count += delta;
                }
            }
        }
        self.recent.push_back((commit.ts, commit.tables.clone()));
        if self.recent.len() > RECENT_CHANGES {
            let (ts, _) = self.recent.pop_front().expect("not empty");
            self.recent_from = ts;
        }
        self.seen_through = self.seen_through.max(commit.ts);
    }

    /// Takes a count made by a scan at `at`; false if the commits since then are no longer
    /// all kept, so the scan must be done again.
    fn settle(&mut self, table: TableNumber, scanned: u64, at: Timestamp) -> bool {
        let mut count = scanned as i64;
        if self.seen_through > at {
            if self.recent_from > at {
                return false;
            }
            count += self
                .recent
                .iter()
                .filter(|(ts, _)| *ts > at)
                .flat_map(|(_, changes)| changes.iter())
                .filter(|(t, _)| *t == table)
                .map(|(_, delta)| delta)
                .sum::<i64>();
        }
        self.known.insert(
            table,
            Known {
                count,
                counted_at: at,
            },
        );
        true
    }
}

impl DocumentCounts {
    /// Starts following `store`'s commits.
    pub fn attach(store: &Store) -> Arc<DocumentCounts> {
        let counts = Arc::new(DocumentCounts {
            inner: Mutex::new(Inner {
                known: HashMap::new(),
                seen_through: 0,
                recent: VecDeque::new(),
                recent_from: 0,
            }),
        });
        // Weak: the store holds its listeners, and these counts need not outlive their user.
        let listener = Arc::downgrade(&counts);
        store.on_commit(Box::new(move |commits| {
            let Some(counts) = listener.upgrade() else {
                return;
            };
            let mut inner = counts.inner.lock();
            for commit in commits {
                inner.apply(commit);
            }
        }));
        // Read after the listener is in place: every commit after this one is announced to it.
        let latest = store.latest_ts();
        let mut inner = counts.inner.lock();
        inner.seen_through = inner.seen_through.max(latest);
        inner.recent_from = inner.recent_from.max(latest);
        drop(inner);
        counts
    }

    /// How many documents `table` holds now: exact as of the newest announced commit. The
    /// first call for a table scans it (on the caller's thread: call it off the reactor).
    pub fn count(&self, store: &Store, table: &str) -> Result<u64, StoreError> {
        let mut scanned = 0;
        for _ in 0..MAX_RECOUNTS {
            let snapshot: Snapshot = store.snapshot();
            let Some(number) = snapshot
                .tables()
                .iter()
                .find(|t| t.name == table)
                .map(|t| t.number)
            else {
                return Ok(0);
            };
            if let Some(known) = self.inner.lock().known.get(&number) {
                return Ok(known.count.max(0) as u64);
            }
            scanned = snapshot.count_documents(table)?;
            if self.inner.lock().settle(number, scanned, snapshot.ts()) {
                let inner = self.inner.lock();
                return Ok(inner.known[&number].count.max(0) as u64);
            }
        }
        Ok(scanned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(ts: Timestamp, changes: &[(TableNumber, i64)]) -> CommittedKeys {
        CommittedKeys {
            ts,
            keys: Arc::default(),
            tables: Arc::new(changes.to_vec()),
        }
    }

    fn inner(seen_through: Timestamp) -> Inner {
        Inner {
            known: HashMap::new(),
            seen_through,
            recent: VecDeque::new(),
            recent_from: seen_through,
        }
    }

    #[test]
    fn a_scan_overtaken_by_commits_takes_their_changes_once() {
        let mut counts = inner(10);
        // Scanned at 12 while commits 11..=14 were announced: 11 and 12 are in the scan,
        // 13 and 14 are not.
        counts.apply(&commit(11, &[(1, 1)]));
        counts.apply(&commit(12, &[(1, 1), (2, 5)]));
        counts.apply(&commit(13, &[(1, 1)]));
        counts.apply(&commit(14, &[(1, -1), (2, 1)]));
        assert!(counts.settle(1, 100, 12));
        assert_eq!(counts.known[&1].count, 100);
        // Later commits count once, whatever their order against the scan.
        counts.apply(&commit(15, &[(1, 3)]));
        assert_eq!(counts.known[&1].count, 103);
        // A scan at a snapshot the announcements have not reached yet: the commits up to it
        // are skipped when they are announced.
        assert!(counts.settle(2, 50, 17));
        counts.apply(&commit(16, &[(2, 1)]));
        counts.apply(&commit(17, &[(2, 1)]));
        counts.apply(&commit(18, &[(2, 1)]));
        assert_eq!(counts.known[&2].count, 51);
    }

    #[test]
    fn a_scan_older_than_the_kept_changes_is_done_again() {
        let mut counts = inner(0);
        for ts in 1..=(RECENT_CHANGES as u64 + 10) {
            counts.apply(&commit(ts, &[(1, 1)]));
        }
        assert!(
            !counts.settle(1, 3, 5),
            "changes after 5 are no longer all kept"
        );
        assert!(counts.known.is_empty());
        let recent = RECENT_CHANGES as u64;
        assert!(counts.settle(1, 3, recent));
        assert_eq!(counts.known[&1].count, 3 + 10);
    }
}
