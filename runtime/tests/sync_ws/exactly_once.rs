//! Guarantee 6: a mutation is identified by (sessionId, requestId); re-sending it after a
//! reconnect returns the original outcome and does not apply it twice.

use crate::{add_messages_query, bodies, modify, send_message, TestServer};
use ferrovex_model::json::decode_u64;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_resent_after_a_reconnect_is_applied_once() {
    let server = TestServer::start("examples/chat").await;
    let mut first = server.client_of_session("session-a", 0).await;
    first.send(send_message(1, "ada", "exactly once")).await;
    let original = first.next_of_type("MutationResponse").await;
    assert_eq!(original["success"], true, "{original}");
    drop(first);

    // The client reconnects and re-sends what it did not see acknowledged.
    let mut second = server.client_of_session("session-a", 1).await;
    second.send(send_message(1, "ada", "exactly once")).await;
    let resent = second.next_of_type("MutationResponse").await;
    assert_eq!(resent, original, "the original outcome, commit ts included");
    // Read your writes still holds for the re-sent request.
    let transition = second.next_of_type("Transition").await;
    assert!(
        second.ts() >= decode_u64(original["ts"].as_str().unwrap()).unwrap(),
        "{transition}"
    );

    // The same request id from another session is another mutation.
    let mut other = server.client_of_session("session-b", 0).await;
    other.send(send_message(1, "bob", "another session")).await;
    let response = other.next_of_type("MutationResponse").await;
    assert_ne!(response["ts"], original["ts"]);

    second.send(modify(0, json!([add_messages_query(1)]))).await;
    second.until(|c| c.results.contains_key(&1)).await;
    assert_eq!(
        bodies(&second.results[&1]),
        ["exactly once", "another session"]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_resent_after_a_server_restart_is_applied_once() {
    resent_after_a_restart(TestServer::start("examples/chat").await).await;
}

/// The same with the store, and the outcomes' receipts, in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_resent_after_a_server_restart_is_applied_once_on_postgres() {
    resent_after_a_restart(TestServer::start_on_postgres("examples/chat").await).await;
}

async fn resent_after_a_restart(server: TestServer) {
    let mut first = server.client_of_session("session-r", 0).await;
    first
        .send(send_message(1, "ada", "before the restart"))
        .await;
    let original = first.next_of_type("MutationResponse").await;
    assert_eq!(original["success"], true, "{original}");
    drop(first);

    // The answer was lost with the connection; the server restarts (its memory is gone);
    // the client reconnects and re-sends.
    let server = server.restart().await;
    let mut second = server.client_of_session("session-r", 1).await;
    second
        .send(send_message(1, "ada", "before the restart"))
        .await;
    let resent = second.next_of_type("MutationResponse").await;
    assert_eq!(
        resent, original,
        "the outcome recorded by the commit, commit ts and log lines included"
    );
    second.next_of_type("Transition").await;

    // A new request of the same session runs.
    second
        .send(send_message(2, "ada", "after the restart"))
        .await;
    assert_eq!(
        second.next_of_type("MutationResponse").await["success"],
        true
    );
    second.send(modify(0, json!([add_messages_query(1)]))).await;
    second.until(|c| c.results.contains_key(&1)).await;
    assert_eq!(
        bodies(&second.results[&1]),
        ["before the restart", "after the restart"]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_mutation_resent_gets_the_same_failure() {
    let server = TestServer::start("examples/chat").await;
    let bad =
        json!({"type": "Mutation", "requestId": 4, "udfPath": "chat:send_message", "args": [{}]});
    let mut first = server.client_of_session("session-f", 0).await;
    first.send(bad.clone()).await;
    let original = first.next_of_type("MutationResponse").await;
    assert_eq!(original["success"], false, "{original}");
    drop(first);
    let mut second = server.client_of_session("session-f", 1).await;
    second.send(bad).await;
    assert_eq!(second.next_of_type("MutationResponse").await, original);
    server.shutdown().await;
}
