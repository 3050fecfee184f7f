//! One connection's protocol state, without a socket: frames in, messages out.
//!
//! [`SessionCore`] decides everything the protocol says about a connection: the first
//! message must be `Connect`, query-set changes, mutations queued and run one at a time in
//! the order sent (guarantee 6) under an exactly-once receipt, a successful answer awaiting
//! a transition at its timestamp (guarantee 5), transitions built only when the engine woke
//! the connection. It does no I/O and starts no task, so the WebSocket task
//! ([`super::session`]) and a deterministic simulation drive the same code, each in an order
//! of its own choosing.
//!
//! Driving it: hand each text frame to [`SessionCore::handle_frame`] (an `Err` is the reason
//! for a `FatalError`, after which the connection ends); take mutations with
//! [`SessionCore::next_mutation`] and run them (blocking: off the reactor); give each outcome
//! to [`SessionCore::answer_mutation`] and send what it returns in its order (a transition,
//! when there is one, the response, and the transition that shows its commit, when there is
//! one already), in one write; when
//! [`SessionCore::wake`] is notified, send what [`SessionCore::take_transition`] returns; when
//! a frame's reply is [`Reply::Verify`], verify its token ([`PendingAuth::verify`], which may
//! fetch an issuer's keys) before reading the next frame, and hand the verdict to
//! [`SessionCore::finish_authenticate`]; when [`SessionCore::expires_at`] passes, send what
//! [`SessionCore::token_expired`] returns; at the end call [`SessionCore::release`].
//!
//! The async methods only wait for the engine's lock; with no other task holding it they are
//! ready at the first poll. (A `Connect` whose `maxObservedTimestamp` is past what this node
//! has published, which only a client coming from another node of the deployment sends, also
//! waits for the node to apply it.)

/// How long a connection waits for this node to apply what its client observed elsewhere.
const OBSERVED_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

use super::connection::{ConnectionState, Outbox};
use super::engine::{ConnectionId, SyncEngine};
use super::mutation_log::Outcome;
use super::protocol::{
    canonical_udf_path, parse_client_message, Args, AuthToken, ClientMessage, FunctionError,
    Outgoing, ServerMessage,
};
use super::subscriptions::invalid_arguments;
use crate::auth::{Access, Caller, Identity};
use crate::wasm::{CallError, CallFailure, CallOptions, Once};
use ferrovex_model::identity::{claim_value, UserIdentity};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::Notify;

/// The largest text frame a client may send: the same bound as an HTTP call's body, since a
/// frame carries one call's arguments plus a little JSON around them.
pub const MAX_CLIENT_FRAME_BYTES: usize = crate::server::MAX_REQUEST_BODY_BYTES;

struct PendingMutation {
    request_id: u64,
    udf_path: String,
    args: Args,
    /// Who the connection was signed in as when the mutation arrived.
    caller: Caller,
    /// Whether a run of this request can have committed before it arrived: see
    /// [`SessionCore::maybe_ran`].
    maybe_ran: bool,
}

/// What the socket task does with a frame's answer, besides the mutations and transitions
/// the core hands out in their own time.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// Nothing to send now.
    None,
    /// Send this message.
    Send(ServerMessage),
    /// Send this message, then close the connection (a refused token: the client
    /// reconnects with a fresh one).
    SendAndClose(ServerMessage),
    /// Verify this token before reading another frame, then call
    /// [`SessionCore::finish_authenticate`].
    Verify(PendingAuth),
    /// Run this action ([`ActionCall::run`]) and send what it answers, whenever it ends:
    /// actions are not ordered with mutations or with each other.
    RunAction(ActionCall),
}

/// An `Action` frame, as the caller sent it.
#[derive(Debug, PartialEq)]
pub struct ActionCall {
    request_id: u64,
    udf_path: String,
    args: Args,
    caller: Caller,
}

