//! The dev loop: with `runtime dev` running and a client subscribed, an edit to the query's
//! source is rebuilt and deployed, and the subscribed client receives the new result on the
//! same connection; an edit that does not compile leaves the previous version serving.

use crate::{connect, copy_chat_example, receive, runtime_bin, send, Running};
use serde_json::{json, Value as Json};
use std::net::TcpStream;
use std::process::Command;
use tungstenite::WebSocket;

const BODIES_ONLY: &str = r#"use ferrovex_sdk::prelude::*;

#[mutation]
fn send_message(ctx: &mut MutationCtx, user: String, body: String) -> Result<()> {
    ctx.db.insert("messages", doc! { "user": user, "body": body })?;
    Ok(())
}

/// Edited: only the bodies.
#[query]
fn get_messages(ctx: &QueryCtx) -> Result<Vec<String>> {
    let mut messages = ctx.db.query("messages").order(Desc).take(50)?;
    messages.reverse();
    Ok(messages
        .iter()
        .filter_map(|m| match m.get("body") {
            Some(Value::String(body)) => Some(body.clone()),
            _ => None,
        })
        .collect())
}
"#;

#[test]
fn an_edit_reaches_a_subscribed_client_without_a_reconnect() {
    let app = tempfile::tempdir().unwrap();
    copy_chat_example(app.path());
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(runtime_bin());
    command
        .arg("dev")
        .arg(app.path())
        .args(["--port", "0", "--data"])
        .arg(data.path());
    let server = Running::start_reading_stderr(command);
    server.wait_for_stderr("for changes");

    let mut client = connect(server.addr, "dev-loop");
    send(
        &mut client,
        json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
        "modifications": [{"type": "Add", "queryId": 1, "udfPath": "chat:get_messages", "args": {}}]}),
    );
    send(
        &mut client,
        json!({"type": "Mutation", "requestId": 1, "udfPath": "chat:send_message",
        "args": {"user": "ada", "body": "hi"}}),
    );
    let first = next_result(&mut client);
    let first = if first == json!([]) {
        next_result(&mut client)
    } else {
        first
    };
    assert_eq!(first[0]["body"], "hi", "{first}");

    std::fs::write(app.path().join("src/chat.rs"), BODIES_ONLY).unwrap();
    server.wait_for_stderr("deployed version");
    // The same socket: `receive` would return None had it closed.
    assert_eq!(next_result(&mut client), json!(["hi"]));

    // An edit that does not compile: the compiler's error is shown, the edited version
    // keeps serving.
    std::fs::write(
        app.path().join("src/chat.rs"),
        BODIES_ONLY.replace("Ok(())", "Ok(42)"),
    )
    .unwrap();
    server.wait_for_stderr("error[E0308]");
    server.wait_for_stderr("still serving the previous version");
    send(
        &mut client,
        json!({"type": "Mutation", "requestId": 2, "udfPath": "chat:send_message",
        "args": {"user": "ada", "body": "still here"}}),
    );
    assert_eq!(next_result(&mut client), json!(["hi", "still here"]));
    server.stop();
}

/// The value of the next `QueryUpdated` for query 1 (skipping other frames).
fn next_result(client: &mut WebSocket<TcpStream>) -> Json {
    loop {
        let frame = receive(client).expect("the connection stays open");
        assert_ne!(frame["type"], "FatalError", "{frame}");
        if frame["type"] != "Transition" {
            continue;
        }
        for modification in frame["modifications"].as_array().unwrap() {
            if modification["queryId"] == 1 {
                assert_eq!(modification["type"], "QueryUpdated", "{modification}");
                return modification["value"].clone();
            }
        }
    }
}
