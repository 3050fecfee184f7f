//! Guarantee 8: a frame that breaks the protocol gets `FatalError` naming the cause and a
//! close, and every other connection goes on as before.

use crate::{add_messages_query, bodies, modify, send_message, TestServer};
use ferrovex_runtime::sync::session::MAX_CLIENT_FRAME_BYTES;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_frame_gets_fatal_error_and_other_connections_are_unaffected() {
    let server = TestServer::start("examples/chat").await;
    let mut bystander = server.client().await;
    bystander
        .send(modify(0, json!([add_messages_query(1)])))
        .await;
    bystander.until(|c| c.results.contains_key(&1)).await;

    let oversized = format!(
        r#"{{"type": "Mutation", "requestId": 1, "udfPath": "chat:send_message", "args": {{"user": "ada", "body": "{}"}}}}"#,
        "x".repeat(MAX_CLIENT_FRAME_BYTES)
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed JSON", "{not json".into(), "not valid JSON"),
        (
            "unknown type",
            r#"{"type": "Subscribe"}"#.into(),
            "unknown message type \"Subscribe\"",
        ),
        (
            "wrong baseVersion",
            modify(3, json!([add_messages_query(1)])).to_string(),
            "baseVersion must equal the query-set version the server holds (0), got 3",
        ),
        (
            "wrong newVersion",
            json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 5, "modifications": []}).to_string(),
            "newVersion must be baseVersion + 1 (1), got 5",
        ),
        (
            "removing an unknown query",
            modify(0, json!([{"type": "Remove", "queryId": 9}])).to_string(),
            "Remove of queryId 9, which is not in the query set",
        ),
        (
            "oversized frame",
            oversized,
            "exceeds the limit MAX_CLIENT_FRAME_BYTES",
        ),
        (
            "an Authenticate at another identity version",
            json!({"type": "Authenticate", "baseVersion": 3, "tokenType": "None"}).to_string(),
            "Authenticate: baseVersion must equal the identity version the server holds (0), got 3",
        ),
        (
            "a second Connect",
            json!({"type": "Connect", "sessionId": "again", "connectionCount": 0}).to_string(),
            "Connect: sent twice",
        ),
    ];
    for (case, frame, expected) in cases {
        let mut client = server.client().await;
        client.send_text(frame).await;
        let error = client.expect_fatal().await;
        assert!(error.contains(expected), "{case}: {error}");

        // The bystander still gets live updates.
        let body = format!("after {case}");
        let mut writer = server.client().await;
        writer.send(send_message(1, "ada", &body)).await;
        assert_eq!(
            writer.next_of_type("MutationResponse").await["success"],
            true
        );
        bystander
            .until(|c| bodies(&c.results[&1]).last() == Some(&body))
            .await;
    }

    // A timestamp that is not 8 bytes of base64, in the first frame.
    for (ts, expected) in [
        ("AAAA", "decodes to 3 bytes, not the 8"),
        ("12345", "is not standard padded base64"),
    ] {
        let mut client = server.raw_client().await;
        client
            .send(json!({"type": "Connect", "sessionId": "s", "connectionCount": 0, "maxObservedTimestamp": ts}))
            .await;
        let error = client.expect_fatal().await;
        assert!(
            error.contains("maxObservedTimestamp") && error.contains(expected),
            "{ts}: {error}"
        );
    }

    // A message before Connect.
    let mut client = server.raw_client().await;
    client.send(send_message(1, "ada", "too early")).await;
    let error = client.expect_fatal().await;
    assert!(
        error.contains("the first message on a connection must be Connect"),
        "{error}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_the_upgrade_gets_426() {
    let server = TestServer::start("examples/chat").await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /api/sync HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(
        answer.contains("/api/sync is a WebSocket endpoint"),
        "{answer}"
    );
    server.shutdown().await;
}