impl ActionCall {
    /// Runs the action (waiting for a running slot) and answers with its `ActionResponse`.
    pub async fn run(self, engine: Arc<SyncEngine>) -> ServerMessage {
        let ActionCall {
            request_id,
            udf_path,
            args,
            caller,
        } = self;
        let refuse = |message: String| ServerMessage::ActionResponse {
            request_id,
            outcome: Err(FunctionError {
                message,
                data: None,
            }),
            log_lines: Vec::new(),
        };
        let (path, args) = match call_target(&udf_path, &args) {
            Ok(target) => target,
            Err(message) => return refuse(message),
        };
        let outcome = engine
            .actions
            .run(
                engine.module(),
                ferrovex_model::abi::FunctionKind::Action,
                &path,
                args,
                caller,
            )
            .await;
        match outcome {
            Ok(done) => ServerMessage::ActionResponse {
                request_id,
                outcome: Ok(done.value),
                log_lines: done.log_lines,
            },
            Err(failure) => ServerMessage::ActionResponse {
                request_id,
                outcome: Err(function_error(&failure)),
                log_lines: failure.log_lines,
            },
        }
    }
}

/// An `Authenticate` with a token or key, waiting for its verification.
#[derive(Debug, PartialEq)]
pub struct PendingAuth {
    base_version: u64,
    token: AuthToken,
}

/// What verifying a [`PendingAuth`] found: who the connection acts for from now on and
/// when that ends (seconds since the epoch), or why the token was refused.
pub struct AuthVerdict {
    base_version: u64,
    outcome: Result<(Caller, Option<u64>), String>,
}

impl PendingAuth {
    /// Verifies the token or key: a user token against the app's providers (which may fetch
    /// the issuer's keys), an admin key against the data folder's, with the identity it acts
    /// as, if any.
    pub async fn verify(self, access: &Access) -> AuthVerdict {
        let outcome = match self.token {
            AuthToken::User(token) => access
                .verify(&token)
                .await
                .map(|verified| (Caller::user(verified.identity), Some(verified.expires_at)))
                .map_err(|e| e.to_string()),
            AuthToken::Admin { key, impersonating } => access
                .admin_key()
                .check(Some(&key))
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    let identity = impersonating
                        .map(|attributes| {
                            UserIdentity::from_value(claim_value(attributes))
                                .map(Identity::new)
                                .map_err(|e| format!("Authenticate: impersonating: {e}"))
                        })
                        .transpose()?;
                    Ok((
                        Caller {
                            identity,
                            admin: true,
                        },
                        None,
                    ))
                }),
            AuthToken::None => Ok((Caller::default(), None)),
        };
        AuthVerdict {
            base_version: self.base_version,
            outcome,
        }
    }
}

/// What answers a mutation, in the order it is written: a transition prepared before the
/// commit was answered, the `MutationResponse`, and a transition at or after the commit.
pub struct Answer {
    pub before: Option<Arc<Outgoing>>,
    pub response: ServerMessage,
    pub after: Option<Arc<Outgoing>>,
}

/// A mutation taken from the queue, to be run once; its outcome goes back to
/// [`SessionCore::answer_mutation`].
pub struct MutationRun {
    engine: Arc<SyncEngine>,
    session_id: String,
    mutation: PendingMutation,
}

impl MutationRun {
    pub fn request_id(&self) -> u64 {
        self.mutation.request_id
    }

    /// Runs the mutation unless this `(sessionId, requestId)` already ran, and records its
    /// outcome, so it counts even if the connection drops before the answer. Blocks for up
    /// to the call time limit: the deterministic simulation's driver.
    pub fn run(self) -> Outcome {
        let key = self.log_key();
        self.engine
            .mutations
            .run_once(&key, self.mutation.request_id, || {
                let (path, args) = self.target()?;
                self.engine
                    .host
                    .run_mutation_once(
                        &self.engine.store,
                        &self.engine.module(),
                        &path,
                        &args,
                        self.options(),
                        &self.once(&key),
                    )
                    .map_err(|failure| (function_error(&failure), failure.log_lines))
            })
    }

    /// [`MutationRun::run`] for the socket task: the same rules and outcome, with the
    /// mutation's attempts on the blocking pool and its commit awaited rather than blocked
    /// on (`Store::run_mutation_async`).
    pub async fn run_async(self) -> Outcome {
        let key = self.log_key();
        let engine = &self.engine;
        let run = async {
            let (path, args) = self.target()?;
            let once = self.once(&key);
            engine
                .host
                .run_mutation_async(
                    &engine.store,
                    engine.module(),
                    path,
                    args,
                    self.options(),
                    Some(once),
                )
                .await
                .map_err(|failure| (function_error(&failure), failure.log_lines))
        };
        engine
            .mutations
            .run_once_async(&key, self.mutation.request_id, run)
            .await
    }

