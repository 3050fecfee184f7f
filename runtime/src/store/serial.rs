//! The serial lane: where a mutation goes after its optimistic attempts kept conflicting.
//!
//! Mutations in the lane run one after another on one shared transaction, against the latest
//! state, while the lane holds the committer: none of them can conflict. Each still commits
//! as its own transaction with its own timestamp, but a whole group shares one synced write,
//! so a hot document costs one fsync per group rather than one per mutation.
//!
//! Two kinds of callers reach it. A blocking caller (`Store::run_mutation`) runs its body on
//! its own thread: the first to arrive leads, opening the group, letting every mutation
//! already waiting run in it, then committing the group and answering the others. An async
//! caller (`Store::run_mutation_async`, every WebSocket and HTTP mutation) queues its body
//! (`submit`) and awaits the answer without holding a thread; one drain task on the blocking
//! pool runs the queued bodies back to back, leading a group of its own or joining the one
//! open. Before the queue, each async caller took a pool thread of its own and the members
//! handed the group's lock from thread to thread, the leader spinning on `sched_yield` for
//! them: during `bench --only bank-transfer`'s Zipf phase (`perf stat -p <server>`, 2.5 s),
//! 5.9 context switches, 13 `sched_yield` and 197 µs of server CPU per transfer before; 0.6,
//! 0.2 and 119 µs with the queue.

use super::committer::{self, CommitRequest};
use super::error::StoreError;
use super::transaction::{Receipt, Savepoint, Transaction};
use super::{Committed, Shared, Timestamp};
use ferrovex_model::limits::MAX_SERIAL_GROUP;
use parking_lot::Mutex;
use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use tokio::sync::oneshot;

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
    /// Mutations in the lane, running, queued or waiting.
    occupied: AtomicUsize,
    /// Mutations of async callers waiting for the drain task to run them.
    queued: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Box<dyn Job>>,
    /// Whether a drain task runs, or has been asked for: it empties the queue before it ends.
    draining: bool,
}

/// What a member's commit is answered with: its timestamp, or why the group failed.
type Reply = Box<dyn FnOnce(Result<Timestamp, StoreError>) + Send>;

struct Group {
    tx: Transaction,
    /// Each member's commit, and where its outcome goes (`None` for a blocking leader, which
    /// takes its own from `seal_and_commit`).
    members: Vec<(CommitRequest, Option<Reply>)>,
}

/// A queued mutation of an async caller.
trait Job: Send {
    /// Runs the mutation as the next member of the group on `tx`; what it commits, if
    /// anything, and where the outcome goes. Anything else is answered at once.
    fn run(
        self: Box<Self>,
        tx: &mut Transaction,
        begin_ts: Timestamp,
    ) -> Option<(CommitRequest, Reply)>;
    /// The lane cannot run it: the store refuses commits after a failed write.
    fn refuse(self: Box<Self>, error: StoreError);
}

/// What a member gets when its group ends without answering it: the leader or drain task
/// that held it panicked outside the bodies, or the runtime is shutting down.
pub(crate) fn abandoned() -> StoreError {
    StoreError::Corrupt("the serial group was abandoned".into())
}

/// What an async caller gets: its outcome, or the panic of its body, to resume there.
pub(crate) type Outcome<T, E> = Result<Result<Committed<T>, E>, Box<dyn Any + Send>>;
/// What an async caller awaits.
pub(crate) type Answer<T, E> = oneshot::Receiver<Outcome<T, E>>;

struct Queued<B, T, E> {
    body: B,
    attempts: u32,
    answer: oneshot::Sender<Outcome<T, E>>,
}

impl<B, T, E> Job for Queued<B, T, E>
where
    B: FnMut(&mut Transaction) -> Result<T, E> + Send,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    fn run(
        self: Box<Self>,
        tx: &mut Transaction,
        begin_ts: Timestamp,
    ) -> Option<(CommitRequest, Reply)> {
        let Queued {
            mut body,
            attempts,
            answer,
        } = *self;
        match run_member(tx, begin_ts, attempts, &mut body) {
            Ran::Commit(value, request) => {
                let reply: Reply = Box::new(move |outcome| {
                    let outcome = outcome
                        .map(|ts| Committed {
                            value,
                            ts,
                            attempts,
                        })
                        .map_err(E::from);
                    let _ = answer.send(Ok(outcome));
                });
                Some((request, reply))
            }
            Ran::Done(result) => {
                let outcome = result.map(|value| Committed {
                    value,
                    ts: begin_ts,
                    attempts,
                });
                let _ = answer.send(Ok(outcome));
                None
            }
            Ran::Panicked(panic) => {
                let _ = answer.send(Err(panic));
                None
            }
        }
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.answer.send(Ok(Err(error.into())));
    }
}

