//! One WebSocket connection: reads the client's messages, runs its mutations in order, and
//! writes transitions when the engine says there is something new.
//!
//! Everything a connection writes goes through this one task, so frames leave in a known
//! order: a `MutationResponse` is always followed by a transition at or after its commit
//! (guarantee 5), and the version chain (guarantee 2) is kept by construction.

use super::connection::ConnectionState;
use super::engine::{ConnectionId, SyncEngine};
use super::mutation_log::Outcome;
use super::protocol::{
    parse_client_message, ClientMessage, FunctionError, ServerMessage, TokenType,
};
use crate::wasm::{CallError, CallFailure, CallOptions};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use model::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// The largest text frame a client may send: the same bound as an HTTP call's body, since a
/// frame carries one call's arguments plus a little JSON around them.
pub const MAX_CLIENT_FRAME_BYTES: usize = crate::server::MAX_REQUEST_BODY_BYTES;

/// Mutations read from one connection and not yet run. Past this the session stops reading
/// the socket until one finishes, so a flood waits in TCP buffers, not in server memory.
pub const MAX_QUEUED_MUTATIONS: usize = 64;

/// How often an otherwise quiet connection gets a `Ping` (keeps proxies from closing it).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

/// After a `FatalError` and the close frame, how long the session reads what the client
/// still sends, so that closing the socket does not reset it before the client has read
/// the error.
const CLOSE_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a session ends.
enum End {
    /// The client closed the socket or it failed.
    ClientGone,
    /// A protocol violation: the reason goes to the client in a `FatalError`.
    Fatal(String),
    /// The server is shutting down.
    Shutdown,
    /// The server is shutting down and the client is not reading what it was sent: the
    /// socket is dropped without a close handshake, so shutdown never waits on a client.
    Abandoned,
}

struct PendingMutation {
    request_id: u64,
    udf_path: String,
    args: Value,
}

struct RunningMutation {
    request_id: u64,
    task: JoinHandle<Outcome>,
}

struct Session {
    engine: Arc<SyncEngine>,
    id: ConnectionId,
    /// Set by the engine when this connection has a transition to send.
    wake: Arc<Notify>,
    /// The client's `sessionId`, once it has sent `Connect`.
    session_id: Option<String>,
    queued: VecDeque<PendingMutation>,
    running: Option<RunningMutation>,
}

/// Serves one upgraded connection until the client leaves, breaks the protocol, or the
/// server shuts down.
pub async fn run(engine: Arc<SyncEngine>, mut socket: Socket) {
    let mut session = Session {
        id: engine.new_connection_id(),
        engine,
        wake: Arc::new(Notify::new()),
        session_id: None,
        queued: VecDeque::new(),
        running: None,
    };
    let end = session.serve(&mut socket).await;
    session.release().await;
    match end {
        End::ClientGone => {}
        End::Fatal(reason) => {
            tracing::debug!("/api/sync: closing connection {}: {reason}", session.id);
            let fatal = ServerMessage::FatalError {
                error: reason.clone(),
            };
            let _ = socket.send(Message::text(fatal.to_frame())).await;
            close(&mut socket, CloseCode::Policy, "protocol error").await;
        }
        End::Shutdown => close(&mut socket, CloseCode::Away, "server shutting down").await,
        End::Abandoned => {}
    }
}

/// Sends a close frame and reads until the client answers it (or a timeout).
async fn close(socket: &mut Socket, code: CloseCode, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.close(Some(frame)).await;
    let drain = async { while let Some(Ok(_)) = socket.next().await {} };
    let _ = tokio::time::timeout(CLOSE_DRAIN_TIMEOUT, drain).await;
}

