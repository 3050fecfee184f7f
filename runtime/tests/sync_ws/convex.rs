//! What Convex's protocol adds to the guarantees: bad arguments and paths are the call's
//! failure (never the connection's), identity versions, refused tokens, actions and events,
//! long transitions in chunks for the npm client, keep-alive pings, and how a shutdown
//! closes (a code clients reconnect after, never `FatalError`).

use crate::{add_messages_query, bodies, modify, send_message, TestServer};
use futures_util::StreamExt;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_paths_fail_the_call_and_the_connection_goes_on() {
    let server = TestServer::start("examples/chat").await;
    let mut client = server.client().await;
    let cases = [
        // (args, path, what the error says)
        (
            json!([{"user": "ada", "body": {"$integer": "AQI="}}]),
            "chat:send_message",
            "decodes to 2 bytes, not the 8",
        ),
        (
            json!([{"user": "ada", "body": {"$float": "AAAAAAAA8D8="}}]),
            "chat:send_message",
            "must be sent as a plain JSON number",
        ),
        (
            json!([{"user": "ada", "b\u{e9}dy": "x"}]),
            "chat:send_message",
            "printable ASCII only",
        ),
        (
            json!([{"user": "ada", "$body": "x"}]),
            "chat:send_message",
            "starts with '$'",
        ),
        (
            json!([{}, {}]),
            "chat:send_message",
            "an array of 2 elements",
        ),
        (
            json!([{"user": "ada", "body": "x"}]),
            "chat:send-message",
            "function name \"send-message\"",
        ),
        (
            json!([{"user": "ada", "body": "x"}]),
            "9chat/:x",
            "module path component",
        ),
    ];
    for (request_id, (args, path, expected)) in cases.iter().enumerate() {
        client
            .send(
                json!({"type": "Mutation", "requestId": request_id, "udfPath": path, "args": args}),
            )
            .await;
        let response = client.next_of_type("MutationResponse").await;
        assert_eq!(response["success"], false, "{response}");
        assert_eq!(response["ts"], serde_json::Value::Null, "{response}");
        let message = response["result"].as_str().unwrap();
        assert!(message.contains(expected), "{path} {args}: {message}");
        assert!(
            message.starts_with(path.split(':').next().unwrap()),
            "names the function: {message}"
        );
    }
    // The same as queries: each fails alone, the good one beside them runs.
    client
        .send(modify(
            0,
            json!([
                {"type": "Add", "queryId": 1, "udfPath": "chat:get_messages", "args": [{"$x": 1}]},
                {"type": "Add", "queryId": 2, "udfPath": "chat:", "args": [{}]},
                add_messages_query(3),
            ]),
        ))
        .await;
    client.until(|c| c.results.len() == 3).await;
    assert!(client.results[&1]["error"]
        .as_str()
        .unwrap()
        .contains("starts with '$'"));
    assert!(client.results[&2]["error"]
        .as_str()
        .unwrap()
        .contains("function name \"\""));
    assert_eq!(client.results[&3], json!([]));
    // A path the server canonicalises: `chat.js:send_message` is `chat:send_message`.
    client
        .send(json!({"type": "Mutation", "requestId": 99, "udfPath": "chat.js:send_message", "args": [{"user": "ada", "body": "ok"}]}))
        .await;
    assert_eq!(
        client.next_of_type("MutationResponse").await["success"],
        true
    );
    client.until(|c| bodies(&c.results[&3]) == ["ok"]).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_versions_tokens_actions_and_events() {
    let server = TestServer::start("examples/chat").await;
    let mut client = server.client().await;
    client.send(modify(0, json!([add_messages_query(1)]))).await;
    client.until(|c| c.results.contains_key(&1)).await;
    // Telemetry is accepted and changes nothing.
    client
        .send(json!({"type": "Event", "eventType": "ClientConnect", "event": {}}))
        .await;
    // An accepted Authenticate raises identity by one in the next transition.
    client
        .send(json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "None"}))
        .await;
    let transition = client.next_of_type("Transition").await;
    assert_eq!(transition["endVersion"]["identity"], 1, "{transition}");
    assert_eq!(transition["startVersion"]["identity"], 0, "{transition}");
    // An action of the wrong kind is answered, never left pending.
    client
        .send(
            json!({"type": "Action", "requestId": 7, "udfPath": "chat:send_message", "args": [{}]}),
        )
        .await;
    let answer = client.next_of_type("ActionResponse").await;
    assert_eq!(answer["requestId"], 7);
    assert_eq!(answer["success"], false);
    assert!(answer["result"]
        .as_str()
        .unwrap()
        .contains("chat:send_message: is a mutation, not an action"));
    // A user token this deployment cannot verify (not even a JWT): AuthError at the identity
    // version of the last transition, then the socket closes so the client can come back
    // with a fresh one.
    client
        .send(json!({"type": "Authenticate", "baseVersion": 1, "tokenType": "User", "value": "a.b.c"}))
        .await;
    let error = client.next_of_type("AuthError").await;
    assert_eq!(error["baseVersion"], 1, "{error}");
    assert_eq!(error["authUpdateAttempted"], true, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("the token is not a valid JWT"),
        "{error}"
    );
    assert!(
        client.closed().await.is_some(),
        "the socket closes after AuthError"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_transitions_come_in_chunks_only_to_npm_clients() {
    let server = TestServer::start("examples/chat").await;
    let mut writer = server.client().await;
    // 50 messages of 110 KB: one result over 5,000,000 bytes.
    let body = "x".repeat(110_000);
    for i in 0..50 {
        writer.send(send_message(i, "ada", &body)).await;
        assert_eq!(
            writer.next_of_type("MutationResponse").await["success"],
            true
        );
    }
    let subscribe = |ws_path: &'static str| {
        let addr = server.addr;
        async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut ws, _) =
                tokio_tungstenite::client_async(format!("ws://localhost{ws_path}"), stream)
                    .await
                    .unwrap();
            use futures_util::SinkExt;
            for frame in [
                json!({"type": "Connect", "sessionId": ws_path, "connectionCount": 0}),
                modify(0, json!([add_messages_query(1)])),
            ] {
                ws.send(Message::text(frame.to_string())).await.unwrap();
            }
            let mut frames = Vec::new();
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let frame: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                let kind = frame["type"].as_str().unwrap().to_owned();
                frames.push(frame);
                if kind == "Transition" {
                    break;
                }
                if kind == "TransitionChunk" {
                    let last = frames.last().unwrap();
                    if last["partNumber"].as_u64().unwrap() + 1
                        == last["totalParts"].as_u64().unwrap()
                    {
                        break;
                    }
                }
            }
            frames
        }
    };
    let npm = subscribe("/api/1.48.0/sync").await;
    assert!(npm.len() >= 2, "{} frames", npm.len());
    let mut joined = String::new();
    for (i, part) in npm.iter().enumerate() {
        assert_eq!(part["type"], "TransitionChunk");
        assert_eq!(part["partNumber"], i);
        assert_eq!(part["totalParts"], npm.len());
        assert_eq!(part["transitionId"], npm[0]["transitionId"]);
        joined.push_str(part["chunk"].as_str().unwrap());
    }
    let transition: serde_json::Value = serde_json::from_str(&joined).unwrap();
    assert_eq!(transition["type"], "Transition");
    assert_eq!(bodies(&transition["modifications"][0]["value"]).len(), 50);
    // The Rust and Python clients' path: the whole transition in one frame.
    let rust = subscribe("/api/sync").await;
    assert_eq!(rust.len(), 1);
    assert_eq!(rust[0]["type"], "Transition");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_gets_pings_and_a_shutdown_closes_with_a_code_to_come_back_after() {
    let server = TestServer::start("examples/chat").await;
    let mut client = server.client().await;
    // Nothing is sent to it: the only frame that can come is a Ping (within the frame
    // timeout; the server sends one every 15 s).
    let ping = client.next_raw().await;
    assert_eq!(ping["type"], "Ping", "{ping}");
    server.shutdown().await;
    let close = client.closed().await.expect("a close frame");
    assert_eq!(
        close.0,
        CloseCode::Again,
        "1013: transient, clients reconnect"
    );
    assert_eq!(close.1, "ServerShuttingDown");
}