/// Whatever ends the drain task, the lane must not be left waiting for it. A body's panic is
/// caught and handed to its caller; a panic outside the bodies (a bug in the commit path)
/// would otherwise end the task with the queue marked as drained and, if it led a group,
/// that group open with no leader: every later mutation in the lane would wait forever. On
/// such a panic the queued mutations and the group it led are dropped, so their callers get
/// an error, and the next mutation starts a drain task again.
struct DrainEnds<'a> {
    lane: &'a SerialLane,
    /// Whether the task leads the open group.
    leading: bool,
}

impl Drop for DrainEnds<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if self.leading {
                self.lane.open.lock().take();
            }
            let mut queue = self.lane.queued.lock();
            queue.jobs.clear();
            queue.draining = false;
        }
    }
}

/// How one member's body ended on the shared transaction. Returned once per member and
/// taken apart at once, so the size of `Commit` costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Ran<T, E> {
    /// It wrote: its value and what it commits.
    Commit(T, CommitRequest),
    /// It wrote nothing (its value, committing nothing) or failed (its writes undone).
    Done(Result<T, E>),
    /// It panicked; its writes are undone.
    Panicked(Box<dyn Any + Send>),
}

/// Runs `body` as the next member on the group's transaction.
fn run_member<T, E>(
    tx: &mut Transaction,
    begin_ts: Timestamp,
    attempts: u32,
    body: &mut dyn FnMut(&mut Transaction) -> Result<T, E>,
) -> Ran<T, E> {
    let savepoint = tx.savepoint();
    // `attempts` counts this one.
    tx.start_next_mutation(attempts - 1);
    match catch_unwind(AssertUnwindSafe(|| body(tx))) {
        Ok(Ok(value)) => {
            let receipt = tx.receipt.take();
            match member_request(tx, &savepoint, begin_ts, receipt) {
                Some(request) => Ran::Commit(value, request),
                None => Ran::Done(Ok(value)),
            }
        }
        Ok(Err(e)) => {
            tx.restore(savepoint);
            Ran::Done(Err(e))
        }
        Err(panic) => {
            tx.restore(savepoint);
            Ran::Panicked(panic)
        }
    }
}

/// Counts a mutation in the lane (`SerialLane::is_busy`) for as long as it lives.
struct Occupied<'a>(&'a AtomicUsize);

impl<'a> Occupied<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Occupied(count)
    }
}

impl Drop for Occupied<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SerialLane {
    /// Whether mutations are in the lane now: then the documents they write are hot, and a
    /// mutation that just conflicted is better off joining them than retrying.
    pub fn is_busy(&self) -> bool {
        self.occupied.load(Ordering::Acquire) > 0
    }