    /// The receipt that makes it run at most once.
    fn once(&self, log_key: &str) -> Once {
        Once {
            key: receipt_key(log_key, self.mutation.request_id),
            maybe_ran: self.mutation.maybe_ran,
        }
    }

    /// Whom the outcome is remembered for: an outcome is found again only by the caller it
    /// ran for; the same session id and request id from someone else (another user, or no
    /// one) is another mutation.
    fn log_key(&self) -> String {
        match self.mutation.caller.record_key() {
            key if key.is_empty() => self.session_id.clone(),
            key => format!("{}\u{0}{key}", self.session_id),
        }
    }

    /// The function and arguments, or the failure that answers a request naming them badly.
    fn target(&self) -> Result<(String, ferrovex_model::Value), (FunctionError, Vec<String>)> {
        call_target(&self.mutation.udf_path, &self.mutation.args).map_err(|message| {
            let error = FunctionError {
                message,
                data: None,
            };
            (error, Vec::new())
        })
    }

    fn options(&self) -> CallOptions {
        CallOptions {
            caller: self.mutation.caller.clone(),
            ..CallOptions::default()
        }
    }
}

pub struct SessionCore {
    engine: Arc<SyncEngine>,
    id: ConnectionId,
    /// Where the engine leaves this connection's next transition, and its wake-up.
    outbox: Arc<Outbox>,
    /// The client's `sessionId`, once it has sent `Connect`.
    session_id: Option<String>,
    /// Whether `Connect` said this is its session's first socket (`connectionCount` 0).
    first_socket: bool,
    /// The highest request id of a mutation on this connection.
    newest_request: Option<u64>,
    queued: VecDeque<PendingMutation>,
    /// A mutation was taken by `next_mutation` and is not answered yet.
    running: bool,
    /// Who the connection acts for: the last accepted `Authenticate`.
    caller: Caller,
    /// When the token behind `caller` expires (seconds since the epoch, leeway included).
    expires_at: Option<u64>,
}

impl SessionCore {
    /// A new connection: nothing read yet, not registered with the engine until `Connect`.
    pub fn new(engine: Arc<SyncEngine>) -> SessionCore {
        SessionCore {
            id: engine.new_connection_id(),
            engine,
            outbox: Arc::new(Outbox::default()),
            session_id: None,
            first_socket: false,
            newest_request: None,
            queued: VecDeque::new(),
            running: false,
            caller: Caller::default(),
            expires_at: None,
        }
    }

    /// When the connection's token expires (seconds since the epoch), if it signed in with
    /// one: the driver calls [`SessionCore::token_expired`] then.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Notified (at most one permit) when this connection may have a transition to send.
    pub fn wake(&self) -> &Notify {
        &self.outbox.wake
    }

    /// The outbox [`SessionCore::take_transition`] reads first, with the wake-up.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Waits, at most `OBSERVED_WAIT`, until the results this node serves are at or after
    /// `observed` (a client's `maxObservedTimestamp`); a node that cannot catch up in that
    /// time serves what it has, and says so in its log.
    async fn wait_until_applied(&self, observed: u64) {
        // On one node a client never observes past what the node published, and nothing is
        // ahead of the leader; only a client coming from another node, to a follower, can be
        // ahead (a made-up timestamp waits no longer than `OBSERVED_WAIT`, on this
        // connection only).
        if self.engine.store.is_leader() || self.engine.store.latest_ts() >= observed {
            return;
        }
        let deadline = tokio::time::Instant::now() + OBSERVED_WAIT;
        while self.engine.state.lock().await.ts < observed {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    observed,
                    "a client saw commits this node has not applied within {OBSERVED_WAIT:?}: it is served the older state"
                );
                return;
            }
            // The polling period, not a wait for anything to happen: a reconnect to a node
            // behind the client is rare, and the log tail closes the gap within milliseconds.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Whether a run of the mutation `request_id`, just read, can have committed before: not
    /// when the request is new to its session (docs/PROTOCOL.md section 3, guarantee 6). A
    /// client counts its sockets in `Connect`, so on the first (`connectionCount` 0) nothing
    /// of the session was sent before, and a client numbers its requests upward, so a
    /// request id above every earlier one on the socket was not sent on it either. Such a
    /// request's first attempt skips looking up its receipt (`wasm::Once`). A client that
    /// breaks either rule risks only its own requests running twice: a session id is the
    /// secret of its client, and a receipt's key holds the caller too.
    fn maybe_ran(&mut self, request_id: u64) -> bool {
        let maybe = request_maybe_ran(self.first_socket, self.newest_request, request_id);
        self.newest_request = self.newest_request.max(Some(request_id));
        maybe
    }

