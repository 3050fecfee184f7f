//! WebSocket clients of `/api/sync` (docs/PROTOCOL.md section 3): raw sockets speaking the
//! protocol's one definition of the messages, for the fanout scenario's thousands of
//! subscribers (an official client per subscriber would spend the two cores on the client
//! side); and the closed-loop load driver on the official Convex Rust client: N clients, each
//! sending a mutation (or an action) after the previous one resolved.

use crate::stats::Latency;
use crate::Rng;
use ferrovex_runtime::sync::protocol::{Args, ClientMessage, QuerySetModification};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value as Json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// A mutation that has no answer by then counts as failed, and its connection stops.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn connect(addr: SocketAddr, session: &str) -> Ws {
    let stream = TcpStream::connect(addr).await.expect("connecting");
    stream.set_nodelay(true).unwrap();
    // A small read buffer: 10,000 connections at the default 128 KiB would be 1.3 GB.
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(
        "ws://localhost/api/sync",
        stream,
        Some(config),
    )
    .await
    .expect("the WebSocket handshake");
    let connect = ClientMessage::Connect {
        session_id: session.to_owned(),
        connection_count: 0,
        last_close_reason: None,
        max_observed_timestamp: None,
    };
    send(&mut ws, connect.to_json()).await;
    ws
}

pub async fn send(ws: &mut Ws, message: Json) {
    ws.send(Message::text(message.to_string()))
        .await
        .expect("sending a frame");
}

/// The next text frame, parsed.
pub async fn next_json(ws: &mut Ws) -> Json {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(text.as_str()).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("the connection ended: {other:?}"),
        }
    }
}

/// Subscribes to one query (query id 1) and waits for its first result.
pub async fn subscribe(ws: &mut Ws, path: &str, args: Json) {
    subscribe_all(ws, &[(path, args)]).await
}

/// Subscribes to `queries` (query ids 1, 2, ...) in one `ModifyQuerySet` and waits for the
/// transition that brings their first results.
pub async fn subscribe_all(ws: &mut Ws, queries: &[(&str, Json)]) {
    let add = ClientMessage::ModifyQuerySet {
        base_version: 0,
        new_version: 1,
        modifications: queries
            .iter()
            .zip(1..)
            .map(|((path, args), query_id)| QuerySetModification::Add {
                query_id,
                udf_path: (*path).to_owned(),
                args: Args(Json::Array(vec![args.clone()])),
                journal: None,
            })
            .collect(),
    };
    send(ws, add.to_json()).await;
    loop {
        let frame = next_json(ws).await;
        if frame["type"] == "Transition" && frame["endVersion"]["querySet"] == 1 {
            return;
        }
    }
}

/// Sends a mutation and waits for its answer, skipping other frames: `Ok` with the
/// response, or `Err` with the error (a failed mutation, or no answer in time).
pub async fn mutate(ws: &mut Ws, request_id: u64, path: &str, args: Json) -> Result<Json, String> {
    let mutation = ClientMessage::Mutation {
        request_id,
        udf_path: path.to_owned(),
        args: Args(Json::Array(vec![args])),
    };
    send(ws, mutation.to_json()).await;
    let answer = async {
        loop {
            let frame = next_json(ws).await;
            if frame["type"] == "MutationResponse" && frame["requestId"] == request_id {
                return frame;
            }
        }
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
        Ok(frame) if frame["success"] == true => Ok(frame),
        Ok(frame) => Err(format!("{path} failed: {frame}")),
        Err(_) => Err(format!("{path}: no answer within {ANSWER_TIMEOUT:?}")),
    }
}

/// What a closed-loop run measured.
pub struct LoadResult {
    pub answered: usize,
    pub failures: usize,
    pub first_failure: Option<String>,
    pub took: Duration,
    pub latency: Latency,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.answered as f64 / self.took.as_secs_f64()
    }

    /// "N failed", and the first failure's message after a colon when there was one.
    pub fn failed(&self) -> String {
        match &self.first_failure {
            Some(e) => format!("{} failed: {e}", self.failures),
            None => format!("{} failed", self.failures),
        }
    }
}

/// What the calls of a closed loop are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Mutation,
    Action,
}

