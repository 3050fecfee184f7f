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
use std::collections::{BTreeMap, HashMap, VecDeque};

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

#[derive(Default)]
struct LogState {
    sessions: HashMap<String, BTreeMap<u64, Slot>>,
    /// Session ids, oldest first, for eviction.
    order: VecDeque<String>,
}

#[derive(Default)]
pub struct MutationLog {
    state: Mutex<LogState>,
    settled: Condvar,
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
        {
            let mut state = self.state.lock();
            loop {
                match state
                    .sessions
                    .get(session)
                    .and_then(|slots| slots.get(&request_id))
                {
                    Some(Slot::Done(outcome)) => return outcome.clone(),
                    Some(Slot::Running) => self.settled.wait(&mut state),
                    None => break,
                }
            }
            state.slots(session).insert(request_id, Slot::Running);
        }
        // If the mutation unwinds, forget the attempt so a re-send can run it.
        let mut attempt = Attempt {
            log: self,
            session,
            request_id,
            done: false,
        };
        let outcome = mutation();
        attempt.done = true;
        let mut state = self.state.lock();
        let slots = state.slots(session);
        slots.insert(request_id, Slot::Done(outcome.clone()));
        while slots.len() > MAX_REMEMBERED_PER_SESSION {
            slots.pop_first();
        }
        self.settled.notify_all();
        outcome
    }
}

impl LogState {
    fn slots(&mut self, session: &str) -> &mut BTreeMap<u64, Slot> {
        if !self.sessions.contains_key(session) {
            if self.order.len() >= MAX_REMEMBERED_SESSIONS {
                if let Some(oldest) = self.order.pop_front() {
                    self.sessions.remove(&oldest);
                }
            }
            self.order.push_back(session.to_owned());
            self.sessions.insert(session.to_owned(), BTreeMap::new());
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

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut state = self.log.state.lock();
            if let Some(slots) = state.sessions.get_mut(self.session) {
                slots.remove(&self.request_id);
            }
            self.log.settled.notify_all();
        }
    }
}
