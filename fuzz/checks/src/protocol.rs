//! The `protocol` target: arbitrary client frames, and sequences of them on up to two
//! connections, into the sync session state machine of [`crate::server`] (what
//! `ferrovex_runtime::sync::session` does with each frame), interleaved with the server's steps
//! (reading, running and answering mutations, refresh rounds, transitions).
//!
//! Checks:
//! - the parser never panics, and refuses with a reason;
//! - a frame that is bad by construction (not JSON, not an object, an unknown type, anything
//!   before `Connect`, a second `Connect`, a `ModifyQuerySet` whose `baseVersion` is not the
//!   server's, an id added twice or removed without being there, an `Authenticate` whose
//!   `baseVersion` is not the identity version), and every frame the parser refuses, gets a
//!   `FatalError` with a reason, after which the session sends nothing more;
//! - a frame that is good by construction is never refused, whatever its arguments and path
//!   (bad ones are the call's failure); a user or admin token gets `AuthError`, which ends the
//!   connection, and an action gets an `ActionResponse`;
//! - every frame the server sends parses as a server message, and transitions chain (query
//!   set, identity and timestamp);
//! - bounded memory: when the connections close, the engine holds no connection and no
//!   subscription (nothing leaks from any sequence), and no session queues more mutations
//!   than it read.

use crate::gen;
use crate::server::{channels_wasm, Server};
use arbitrary::{Result, Unstructured};
use ferrovex_model::json::to_json;
use ferrovex_runtime::sync::protocol::{parse_client_message, parse_server_message, ServerMessage};
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

fn server() -> &'static Mutex<(Server, tempfile::TempDir)> {
    static SERVER: OnceLock<Mutex<(Server, tempfile::TempDir)>> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = crate::scratch_dir();
        let server = Server::start(&dir.path().join("data"), &channels_wasm());
        Mutex::new((server, dir))
    })
}

/// What the client side of one connection knows, to build frames and judge answers.
#[derive(Default)]
struct Conn {
    id: u64,
    connected: bool,
    /// The query-set version the server holds (after every accepted ModifyQuerySet).
    version: u64,
    queries: BTreeSet<u64>,
    /// A frame the server must refuse was sent.
    expect_fatal: bool,
    /// The server refused a frame: the connection is over.
    fatal_seen: bool,
    /// A token was sent: the server answers `AuthError` and closes.
    expect_close: bool,
    /// Accepted `Authenticate` messages: the identity version the server holds.
    identity: u64,
    /// The last `endVersion`: query set, identity, timestamp.
    last_end: (u64, u64, u64),
    /// A frame of unknown effect was accepted: the client no longer knows the server's
    /// query set, so only the parser's verdict is checked from then on.
    uncertain: bool,
}

/// One frame, and what the server must do with it.
enum Expect {
    Accept,
    Refuse,
    /// Answer, then close (a token it cannot verify).
    Close,
    /// Decided by the parser (arbitrary text): refused if the parser refuses it.
    Unknown,
}

pub fn protocol(data: &[u8]) {
    // The parser alone, on the whole input as text.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = parse_client_message(text) {
            assert!(!e.0.is_empty(), "a refusal without a reason");
        }
    }
    let mut guard = server().lock().unwrap_or_else(|e| e.into_inner());
    let server = &mut guard.0;
    let mut conns = [Conn::default(), Conn::default()];
    for conn in &mut conns {
        conn.id = server.accept();
    }
    let mut u = Unstructured::new(data);
    let _ = drive(&mut u, server, &mut conns);
    for conn in &conns {
        drain(server, conn.id);
    }
    for conn in &mut conns {
        check_outbox(server, conn);
        server.close(conn.id);
    }
    let state = server.engine.state.blocking_lock();
    assert!(state.connections.is_empty(), "a closed connection stays");
    assert!(
        state.subscriptions.is_empty(),
        "{} subscriptions leaked from closed connections",
        state.subscriptions.len()
    );
}