/// `clients` official Convex Rust clients (the crate `convex`), each running the mutation
/// `call(client, rng)` returns after the previous one resolved, for `duration`. Latency is
/// from the call to its resolution, which the client gives only once the write is visible to
/// it (a transition at or after the commit), as an app sees it.
pub async fn closed_loop<F>(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    call: F,
) -> LoadResult
where
    F: Fn(usize, &mut Rng) -> (&'static str, Json) + Send + Sync + 'static,
{
    closed_loop_of(Kind::Mutation, addr, clients, duration, call).await
}

/// [`closed_loop`] of mutations or of actions. An action resolves with its `ActionResponse`
/// (an action writes nothing of its own for the client to wait for).
pub async fn closed_loop_of<F>(
    kind: Kind,
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    call: F,
) -> LoadResult
where
    F: Fn(usize, &mut Rng) -> (&'static str, Json) + Send + Sync + 'static,
{
    closed_loop_over(kind, &[addr], clients, duration, call).await
}

/// [`closed_loop_of`] with the clients spread over several servers (nodes of one
/// deployment): client `i` connects to `addrs[i % addrs.len()]`.
pub async fn closed_loop_over<F>(
    kind: Kind,
    addrs: &[SocketAddr],
    clients: usize,
    duration: Duration,
    call: F,
) -> LoadResult
where
    F: Fn(usize, &mut Rng) -> (&'static str, Json) + Send + Sync + 'static,
{
    assert!(!addrs.is_empty(), "a closed loop needs a server");
    let call = Arc::new(call);
    let mut connected = Vec::new();
    for i in 0..clients {
        let addr = addrs[i % addrs.len()];
        let client = convex::ConvexClient::new(&format!("http://{addr}"))
            .await
            .expect("connecting a Convex client");
        connected.push(client);
    }
    let start = Instant::now();
    let tasks: Vec<_> = connected
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(i as u64 + 1);
                let (mut latencies, mut failures, mut first_failure) = (Vec::new(), 0, None);
                while start.elapsed() < duration {
                    let (path, args) = call(i, &mut rng);
                    let sent = Instant::now();
                    match call_official(&mut client, kind, path, args).await {
                        Ok(()) => latencies.push(sent.elapsed()),
                        Err(e) => {
                            failures += 1;
                            first_failure.get_or_insert(e);
                            break;
                        }
                    }
                }
                (latencies, failures, first_failure)
            })
        })
        .collect();
    let (mut latencies, mut failures, mut first_failure) = (Vec::new(), 0, None);
    for task in tasks {
        let (l, f, e) = task.await.unwrap();
        latencies.extend(l);
        failures += f;
        if first_failure.is_none() {
            first_failure = e;
        }
    }
    let took = start.elapsed();
    LoadResult {
        answered: latencies.len(),
        failures,
        first_failure,
        took,
        latency: Latency::of(latencies),
    }
}

/// One mutation or action through the official client, with arguments in the wire form; an
/// error names the function and why (no resolution within [`ANSWER_TIMEOUT`] included).
async fn call_official(
    client: &mut convex::ConvexClient,
    kind: Kind,
    path: &str,
    args: Json,
) -> Result<(), String> {
    let Json::Object(fields) = args else {
        return Err(format!("{path}: arguments must be an object"));
    };
    let args = fields
        .into_iter()
        .map(|(name, value)| {
            convex::Value::try_from(value)
                .map(|value| (name, value))
                .map_err(|e| format!("{path}: an argument is not a value: {e}"))
        })
        .collect::<Result<std::collections::BTreeMap<_, _>, _>>()?;
    let answer = async {
        match kind {
            Kind::Mutation => client.mutation(path, args).await,
            Kind::Action => client.action(path, args).await,
        }
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
        Ok(Ok(convex::FunctionResult::Value(_))) => Ok(()),
        Ok(Ok(other)) => Err(format!("{path} failed: {other:?}")),
        Ok(Err(e)) => Err(format!("{path}: the client failed: {e}")),
        Err(_) => Err(format!("{path}: no resolution within {ANSWER_TIMEOUT:?}")),
    }
}
