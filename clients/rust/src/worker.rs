//! The background task that owns the socket: keeps the query set and the unanswered
//! mutations, (re)connects, applies transitions, and answers the client's calls.
//!
//! Everything the server sends is applied in this one task, in order, so a mutation's
//! caller is answered only after the transition that shows its write has been applied to
//! every subscription (guarantee 5).

use crate::client::ConnectionStatus;
use crate::error::{Error, FunctionError};
use crate::util::{Backoff, SyncUrl};
use crate::wire::{self, QueryModification, QuerySetChange, ServerMessage, StateVersion};
use ferrovex_model::{Object, Value};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub(crate) type Socket = WebSocketStream<TcpStream>;

/// A query's latest result; `None` before the first one.
pub(crate) type QueryResult = Option<Result<Value, FunctionError>>;

pub(crate) enum Command {
    Subscribe {
        query_id: u64,
        udf_path: String,
        args: Object,
        results: watch::Sender<QueryResult>,
    },
    Unsubscribe {
        query_id: u64,
    },
    Mutation {
        udf_path: String,
        args: Object,
        reply: oneshot::Sender<Result<Value, Error>>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub reconnect_initial_delay: Duration,
    pub reconnect_max_delay: Duration,
    pub connect_timeout: Duration,
    pub silence_timeout: Option<Duration>,
}

/// How long a closing client waits for its close frame to be written.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

struct Query {
    udf_path: String,
    args: Object,
    results: watch::Sender<QueryResult>,
}

enum MutationState {
    /// Not sent on the current connection (there was none, or it was lost).
    Unsent,
    /// Sent on the current connection; no response yet.
    Sent,
    /// Succeeded at commit `ts`; waits for a transition at or after it. `resent` when sent
    /// again on this connection to get such a transition (see `apply_transition`).
    Committed { value: Value, ts: u64, resent: bool },
}

struct Mutation {
    udf_path: String,
    args: Object,
    reply: oneshot::Sender<Result<Value, Error>>,
    state: MutationState,
}

/// One live connection.
struct Connection {
    out: mpsc::UnboundedSender<Message>,
    writer: JoinHandle<()>,
    /// The last `endVersion` applied (guarantee 2: the next `startVersion`).
    version: StateVersion,
    /// The newest query-set version sent.
    query_set_version: u64,
    /// Whether the server answered something meaningful (resets the backoff).
    healthy: bool,
}

impl Connection {
    fn send(&self, text: String) -> Result<(), String> {
        self.out
            .send(Message::text(text))
            .map_err(|_| "writing to the socket failed".to_owned())
    }
}

enum Stop {
    /// Every client handle is gone.
    Closed,
    /// The connection failed; reconnect.
    Lost { reason: String, healthy: bool },
}

pub(crate) struct Worker {
    pub url: SyncUrl,
    pub session_id: String,
    pub options: Options,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub status: watch::Sender<ConnectionStatus>,
    queries: BTreeMap<u64, Query>,
    mutations: BTreeMap<u64, Mutation>,
    next_request_id: u64,
    /// `Connect` messages sent so far: the next one's `connectionCount`.
    connections: u64,
    max_observed_ts: Option<u64>,
}

/// Opens the TCP connection and does the WebSocket handshake.
pub(crate) async fn open_socket(url: &SyncUrl, timeout: Duration) -> Result<Socket, String> {
    let attempt = async {
        let stream = TcpStream::connect(&url.authority)
            .await
            .map_err(|e| format!("connecting to {}: {e}", url.authority))?;
        let _ = stream.set_nodelay(true);
        let (socket, _response) = tokio_tungstenite::client_async(url.url.as_str(), stream)
            .await
            .map_err(|e| format!("the WebSocket handshake with {} failed: {e}", url.url))?;
        Ok(socket)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "connecting to {} timed out after {timeout:?}",
                url.url
            ))
        })
}

impl Worker {
    pub fn new(
        url: SyncUrl,
        session_id: String,
        options: Options,
        commands: mpsc::UnboundedReceiver<Command>,
        status: watch::Sender<ConnectionStatus>,
    ) -> Worker {
        Worker {
            url,
            session_id,
            options,
            commands,
            status,
            queries: BTreeMap::new(),
            mutations: BTreeMap::new(),
            next_request_id: 1,
            connections: 0,
            max_observed_ts: None,
        }
    }

