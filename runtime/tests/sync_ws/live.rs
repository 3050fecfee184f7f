//! Subscriptions, live updates, mutations and read-your-writes over real sockets.

use crate::{add_messages_query, bodies, modify, send_message, TestServer};
use ferrovex_model::json::decode_u64;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_gets_its_initial_result_in_the_acknowledging_transition() {
    let server = TestServer::start("examples/chat").await;
    let mut client = server.client().await;
    client.send(modify(0, json!([add_messages_query(7)]))).await;
    let transition = client.next_of_type("Transition").await;
    // Guarantee 2: the first transition starts at {0, 0, 0} (checked in `apply`); 3: it
    // acknowledges query set 1 and carries the initial result.
    assert_eq!(transition["endVersion"]["querySet"], 1, "{transition}");
    assert_eq!(
        transition["modifications"],
        json!([{"type": "QueryUpdated", "queryId": 7, "value": [], "logLines": [], "journal": null}])
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_from_one_connection_reaches_a_subscriber_on_another() {
    reaches_a_subscriber_on_another(TestServer::start("examples/chat").await).await;
}

/// The same over a store in PostgreSQL: invalidation and results do not depend on the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_from_one_connection_reaches_a_subscriber_on_another_on_postgres() {
    reaches_a_subscriber_on_another(TestServer::start_on_postgres("examples/chat").await).await;
}

async fn reaches_a_subscriber_on_another(server: TestServer) {
    let mut reader = server.client().await;
    reader.send(modify(0, json!([add_messages_query(1)]))).await;
    reader.until(|c| c.results.contains_key(&1)).await;

    let mut writer = server.client().await;
    writer.send(send_message(1, "ada", "hello")).await;
    let response = writer.next_of_type("MutationResponse").await;
    assert_eq!(response["success"], true, "{response}");
    assert_eq!(response["requestId"], 1);
    let commit_ts: u64 = decode_u64(response["ts"].as_str().unwrap()).unwrap();

    reader.until(|c| bodies(&c.results[&1]) == ["hello"]).await;
    assert!(
        reader.ts() >= commit_ts,
        "the result was computed at or after the commit"
    );
    assert_eq!(reader.version["querySet"], 1);

    // A second commit arrives as a new transition that chains on the first.
    writer.send(send_message(2, "bob", "hi ada")).await;
    assert_eq!(
        writer.next_of_type("MutationResponse").await["success"],
        true
    );
    reader
        .until(|c| bodies(&c.results[&1]) == ["hello", "hi ada"])
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_is_followed_by_a_transition_at_or_after_its_commit() {
    let server = TestServer::start("examples/chat").await;
    let mut client = server.client().await;
    client.send(modify(0, json!([add_messages_query(1)]))).await;
    client.until(|c| c.results.contains_key(&1)).await;

    for (request_id, body) in [(1, "first"), (2, "second")] {
        client.send(send_message(request_id, "ada", body)).await;
        let response = client.next_of_type("MutationResponse").await;
        assert_eq!(response["success"], true, "{response}");
        assert_eq!(
            response["logLines"],
            json!(["[LOG] This Rust function is running on the server."])
        );
        let commit_ts: u64 = decode_u64(response["ts"].as_str().unwrap()).unwrap();
        // Guarantee 5: without another commit, a transition at or after the commit follows.
        let transition = client.next_of_type("Transition").await;
        let end_ts: u64 = decode_u64(transition["endVersion"]["ts"].as_str().unwrap()).unwrap();
        assert!(end_ts >= commit_ts, "{transition} after commit {commit_ts}");
        assert_eq!(bodies(&client.results[&1]).last().unwrap(), body);
    }

    // A connection with no queries still gets its (empty) transition after a mutation.
    let mut bare = server.client().await;
    bare.send(send_message(1, "bob", "no subscriptions here"))
        .await;
    let response = bare.next_of_type("MutationResponse").await;
    let commit_ts: u64 = decode_u64(response["ts"].as_str().unwrap()).unwrap();
    let transition = bare.next_of_type("Transition").await;
    assert_eq!(transition["modifications"], json!([]));
    assert!(bare.ts() >= commit_ts);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_set_changes_are_acknowledged_and_versions_chain() {
    let server = TestServer::start("examples/chat").await;
    let mut client = server.client().await;
    client.send(modify(0, json!([add_messages_query(1)]))).await;
    client.until(|c| c.version["querySet"] == 1).await;

    // Version 2: the same query under a second id (shared with the first), and the first
    // removed.
    client
        .send(modify(
            1,
            json!([add_messages_query(2), {"type": "Remove", "queryId": 1}]),
        ))
        .await;
    let transition = client.next_of_type("Transition").await;
    assert_eq!(transition["endVersion"]["querySet"], 2, "{transition}");
    assert_eq!(
        transition["modifications"],
        json!([
            {"type": "QueryRemoved", "queryId": 1},
            {"type": "QueryUpdated", "queryId": 2, "value": [], "logLines": [], "journal": null},
        ])
    );

    // Version 3: an unknown function fails as a query, and the connection stays open.
    client
        .send(modify(
            2,
            json!([{"type": "Add", "queryId": 3, "udfPath": "chat:nope", "args": [{}]}]),
        ))
        .await;
    client.until(|c| c.version["querySet"] == 3).await;
    let error = client.results[&3]["error"].as_str().unwrap().to_owned();
    assert!(error.contains("chat:nope"), "{error}");

    // Version 4: removing everything.
    client
        .send(modify(
            3,
            json!([{"type": "Remove", "queryId": 2}, {"type": "Remove", "queryId": 3}]),
        ))
        .await;
    client.until(|c| c.version["querySet"] == 4).await;
    assert!(client.results.is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_mutation_is_answered_and_the_connection_stays_open() {
    let server = TestServer::start("examples/chat").await;
    let mut client = server.client().await;
    client
        .send(json!({"type": "Mutation", "requestId": 1, "udfPath": "chat:send_message", "args": [{"user": "ada"}]}))
        .await;
    let response = client.next_of_type("MutationResponse").await;
    assert_eq!(response["success"], false, "{response}");
    let message = response["result"].as_str().unwrap();
    assert!(message.contains("chat:send_message"), "{message}");
    assert!(message.contains("body"), "{message}");

    client
        .send(send_message(2, "ada", "after the failure"))
        .await;
    let response = client.next_of_type("MutationResponse").await;
    assert_eq!(response["success"], true, "{response}");
    assert_eq!(response["requestId"], 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_of_one_connection_run_in_the_order_sent() {
    let server = TestServer::start("examples/chat").await;
    let mut client = server.client().await;
    // Sent back to back, without waiting for answers.
    for request_id in 1..=10u64 {
        client
            .send(send_message(
                request_id,
                "ada",
                &format!("message {request_id}"),
            ))
            .await;
    }
    let mut last_ts = 0;
    for request_id in 1..=10u64 {
        let response = client.next_of_type("MutationResponse").await;
        assert_eq!(response["requestId"], request_id, "answered in order");
        let ts: u64 = decode_u64(response["ts"].as_str().unwrap()).unwrap();
        assert!(ts > last_ts, "committed in order");
        last_ts = ts;
    }
    client.send(modify(0, json!([add_messages_query(1)]))).await;
    client.until(|c| c.results.contains_key(&1)).await;
    let expected: Vec<String> = (1..=10).map(|i| format!("message {i}")).collect();
    assert_eq!(bodies(&client.results[&1]), expected);
    server.shutdown().await;
}
