//! The WebSocket sync endpoint (docs/PROTOCOL.md section 3) over real sockets, against the chat
//! example.
//!
//! Each test starts its own server on port 0 over a fresh store. Tests wait for the frames
//! they expect, never for time; [`FRAME_TIMEOUT`] only turns a hang into a failure.

mod auth;
mod bad_frames;
mod convex;
mod exactly_once;
mod flood;
#[path = "../common/guests.rs"]
mod guests;
#[path = "../common/issuer.rs"]
mod issuer;
mod jobs;
mod live;
mod pagination;
#[allow(dead_code)]
#[path = "../common/pg_cluster.rs"]
mod pg_cluster;
mod redeploy;
mod slow_client;
mod snapshots;
#[path = "../common/test_server.rs"]
mod test_server;

use ferrovex_model::json::decode_u64;
use ferrovex_runtime::auth::AuthSettings;
use ferrovex_runtime::server::Deployer;
use ferrovex_runtime::sync::protocol::parse_server_message;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tempfile::TempDir;
use test_server::{serve_with_auth, Serving};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Generous: a frame that has not come by then is never coming.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server over a fresh store.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Deploys new versions into the running server.
    pub deployer: Deployer,
    /// The data folder's admin key.
    pub admin_key: String,
    serving: Serving,
    example: String,
    settings: AuthSettings,
    dir: TempDir,
    /// The PostgreSQL database the store is in, if not the data folder.
    store: Option<String>,
}

impl TestServer {
    pub async fn start(example: &str) -> TestServer {
        Self::start_with_auth(example, AuthSettings::default()).await
    }

    /// Serves `example` with the environment its auth config reads.
    pub async fn start_with_auth(example: &str, settings: AuthSettings) -> TestServer {
        Self::start_in(
            example,
            settings,
            tempfile::tempdir().expect("temp dir"),
            0,
            None,
        )
        .await
    }

    /// Serves `example` over a store in a new database of the shared PostgreSQL cluster.
    pub async fn start_on_postgres(example: &str) -> TestServer {
        let url = tokio::task::block_in_place(|| pg_cluster::Cluster::shared().database());
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(example, AuthSettings::default(), dir, 0, Some(url)).await
    }

    /// Stops the server gracefully and starts a new one on the same port over the same data,
    /// as an operator's restart does.
    pub async fn restart(self) -> TestServer {
        let TestServer {
            addr,
            deployer,
            serving,
            example,
            settings,
            dir,
            store,
            ..
        } = self;
        drop(deployer);
        serving.shutdown_and_close().await;
        Self::start_in(&example, settings, dir, addr.port(), store).await
    }

    async fn start_in(
        example: &str,
        settings: AuthSettings,
        dir: TempDir,
        port: u16,
        store: Option<String>,
    ) -> TestServer {
        let wasm = tokio::task::block_in_place(|| guests::guest_wasm(example));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let data = dir.path().join("data");
        let serving = match &store {
            None => serve_with_auth(&data, &wasm, addr, None, settings.clone()).await,
            Some(url) => {
                let opened = tokio::task::block_in_place(|| {
                    ferrovex_runtime::store::Store::open_postgres(url)
                })
                .expect("opening the store in PostgreSQL");
                let loopback = ferrovex_runtime::fetch::OutboundPolicy {
                    allow_private: true,
                };
                test_server::serve_over(
                    opened,
                    &data,
                    &wasm,
                    addr,
                    None,
                    settings.clone(),
                    loopback,
                )
                .await
            }
        };
        TestServer {
            addr: serving.addr,
            deployer: serving.deployer.clone(),
            admin_key: serving.admin_key.clone(),
            serving,
            example: example.to_owned(),
            settings,
            dir,
            store,
        }
    }

    /// A WebSocket client on `/api/sync` that has sent `Connect` (each with a session of
    /// its own).
    pub async fn client(&self) -> Client {
        static SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.client_of_session(&format!("session-{n}"), 0).await
    }

    /// A client that has sent `Connect` with `session_id`, as the `connection_count`th
    /// reconnect.
    pub async fn client_of_session(&self, session_id: &str, connection_count: u64) -> Client {
        let mut client = self.raw_client().await;
        client
            .send(json!({"type": "Connect", "sessionId": session_id, "connectionCount": connection_count}))
            .await;
        client
    }

    /// A WebSocket client on `/api/sync` that has sent nothing yet.
    pub async fn raw_client(&self) -> Client {
        let stream = TcpStream::connect(self.addr).await.expect("connecting");
        let (ws, response) = tokio_tungstenite::client_async("ws://localhost/api/sync", stream)
            .await
            .expect("the WebSocket handshake");
        assert_eq!(response.status(), 101);
        Client {
            ws,
            version: json!({"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="}),
            results: BTreeMap::new(),
            journals: BTreeMap::new(),
        }
    }

    /// Shuts down (with WebSocket sessions still open) and waits until the server is done.
    pub async fn shutdown(self) {
        self.serving.shutdown().await;
    }
}