    /// Queues `body` for the drain task; what to await, and whether the caller must start
    /// the drain task (`drain`), none running.
    pub fn submit<B, T, E>(&self, body: B, attempts: u32) -> (Answer<T, E>, bool)
    where
        B: FnMut(&mut Transaction) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (answer, awaited) = oneshot::channel();
        let job = Box::new(Queued {
            body,
            attempts,
            answer,
        });
        let mut queue = self.queued.lock();
        queue.jobs.push(job);
        let start = !std::mem::replace(&mut queue.draining, true);
        (awaited, start)
    }

    /// Counts an async caller in the lane while it awaits its answer.
    pub fn occupy(&self) -> impl Drop + '_ {
        Occupied::new(&self.occupied)
    }

    /// The drain task: runs queued mutations until the queue is empty, each batch in a group
    /// it leads, or in the open group of a blocking leader, which then commits them. Blocks;
    /// run on the blocking pool, never on a thread that others wait on.
    pub fn drain(&self, shared: &Arc<Shared>) {
        let mut ends = DrainEnds {
            lane: self,
            leading: false,
        };
        loop {
            {
                let mut queue = self.queued.lock();
                if queue.jobs.is_empty() {
                    queue.draining = false;
                    return;
                }
            }
            self.joining.fetch_add(1, Ordering::AcqRel);
            let mut open = self.open.lock();
            self.joining.fetch_sub(1, Ordering::AcqRel);
            if let Some(group) = open.as_mut() {
                // A blocking leader waits for joiners: join its group.
                self.run_queued(group);
                continue;
            }
            let mut state = shared.state.lock();
            if let Err(reason) = state.recover(shared) {
                for job in std::mem::take(&mut self.queued.lock().jobs) {
                    job.refuse(committer::failed_error(&reason));
                }
                continue;
            }
            let group = open.insert(Group {
                tx: Transaction::new(shared.clone(), false),
                members: Vec::new(),
            });
            ends.leading = true;
            // Bodies queued while the group runs join it, up to its size.
            while self.run_queued(group) > 0 {}
            self.seal_and_commit(shared, open, state);
            ends.leading = false;
        }
    }

    /// Runs queued mutations in `group` while it has room; how many ran.
    fn run_queued(&self, group: &mut Group) -> usize {
        let room = MAX_SERIAL_GROUP.saturating_sub(group.members.len());
        let jobs: Vec<_> = {
            let mut queue = self.queued.lock();
            let take = room.min(queue.jobs.len());
            queue.jobs.drain(..take).collect()
        };
        let ran = jobs.len();
        let begin_ts = group.tx.begin_ts;
        for job in jobs {
            if let Some((request, reply)) = job.run(&mut group.tx, begin_ts) {
                group.members.push((request, Some(reply)));
            }
        }
        ran
    }

    /// Runs `body` in the lane on this thread, leading a group or joining the open one.
    /// Blocks until its group is durable.
    pub fn run<T, E: From<StoreError>>(
        &self,
        shared: &Arc<Shared>,
        body: &mut dyn FnMut(&mut Transaction) -> Result<T, E>,
        attempts: u32,
    ) -> Result<Committed<T>, E> {
        let _occupied = Occupied::new(&self.occupied);
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
        let (value, request) = match run_member(&mut group.tx, begin_ts, attempts, body) {
            Ran::Commit(value, request) => (value, request),
            Ran::Done(result) => {
                if let Some(state) = state_guard {
                    self.seal_and_commit(shared, open, state);
                }
                // Nothing written (a read-only mutation commits nothing), or failed.
                return result.map(|value| Committed {
                    value,
                    ts: begin_ts,
                    attempts,
                });
            }
            Ran::Panicked(panic) => {
                // A leader that panics still commits the group it leads, then panics.
                match state_guard {
                    Some(state) => {
                        self.seal_and_commit(shared, open, state);
                    }
                    None => drop(open),
                }
                resume_unwind(panic);
            }
        };
        let ts = match state_guard {
            Some(state) => {
                open.as_mut().expect("open").members.push((request, None));
                let mut outcomes = self.seal_and_commit(shared, open, state);
                outcomes.remove(0)
            }
            None => {
                let (reply, answer) = sync_channel(1);
                let reply: Reply = Box::new(move |outcome| {
                    let _ = reply.send(outcome);
                });
                open.as_mut()
                    .expect("open")
                    .members
                    .push((request, Some(reply)));
                drop(open);
                answer.recv().unwrap_or_else(|_| Err(abandoned()))
            }
        };
        Ok(Committed {
            value,
            ts: ts?,
            attempts,
        })
    }

    /// Lets waiting mutations join, then commits every member in one synced write. Returns
    /// the outcomes of members without a reply (a blocking leader's), in order.
    fn seal_and_commit(
        &self,
        shared: &Arc<Shared>,
        mut open: parking_lot::MutexGuard<'_, Option<Group>>,
        mut state: parking_lot::MutexGuard<'_, committer::CommitterState>,
    ) -> Vec<Result<Timestamp, StoreError>> {
        while self.joining.load(Ordering::Acquire) > 0
            && open
                .as_ref()
                .is_some_and(|g| g.members.len() < MAX_SERIAL_GROUP)
        {
            parking_lot::MutexGuard::unlocked_fair(&mut open, std::thread::yield_now);
        }
        let group = open.take().expect("the leader's group is open");
        drop(open);
        let (requests, replies): (Vec<_>, Vec<_>) = group.members.into_iter().unzip();
        let outcomes = committer::commit_group(shared, &mut state, requests);
        drop(state);
        answer(shared, replies, outcomes)
    }
}

