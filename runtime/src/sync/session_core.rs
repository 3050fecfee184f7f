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
//! to [`SessionCore::answer_mutation`] and send the response it returns; when
//! [`SessionCore::wake`] is notified, send what [`SessionCore::take_transition`] returns; at
//! the end call [`SessionCore::release`].
//!
//! The async methods only wait for the engine's lock; with no other task holding it they are
//! ready at the first poll.

use super::connection::ConnectionState;
use super::engine::{ConnectionId, SyncEngine};
use super::mutation_log::Outcome;
use super::protocol::{
    canonical_udf_path, parse_client_message, Args, AuthToken, ClientMessage, FunctionError,
    ServerMessage,
};
use super::subscriptions::invalid_arguments;
use crate::wasm::{CallError, CallFailure, CallOptions};
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
    /// to the call time limit.
    pub fn run(self) -> Outcome {
        let MutationRun {
            engine,
            session_id,
            mutation,
        } = self;
        engine
            .mutations
            .run_once(&session_id, mutation.request_id, || {
                let invalid = |message| {
                    let error = FunctionError {
                        message,
                        data: None,
                    };
                    (error, Vec::new())
                };
                let path = canonical_udf_path(&mutation.udf_path).map_err(invalid)?;
                let args = mutation
                    .args
                    .to_value()
                    .map_err(|reason| invalid(invalid_arguments(&path, reason)))?;
                engine
                    .host
                    .run_mutation_once(
                        &engine.store,
                        &engine.module(),
                        &path,
                        &args,
                        CallOptions::default(),
                        &receipt_key(&session_id, mutation.request_id),
                    )
                    .map_err(|failure| (function_error(&failure), failure.log_lines))
            })
    }
}

pub struct SessionCore {
    engine: Arc<SyncEngine>,
    id: ConnectionId,
    /// Set by the engine when this connection has a transition to send.
    wake: Arc<Notify>,
    /// The client's `sessionId`, once it has sent `Connect`.
    session_id: Option<String>,
    queued: VecDeque<PendingMutation>,
    /// A mutation was taken by `next_mutation` and is not answered yet.
    running: bool,
}

impl SessionCore {
    /// A new connection: nothing read yet, not registered with the engine until `Connect`.
    pub fn new(engine: Arc<SyncEngine>) -> SessionCore {
        SessionCore {
            id: engine.new_connection_id(),
            engine,
            wake: Arc::new(Notify::new()),
            session_id: None,
            queued: VecDeque::new(),
            running: false,
        }
    }

    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Notified (at most one permit) when this connection may have a transition to send.
    pub fn wake(&self) -> &Arc<Notify> {
        &self.wake
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
            ClientMessage::Connect { session_id, .. } => {
                let mut state = self.engine.state.lock().await;
                state
                    .connections
                    .insert(self.id, ConnectionState::new(self.wake.clone()));
                self.session_id = Some(session_id);
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
                        base_version,
                        new_version,
                        modifications,
                    )?;
                }
                // New queries get their first result in the next refresh; a set whose
                // queries all have results already (removals, queries other clients share)
                // is acknowledged right away.
                self.engine.request_refresh();
                self.wake.notify_one();
            }
            ClientMessage::Mutation {
                request_id,
                udf_path,
                args,
            } => {
                self.queued.push_back(PendingMutation {
                    request_id,
                    udf_path,
                    args,
                });
            }
            ClientMessage::Action {
                request_id,
                udf_path,
                ..
            } => {
                return Ok(Reply::Send(ServerMessage::ActionResponse {
                    request_id,
                    outcome: Err(FunctionError {
                        message: format!(
                            "{udf_path}: actions are not supported yet by this server; call queries and mutations"
                        ),
                        data: None,
                    }),
                    log_lines: Vec::new(),
                }));
            }
            ClientMessage::Event { .. } => {}
            ClientMessage::Authenticate {
                base_version,
                token,
            } => {
                let mut state = self.engine.state.lock().await;
                let connection = state
                    .connections
                    .get_mut(&self.id)
                    .expect("registered at Connect");
                let kind = match token {
                    AuthToken::None => {
                        connection.authenticate(base_version)?;
                        drop(state);
                        self.wake.notify_one();
                        return Ok(Reply::None);
                    }
                    AuthToken::User(_) => "a user token",
                    AuthToken::Admin { .. } => "an admin key",
                };
                return Ok(Reply::SendAndClose(ServerMessage::AuthError {
                    error: format!(
                        "No auth provider found matching the given token: this deployment accepts no sign-in yet, and {kind} was sent"
                    ),
                    base_version: connection.sent_identity_version(),
                    auth_update_attempted: true,
                }));
            }
        }
        Ok(Reply::None)
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

    /// The `MutationResponse` for the running mutation's outcome. After a commit, the
    /// connection awaits a transition at or after its timestamp (guarantee 5), which the
    /// caller sends after this response when woken.
    pub async fn answer_mutation(&mut self, request_id: u64, outcome: Outcome) -> ServerMessage {
        self.running = false;
        let (outcome, log_lines, committed_ts) = match outcome {
            Ok(success) => (
                Ok((success.value, success.ts)),
                success.log_lines,
                Some(success.ts),
            ),
            Err((error, log_lines)) => (Err(error), log_lines, None),
        };
        if let Some(ts) = committed_ts {
            let mut state = self.engine.state.lock().await;
            if let Some(connection) = state.connections.get_mut(&self.id) {
                connection.await_ts(ts);
            }
            drop(state);
            // The next refresh reads at or after `ts`; if one already has, send now.
            self.engine.request_refresh();
            self.wake.notify_one();
        }
        ServerMessage::MutationResponse {
            request_id,
            outcome,
            log_lines,
        }
    }

    /// The transition to send now, if the client is behind the engine's results.
    pub async fn take_transition(&mut self) -> Option<ServerMessage> {
        let (start, end, modifications) = {
            let mut state = self.engine.state.lock().await;
            let state = &mut *state;
            let connection = state.connections.get_mut(&self.id)?;
            connection.take_transition(&state.subscriptions, state.ts)?
        };
        Some(ServerMessage::Transition {
            start,
            end,
            modifications,
        })
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
    }
}

/// The reason given for a frame over [`MAX_CLIENT_FRAME_BYTES`].
fn oversized_frame(given: usize) -> String {
    format!(
        "a frame of {given} bytes exceeds the limit MAX_CLIENT_FRAME_BYTES ({MAX_CLIENT_FRAME_BYTES} bytes)"
    )
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