/// A client that applies every transition it reads, as a real client does, and checks the
/// guarantees a client can check on its own: versions chain, timestamps never go back, and
/// no transition repeats a result the client holds.
pub struct Client {
    ws: WebSocketStream<TcpStream>,
    /// The last `endVersion` applied.
    pub version: Json,
    /// Each query's value (or `{"error": message}` for a failed one), by query id.
    pub results: BTreeMap<u64, Json>,
    /// Each query's last journal (pagination), by query id.
    pub journals: BTreeMap<u64, Json>,
}

impl Client {
    pub async fn send(&mut self, message: Json) {
        self.send_text(message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("sending a frame");
    }

    /// The next frame other than `Ping`, with transitions applied.
    pub async fn next_frame(&mut self) -> Json {
        loop {
            let frame = self.next_raw().await;
            match frame["type"].as_str() {
                Some("Ping") => continue,
                Some("Transition") => self.apply(&frame),
                _ => {}
            }
            return frame;
        }
    }

    fn apply(&mut self, transition: &Json) {
        assert_eq!(
            transition["startVersion"], self.version,
            "guarantee 2: a transition starts where the previous one ended: {transition}"
        );
        let ts = |v: &Json| decode_u64(v["ts"].as_str().unwrap()).unwrap();
        assert!(ts(&transition["endVersion"]) >= ts(&self.version));
        for modification in transition["modifications"].as_array().unwrap() {
            let id = modification["queryId"].as_u64().unwrap();
            let new = match modification["type"].as_str().unwrap() {
                "QueryUpdated" => modification["value"].clone(),
                "QueryFailed" => json!({"error": modification["errorMessage"]}),
                "QueryRemoved" => {
                    assert!(
                        self.results.remove(&id).is_some(),
                        "removed an unknown query {id}"
                    );
                    continue;
                }
                other => panic!("unknown modification {other}"),
            };
            self.journals.insert(
                id,
                modification.get("journal").cloned().unwrap_or(Json::Null),
            );
            let old = self.results.insert(id, new.clone());
            assert_ne!(
                old,
                Some(new),
                "guarantee 4: a transition never repeats a result the client holds: {transition}"
            );
        }
        self.version = transition["endVersion"].clone();
    }

    /// Reads frames until one of type `kind` (applying transitions on the way), and returns
    /// it. A `FatalError` on the way fails the test.
    pub async fn next_of_type(&mut self, kind: &str) -> Json {
        loop {
            let frame = self.next_frame().await;
            if frame["type"] == kind {
                return frame;
            }
            assert_ne!(frame["type"], "FatalError", "{frame}");
        }
    }

    /// Applies transitions until `done` holds.
    pub async fn until(&mut self, done: impl Fn(&Client) -> bool) {
        while !done(self) {
            let frame = self.next_frame().await;
            assert_eq!(frame["type"], "Transition", "{frame}");
        }
    }

    pub fn ts(&self) -> u64 {
        decode_u64(self.version["ts"].as_str().unwrap()).unwrap()
    }

    /// The next frame as it came, `Ping` included.
    pub async fn next_raw(&mut self) -> Json {
        loop {
            let message = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .expect("a frame within the timeout")
                .expect("the socket is open")
                .expect("reading a frame");
            if let Message::Text(text) = message {
                // Every frame reads back through the protocol's one definition of the messages.
                if let Err(e) = parse_server_message(text.as_str()) {
                    panic!("a frame that does not parse as a server message ({e}): {text}");
                }
                return serde_json::from_str(text.as_str()).expect("a JSON frame");
            }
        }
    }

    /// Reads until the server closes the socket: the close frame's code and reason, if it
    /// sent one. Data frames on the way are skipped.
    pub async fn closed(&mut self) -> Option<(CloseCode, String)> {
        loop {
            let next = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .expect("the server closes within the timeout");
            match next {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|f| (f.code, f.reason.as_str().to_owned()))
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return None,
            }
        }
    }

    /// Expects a `FatalError` (returned) and then the end of the connection.
    pub async fn expect_fatal(&mut self) -> String {
        let frame = self.next_of_type("FatalError").await;
        let next = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
            .await
            .expect("the server closes after FatalError");
        if let Some(Ok(other)) = next.filter(|n| !matches!(n, Ok(Message::Close(_)))) {
            panic!("a frame after FatalError: {other:?}");
        }
        frame["error"]
            .as_str()
            .expect("error is a string")
            .to_owned()
    }
}

/// `ModifyQuerySet` from `base` to `base + 1`.
pub fn modify(base: u64, modifications: Json) -> Json {
    json!({"type": "ModifyQuerySet", "baseVersion": base, "newVersion": base + 1, "modifications": modifications})
}

pub fn add_messages_query(query_id: u64) -> Json {
    json!({"type": "Add", "queryId": query_id, "udfPath": "chat:get_messages", "args": [{}]})
}

pub fn send_message(request_id: u64, user: &str, body: &str) -> Json {
    json!({"type": "Mutation", "requestId": request_id, "udfPath": "chat:send_message", "args": [{"user": user, "body": body}]})
}

/// The bodies of the messages a `chat:get_messages` result lists.
pub fn bodies(value: &Json) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array of messages, got {value}"))
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect()
}
