//! The serial lane: where a mutation goes after its optimistic attempts kept conflicting.
//!
//! Mutations in the lane run one after another on one shared transaction, against the latest
//! state, while the lane holds the committer: none of them can conflict. Each still commits
//! as its own transaction with its own timestamp, but a whole group shares one synced write,
//! so a hot document costs one fsync per group rather than one per mutation. The first
//! mutation to arrive leads: it opens the group, lets every mutation already waiting run in
//! it, then commits the group and answers the others.

use super::committer::{self, CommitRequest};
use super::error::StoreError;
use super::transaction::{Receipt, Savepoint, Transaction};
use super::{Committed, Shared, Timestamp};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

/// Most mutations in one group, so a steady stream of arrivals cannot postpone its commit.
const MAX_GROUP_MEMBERS: usize = 256;

/// Of the last 64 optimistic commits of a function, how many conflicted for its mutations to
/// start in the serial lane instead of trying optimistically first (`Store::contention`).
///
/// Under contention a mutation's optimistic attempt mostly ends in a conflict, then runs
/// again in the lane: its guest code runs twice, and it waits for a synced write it had no
/// part in. `bench --only bank-transfer` (Zipf 1.5 over the accounts) measured 1.5 conflicts
/// per transfer, 83% of transfers ending in the lane. Starting there directly when most
/// recent attempts of the same function conflicted skips the attempt that would fail.
/// Per function, because the lane runs its members' guest code with the committer held: one
/// hot function must not send every other mutation of the node there. Uncontended functions
/// never reach the threshold and start optimistically as before.
pub const HOT_CONFLICTS: u32 = 16;
/// When mutations start in the serial lane, one in this many still tries optimistically
/// first, so that the record of recent attempts notices when the contention is over.
pub const PROBE_EVERY: u64 = 8;

#[derive(Default)]
pub(crate) struct SerialLane {
    open: Mutex<Option<Group>>,
    /// Mutations about to join the open group; the leader waits for them before sealing.
    joining: AtomicUsize,
    /// Mutations in the lane, running or waiting.
    occupied: AtomicUsize,
}

/// Where a member waiting on another thread gets its commit's outcome (`None` for the
/// leader, which takes its own).
type MemberReply = Option<SyncSender<Result<Timestamp, StoreError>>>;

struct Group {
    tx: Transaction,
    members: Vec<(CommitRequest, MemberReply)>,
}

impl SerialLane {
    /// Whether mutations are in the lane now: then the documents they write are hot, and a
    /// mutation that just conflicted is better off joining them than retrying.
    pub fn is_busy(&self) -> bool {
        self.occupied.load(Ordering::Acquire) > 0
    }

    pub fn run<T, E: From<StoreError>>(
        &self,
        shared: &Arc<Shared>,
        body: &mut dyn FnMut(&mut Transaction) -> Result<T, E>,
        attempts: u32,
    ) -> Result<Committed<T>, E> {
        self.occupied.fetch_add(1, Ordering::AcqRel);
        let result = self.run_in_group(shared, body, attempts);
        self.occupied.fetch_sub(1, Ordering::AcqRel);
        result
    }