fn drive(u: &mut Unstructured, server: &mut Server, conns: &mut [Conn; 2]) -> Result<()> {
    for _ in 0..48 {
        if u.is_empty() {
            break;
        }
        let c = u.int_in_range(0..=1)?;
        match u.int_in_range(0..=9)? {
            0..=4 => {
                let conn = &mut conns[c];
                if conn.fatal_seen || conn.expect_fatal || conn.expect_close {
                    continue;
                }
                let (frame, mut expect) = frame(u, conn)?;
                if conn.uncertain {
                    expect = Expect::Unknown;
                }
                let session = server.sessions.get_mut(&conn.id).expect("open");
                let queued_before = session.queued_mutations();
                session.inbox.push_back(frame.clone());
                session.read_one();
                let refused = session.fatal.is_some();
                let closed = session.closed;
                match expect {
                    Expect::Close => assert!(closed && !refused, "a token did not close: {frame}"),
                    Expect::Accept => assert!(
                        !refused,
                        "a good frame was refused: {frame}: {:?}",
                        session.fatal
                    ),
                    Expect::Refuse => {
                        assert!(refused, "a bad frame was accepted: {frame}")
                    }
                    Expect::Unknown => {
                        if parse_client_message(&frame).is_err() {
                            assert!(refused, "a frame the parser refuses was accepted: {frame}");
                        }
                        conn.uncertain |= !refused;
                        conn.expect_close |= closed;
                    }
                }
                assert!(session.queued_mutations() <= queued_before + 1);
                if refused {
                    conn.fatal_seen = true;
                }
            }
            5 => {
                let session = server.sessions.get_mut(&conns[c].id).expect("open");
                if !session.answer() {
                    session.run_one();
                }
            }
            6 => server.refresh(),
            7 => {
                let session = server.sessions.get_mut(&conns[c].id).expect("open");
                session.send_transition();
            }
            _ => check_outbox(server, &mut conns[c]),
        }
    }
    Ok(())
}

/// Lets the session finish what it read: mutations run and answered, one refresh, the
/// transition it was woken for.
fn drain(server: &mut Server, id: u64) {
    for _ in 0..200 {
        let session = server.sessions.get_mut(&id).expect("open");
        while session.read_one() {}
        let busy = session.answer() | session.run_one();
        if !busy {
            break;
        }
    }
    server.refresh();
    let session = server.sessions.get_mut(&id).expect("open");
    session.send_transition();
}

/// Reads what the server sent on `conn` and checks each frame.
fn check_outbox(server: &mut Server, conn: &mut Conn) {
    let session = server.sessions.get_mut(&conn.id).expect("open");
    let frames: Vec<String> = session.outbox.drain(..).collect();
    let fatal_at = frames.iter().position(|f| f.contains("\"FatalError\""));
    if let Some(at) = fatal_at {
        assert_eq!(
            at,
            frames.len() - 1,
            "frames after a FatalError: {frames:?}"
        );
    }
    for frame in frames {
        let message = parse_server_message(&frame).unwrap_or_else(|e| {
            panic!("the server sent a frame that does not parse ({e}): {frame}")
        });
        match message {
            ServerMessage::FatalError { error } => {
                assert!(!error.is_empty(), "a FatalError without a reason");
            }
            ServerMessage::Transition { start, end, .. } => {
                let (start, end) = (
                    (start.query_set, start.identity, start.ts),
                    (end.query_set, end.identity, end.ts),
                );
                assert_eq!(start, conn.last_end, "transitions do not chain");
                assert!(
                    conn.uncertain || end.0 <= conn.version,
                    "a query-set version never sent"
                );
                assert!(
                    conn.uncertain || end.1 <= conn.identity,
                    "an identity version the client never reached"
                );
                conn.last_end = end;
            }
            ServerMessage::MutationResponse { outcome, .. } => {
                if let Err(error) = outcome {
                    assert!(!error.message.is_empty(), "a failure without a message");
                }
            }
            ServerMessage::ActionResponse { outcome, .. } => {
                // The guest has no actions: a mutation's path or an unknown one.
                let error = outcome.expect_err("the channels guest has no actions");
                assert!(
                    error.message.contains("not an action")
                        || error.message.contains("no such function"),
                    "{}",
                    error.message
                );
            }
            ServerMessage::AuthError { error, .. } => {
                assert!(!error.is_empty(), "an AuthError without a reason");
            }
            ServerMessage::Ping => {}
        }
    }
}

fn frame(u: &mut Unstructured, conn: &mut Conn) -> Result<(String, Expect)> {
    let kind = u.int_in_range(0..=11)?;
    if !conn.connected && kind != 0 && kind < 9 {
        // Anything but Connect first is refused.
        let (text, _) = message_frame(u, conn, kind)?;
        if parse_client_message(&text).is_ok() {
            conn.expect_fatal = true;
            return Ok((text, Expect::Refuse));
        }
        return Ok((text, Expect::Unknown));
    }
    Ok(match kind {
        0..=8 => message_frame(u, conn, kind)?,
        9 => {
            // Arbitrary text.
            let text: String = u.arbitrary()?;
            (text, Expect::Unknown)
        }
        10 => {
            let junk = *u.choose(&[
                "",
                "null",
                "[]",
                "{}",
                "{\"type\": 5}",
                "{\"type\": \"Subscribe\"}",
                "{\"type\": \"Connect\"}",
                "not json",
            ])?;
            conn.expect_fatal = true;
            (junk.to_owned(), Expect::Refuse)
        }
        _ => {
            // A well-formed message with one field dropped or retyped.
            let kind = u.int_in_range(0..=8)?;
            let (text, _) = message_frame(u, conn, kind)?;
            let mut value: Json = serde_json::from_str(&text).expect("built as JSON");
            if let Some(object) = value.as_object_mut() {
                let keys: Vec<String> = object.keys().cloned().collect();
                let key = u.choose(&keys)?.clone();
                if u.arbitrary()? {
                    object.remove(&key);
                } else {
                    object.insert(key, json!([u.arbitrary::<i64>()?]));
                }
            }
            (value.to_string(), Expect::Unknown)
        }
    })
}