impl Session {
    async fn serve(&mut self, socket: &mut Socket) -> End {
        let mut stopping = self.engine.stopping();
        let mut shutting_down = false;
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        loop {
            if shutting_down && self.running.is_none() {
                return End::Shutdown;
            }
            let reading = !shutting_down && self.queued.len() < MAX_QUEUED_MUTATIONS;
            tokio::select! {
                // `map` drops the watch's read guard at once (it must not live across awaits).
                _ = async { stopping.wait_for(|stop| *stop).await.map(|_| ()) }, if !shutting_down => {
                    // Let the mutation in progress finish and answer; queued ones are
                    // dropped unanswered (the client re-sends them after reconnecting).
                    shutting_down = true;
                    self.queued.clear();
                }
                finished = finish(&mut self.running), if self.running.is_some() => {
                    let (request_id, outcome) = finished;
                    // Committed or not, the outcome is recorded: a client that misses this
                    // answer gets it again when it re-sends.
                    let answering = self.answer_mutation(socket, request_id, outcome);
                    match unless_stopping(&mut stopping, answering).await {
                        Some(Ok(())) => {}
                        Some(Err(end)) => return end,
                        None => return End::Abandoned,
                    }
                    if !shutting_down {
                        self.start_next_mutation();
                    }
                }
                () = self.wake.notified() => {
                    match unless_stopping(&mut stopping, self.send_transition(socket)).await {
                        Some(Ok(())) => {}
                        Some(Err(end)) => return end,
                        None => return End::Abandoned,
                    }
                }
                frame = socket.next(), if reading => {
                    let text = match read_text(frame) {
                        Ok(Some(text)) => text,
                        Ok(None) => continue,
                        Err(end) => return end,
                    };
                    if let Err(reason) = self.handle_frame(&text).await {
                        return End::Fatal(reason);
                    }
                }
                _ = ping.tick() => {
                    match unless_stopping(&mut stopping, send(socket, &ServerMessage::Ping)).await {
                        Some(Ok(())) => {}
                        Some(Err(_)) => return End::ClientGone,
                        None => return End::Abandoned,
                    }
                }
            }
        }
    }

