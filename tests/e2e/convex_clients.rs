//! The official Convex clients, unchanged, against a server running in this process: npm
//! `convex` (`ConvexClient`, `ConvexHttpClient`) in Node, the Python package `convex`, and
//! the Rust crate `convex` in this test binary (docs/PROTOCOL.md, version 2, is Convex's own
//! protocol, so these must work as they do against Convex).
//!
//! The Node and Python clients run as child processes: `tests/js/*.mjs` and
//! `tests/python/*.py`, given the server's URL. They write `@@ WORD [json]` lines on stdout
//! and read plain `WORD` lines on stdin, so that a test can stop and restart the server at
//! the point a script has reached; each ends with `@@ RESULT {json}` describing what its
//! client saw, which the test checks here. A failure shows the script's stderr. Nothing
//! waits for time: [`DEADLINE`] only turns a hang into a failure.
//!
//! `scripts/setup` installs the clients (`npm ci` in tests/js, `pip install -r
//! tests/python/requirements.txt`).

use crate::guests;
use crate::issuer::{chat_auth_settings, Issuer, TestKey, OIDC_APPLICATION_ID};
use crate::test_server::{serve_with_auth, Serving};
use ferrovex_runtime::auth::AuthSettings;
use futures_util::StreamExt;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::mpsc;

/// Generous: it only turns a hang into a failure, no test waits for it to pass.
const DEADLINE: Duration = Duration::from_secs(120);

const CHAT: &str = "examples/chat";
const TASKS: &str = "examples/tasks";
const SEND_MESSAGE: &str = "chat:send_message";
const GET_MESSAGES: &str = "chat:get_messages";
const NO_SUCH_QUERY: &str = "chat:no_such_query";

/// A server over a store in a temp folder, which can be stopped and started again on the
/// same port and data, as a restarted process would be.
struct TestServer {
    addr: SocketAddr,
    wasm: Vec<u8>,
    settings: AuthSettings,
    dir: TempDir,
    running: Option<Serving>,
}

impl TestServer {
    async fn start(guest_dir: &str) -> TestServer {
        Self::start_with_auth(guest_dir, AuthSettings::default()).await
    }

    /// Serves `guest_dir` with the environment its auth config reads.
    async fn start_with_auth(guest_dir: &str, settings: AuthSettings) -> TestServer {
        let wasm = tokio::task::block_in_place(|| guests::guest_wasm(guest_dir));
        let mut server = TestServer {
            addr: "127.0.0.1:0".parse().unwrap(),
            wasm,
            settings,
            dir: tempfile::tempdir().expect("temp dir"),
            running: None,
        };
        server.launch().await;
        server
    }

    /// The deployment URL the clients are given.
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn launch(&mut self) {
        let serving = serve_with_auth(
            &self.dir.path().join("data"),
            &self.wasm,
            self.addr,
            None,
            self.settings.clone(),
        )
        .await;
        self.addr = serving.addr;
        self.running = Some(serving);
    }

    /// Shuts down gracefully and waits until the store is closed.
    async fn stop(&mut self) {
        let running = self.running.take().expect("the server is running");
        running.shutdown_and_close().await;
    }

    /// Starts again on the same port over the same data.
    async fn start_again(&mut self) {
        assert!(self.running.is_none(), "the server is still running");
        self.launch().await;
    }
}

