//! The Rust client over real sockets: against a real in-process server running the chat
//! example, through a TCP proxy the tests can cut, and against a fake server that sends
//! what a real one never would.
//!
//! Tests wait for events, never for time; [`TIMEOUT`] only turns a hang into a failure.

mod fake;
#[path = "../../../../runtime/tests/common/guests.rs"]
mod guests;
mod live;
mod proxy;
mod reconnect;
#[path = "../../../../runtime/tests/common/test_server.rs"]
mod test_server;

use ferrovex_client::{Client, Subscription, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tempfile::TempDir;
use test_server::{serve, Serving};

/// Generous: what has not happened by then is never going to.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// `future`'s output, or a failure naming `what` if it hangs.
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A client that reconnects quickly, so tests that cut connections stay short.
pub async fn client(url: &str) -> Client {
    Client::builder(url)
        .reconnect_initial_delay(Duration::from_millis(10))
        .reconnect_max_delay(Duration::from_millis(200))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// A running server over a store in a folder that outlives it (for restarts).
pub struct TestServer {
    pub addr: SocketAddr,
    dir: TempDir,
    serving: Serving,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        TestServer::start_in(dir, "127.0.0.1:0".parse().unwrap()).await
    }

    /// A server over the store in `dir` (made by an earlier one, or new), bound to `addr`.
    pub async fn start_in(dir: TempDir, addr: SocketAddr) -> TestServer {
        // guests.rs finds paths from the parent of this crate's folder (`clients/`).
        let wasm = tokio::task::block_in_place(|| guests::guest_wasm("../examples/chat"));
        let serving = serve(&dir.path().join("data"), &wasm, addr, None).await;
        TestServer {
            addr: serving.addr,
            dir,
            serving,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/api/sync", self.addr)
    }

    /// Shuts the server down (WebSocket sessions still open) and waits until it is done and
    /// its store is closed; returns the data folder and address, for a restart.
    pub async fn shutdown(self) -> (TempDir, SocketAddr) {
        within("the server to shut down", self.serving.shutdown_and_close()).await;
        (self.dir, self.addr)
    }
}

/// The bodies of the messages in a `chat:get_messages` result.
pub fn bodies(value: &Value) -> Vec<String> {
    let Value::Array(messages) = value else {
        panic!("expected an array of messages, got {value:?}");
    };
    messages
        .iter()
        .map(|m| {
            m.as_object()
                .and_then(|m| m.get("body"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("a message without a body: {m:?}"))
                .to_owned()
        })
        .collect()
}

/// Reads the subscription until its result satisfies `done`; returns that result.
pub async fn until(
    subscription: &mut Subscription,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    use futures_util::StreamExt;
    if let Some(Ok(value)) = subscription.current() {
        if done(&value) {
            return value;
        }
    }
    within(what, async {
        loop {
            match subscription.next().await {
                Some(Ok(value)) if done(&value) => return value,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("{what}: the query failed: {e}"),
                None => panic!("{what}: the subscription ended"),
            }
        }
    })
    .await
}

/// The message bodies a subscription to `chat:get_messages` holds now.
pub fn current_bodies(subscription: &Subscription) -> Vec<String> {
    match subscription.current() {
        Some(Ok(value)) => bodies(&value),
        other => panic!("expected a result, got {other:?}"),
    }
}