    fn run_in_group<T, E: From<StoreError>>(
        &self,
        shared: &Arc<Shared>,
        body: &mut dyn FnMut(&mut Transaction) -> Result<T, E>,
        attempts: u32,
    ) -> Result<Committed<T>, E> {
        self.joining.fetch_add(1, Ordering::AcqRel);
        let mut open = self.open.lock();
        self.joining.fetch_sub(1, Ordering::AcqRel);
        let mut state_guard = None;
        if open.is_none() {
            // Lead a new group: hold the committer so the group's reads stay current. A
            // write in doubt is settled first: the group reads the state that results.
            let mut state = shared.state.lock();
            if let Err(e) = state.refuse_if_failed(shared) {
                return Err(e.into());
            }
            *open = Some(Group {
                tx: Transaction::new(shared.clone(), false),
                members: Vec::new(),
            });
            state_guard = Some(state);
        }
        let group = open.as_mut().expect("a group is open");
        let begin_ts = group.tx.begin_ts;
        let savepoint = group.tx.savepoint();
        group.tx.start_next_mutation();
        let outcome = catch_unwind(AssertUnwindSafe(|| body(&mut group.tx)));
        let (value, request) = match outcome {
            Ok(Ok(value)) => {
                let receipt = group.tx.receipt.take();
                let request = member_request(&mut group.tx, &savepoint, begin_ts, receipt);
                (Some(Ok(value)), request)
            }
            Ok(Err(e)) => {
                group.tx.restore(savepoint);
                (Some(Err(e)), None)
            }
            Err(panic) => {
                group.tx.restore(savepoint);
                if state_guard.is_none() {
                    drop(open);
                    resume_unwind(panic);
                }
                // A leader that panics still commits the group it leads, then panics.
                self.seal_and_commit(shared, open, state_guard.take().expect("leader"));
                resume_unwind(panic);
            }
        };
        let value = match value.expect("set above") {
            Ok(value) => value,
            Err(e) => {
                if let Some(state) = state_guard {
                    self.seal_and_commit(shared, open, state);
                }
                return Err(e);
            }
        };
        let Some(request) = request else {
            // Nothing written: a read-only mutation commits nothing.
            if let Some(state) = state_guard {
                self.seal_and_commit(shared, open, state);
            }
            return Ok(Committed {
                value,
                ts: begin_ts,
                attempts,
            });
        };
        let ts = match state_guard {
            Some(state) => {
                open.as_mut().expect("open").members.push((request, None));
                let mut outcomes = self.seal_and_commit(shared, open, state);
                outcomes.remove(0)
            }
            None => {
                let (reply, answer) = sync_channel(1);
                open.as_mut()
                    .expect("open")
                    .members
                    .push((request, Some(reply)));
                drop(open);
                answer.recv().unwrap_or_else(|_| {
                    Err(StoreError::Corrupt("the serial group was abandoned".into()))
                })
            }
        };
        match ts {
            Ok(ts) => {
                shared.stats.committed.fetch_add(1, Ordering::Relaxed);
                Ok(Committed {
                    value,
                    ts,
                    attempts,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Lets waiting mutations join, then commits every member in one synced write. Returns
    /// the outcomes of members without a reply channel (the leader's), in order.
    fn seal_and_commit(
        &self,
        shared: &Arc<Shared>,
        mut open: parking_lot::MutexGuard<'_, Option<Group>>,
        mut state: parking_lot::MutexGuard<'_, committer::CommitterState>,
    ) -> Vec<Result<Timestamp, StoreError>> {
        while self.joining.load(Ordering::Acquire) > 0
            && open
                .as_ref()
                .is_some_and(|g| g.members.len() < MAX_GROUP_MEMBERS)
        {
            parking_lot::MutexGuard::unlocked_fair(&mut open, std::thread::yield_now);
        }
        let group = open.take().expect("the leader's group is open");
        drop(open);
        let (requests, replies): (Vec<_>, Vec<_>) = group.members.into_iter().unzip();
        let outcomes = committer::commit_group(shared, &mut state, requests);
        drop(state);
        let mut own = Vec::new();
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            match reply {
                Some(reply) => {
                    let _ = reply.send(outcome);
                }
                None => own.push(outcome),
            }
        }
        own
    }
}

/// The writes one member made on the shared transaction, as its own commit request. Reads
/// are left empty: a member runs with the committer held, so there is nothing to validate.
fn member_request(
    tx: &mut Transaction,
    before: &Savepoint,
    begin_ts: Timestamp,
    receipt: Option<Receipt>,
) -> Option<CommitRequest> {
    let mut writes = BTreeMap::new();
    for (id, previous, write) in tx.take_changes() {
        if previous.as_ref() == Some(write) {
            continue;
        }
        let mut mine = write.clone();
        if let Some(previous) = previous {
            // What this member changed is relative to what the members before it left.
            mine.old = previous.new;
        }
        if mine.old.is_none() && mine.new.is_none() {
            continue;
        }
        writes.insert(id, mine);
    }
    let new_tables: Vec<_> = tx
        .new_tables
        .iter()
        .filter(|(name, _)| !before.new_tables.contains_key(*name))
        .map(|(_, t)| t.clone())
        .collect();
    if writes.is_empty() && new_tables.is_empty() {
        return None;
    }
    Some(CommitRequest {
        begin_ts,
        reads: Default::default(),
        writes,
        new_tables,
        receipt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use ferrovex_model::{obj, DocumentId, Value};

    fn n(tx: &mut Transaction, id: DocumentId) -> Option<i64> {
        let doc = tx.get(id).unwrap()?;
        doc.fields["n"].as_i64()
    }

    fn changed(request: &CommitRequest) -> Vec<(DocumentId, Option<i64>, Option<i64>)> {
        let n_of = |doc: &Option<crate::store::document::StoredDocument>| {
            doc.as_ref().and_then(|d| d.fields["n"].as_i64())
        };
        request
            .writes
            .iter()
            .map(|(id, w)| (*id, n_of(&w.old), n_of(&w.new)))
            .collect()
    }

    /// Members share one transaction: each commits what it changed relative to the members
    /// before it (a rewrite to the same document is no change), and a member that fails
    /// leaves the shared transaction as it found it.
    #[test]
    fn members_commit_their_own_changes_and_a_failed_one_leaves_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut tx = store.begin();
        let begin_ts = tx.begin_ts;

        let first = tx.savepoint();
        let a = tx.insert("t", obj! { "n" => 1i64 }).unwrap();
        let b = tx.insert("t", obj! { "n" => 1i64 }).unwrap();
        let request = member_request(&mut tx, &first, begin_ts, None).unwrap();
        let mut expected = vec![(a, None, Some(1)), (b, None, Some(1))];
        expected.sort();
        assert_eq!(changed(&request), expected);
        assert_eq!(
            request.new_tables.len(),
            1,
            "the first member made the table"
        );

        let second = tx.savepoint();
        tx.patch(a, [("n".to_owned(), Some(Value::from(2i64)))].into())
            .unwrap();
        tx.patch(a, [("n".to_owned(), Some(Value::from(3i64)))].into())
            .unwrap();
        tx.replace(b, obj! { "n" => 1i64 }).unwrap();
        let c = tx.insert("t", obj! { "n" => 7i64 }).unwrap();
        let request = member_request(&mut tx, &second, begin_ts, None).unwrap();
        let mut expected = vec![(a, Some(1), Some(3)), (c, None, Some(7))];
        expected.sort();
        assert_eq!(changed(&request), expected, "b was written back unchanged");
        assert!(request.new_tables.is_empty());

        let third = tx.savepoint();
        tx.patch(a, [("n".to_owned(), Some(Value::from(4i64)))].into())
            .unwrap();
        tx.delete(c).unwrap();
        let d = tx.insert("t", obj! { "n" => 9i64 }).unwrap();
        tx.restore(third);
        assert_eq!(
            [n(&mut tx, a), n(&mut tx, b), n(&mut tx, c), n(&mut tx, d)],
            [Some(3), Some(1), Some(7), None],
            "the failed member's writes are gone, the others' stay"
        );

        let fourth = tx.savepoint();
        assert!(
            member_request(&mut tx, &fourth, begin_ts, None).is_none(),
            "a member that wrote nothing commits nothing"
        );
    }
}