/// A client script in a child process, killed when dropped whatever happened.
struct Script {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    /// The `@@` lines of its stdout, as they come; closed when its stdout is.
    lines: mpsc::UnboundedReceiver<String>,
    /// Its stderr (the client's own logs too), for failure messages.
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Script {
    /// `node tests/js/NAME URL`.
    fn node(name: &str, url: &str) -> Script {
        let js = guests::repo_root().join("tests/js");
        assert!(
            js.join("node_modules/convex/package.json").exists(),
            "{} has no node_modules/convex: run scripts/setup (npm ci in tests/js)",
            js.display()
        );
        Script::spawn(name, Command::new("node").arg(js.join(name)).arg(url))
    }

    /// `python3 tests/python/NAME URL`.
    fn python(name: &str, url: &str) -> Script {
        let path = guests::repo_root().join("tests/python").join(name);
        Script::spawn(name, Command::new("python3").arg(path).arg(url))
    }

    fn spawn(name: &str, command: &mut Command) -> Script {
        let mut child = command
            .current_dir(guests::repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::unbounded_channel();
        let stderr_text = Arc::new(Mutex::new(String::new()));
        // Lines without the marker (there should be none) are kept with stderr, to be shown.
        let other_output = stderr_text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match line.strip_prefix("@@ ") {
                    Some(protocol) => {
                        if sender.send(protocol.to_owned()).is_err() {
                            break;
                        }
                    }
                    None => {
                        let mut text = other_output.lock().unwrap_or_else(|e| e.into_inner());
                        text.push_str("[stdout] ");
                        text.push_str(&line);
                        text.push('\n');
                    }
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr_sink = stderr_text.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut text = stderr_sink.lock().unwrap_or_else(|e| e.into_inner());
                text.push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Script {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: stderr_text,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Ends the process and fails the test with `why` and everything it wrote on stderr.
    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        panic!(
            "{}: {why} (exit: {status:?})\n--- its stderr ---\n{stderr}--- end of its stderr ---",
            self.name
        );
    }

    /// Waits for the line `@@ WORD [json]` and returns its JSON, `Null` when it has none.
    async fn expect(&mut self, word: &str) -> Json {
        let line = match tokio::time::timeout(DEADLINE, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => self.fail(&format!("exited before saying {word}")),
            Err(_) => self.fail(&format!("did not say {word} within {DEADLINE:?}")),
        };
        let (said, payload) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        if said != word {
            self.fail(&format!("said {line:?} where {word} was expected"));
        }
        if payload.is_empty() {
            return Json::Null;
        }
        match serde_json::from_str(payload) {
            Ok(json) => json,
            Err(e) => self.fail(&format!("said {word} with JSON that does not parse ({e})")),
        }
    }

    /// Writes `word` on a line of the script's stdin.
    fn tell(&mut self, word: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        if let Err(e) = writeln!(stdin, "{word}").and_then(|()| stdin.flush()) {
            self.fail(&format!("could not be told {word}: {e}"));
        }
    }

    /// Waits for the script's result and for it to exit with status 0.
    async fn result(mut self) -> Json {
        let result = self.expect("RESULT").await;
        self.stdin = None;
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return result,
                Ok(Some(status)) => self.fail(&format!("exited with {status} after its result")),
                Ok(None) if start.elapsed() > DEADLINE => {
                    self.fail(&format!("still running {DEADLINE:?} after its result"))
                }
                Ok(None) => {}
                Err(e) => self.fail(&format!("could not be waited for: {e}")),
            }
            // The polling period, not a wait for anything to happen.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[CONVEX M(path)] {server's message}\n  Called by client`, as the npm client words a
/// failed WebSocket call: the server's message, which must be there on its own.
fn npm_server_message<'a>(message: &'a str, kind: char, path: &str) -> &'a str {
    let prefix = format!("[CONVEX {kind}({path})] ");
    message
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix("\n  Called by client"))
        .unwrap_or_else(|| panic!("not the npm client's wording of a failed call: {message:?}"))
}

/// Checks that a failed call's message comes from the server and names the function.
fn assert_names_function(message: &str, path: &str, what: &str) {
    assert!(
        message.contains(path),
        "{what}: the server's message does not name {path}: {message:?}"
    );
    assert_ne!(message, "undefined", "{what}: the server sent no message");
}

fn strings(values: &[&str]) -> Json {
    json!(values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_convex_client_subscribes_mutates_and_reads_its_writes() {
    let server = TestServer::start(CHAT).await;
    let result = Script::node("convex_client.mjs", &server.url())
        .result()
        .await;

    assert_eq!(result["initial"], json!([]), "a new store has no messages");
    for write in result["writes"].as_array().expect("writes") {
        assert_eq!(
            write["result"],
            Json::Null,
            "chat:send_message returns null"
        );
        assert_eq!(
            write["shownWhenResolved"], true,
            "the mutation {} resolved before the subscription showed it",
            write["body"]
        );
    }
    assert_eq!(
        result["oneShot"],
        strings(&["first", "second", "third"]),
        "a one-shot query from another client, oldest first"
    );

    let bad = &result["badArguments"];
    assert_eq!(bad["ok"], false, "a wrong argument type must fail: {bad}");
    assert_eq!(bad["isConvexError"], false, "{bad}");
    let message = npm_server_message(bad["message"].as_str().unwrap(), 'M', SEND_MESSAGE);
    assert_names_function(message, SEND_MESSAGE, "bad arguments over the WebSocket");

    let unknown = &result["unknownQuery"];
    assert_eq!(
        unknown["ok"], false,
        "a missing function must fail: {unknown}"
    );
    let message = npm_server_message(unknown["message"].as_str().unwrap(), 'Q', NO_SUCH_QUERY);
    assert_names_function(message, NO_SUCH_QUERY, "a missing query over the WebSocket");

    assert_eq!(result["afterFailure"], Json::Null);
    assert_eq!(
        result["shownAfterFailure"], true,
        "after failed calls the connection still reads its writes"
    );
    assert_eq!(
        result["latest"],
        strings(&["first", "second", "third", "after failure", "over http"]),
        "every message exactly once, oldest first, the failed one absent"
    );
    for shape in result["shapes"].as_array().unwrap() {
        assert_eq!(
            shape["keys"],
            json!(["_creationTime", "_id", "body", "user"])
        );
        assert_eq!(shape["id"], "string");
        assert_eq!(shape["creationTime"], "number");
    }
    let times: Vec<f64> = result["creationTimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().expect("a float64 _creationTime"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "_creationTime strictly increases: {times:?}"
    );
    assert_eq!(result["subscriptionErrors"], json!([]));
    let connection = &result["connection"];
    assert_eq!(
        connection["connectionCount"], 1,
        "failed calls must not cost the client its connection: {connection}"
    );
    assert_eq!(connection["isWebSocketConnected"], true, "{connection}");
    assert_eq!(connection["inflightMutations"], 0, "{connection}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_convex_client_resends_mutations_across_a_restart_and_each_applies_once() {
    let mut server = TestServer::start(CHAT).await;
    let mut script = Script::node("convex_client_reconnect.mjs", &server.url());
    script.expect("READY").await;
    server.stop().await;
    script.tell("STOPPED");
    script.expect("QUEUED").await;
    server.start_again().await;
    script.tell("RESTARTED");
    let result = script.result().await;

    assert_eq!(
        result["inFlightPendingWhileStopped"], true,
        "the mutation whose answer was dropped resolved anyway: {result}"
    );
    assert_eq!(result["droppedAnswers"], 1, "{result}");
    assert_eq!(
        result["inFlightSettledOn"], 2,
        "the in-flight mutation resolves on the second connection: {result}"
    );
    assert_eq!(
        result["queuedSettledOn"], 2,
        "the queued mutation resolves on the second connection: {result}"
    );
    assert_eq!(result["inFlightResult"], Json::Null);
    assert_eq!(result["queuedResult"], Json::Null);

    let expected = strings(&["before", "in flight", "while down"]);
    assert_eq!(
        result["stored"], expected,
        "the server holds each message exactly once: {result}"
    );
    assert_eq!(
        result["latest"], expected,
        "the subscription shows each message exactly once once both resolved: {result}"
    );

    // The client re-sent the in-flight mutation under its session and request id.
    let sessions = result["sessionIds"].as_array().unwrap();
    assert!(sessions.len() >= 2, "no second Connect: {result}");
    assert!(
        sessions.iter().all(|s| *s == sessions[0]),
        "the npm client keeps its session across reconnects: {result}"
    );
    let frames = result["mutationFrames"].as_array().unwrap();
    let in_flight: Vec<&Json> = frames.iter().filter(|f| f["body"] == "in flight").collect();
    assert!(
        in_flight.len() >= 2
            && in_flight
                .iter()
                .all(|f| f["requestId"] == in_flight[0]["requestId"]),
        "the in-flight mutation was not re-sent with its request id: {result}"
    );
    assert_ne!(
        in_flight[0]["socket"],
        in_flight.last().unwrap()["socket"],
        "re-sent on a new socket: {result}"
    );
    assert_eq!(result["connection"]["inflightMutations"], 0, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_http_client_queries_mutates_and_throws_function_errors() {
    let server = TestServer::start(CHAT).await;
    let result = Script::node("http_client.mjs", &server.url())
        .result()
        .await;

    assert_eq!(result["before"], json!([]));
    assert_eq!(result["sent"], Json::Null, "chat:send_message returns null");
    let after = result["after"].as_array().expect("a query result");
    assert_eq!(after.len(), 1, "{result}");
    assert_eq!(after[0]["user"], "grace");
    assert_eq!(after[0]["body"], "by http");
    assert!(after[0]["_id"].is_string(), "{result}");
    // Node prints an integral float64 without a fraction, so any number will do here.
    assert!(after[0]["_creationTime"].is_number(), "{result}");

    // The server answers a function error with status 200 and an error body; the client
    // throws a plain Error whose message is exactly the server's.
    let raw = &result["raw"];
    assert_eq!(
        raw["status"], 200,
        "a function error is not an HTTP error: {raw}"
    );
    assert_eq!(raw["body"]["status"], "error", "{raw}");
    let server_message = raw["body"]["errorMessage"].as_str().expect("errorMessage");
    assert_names_function(server_message, SEND_MESSAGE, "bad arguments over HTTP");

    let bad = &result["badArguments"];
    assert_eq!(bad["ok"], false, "a wrong argument type must fail: {bad}");
    assert_eq!(bad["name"], "Error", "{bad}");
    assert_eq!(bad["isConvexError"], false, "{bad}");
    assert_eq!(
        bad["message"], server_message,
        "the thrown message is the server's errorMessage, not a raw response body"
    );

    let unknown = &result["unknownQuery"];
    assert_eq!(
        unknown["ok"], false,
        "a missing function must fail: {unknown}"
    );
    assert_eq!(unknown["name"], "Error", "{unknown}");
    assert_names_function(
        unknown["message"].as_str().unwrap(),
        NO_SUCH_QUERY,
        "a missing query over HTTP",
    );
    assert!(
        !unknown["message"].as_str().unwrap().starts_with('{'),
        "a missing function is a function error (status 200), not a raw 4xx body: {unknown}"
    );

    assert_eq!(
        result["afterFailures"],
        strings(&["by http"]),
        "the failed mutation wrote nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_clients_receive_convex_error_data() {
    let server = TestServer::start(TASKS).await;
    let result = Script::node("error_data.mjs", &server.url()).result().await;
    for via in ["overWebSocket", "overHttp"] {
        let failed = &result[via];
        assert_eq!(
            failed["ok"], false,
            "{via}: an empty title must fail: {failed}"
        );
        assert_eq!(failed["isConvexError"], true, "{via}: {failed}");
        assert_eq!(failed["data"], json!({"field": "title"}), "{via}: {failed}");
        assert!(
            failed["message"]
                .as_str()
                .unwrap()
                .contains("a task needs a title"),
            "{via}: {failed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_queries_mutates_subscribes_and_raises_errors() {
    let server = TestServer::start(CHAT).await;
    let result = Script::python("convex_client.py", &server.url())
        .result()
        .await;

    assert_eq!(result["initial"], json!([]), "a new store has no messages");
    assert_eq!(result["sent"], Json::Null, "chat:send_message returns None");
    assert_eq!(result["seen"], strings(&["from python"]));
    for shape in result["shapes"].as_array().unwrap() {
        assert_eq!(
            shape["keys"],
            json!(["_creationTime", "_id", "body", "user"])
        );
        assert_eq!(shape["id"], "str");
        assert_eq!(shape["creationTime"], "float");
    }
    assert_eq!(result["oneShot"], strings(&["from python"]));

    let bad = &result["badArguments"];
    assert_eq!(bad["ok"], false, "a wrong argument type must fail: {bad}");
    assert_names_function(
        bad["message"].as_str().unwrap(),
        SEND_MESSAGE,
        "bad arguments from Python",
    );
    let unknown = &result["unknownQuery"];
    assert_eq!(
        unknown["ok"], false,
        "a missing function must fail: {unknown}"
    );
    assert_names_function(
        unknown["message"].as_str().unwrap(),
        NO_SUCH_QUERY,
        "a missing query from Python",
    );

    assert_eq!(result["afterFailures"]["ok"], true, "{result}");
    assert_eq!(
        result["final"],
        strings(&["from python", "after failures"]),
        "the failed mutation wrote nothing"
    );
}

/// Waits for the next value of an official-client subscription.
async fn next_result(subscription: &mut convex::QuerySubscription) -> convex::FunctionResult {
    tokio::time::timeout(DEADLINE, subscription.next())
        .await
        .unwrap_or_else(|_| panic!("no subscription result within {DEADLINE:?}"))
        .expect("the subscription ended")
}

/// The bodies of a successful `chat:get_messages` result, checking each message's shape.
fn message_bodies(result: &convex::FunctionResult) -> Vec<String> {
    let convex::FunctionResult::Value(convex::Value::Array(messages)) = result else {
        panic!("not a list of messages: {result:?}");
    };
    messages
        .iter()
        .map(|message| {
            let convex::Value::Object(fields) = message else {
                panic!("not a message: {message:?}");
            };
            let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                ["_creationTime", "_id", "body", "user"],
                "{message:?}"
            );
            assert!(matches!(fields["_id"], convex::Value::String(_)));
            assert!(matches!(fields["_creationTime"], convex::Value::Float64(_)));
            match &fields["body"] {
                convex::Value::String(body) => body.clone(),
                other => panic!("a body that is not a string: {other:?}"),
            }
        })
        .collect()
}

fn message_args(user: impl Into<convex::Value>, body: &str) -> BTreeMap<String, convex::Value> {
    BTreeMap::from([
        ("user".to_owned(), user.into()),
        ("body".to_owned(), body.into()),
    ])
}

/// Awaits a call of the official Rust client within [`DEADLINE`].
async fn call<E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<convex::FunctionResult, E>>,
) -> convex::FunctionResult {
    tokio::time::timeout(DEADLINE, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("{what}: the client failed: {e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_queries_mutates_subscribes_and_reports_errors() {
    let server = TestServer::start(CHAT).await;
    // Every connection state the client goes through: a reconnect (say, after a frame it
    // could not parse or a version that does not chain) would show here.
    let (states_sender, mut states) = mpsc::channel(64);
    let mut client = convex::ConvexClientBuilder::new(&server.url())
        .with_on_state_change(states_sender)
        .build()
        .await
        .expect("creating the client");

    let mut subscription =
        tokio::time::timeout(DEADLINE, client.subscribe(GET_MESSAGES, BTreeMap::new()))
            .await
            .expect("subscribing in time")
            .expect("subscribing");
    let initial = next_result(&mut subscription).await;
    assert_eq!(message_bodies(&initial), Vec::<String>::new());

    let sent = call(
        "the mutation",
        client.mutation(SEND_MESSAGE, message_args("ferris", "from rust")),
    )
    .await;
    assert_eq!(sent, convex::FunctionResult::Value(convex::Value::Null));
    // The subscription yields a value per transition; one of them shows the message.
    tokio::time::timeout(DEADLINE, async {
        while message_bodies(&next_result(&mut subscription).await) != ["from rust"] {}
    })
    .await
    .expect("the subscription never showed the mutation's message");

    let queried = call(
        "a one-shot query",
        client.query(GET_MESSAGES, BTreeMap::new()),
    )
    .await;
    assert_eq!(message_bodies(&queried), ["from rust"]);

    let bad = call(
        "the mutation with a wrong argument type",
        client.mutation(SEND_MESSAGE, message_args(42.0, "wrong type")),
    )
    .await;
    let convex::FunctionResult::ErrorMessage(message) = &bad else {
        panic!("a wrong argument type must fail with a message: {bad:?}");
    };
    assert_names_function(message, SEND_MESSAGE, "bad arguments from Rust");

    let unknown = call(
        "a query of a missing function",
        client.query(NO_SUCH_QUERY, BTreeMap::new()),
    )
    .await;
    let convex::FunctionResult::ErrorMessage(message) = &unknown else {
        panic!("a missing function must fail with a message: {unknown:?}");
    };
    assert_names_function(message, NO_SUCH_QUERY, "a missing query from Rust");

    let after = call(
        "the mutation after the failures",
        client.mutation(SEND_MESSAGE, message_args("ferris", "after failures")),
    )
    .await;
    assert_eq!(after, convex::FunctionResult::Value(convex::Value::Null));
    let final_messages = call(
        "the last query",
        client.query(GET_MESSAGES, BTreeMap::new()),
    )
    .await;
    assert_eq!(
        message_bodies(&final_messages),
        ["from rust", "after failures"],
        "the failed mutation wrote nothing"
    );

    let mut seen = Vec::new();
    while let Ok(state) = states.try_recv() {
        seen.push(format!("{state:?}"));
    }
    assert_eq!(
        seen,
        ["Connecting", "Connected"],
        "one connection throughout: failed calls must not make the client reconnect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_signs_in_and_out_with_set_auth() {
    let key = TestKey::ec("rust-1");
    let issuer = Issuer::start(&[&key]).await;
    let settings = chat_auth_settings(&issuer);
    let server = TestServer::start_with_auth("examples/chat-auth", settings).await;
    let mut client = convex::ConvexClient::new(&server.url())
        .await
        .expect("creating the client");
    let mut whoami =
        tokio::time::timeout(DEADLINE, client.subscribe("users:whoami", BTreeMap::new()))
            .await
            .expect("subscribing in time")
            .expect("subscribing");
    assert_eq!(
        next_result(&mut whoami).await,
        convex::FunctionResult::Value(convex::Value::Null)
    );

    let mut claims = issuer.claims("ferris", OIDC_APPLICATION_ID);
    claims["name"] = json!("Ferris");
    client.set_auth(Some(key.sign(&claims))).await;
    let expected = convex::Value::String(format!("{}|ferris", issuer.url));
    tokio::time::timeout(DEADLINE, async {
        loop {
            if let convex::FunctionResult::Value(convex::Value::Object(identity)) =
                next_result(&mut whoami).await
            {
                assert_eq!(identity["tokenIdentifier"], expected);
                return;
            }
        }
    })
    .await
    .expect("the subscription never showed the identity");
    let sent = call(
        "chat:send signed in",
        client.mutation(
            "chat:send",
            BTreeMap::from([("body".to_owned(), "hi".into())]),
        ),
    )
    .await;
    assert_eq!(sent, convex::FunctionResult::Value(convex::Value::Null));
    let listed = call("chat:list", client.query("chat:list", BTreeMap::new())).await;
    let convex::FunctionResult::Value(convex::Value::Array(messages)) = listed else {
        panic!("{listed:?}")
    };
    let convex::Value::Object(message) = &messages[0] else {
        panic!("{messages:?}")
    };
    assert_eq!(message["author"], expected);
    assert_eq!(message["name"], convex::Value::String("Ferris".into()));

    client.set_auth(None).await;
    tokio::time::timeout(DEADLINE, async {
        while next_result(&mut whoami).await != convex::FunctionResult::Value(convex::Value::Null) {
        }
    })
    .await
    .expect("signed out, the query re-runs for nobody");
}
