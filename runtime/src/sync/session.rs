//! One WebSocket connection's task: reads frames, runs mutations (each attempt inline or on
//! the blocking pool, as the store decides), and writes what [`SessionCore`] answers. The
//! protocol's rules live in the core; this task adds the socket, the order of events, pings,
//! back-pressure and shutdown.
//!
//! Everything a connection writes goes through this one task, so frames leave in a known
//! order: a `MutationResponse` is always followed by a transition at or after its commit
//! (guarantee 5), and the version chain (guarantee 2) is kept by construction.

use super::engine::SyncEngine;
use super::mutation_log::Outcome;
use super::protocol::{Frame, FunctionError, ServerMessage};
use super::session_core::MutationRun;
pub use super::session_core::MAX_CLIENT_FRAME_BYTES;
use super::session_core::{Reply, SessionCore};
use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Mutations read from one connection and not yet run. Past this the session stops reading
/// the socket until one finishes, so a flood waits in TCP buffers, not in server memory.
pub const MAX_QUEUED_MUTATIONS: usize = 64;

/// Actions one connection may have running; past this the session stops reading the socket
/// until one ends.
pub const MAX_ACTIONS_PER_CONNECTION: usize = 16;

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
    /// A reply that ends the connection was sent (a refused token).
    Closed(&'static str),
    /// The server is shutting down and the client is not reading what it was sent: the
    /// socket is dropped without a close handshake, so shutdown never waits on a client.
    Abandoned,
}

struct Session {
    core: SessionCore,
    /// Actions running for this connection, each ending in its `ActionResponse`.
    actions: tokio::task::JoinSet<ServerMessage>,
    /// The client reassembles `TransitionChunk`s (npm clients from 1.28.0).
    takes_chunks: bool,
}