    /// Mutations read and not yet taken by `next_mutation`.
    pub fn queued_mutations(&self) -> usize {
        self.queued.len()
    }

    /// Handles one text frame from the client: what to send at once, if anything. `Err` is a
    /// protocol violation: the reason to send in a `FatalError`, after which the connection
    /// ends.
    pub async fn handle_frame(&mut self, text: &str) -> Result<Reply, String> {
        if text.len() > MAX_CLIENT_FRAME_BYTES {
            return Err(oversized_frame(text.len()));
        }
        let message = parse_client_message(text).map_err(|e| e.0)?;
        match message {
            ClientMessage::Connect { .. } if self.session_id.is_some() => {
                return Err("Connect: sent twice on one connection".into());
            }
            ClientMessage::Connect {
                session_id,
                connection_count,
                max_observed_timestamp,
                ..
            } => {
                if let Some(observed) = max_observed_timestamp {
                    // A client that saw a newer state elsewhere (another node of the
                    // deployment, before it reconnected here) never sees an older one: its
                    // first results wait until this node has applied what it saw.
                    self.wait_until_applied(observed).await;
                }
                let mut state = self.engine.state.lock().await;
                state
                    .connections
                    .insert(self.id, ConnectionState::new(self.id, self.outbox.clone()));
                self.session_id = Some(session_id);
                self.first_socket = connection_count == 0;
            }
            _ if self.session_id.is_none() => {
                return Err(format!(
                    "{}: the first message on a connection must be Connect",
                    message_type(&message)
                ));
            }
            ClientMessage::ModifyQuerySet {
                base_version,
                new_version,
                modifications,
            } => {
                {
                    let mut state = self.engine.state.lock().await;
                    let state = &mut *state;
                    let connection = state
                        .connections
                        .get_mut(&self.id)
                        .expect("registered at Connect");
                    connection.modify_query_set(
                        &mut state.subscriptions,
                        &state.module,
                        &self.caller,
                        base_version,
                        new_version,
                        modifications,
                    )?;
                    state.waiting.insert(self.id);
                }
                // New queries get their first result in the next refresh; a set whose
                // queries all have results already (removals, queries other clients share)
                // is acknowledged right away.
                self.engine.request_refresh();
                self.outbox.wake.notify_one();
            }
            ClientMessage::Mutation {
                request_id,
                udf_path,
                args,
            } => {
                let maybe_ran = self.maybe_ran(request_id);
                self.queued.push_back(PendingMutation {
                    request_id,
                    udf_path,
                    args,
                    caller: self.caller.clone(),
                    maybe_ran,
                });
            }
            ClientMessage::Action {
                request_id,
                udf_path,
                args,
            } => {
                return Ok(Reply::RunAction(ActionCall {
                    request_id,
                    udf_path,
                    args,
                    caller: self.caller.clone(),
                }));
            }
            ClientMessage::Event { .. } => {}
            ClientMessage::Authenticate {
                base_version,
                token,
            } => {
                let state = self.engine.state.lock().await;
                state
                    .connections
                    .get(&self.id)
                    .expect("registered at Connect")
                    .check_identity_base(base_version)?;
                drop(state);
                if token == AuthToken::None {
                    let verdict = AuthVerdict {
                        base_version,
                        outcome: Ok((Caller::default(), None)),
                    };
                    return self.finish_authenticate(verdict).await;
                }
                return Ok(Reply::Verify(PendingAuth {
                    base_version,
                    token,
                }));
            }
        }
        Ok(Reply::None)
    }