    async fn handle_frame(&mut self, text: &str) -> Result<(), String> {
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
                self.start_next_mutation();
            }
            ClientMessage::Authenticate { token_type, .. } => {
                if token_type != TokenType::None {
                    return Err(format!(
                        "Authenticate: tokenType {token_type:?} is not supported by this server yet (only None is)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Starts the oldest queued mutation unless one is running: one at a time, in the order
    /// the client sent them (guarantee 6).
    fn start_next_mutation(&mut self) {
        if self.running.is_some() {
            return;
        }
        let Some(next) = self.queued.pop_front() else {
            return;
        };
        let engine = self.engine.clone();
        let session_id = self
            .session_id
            .clone()
            .expect("mutations come after Connect");
        // A mutation blocks its thread for up to the call time limit. Its outcome is recorded
        // there too, so it counts even if this connection drops before the answer.
        let task = tokio::task::spawn_blocking(move || {
            engine.mutations.run_once(&session_id, next.request_id, || {
                engine
                    .host
                    .run_mutation_once(
                        &engine.store,
                        &engine.module(),
                        &next.udf_path,
                        &next.args,
                        CallOptions::default(),
                        &receipt_key(&session_id, next.request_id),
                    )
                    .map_err(|failure| (function_error(&failure), failure.log_lines))
            })
        });
        self.running = Some(RunningMutation {
            request_id: next.request_id,
            task,
        });
    }

    async fn answer_mutation(
        &mut self,
        socket: &mut Socket,
        request_id: u64,
        outcome: Outcome,
    ) -> Result<(), End> {
        let (response, committed_ts) = match outcome {
            Ok(success) => (
                ServerMessage::MutationResponse {
                    request_id,
                    outcome: Ok((success.value, success.ts)),
                    log_lines: success.log_lines,
                },
                Some(success.ts),
            ),
            Err((error, log_lines)) => (
                ServerMessage::MutationResponse {
                    request_id,
                    outcome: Err(error),
                    log_lines,
                },
                None,
            ),
        };
        send(socket, &response).await?;
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
        Ok(())
    }

    async fn send_transition(&mut self, socket: &mut Socket) -> Result<(), End> {
        let transition = {
            let mut state = self.engine.state.lock().await;
            let state = &mut *state;
            let Some(connection) = state.connections.get_mut(&self.id) else {
                return Ok(());
            };
            connection.take_transition(&state.subscriptions, state.ts)
        };
        let Some((start, end, modifications)) = transition else {
            return Ok(());
        };
        let message = ServerMessage::Transition {
            start,
            end,
            modifications,
        };
        send(socket, &message).await
    }

    /// Drops this connection's query set from the shared subscriptions.
    async fn release(&mut self) {
        let mut state = self.engine.state.lock().await;
        let state = &mut *state;
        if let Some(connection) = state.connections.remove(&self.id) {
            connection.release(&mut state.subscriptions);
        }
    }
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

/// Runs `work` (a send that waits while the client does not read) unless shutdown begins
/// first: `None` then. A send already under way when shutdown begins stops waiting at once.
async fn unless_stopping<T>(
    stopping: &mut tokio::sync::watch::Receiver<bool>,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        output = work => Some(output),
        _ = stopping.wait_for(|stop| *stop) => None,
    }
}

/// Waits for the running mutation; its request id and outcome.
async fn finish(running: &mut Option<RunningMutation>) -> (u64, Outcome) {
    let current = running.as_mut().expect("polled only while running");
    let joined = (&mut current.task).await;
    let request_id = current.request_id;
    *running = None;
    let outcome = match joined {
        Ok(outcome) => outcome,
        // The host turns guest panics into errors; this is a bug in the host itself.
        Err(join_error) => Err((
            FunctionError {
                message: format!("the host failed while running the mutation: {join_error}"),
                data: None,
            },
            Vec::new(),
        )),
    };
    (request_id, outcome)
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

/// The text of a data frame; `Ok(None)` for control frames the library already handled.
fn read_text(frame: Option<Result<Message, WsError>>) -> Result<Option<String>, End> {
    match frame {
        None | Some(Ok(Message::Close(_))) => Err(End::ClientGone),
        Some(Ok(Message::Text(text))) => {
            if text.len() > MAX_CLIENT_FRAME_BYTES {
                return Err(End::Fatal(oversized(text.len())));
            }
            Ok(Some(text.as_str().to_owned()))
        }
        Some(Ok(Message::Binary(_))) => Err(End::Fatal(
            "binary frame: the sync protocol uses JSON text frames only".into(),
        )),
        Some(Ok(_)) => Ok(None),
        Some(Err(WsError::Capacity(e))) => Err(End::Fatal(format!(
            "a frame exceeds the limit MAX_CLIENT_FRAME_BYTES ({MAX_CLIENT_FRAME_BYTES} bytes): {e}"
        ))),
        Some(Err(WsError::Utf8(e))) => Err(End::Fatal(format!(
            "malformed frame: a text frame is not valid UTF-8 ({e})"
        ))),
        Some(Err(e)) => {
            tracing::debug!("/api/sync: reading from the socket failed: {e}");
            Err(End::ClientGone)
        }
    }
}

fn oversized(given: usize) -> String {
    format!(
        "a frame of {given} bytes exceeds the limit MAX_CLIENT_FRAME_BYTES ({MAX_CLIENT_FRAME_BYTES} bytes)"
    )
}

async fn send(socket: &mut Socket, message: &ServerMessage) -> Result<(), End> {
    socket
        .send(Message::text(message.to_frame()))
        .await
        .map_err(|_| End::ClientGone)
}

fn message_type(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::Connect { .. } => "Connect",
        ClientMessage::ModifyQuerySet { .. } => "ModifyQuerySet",
        ClientMessage::Mutation { .. } => "Mutation",
        ClientMessage::Authenticate { .. } => "Authenticate",
    }
}