/// Serves one upgraded connection until the client leaves, breaks the protocol, or the
/// server shuts down. `takes_chunks`: the client reassembles long transitions sent in parts.
pub async fn run(engine: Arc<SyncEngine>, mut socket: Socket, takes_chunks: bool) {
    let mut session = Session {
        core: SessionCore::new(engine.clone()),
        actions: tokio::task::JoinSet::new(),
        takes_chunks,
    };
    let end = session.serve(&engine, &mut socket).await;
    session.core.release().await;
    match end {
        End::ClientGone => {}
        End::Fatal(reason) => {
            tracing::debug!(
                "/api/sync: closing connection {}: {reason}",
                session.core.id()
            );
            let fatal = ServerMessage::FatalError {
                error: reason.clone(),
            };
            let _ = socket.send(Message::text(fatal.to_frame())).await;
            close(&mut socket, CloseCode::Policy, "protocol error").await;
        }
        // Transient: 1013 (try again later), so every client reconnects, to this server
        // once it is back or to another.
        End::Shutdown => close(&mut socket, CloseCode::Again, "ServerShuttingDown").await,
        End::Closed(reason) => close(&mut socket, CloseCode::Normal, reason).await,
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
    async fn serve(&mut self, engine: &Arc<SyncEngine>, socket: &mut Socket) -> End {
        let mut stopping = engine.stopping();
        let mut shutting_down = false;
        let outbox = self.core.outbox().clone();
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        let mut running = MutationSlot::new(run_mutation);
        loop {
            if shutting_down && !running.is_running() {
                return End::Shutdown;
            }
            let reading = !shutting_down
                && self.core.queued_mutations() < MAX_QUEUED_MUTATIONS
                && self.actions.len() < MAX_ACTIONS_PER_CONNECTION;
            tokio::select! {
                // `map` drops the watch's read guard at once (it must not live across awaits).
                _ = async { stopping.wait_for(|stop| *stop).await.map(|_| ()) }, if !shutting_down => {
                    // Let the mutation in progress finish and answer; queued ones are
                    // dropped unanswered (the client re-sends them after reconnecting).
                    shutting_down = true;
                    self.core.drop_queued();
                }
                finished = running.finish(), if running.is_running() => {
                    let (request_id, outcome) = finished;
                    // Committed or not, the outcome is recorded: a client that misses this
                    // answer gets it again when it re-sends.
                    let answer = self.core.answer_mutation(request_id, outcome).await;
                    // One write (one system call, usually) for the three parts, not two:
                    // socket writes were 10% of the server's CPU in `bench --only chat-send`.
                    let chunks = self.takes_chunks;
                    let mut frames: Vec<Frame> = Vec::new();
                    if let Some(transition) = &answer.before {
                        frames.extend_from_slice(transition.frames(chunks));
                    }
                    frames.extend(answer.response.to_frames(chunks).into_iter().map(Frame::from));
                    if let Some(transition) = &answer.after {
                        frames.extend_from_slice(transition.frames(chunks));
                    }
                    match unless_stopping(&mut stopping, write(socket, frames)).await {
                        Some(Ok(())) => {}
                        Some(Err(end)) => return end,
                        None => return End::Abandoned,
                    }
                    if !shutting_down {
                        self.start_next_mutation(&mut running);
                    }
                }
                Some(answered) = self.actions.join_next(), if !self.actions.is_empty() => {
                    let Ok(response) = answered else { continue };
                    match unless_stopping(&mut stopping, self.send(socket, &response)).await {
                        Some(Ok(())) => {}
                        Some(Err(end)) => return end,
                        None => return End::Abandoned,
                    }
                }
                () = outbox.wake.notified() => {
                    let Some(transition) = self.core.take_transition().await else {
                        continue;
                    };
                    let frames = transition.frames(self.takes_chunks);
                    match unless_stopping(&mut stopping, write(socket, frames.iter().cloned())).await {
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
                    let mut reply = self.core.handle_frame(&text).await;
                    if let Ok(Reply::Verify(pending)) = reply {
                        // Before the next frame: what follows an `Authenticate` runs as the
                        // identity it brings.
                        let Some(verdict) =
                            unless_stopping(&mut stopping, pending.verify(&engine.access)).await
                        else {
                            return End::Shutdown;
                        };
                        reply = self.core.finish_authenticate(verdict).await;
                    }
                    let (reply, then_close) = match reply {
                        Err(reason) => return End::Fatal(reason),
                        Ok(Reply::RunAction(call)) => {
                            self.actions.spawn(call.run(engine.clone()));
                            (None, false)
                        }
                        Ok(Reply::None | Reply::Verify(_)) => (None, false),
                        Ok(Reply::Send(message)) => (Some(message), false),
                        Ok(Reply::SendAndClose(message)) => (Some(message), true),
                    };
                    if let Some(message) = reply {
                        match unless_stopping(&mut stopping, self.send(socket, &message)).await {
                            Some(Ok(())) => {}
                            Some(Err(end)) => return end,
                            None => return End::Abandoned,
                        }
                    }
                    if then_close {
                        return End::Closed("AuthError");
                    }
                    self.start_next_mutation(&mut running);
                }
                () = until_expired(self.core.expires_at()), if self.core.expires_at().is_some() => {
                    if let Reply::SendAndClose(message) = self.core.token_expired().await {
                        let _ = unless_stopping(&mut stopping, self.send(socket, &message)).await;
                    }
                    return End::Closed("AuthError");
                }
                _ = ping.tick() => {
                    running.on_ping();
                    match unless_stopping(&mut stopping, self.send(socket, &ServerMessage::Ping)).await {
                        Some(Ok(())) => {}
                        Some(Err(_)) => return End::ClientGone,
                        None => return End::Abandoned,
                    }
                }
            }
        }
    }

    /// Writes a message: one frame, or a long transition's parts when the client takes them.
    async fn send(&self, socket: &mut Socket, message: &ServerMessage) -> Result<(), End> {
        let frames = message.to_frames(self.takes_chunks);
        write(socket, frames.into_iter().map(Frame::from)).await
    }

    /// Starts the next mutation the core hands out (none while one runs).
    fn start_next_mutation<F: Future>(&mut self, running: &mut MutationSlot<MutationRun, F>) {
        if let Some(mutation) = self.core.next_mutation() {
            running.start(mutation);
        }
    }
}

/// Writes `frames` and flushes them.
async fn write(socket: &mut Socket, frames: impl IntoIterator<Item = Frame>) -> Result<(), End> {
    for frame in frames {
        socket
            .feed(Message::Text(frame))
            .await
            .map_err(|_| End::ClientGone)?;
    }
    socket.flush().await.map_err(|_| End::ClientGone)
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

/// Sleeps until `expires_at` (seconds since the epoch) has passed.
async fn until_expired(expires_at: Option<u64>) {
    let Some(expires_at) = expires_at else {
        return std::future::pending().await;
    };
    let now = crate::auth::jwt::now_secs();
    tokio::time::sleep(Duration::from_secs(expires_at.saturating_sub(now) + 1)).await;
}

/// Runs one mutation: its request id and outcome.
async fn run_mutation(mutation: MutationRun) -> (u64, Outcome) {
    let request_id = mutation.request_id();
    let outcome = match AssertUnwindSafe(mutation.run_async()).catch_unwind().await {
        Ok(outcome) => outcome,
        // The host turns guest panics into errors; this is a bug in the host itself. The
        // mutation's state is dropped with it; the session goes on.
        Err(panic) => Err((
            FunctionError {
                message: format!(
                    "the host failed while running the mutation: {}",
                    crate::panic_message(&*panic)
                ),
                data: None,
            },
            Vec::new(),
        )),
    };
    (request_id, outcome)
}

/// The mutation in progress, polled by the session's task rather than spawned as a task of
/// its own: a task per mutation cost 3.5% of the server's CPU in `bench --only chat-send`
/// (allocating and copying its 4.9 KB future), besides the hand-off back to the session.
/// While the session waits on a slow client's socket the mutation is not polled, which
/// delays only that client's own answer: a commit already requested lands regardless. If the
/// session ends first, the mutation is dropped; its receipt, written with its commit if it
/// committed, answers the client's re-send (guarantee 6).
///
/// The future lives in a box that is reused while the connection sends mutations and freed
/// once a whole ping interval passes without one: kept inline in every session it made each
/// idle subscribed connection 5 KiB larger (15.5 → 20.5 KiB, `bench --only scale`).
struct MutationSlot<M, F> {
    run: fn(M) -> F,
    slot: Option<Pin<Box<Option<F>>>>,
    started_since_ping: bool,
}

impl<M, F: Future> MutationSlot<M, F> {
    /// An empty slot for the futures `run` makes (their type has no name to write).
    fn new(run: fn(M) -> F) -> Self {
        MutationSlot {
            run,
            slot: None,
            started_since_ping: false,
        }
    }

    fn is_running(&self) -> bool {
        self.slot.as_ref().is_some_and(|slot| slot.is_some())
    }

    fn start(&mut self, mutation: M) {
        let future = (self.run)(mutation);
        self.started_since_ping = true;
        match &mut self.slot {
            Some(slot) => slot.as_mut().set(Some(future)),
            None => self.slot = Some(Box::pin(Some(future))),
        }
    }

    /// Waits for the mutation in progress, then empties the slot.
    async fn finish(&mut self) -> F::Output {
        let slot = self.slot.as_mut().expect("polled only while running");
        let finished = slot
            .as_mut()
            .as_pin_mut()
            .expect("polled only while running")
            .await;
        slot.as_mut().set(None);
        finished
    }

    /// At each ping: frees the box if no mutation started since the last one.
    fn on_ping(&mut self) {
        if !self.started_since_ping && !self.is_running() {
            self.slot = None;
        }
        self.started_since_ping = false;
    }
}

/// The text of a data frame; `Ok(None)` for control frames the library already handled.
fn read_text(frame: Option<Result<Message, WsError>>) -> Result<Option<String>, End> {
    match frame {
        None | Some(Ok(Message::Close(_))) => Err(End::ClientGone),
        // The core refuses a frame over the size limit.
        Some(Ok(Message::Text(text))) => Ok(Some(text.as_str().to_owned())),
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

#[cfg(test)]
mod tests {
    use super::MutationSlot;

    async fn double(n: u64) -> u64 {
        n * 2
    }

    fn boxed<M, F>(running: &MutationSlot<M, F>) -> Option<*const Option<F>> {
        running
            .slot
            .as_ref()
            .map(|slot| &**slot as *const Option<F>)
    }

    /// The box is made by the first mutation, reused by the next ones, and freed only when a
    /// whole ping interval passed without a mutation starting.
    #[tokio::test]
    async fn the_box_is_reused_while_busy_and_freed_once_idle() {
        let mut running = MutationSlot::new(double);
        assert!(!running.is_running());
        assert_eq!(boxed(&running), None, "no box before the first mutation");

        running.start(1);
        assert!(running.is_running());
        let first = boxed(&running).expect("boxed");
        assert_eq!(running.finish().await, 2);
        assert!(!running.is_running());

        running.on_ping(); // a mutation started in this interval: kept
        running.start(5);
        assert_eq!(boxed(&running), Some(first), "the same box");
        assert_eq!(running.finish().await, 10);

        running.on_ping(); // one started since the last ping: kept
        assert_eq!(boxed(&running), Some(first));
        running.on_ping(); // a whole interval without one: freed
        assert_eq!(boxed(&running), None);

        running.start(7);
        running.on_ping();
        running.on_ping();
        assert!(
            running.is_running(),
            "a mutation in progress is never dropped"
        );
        assert_eq!(running.finish().await, 14);
    }
}
