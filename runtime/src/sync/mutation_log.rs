//! Exactly-once mutations (guarantee 6): the outcome of each `(sessionId, requestId)` is
//! remembered, so a mutation re-sent after a reconnect gets its original answer instead of
//! running again. A re-send that arrives while the first attempt still runs (the old
//! connection dropped mid-call) waits for that attempt.
//!
//! Memory is bounded: the newest [`MAX_REMEMBERED_PER_SESSION`] outcomes of each of the
//! newest [`MAX_REMEMBERED_SESSIONS`] sessions. This log is the fast path and what orders
//! concurrent re-sends; what makes a committed mutation's outcome survive a restart is its
//! receipt, written by its own commit (`WasmHost::run_mutation_once`).

use super::protocol::FunctionError;
use crate::wasm::MutationOutcome;
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};

/// Outcomes remembered per session; a client re-sends only its unanswered mutations, which
/// are the newest ones.
pub const MAX_REMEMBERED_PER_SESSION: usize = 1024;

/// Sessions whose outcomes are remembered; the oldest is forgotten first.
pub const MAX_REMEMBERED_SESSIONS: usize = 10_000;

/// A mutation's answer: its commit, or its error and the lines it logged before failing.
pub type Outcome = Result<MutationOutcome, (FunctionError, Vec<String>)>;

enum Slot {
    Running,
    Done(Outcome),
}

/// A session's remembered requests, by request id, oldest first. A client numbers its
/// requests upward, so a new request goes at the back, where its outcome is then recorded,
/// and the oldest is forgotten from the front: a mutation touches both ends and nothing
/// between. A `BTreeMap` per session walked its nodes down to insert, to record and to
/// evict, each step a likely cache miss once 64 sessions keep 1,024 outcomes each: the log
/// was 4.4-5.3% of the server's samples in `bench --only chat-send`, 1.9-2.2% with this
/// (BENCHMARKS.md).
#[derive(Default)]
struct Slots(VecDeque<(u64, Slot)>);

impl Slots {
    /// Where `request_id` is, or where it would go.
    fn find(&self, request_id: u64) -> Result<usize, usize> {
        match self.0.back() {
            None => Err(0),
            Some((newest, _)) if *newest < request_id => Err(self.0.len()),
            // The request `begin` just put there, as `finish` finds it.
            Some((newest, _)) if *newest == request_id => Ok(self.0.len() - 1),
            Some(_) => self.0.binary_search_by_key(&request_id, |(id, _)| *id),
        }
    }

    fn get(&self, request_id: u64) -> Option<&Slot> {
        self.find(request_id).ok().map(|at| &self.0[at].1)
    }

    /// Puts `slot` for `request_id`. Past [`MAX_REMEMBERED_PER_SESSION`] a new request makes
    /// the oldest go first, so that the buffer never grows past the bound, and one older than
    /// all those kept is not kept: its receipt, looked up in its own transaction, still makes
    /// it run once (the module's doc).
    fn put(&mut self, request_id: u64, slot: Slot) {
        match self.find(request_id) {
            Ok(at) => self.0[at].1 = slot,
            Err(at) if self.0.len() < MAX_REMEMBERED_PER_SESSION => {
                self.0.insert(at, (request_id, slot))
            }
            Err(0) => {}
            Err(at) => {
                self.0.pop_front();
                self.0.insert(at - 1, (request_id, slot));
            }
        }
    }

    fn remove(&mut self, request_id: u64) {
        if let Ok(at) = self.find(request_id) {
            self.0.remove(at);
        }
    }
}

#[derive(Default)]
struct LogState {
    sessions: HashMap<String, Slots>,
    /// Session ids, oldest first, for eviction.
    order: VecDeque<String>,
}

#[derive(Default)]
pub struct MutationLog {
    state: Mutex<LogState>,
    settled: Condvar,
    /// The same news as `settled`, for waiters on an async runtime.
    settled_async: tokio::sync::Notify,
}

/// What `MutationLog::begin` found for a request.
enum Begin<'a> {
    /// It ran: its outcome.
    Done(Outcome),
    /// It is running elsewhere: wait until it settles, then look again.
    Running,
    /// Nobody ran it: it is marked running, and this caller runs it.
    Run(Attempt<'a>),
}

impl MutationLog {
    /// Runs `mutation` unless `(session, request_id)` already ran (or is running), and returns
    /// the outcome of the one execution. Blocks: call it on the blocking pool.
    pub fn run_once(
        &self,
        session: &str,
        request_id: u64,
        mutation: impl FnOnce() -> Outcome,
    ) -> Outcome {
        let attempt = {
            let mut state = self.state.lock();
            loop {
                match self.begin(&mut state, session, request_id) {
                    Begin::Done(outcome) => return outcome,
                    Begin::Running => self.settled.wait(&mut state),
                    Begin::Run(attempt) => break attempt,
                }
            }
        };
        attempt.finish(mutation())
    }

    /// [`MutationLog::run_once`] on an async runtime: waiting for a run elsewhere and
    /// running `mutation` are awaited, not blocked on.
    pub async fn run_once_async(
        &self,
        session: &str,
        request_id: u64,
        mutation: impl std::future::Future<Output = Outcome>,
    ) -> Outcome {
        let attempt = loop {
            let settled = self.settled_async.notified();
            tokio::pin!(settled);
            // Registered before looking, so a settlement after the look is not missed.
            settled.as_mut().enable();
            // The lock is let go before any await.
            let found = self.begin(&mut self.state.lock(), session, request_id);
            match found {
                Begin::Done(outcome) => return outcome,
                Begin::Running => settled.await,
                Begin::Run(attempt) => break attempt,
            }
        };
        attempt.finish(mutation.await)
    }