    /// Serves `first`, then reconnects whenever the connection is lost, until every client
    /// handle is dropped.
    pub async fn run(mut self, first: Socket) {
        let mut backoff = Backoff::new(
            self.options.reconnect_initial_delay,
            self.options.reconnect_max_delay,
        );
        let mut socket = Some(first);
        loop {
            let socket = match socket.take() {
                Some(socket) => socket,
                None => match self.reconnect(&mut backoff).await {
                    Some(socket) => socket,
                    None => return,
                },
            };
            match self.serve(socket).await {
                Stop::Closed => {
                    self.status.send_modify(|s| s.connected = false);
                    return;
                }
                Stop::Lost { reason, healthy } => {
                    if healthy {
                        backoff.reset();
                    }
                    tracing::warn!(
                        "ferrovex-client: connection to {} lost: {reason}; reconnecting",
                        self.url.url
                    );
                    self.status.send_modify(|s| {
                        s.connected = false;
                        s.last_error = Some(reason);
                    });
                }
            }
        }
    }

    /// Tries to connect, with backoff, while still taking commands. `None` once every client
    /// handle is dropped.
    async fn reconnect(&mut self, backoff: &mut Backoff) -> Option<Socket> {
        loop {
            let delay = backoff.next_delay();
            let url = self.url.clone();
            let timeout = self.options.connect_timeout;
            let attempt = async move {
                tokio::time::sleep(delay).await;
                open_socket(&url, timeout).await
            };
            tokio::pin!(attempt);
            loop {
                tokio::select! {
                    result = &mut attempt => match result {
                        Ok(socket) => return Some(socket),
                        Err(e) => {
                            tracing::debug!("ferrovex-client: reconnecting failed: {e}");
                            self.status.send_modify(|s| s.last_error = Some(e));
                            break;
                        }
                    },
                    command = self.commands.recv() => match command {
                        Some(command) => {
                            // Offline: only recorded, so `handle` cannot fail.
                            let _ = self.handle(command, None);
                        }
                        None => return None,
                    },
                }
            }
        }
    }