/// Counts what committed and answers each member with its outcome; returns the outcomes of
/// members without a reply (a blocking leader's), in order.
fn answer(
    shared: &Shared,
    replies: Vec<Option<Reply>>,
    outcomes: Vec<Result<Timestamp, StoreError>>,
) -> Vec<Result<Timestamp, StoreError>> {
    debug_assert_eq!(replies.len(), outcomes.len(), "one outcome per member");
    let committed = outcomes.iter().filter(|o| o.is_ok()).count();
    shared
        .stats
        .committed
        .fetch_add(committed as u64, Ordering::Relaxed);
    let mut own = Vec::new();
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        match reply {
            Some(reply) => reply(outcome),
            None => own.push(outcome),
        }
    }
    own
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

    /// A queued mutation whose run panics outside its body, as a bug in the commit path would.
    struct Broken;

    impl Job for Broken {
        fn run(
            self: Box<Self>,
            _: &mut Transaction,
            _: Timestamp,
        ) -> Option<(CommitRequest, Reply)> {
            panic!("a bug outside the body")
        }
        fn refuse(self: Box<Self>, _: StoreError) {}
    }

    /// A panic in the drain task outside the bodies does not leave the lane stuck: the group
    /// it led is gone, the mutations queued behind it get an error, and the next one starts
    /// a drain task that runs it.
    #[test]
    fn a_drain_task_that_panics_leaves_the_lane_usable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lane = &store.serial;
        let count = |lane: &SerialLane| {
            lane.submit(
                |tx: &mut Transaction| -> Result<usize, StoreError> {
                    tx.insert("t", obj! { "n" => 1i64 })?;
                    Ok(1)
                },
                1,
            )
        };
        let (first, start) = count(lane);
        assert!(start);
        lane.queued.lock().jobs.push(Box::new(Broken));
        let (behind, start) = count(lane);
        assert!(!start);

        let panicked = catch_unwind(AssertUnwindSafe(|| lane.drain(&store.shared)));
        assert!(panicked.is_err(), "the drain task panicked");
        assert!(lane.open.lock().is_none(), "no group is left open");
        assert!(
            first.blocking_recv().is_err(),
            "the group the task led is dropped, unanswered"
        );
        assert!(behind.blocking_recv().is_err(), "the queue is dropped");

        let (next, start) = count(lane);
        assert!(start, "the next mutation starts a drain task again");
        lane.drain(&store.shared);
        assert_eq!(next.blocking_recv().unwrap().unwrap().unwrap().value, 1);
    }

    /// Queued mutations run on the drain task's thread, one after another on one shared
    /// transaction against the latest state, in one group; each caller gets its own
    /// outcome, a failure's writes are undone, and a panic reaches the caller whose body
    /// panicked.
    #[test]
    fn queued_mutations_run_back_to_back_in_one_group_and_each_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let counter = store
            .run_mutation(|tx| tx.insert("t", obj! { "n" => 0i64 }))
            .unwrap()
            .value;
        let drain_thread = std::thread::current().id();
        let lane = &store.serial;

        let read = |lane: &SerialLane| {
            lane.submit(
                move |tx: &mut Transaction| -> Result<Option<i64>, StoreError> {
                    Ok(n(tx, counter))
                },
                3,
            )
        };
        let (first_read, start) = read(lane);
        assert!(start, "the first queued mutation asks for a drain task");
        let mut increments = Vec::new();
        for i in 0..100 {
            let (answer, start) = lane.submit(
                move |tx: &mut Transaction| -> Result<i64, StoreError> {
                    assert_eq!(std::thread::current().id(), drain_thread);
                    let next = n(tx, counter).unwrap() + 1;
                    tx.patch(counter, [("n".to_owned(), Some(Value::from(next)))].into())?;
                    if i == 40 {
                        return Err(StoreError::Corrupt("refused on purpose".into()));
                    }
                    if i == 60 {
                        panic!("member 60 panics");
                    }
                    Ok(next)
                },
                3,
            );
            assert!(!start, "one drain task empties the queue");
            increments.push(answer);
        }
        let (last_read, _) = read(lane);
        let committed_before = store.stats().committed.load(Ordering::Relaxed);
        lane.drain(&store.shared);

        fn take<T>(answer: Answer<T, StoreError>) -> Outcome<T, StoreError> {
            answer.blocking_recv().expect("answered")
        }
        let first = take(first_read).unwrap().unwrap();
        let last = take(last_read).unwrap().unwrap();
        assert_eq!(first.value, Some(0));
        assert_eq!(last.value, Some(98), "98 members committed an increment");
        assert_eq!(
            first.ts, last.ts,
            "read-only members answer with the group's read timestamp: one group"
        );
        let mut previous_ts = first.ts;
        let mut expected = 0;
        for (i, answer) in increments.into_iter().enumerate() {
            match (i, take(answer)) {
                (40, Ok(Err(e))) => assert!(e.to_string().contains("refused on purpose")),
                (60, Err(panic)) => {
                    assert_eq!(panic.downcast_ref::<&str>(), Some(&"member 60 panics"))
                }
                (_, Ok(Ok(committed))) => {
                    expected += 1;
                    assert_eq!(committed.value, expected, "each read the one before it");
                    assert!(committed.ts > previous_ts, "each its own commit, in order");
                    assert_eq!(committed.attempts, 3);
                    previous_ts = committed.ts;
                }
                (i, other) => panic!("member {i}: unexpected outcome {:?}", other.is_ok()),
            }
        }
        let mut tx = store.begin();
        assert_eq!(n(&mut tx, counter), Some(98));
        assert_eq!(
            store.stats().committed.load(Ordering::Relaxed) - committed_before,
            98
        );

        let (answer, start) = read(lane);
        assert!(
            start,
            "the drain task ended with the queue empty; the next asks again"
        );
        lane.drain(&store.shared);
        assert_eq!(take(answer).unwrap().unwrap().value, Some(98));
    }
}