    fn begin<'a>(&'a self, state: &mut LogState, session: &'a str, request_id: u64) -> Begin<'a> {
        let slots = state.slots(session);
        match slots.get(request_id) {
            Some(Slot::Done(outcome)) => Begin::Done(outcome.clone()),
            Some(Slot::Running) => Begin::Running,
            None => {
                slots.put(request_id, Slot::Running);
                // If the run unwinds or is dropped, the attempt is forgotten so a re-send can
                // run it.
                Begin::Run(Attempt {
                    log: self,
                    session,
                    request_id,
                    done: false,
                })
            }
        }
    }

    fn notify_settled(&self) {
        self.settled.notify_all();
        self.settled_async.notify_waiters();
    }
}

impl LogState {
    fn slots(&mut self, session: &str) -> &mut Slots {
        if !self.sessions.contains_key(session) {
            if self.order.len() >= MAX_REMEMBERED_SESSIONS {
                if let Some(oldest) = self.order.pop_front() {
                    self.sessions.remove(&oldest);
                }
            }
            self.order.push_back(session.to_owned());
            self.sessions.insert(session.to_owned(), Slots::default());
        }
        self.sessions.get_mut(session).expect("inserted above")
    }
}

struct Attempt<'a> {
    log: &'a MutationLog,
    session: &'a str,
    request_id: u64,
    done: bool,
}

impl Attempt<'_> {
    /// Records the run's outcome for re-sends, and returns it.
    fn finish(mut self, outcome: Outcome) -> Outcome {
        self.done = true;
        let mut state = self.log.state.lock();
        let slots = state.slots(self.session);
        slots.put(self.request_id, Slot::Done(outcome.clone()));
        drop(state);
        self.log.notify_settled();
        outcome
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut state = self.log.state.lock();
            if let Some(slots) = state.sessions.get_mut(self.session) {
                slots.remove(self.request_id);
            }
            drop(state);
            self.log.notify_settled();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Waker};

    fn committed_at(ts: u64) -> Outcome {
        Ok(MutationOutcome {
            value: ferrovex_model::Value::Null,
            log_lines: vec![],
            ts,
        })
    }

    /// A re-send that arrives while the first run is still going waits for it, on the
    /// async path too, and gets its outcome: the mutation runs once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resend_during_the_run_waits_for_its_outcome() {
        let log = Arc::new(MutationLog::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let (log, runs) = (log.clone(), runs.clone());
            tokio::spawn(async move {
                log.run_once_async("s", 1, async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    started_tx.send(()).unwrap();
                    released.await.unwrap();
                    committed_at(7)
                })
                .await
            })
        };
        started.await.unwrap();
        let resent = log.run_once_async("s", 1, async {
            runs.fetch_add(1, Ordering::SeqCst);
            committed_at(8)
        });
        let mut resent = std::pin::pin!(resent);
        let mut context = Context::from_waker(Waker::noop());
        assert!(
            resent.as_mut().poll(&mut context).is_pending(),
            "the re-send waits while the first run goes on"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap().ts, 7);
        assert_eq!(resent.await.unwrap().ts, 7, "the first run's outcome");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "ran once");
        // The blocking path finds it too.
        let again = log.run_once("s", 1, || committed_at(9));
        assert_eq!(again.unwrap().ts, 7);
    }

    /// Requests are found whatever order they came in (a re-send after a reconnect comes
    /// after newer ones), and the oldest by request id are forgotten first.
    #[test]
    fn a_sessions_requests_are_kept_by_id_and_the_oldest_forgotten() {
        let log = MutationLog::default();
        for id in [5, 3, 9, 7] {
            let outcome = log.run_once("s", id, || committed_at(id * 10));
            assert_eq!(outcome.unwrap().ts, id * 10);
        }
        let ids: Vec<u64> = log.state.lock().sessions["s"]
            .0
            .iter()
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(ids, [3, 5, 7, 9], "in request id order");
        for id in [3, 5, 7, 9] {
            let again = log.run_once("s", id, || committed_at(0));
            assert_eq!(again.unwrap().ts, id * 10, "request {id} ran once");
        }
        // Past the bound, the smallest ids go.
        let first = 100;
        for id in first..first + MAX_REMEMBERED_PER_SESSION as u64 {
            log.run_once("s", id, || committed_at(1)).unwrap();
        }
        let state = log.state.lock();
        let slots = &state.sessions["s"].0;
        assert_eq!(slots.len(), MAX_REMEMBERED_PER_SESSION);
        assert_eq!(slots.front().map(|(id, _)| *id), Some(first));
        drop(state);
        let forgotten = log.run_once("s", 9, || committed_at(2));
        assert_eq!(
            forgotten.unwrap().ts,
            2,
            "request 9 was forgotten, so it ran again"
        );
    }

    /// A run that is dropped before it ends (its task cancelled) is forgotten, so that the
    /// request can run when re-sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_run_is_forgotten() {
        let log = MutationLog::default();
        {
            let never = log.run_once_async("s", 2, std::future::pending());
            let mut never = std::pin::pin!(never);
            // Polled once: the slot is taken, then the run is dropped.
            let mut context = Context::from_waker(Waker::noop());
            assert!(never.as_mut().poll(&mut context).is_pending());
        }
        let outcome = log.run_once_async("s", 2, async { committed_at(3) }).await;
        assert_eq!(outcome.unwrap().ts, 3);
    }
}