    async fn serve(&mut self, socket: Socket) -> Stop {
        let (sink, mut stream) = socket.split();
        let (out, outgoing) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_frames(sink, outgoing));
        let mut connection = Connection {
            out,
            writer,
            version: StateVersion::INITIAL,
            query_set_version: 0,
            healthy: false,
        };
        let stop = match self.start(&mut connection) {
            Ok(()) => self.serve_frames(&mut connection, &mut stream).await,
            Err(reason) => Stop::Lost {
                reason,
                healthy: false,
            },
        };
        let Connection {
            out,
            mut writer,
            healthy,
            ..
        } = connection;
        match stop {
            Stop::Closed => {
                let _ = out.send(Message::Close(None));
                drop(out);
                if tokio::time::timeout(CLOSE_TIMEOUT, &mut writer)
                    .await
                    .is_err()
                {
                    writer.abort();
                }
                Stop::Closed
            }
            Stop::Lost { reason, .. } => {
                writer.abort();
                // Sent mutations go again, in order, on the next connection; committed ones
                // wait there for a transition that reaches their commit.
                for mutation in self.mutations.values_mut() {
                    match &mut mutation.state {
                        MutationState::Sent => mutation.state = MutationState::Unsent,
                        MutationState::Committed { resent, .. } => *resent = false,
                        MutationState::Unsent => {}
                    }
                }
                Stop::Lost { reason, healthy }
            }
        }
    }

    /// Sends what opens a connection: `Connect`, the whole query set from version 0 (even
    /// an empty one, whose acknowledgement shows the connection works and carries the
    /// current timestamp), then every unanswered mutation in its original order.
    fn start(&mut self, connection: &mut Connection) -> Result<(), String> {
        connection.send(wire::connect(
            &self.session_id,
            self.connections,
            self.max_observed_ts,
        ))?;
        self.connections += 1;
        let count = self.connections;
        self.status.send_modify(|s| {
            s.connected = true;
            s.connection_count = count;
        });
        let adds: Vec<QuerySetChange<'_>> = self
            .queries
            .iter()
            .map(|(query_id, query)| QuerySetChange::Add {
                query_id: *query_id,
                udf_path: &query.udf_path,
                args: &query.args,
            })
            .collect();
        connection.send(wire::modify_query_set(0, &adds))?;
        connection.query_set_version = 1;
        for (request_id, mutation) in &mut self.mutations {
            if matches!(mutation.state, MutationState::Unsent) {
                connection.send(wire::mutation(
                    *request_id,
                    &mutation.udf_path,
                    &mutation.args,
                ))?;
                mutation.state = MutationState::Sent;
            }
        }
        Ok(())
    }

    async fn serve_frames(
        &mut self,
        connection: &mut Connection,
        stream: &mut SplitStream<Socket>,
    ) -> Stop {
        let silence = self.options.silence_timeout;
        let mut deadline = silence.map(|d| Instant::now() + d);
        loop {
            let lost = |reason: String, connection: &Connection| Stop::Lost {
                reason,
                healthy: connection.healthy,
            };
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => {
                        if let Err(reason) = self.handle(command, Some(connection)) {
                            return lost(reason, connection);
                        }
                    }
                    None => return Stop::Closed,
                },
                frame = stream.next() => {
                    if let Some(d) = silence {
                        deadline = Some(Instant::now() + d);
                    }
                    let result = match frame {
                        None => Err("the server closed the connection".to_owned()),
                        Some(Err(e)) => Err(format!("reading from the socket failed: {e}")),
                        Some(Ok(Message::Text(text))) => self.handle_frame(connection, text.as_str()),
                        Some(Ok(Message::Close(frame))) => Err(match frame {
                            Some(frame) => format!("the server closed the connection ({}: {})", frame.code, frame.reason),
                            None => "the server closed the connection".to_owned(),
                        }),
                        Some(Ok(Message::Binary(_))) => Err("protocol error: a binary frame (the sync protocol uses JSON text frames only)".to_owned()),
                        Some(Ok(_)) => Ok(()),
                    };
                    if let Err(reason) = result {
                        return lost(reason, connection);
                    }
                }
                () = sleep_until(deadline) => {
                    return lost(format!("no frame from the server in {:?}", silence.unwrap_or_default()), connection);
                }
            }
        }
    }

    /// Records a command and, when connected, sends what it needs.
    fn handle(
        &mut self,
        command: Command,
        connection: Option<&mut Connection>,
    ) -> Result<(), String> {
        match command {
            Command::Subscribe {
                query_id,
                udf_path,
                args,
                results,
            } => {
                if let Some(connection) = connection {
                    let add = QuerySetChange::Add {
                        query_id,
                        udf_path: &udf_path,
                        args: &args,
                    };
                    connection
                        .send(wire::modify_query_set(connection.query_set_version, &[add]))?;
                    connection.query_set_version += 1;
                }
                self.queries.insert(
                    query_id,
                    Query {
                        udf_path,
                        args,
                        results,
                    },
                );
            }
            Command::Unsubscribe { query_id } => {
                if self.queries.remove(&query_id).is_some() {
                    if let Some(connection) = connection {
                        let remove = QuerySetChange::Remove { query_id };
                        connection.send(wire::modify_query_set(
                            connection.query_set_version,
                            &[remove],
                        ))?;
                        connection.query_set_version += 1;
                    }
                }
            }
            Command::Mutation {
                udf_path,
                args,
                reply,
            } => {
                let request_id = self.next_request_id;
                self.next_request_id += 1;
                let mut state = MutationState::Unsent;
                if let Some(connection) = connection {
                    connection.send(wire::mutation(request_id, &udf_path, &args))?;
                    state = MutationState::Sent;
                }
                self.mutations.insert(
                    request_id,
                    Mutation {
                        udf_path,
                        args,
                        reply,
                        state,
                    },
                );
            }
        }
        Ok(())
    }

    /// Applies one server frame; an error is a protocol violation (reconnect).
    fn handle_frame(&mut self, connection: &mut Connection, text: &str) -> Result<(), String> {
        let message =
            wire::parse_server_message(text).map_err(|e| format!("protocol error: {e}"))?;
        match message {
            ServerMessage::Transition {
                start,
                end,
                modifications,
            } => self.apply_transition(connection, start, end, modifications),
            ServerMessage::MutationResponse {
                request_id,
                outcome,
            } => {
                let Some(mutation) = self.mutations.get_mut(&request_id) else {
                    return Err(format!(
                        "protocol error: a MutationResponse for requestId {request_id}, which has no mutation waiting"
                    ));
                };
                match &mut mutation.state {
                    MutationState::Sent => {}
                    // The answer to a re-send: the original outcome, already held.
                    MutationState::Committed { resent, .. } if *resent => {
                        *resent = false;
                        return Ok(());
                    }
                    _ => {
                        return Err(format!(
                            "protocol error: a second MutationResponse for requestId {request_id}"
                        ))
                    }
                }
                connection.healthy = true;
                match outcome {
                    Ok((value, ts, log_lines)) => {
                        for line in log_lines {
                            tracing::debug!("ferrovex-client: {}: {line}", mutation.udf_path);
                        }
                        mutation.state = MutationState::Committed {
                            value,
                            ts,
                            resent: false,
                        };
                        self.observe(ts);
                        // Already shown if a transition at or after the commit came first.
                        self.resolve_committed(connection.version.ts);
                    }
                    Err(error) => {
                        let mutation = self.mutations.remove(&request_id).expect("found above");
                        let _ = mutation.reply.send(Err(Error::Function(error)));
                    }
                }
                Ok(())
            }
            ServerMessage::FatalError { error } => {
                Err(format!("the server sent FatalError: {error}"))
            }
            ServerMessage::Ping => Ok(()),
        }
    }

    fn apply_transition(
        &mut self,
        connection: &mut Connection,
        start: StateVersion,
        end: StateVersion,
        modifications: Vec<QueryModification>,
    ) -> Result<(), String> {
        // Guarantee 2, checked before anything is applied.
        if start != connection.version {
            return Err(format!(
                "protocol error: a Transition starts at {start}, but the previous one ended at {}",
                connection.version
            ));
        }
        if end.ts < start.ts || end.query_set < start.query_set {
            return Err(format!(
                "protocol error: a Transition goes back from {start} to {end}"
            ));
        }
        if end.query_set > connection.query_set_version {
            return Err(format!(
                "protocol error: a Transition acknowledges query set {}, but the newest sent is {}",
                end.query_set, connection.query_set_version
            ));
        }
        for modification in modifications {
            let (query_id, result) = match modification {
                QueryModification::Updated { query_id, value } => (query_id, Ok(value)),
                QueryModification::Failed { query_id, error } => (query_id, Err(error)),
                QueryModification::Removed { .. } => continue,
            };
            // A query removed since the server computed this is no longer wanted.
            if let Some(query) = self.queries.get(&query_id) {
                let result = Some(result);
                query.results.send_if_modified(|held| {
                    if *held == result {
                        return false;
                    }
                    *held = result;
                    true
                });
            }
        }
        let first = connection.version == StateVersion::INITIAL;
        connection.version = end;
        connection.healthy = true;
        self.observe(end.ts);
        self.resolve_committed(end.ts);
        if first {
            // A mutation answered on an earlier connection whose commit this one's first
            // transition does not reach (the server's state lags, e.g. just restarted) is
            // sent again: the server answers it from its record without running it, then
            // follows with a transition at or after the commit (guarantee 5).
            for (request_id, mutation) in &mut self.mutations {
                if let MutationState::Committed { ts, resent, .. } = &mut mutation.state {
                    if *ts > end.ts && !*resent {
                        connection.send(wire::mutation(
                            *request_id,
                            &mutation.udf_path,
                            &mutation.args,
                        ))?;
                        *resent = true;
                    }
                }
            }
        }
        Ok(())
    }

    /// Answers every committed mutation whose commit the applied state reflects.
    fn resolve_committed(&mut self, applied_ts: u64) {
        let done: Vec<u64> = self
            .mutations
            .iter()
            .filter(
                |(_, m)| matches!(m.state, MutationState::Committed { ts, .. } if ts <= applied_ts),
            )
            .map(|(id, _)| *id)
            .collect();
        for request_id in done {
            let mutation = self.mutations.remove(&request_id).expect("listed above");
            if let MutationState::Committed { value, .. } = mutation.state {
                let _ = mutation.reply.send(Ok(value));
            }
        }
    }

    fn observe(&mut self, ts: u64) {
        self.max_observed_ts = Some(self.max_observed_ts.map_or(ts, |t| t.max(ts)));
    }
}

/// Writes queued frames until the channel closes or the socket fails.
async fn write_frames(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
) {
    while let Some(message) = outgoing.recv().await {
        let closing = matches!(message, Message::Close(_));
        if let Err(e) = sink.send(message).await {
            tracing::debug!("ferrovex-client: writing to the socket failed: {e}");
            return;
        }
        if closing {
            return;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