/// A message of kind `kind`, with what the server must do with it given `conn`'s state.
fn message_frame(u: &mut Unstructured, conn: &mut Conn, kind: u32) -> Result<(String, Expect)> {
    Ok(match kind {
        0 => {
            let frame = json!({
                "type": "Connect",
                "sessionId": format!("fuzz-{}", u.int_in_range(0..=3)?),
                "connectionCount": u.int_in_range(0..=3)?,
            });
            if conn.connected {
                conn.expect_fatal = true;
                (frame.to_string(), Expect::Refuse)
            } else {
                conn.connected = true;
                (frame.to_string(), Expect::Accept)
            }
        }
        1..=3 => {
            // ModifyQuerySet: mostly right versions and ids, sometimes not.
            let wrong_base = u.ratio(1, 8)?;
            let base = if wrong_base {
                conn.version + u.int_in_range(1..=3)?
            } else {
                conn.version
            };
            let mut modifications = Vec::new();
            let mut queries = conn.queries.clone();
            let mut valid = !wrong_base;
            for _ in 0..u.int_in_range(0..=3)? {
                if u.ratio(2, 3)? {
                    let id = u.int_in_range(0..=7)?;
                    valid &= queries.insert(id);
                    let args = if u.ratio(3, 4)? {
                        json!([{"channel": gen::string(u)?}])
                    } else {
                        to_json(&gen::value(u, 3)?)
                    };
                    let path =
                        *u.choose(&["channels:list", "channels:send", "nope:nope", "", "a/-:b"])?;
                    modifications
                        .push(json!({"type": "Add", "queryId": id, "udfPath": path, "args": args}));
                } else {
                    let id = u.int_in_range(0..=7)?;
                    valid &= queries.remove(&id);
                    modifications.push(json!({"type": "Remove", "queryId": id}));
                }
            }
            let frame = json!({
                "type": "ModifyQuerySet",
                "baseVersion": base,
                "newVersion": base + 1,
                "modifications": modifications,
            });
            // Arguments and paths never decide: a bad one is that query's failure.
            if valid {
                conn.version += 1;
                conn.queries = queries;
                (frame.to_string(), Expect::Accept)
            } else {
                conn.expect_fatal = true;
                (frame.to_string(), Expect::Refuse)
            }
        }
        4..=6 => {
            let good = u.ratio(1, 2)?;
            let args = if good {
                json!([{"channel": gen::string(u)?, "body": gen::string(u)?}])
            } else {
                to_json(&gen::value(u, 3)?)
            };
            let path = if good {
                "channels:send"
            } else {
                *u.choose(&["channels:send", "channels:list", "x:y", "9:z"])?
            };
            let frame = json!({
                "type": "Mutation",
                "requestId": u.int_in_range(0..=5)?,
                "udfPath": path,
                "args": args,
            });
            // A function error is an answer, not a protocol error: never refused for its
            // arguments or its path.
            (frame.to_string(), Expect::Accept)
        }
        7 => {
            let frame = json!({
                "type": "Action",
                "requestId": u.int_in_range(0..=5)?,
                "udfPath": *u.choose(&["channels:send", "x:y"])?,
                "args": [{}],
            });
            (frame.to_string(), Expect::Accept)
        }
        _ => {
            let token = *u.choose(&["None", "Admin", "User"])?;
            let base = if u.ratio(1, 4)? {
                conn.identity + 1
            } else {
                conn.identity
            };
            let frame = json!({"type": "Authenticate", "baseVersion": base, "tokenType": token, "value": "t"});
            if base != conn.identity {
                // The version is checked before any token is looked at.
                conn.expect_fatal = true;
                (frame.to_string(), Expect::Refuse)
            } else if token != "None" {
                // No provider and a wrong admin key: refused, and the connection closes.
                conn.expect_close = true;
                (frame.to_string(), Expect::Close)
            } else {
                conn.identity += 1;
                (frame.to_string(), Expect::Accept)
            }
        }
    })
}