    /// Applies a verified `Authenticate`: the connection acts for its caller from now on and
    /// its queries re-run for it, in one transition with the new identity version; or, for a
    /// refused token, the `AuthError` to send before closing (the client fetches a fresh
    /// token and reconnects). Nothing of the connection's state changes on a refusal.
    pub async fn finish_authenticate(&mut self, verdict: AuthVerdict) -> Result<Reply, String> {
        let mut state = self.engine.state.lock().await;
        let state = &mut *state;
        let Some(connection) = state.connections.get_mut(&self.id) else {
            return Ok(Reply::None);
        };
        match verdict.outcome {
            Ok((caller, expires_at)) => {
                connection.authenticate(&mut state.subscriptions, verdict.base_version, &caller)?;
                state.waiting.insert(self.id);
                self.caller = caller;
                self.expires_at = expires_at;
                // Re-keyed queries get their results in the next refresh.
                self.engine.request_refresh();
                self.outbox.wake.notify_one();
                Ok(Reply::None)
            }
            Err(error) => Ok(Reply::SendAndClose(ServerMessage::AuthError {
                error,
                base_version: connection.sent_identity_version(),
                auth_update_attempted: true,
            })),
        }
    }

    /// The connection's token has expired: the `AuthError` to send before closing, as the
    /// official clients expect (`authUpdateAttempted: false`: no new token was sent).
    pub async fn token_expired(&mut self) -> Reply {
        let state = self.engine.state.lock().await;
        let base_version = state
            .connections
            .get(&self.id)
            .map_or(0, |c| c.sent_identity_version());
        Reply::SendAndClose(ServerMessage::AuthError {
            error: format!(
                "the token expired at {} (seconds since the epoch, leeway included): sign in again",
                self.expires_at.unwrap_or(0)
            ),
            base_version,
            auth_update_attempted: false,
        })
    }

    /// The oldest queued mutation, unless one is running: one at a time, in the order the
    /// client sent them (guarantee 6).
    pub fn next_mutation(&mut self) -> Option<MutationRun> {
        if self.running {
            return None;
        }
        let mutation = self.queued.pop_front()?;
        self.running = true;
        Some(MutationRun {
            engine: self.engine.clone(),
            session_id: self
                .session_id
                .clone()
                .expect("mutations are queued only after Connect"),
            mutation,
        })
    }

    /// The `MutationResponse` for the running mutation's outcome, with what to send around
    /// it, all in one write.
    ///
    /// Before it, the transition the refresh left in the outbox before the commit was
    /// answered, if any: it may be older than the commit, and nothing older may follow the
    /// response (guarantee 5). After it, the transition at or after the commit when it can be
    /// had now: the results are there already, or can be moved there without running a query
    /// (`SyncEngine::advance_in_place`). Otherwise the connection awaits a transition at or
    /// after its timestamp, which the caller sends when woken after the next refresh.
    pub async fn answer_mutation(&mut self, request_id: u64, outcome: Outcome) -> Answer {
        self.running = false;
        let (outcome, log_lines, committed_ts) = match outcome {
            Ok(success) => (
                Ok((success.value, success.ts)),
                success.log_lines,
                Some(success.ts),
            ),
            Err((error, log_lines)) => (Err(error), log_lines, None),
        };
        let mut before = None;
        let mut after = None;
        if let Some(ts) = committed_ts {
            let mut guard = self.engine.state.lock().await;
            let state = &mut *guard;
            // The outbox is filled under this lock: what is in it now was prepared before
            // the await is recorded, anything later is at or after `ts`.
            before = self.outbox.take();
            let known = state.connections.get_mut(&self.id).map(|c| c.await_ts(ts));
            let current = known.is_some() && self.engine.advance_in_place(state, ts);
            if let Some(connection) = state.connections.get_mut(&self.id) {
                if current {
                    // A round is on its way for the commit (every commit asks for one) and
                    // serves the other connections; this one needs nothing more from it.
                    after = connection.take_outgoing(&state.subscriptions, state.ts);
                }
                if connection.is_waiting() {
                    state.waiting.insert(self.id);
                }
            }
            drop(guard);
            if after.is_none() {
                // The next refresh reads at or after `ts`; if one already has, send now.
                self.engine.request_refresh();
                self.outbox.wake.notify_one();
            }
        }
        Answer {
            before,
            response: ServerMessage::MutationResponse {
                request_id,
                outcome,
                log_lines,
            },
            after,
        }
    }

    /// The transition to send now, if the client is behind the engine's results: the one
    /// the last refresh left in the outbox, else one computed now under the engine's lock.
    pub async fn take_transition(&mut self) -> Option<Arc<Outgoing>> {
        if let Some(ready) = self.outbox.take() {
            return Some(ready);
        }
        let mut state = self.engine.state.lock().await;
        // A refresh may have filled the outbox while this task waited for the lock (it fills
        // it only under the lock): that transition comes first.
        if let Some(ready) = self.outbox.take() {
            return Some(ready);
        }
        let state = &mut *state;
        let connection = state.connections.get_mut(&self.id)?;
        connection.take_outgoing(&state.subscriptions, state.ts)
    }

    /// Drops the mutations not yet taken: the client re-sends them after reconnecting.
    pub fn drop_queued(&mut self) {
        self.queued.clear();
    }

    /// The connection is over: its query set leaves the shared subscriptions and queued
    /// mutations are dropped. A mutation already running still finishes and stays recorded.
    pub async fn release(&mut self) {
        self.queued.clear();
        let mut state = self.engine.state.lock().await;
        let state = &mut *state;
        if let Some(connection) = state.connections.remove(&self.id) {
            connection.release(&mut state.subscriptions);
        }
        state.waiting.remove(&self.id);
    }
}

/// The reason given for a frame over [`MAX_CLIENT_FRAME_BYTES`].
fn oversized_frame(given: usize) -> String {
    format!(
        "a frame of {given} bytes exceeds the limit MAX_CLIENT_FRAME_BYTES ({MAX_CLIENT_FRAME_BYTES} bytes)"
    )
}

/// [`SessionCore::maybe_ran`]'s rule: on a session's first socket, a request id above every
/// earlier one there (`newest_on_socket`) was never sent; anything else may have been.
fn request_maybe_ran(first_socket: bool, newest_on_socket: Option<u64>, request_id: u64) -> bool {
    !first_socket || newest_on_socket.is_some_and(|newest| request_id <= newest)
}

/// Where the outcome of `(session_id, request_id)` is recorded: the session id's length,
/// the session id, the request id (length-prefixed, so no key is a prefix of another).
fn receipt_key(session_id: &str, request_id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + session_id.len() + 8);
    key.extend_from_slice(&(session_id.len() as u32).to_be_bytes());
    key.extend_from_slice(session_id.as_bytes());
    key.extend_from_slice(&request_id.to_be_bytes());
    key
}

/// A `Mutation`'s or `Action`'s function and arguments, or the failure that answers them (a
/// path that breaks the identifier rules, arguments that are not valid values).
fn call_target(udf_path: &str, args: &Args) -> Result<(String, ferrovex_model::Value), String> {
    let path = canonical_udf_path(udf_path)?;
    let args = args
        .to_value()
        .map_err(|reason| invalid_arguments(&path, reason))?;
    Ok((path, args))
}

fn function_error(failure: &CallFailure) -> FunctionError {
    let data = match &failure.error {
        CallError::User { data, .. } => data.clone(),
        _ => None,
    };
    FunctionError {
        message: failure.to_string(),
        data,
    }
}

fn message_type(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::Connect { .. } => "Connect",
        ClientMessage::ModifyQuerySet { .. } => "ModifyQuerySet",
        ClientMessage::Mutation { .. } => "Mutation",
        ClientMessage::Action { .. } => "Action",
        ClientMessage::Authenticate { .. } => "Authenticate",
        ClientMessage::Event { .. } => "Event",
    }
}

#[cfg(test)]
mod tests {
    use super::request_maybe_ran;

    /// Only a request new to its session skips looking up its receipt: one on a later
    /// socket, or one whose id is not above every earlier id on the socket, is looked up.
    #[test]
    fn a_request_may_have_run_unless_new_to_its_session() {
        let cases = [
            // (first socket, newest id on the socket, request id, may have run)
            (true, None, 0, false),
            (true, None, 7, false),
            (true, Some(3), 4, false),
            (true, Some(3), 3, true),
            (true, Some(3), 2, true),
            (false, None, 0, true),
            (false, Some(3), 4, true),
            (false, Some(3), 1, true),
        ];
        for (first_socket, newest, request_id, expected) in cases {
            assert_eq!(
                request_maybe_ran(first_socket, newest, request_id),
                expected,
                "first socket {first_socket}, newest {newest:?}, request {request_id}"
            );
        }
    }
}
