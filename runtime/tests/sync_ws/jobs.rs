//! Scheduled work and actions over the WebSocket, against the `jobs` guest: a job's state is a
//! document a subscribed query follows live, and `Action` frames get their `ActionResponse`.

use crate::{modify, TestServer};
use serde_json::json;

const GUEST: &str = "runtime/tests/guests/jobs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribed_query_follows_a_jobs_state_live() {
    let server = TestServer::start(GUEST).await;
    let mut client = server.client().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0;
    // Due in a while, so the subscription sees it pending first.
    client
        .send(
            json!({"type": "Mutation", "requestId": 1, "udfPath": "jobs:schedule_at",
            "args": [{"tag": "live", "at": now + 1500.0, "action": false}]}),
        )
        .await;
    let response = client.next_of_type("MutationResponse").await;
    assert_eq!(response["success"], true, "{response}");
    let id = response["result"].clone();
    client
        .send(modify(
            0,
            json!([{"type": "Add", "queryId": 1, "udfPath": "jobs:job", "args": [{"id": id}]}]),
        ))
        .await;
    client.until(|c| c.results.contains_key(&1)).await;
    assert_eq!(client.results[&1], json!({"kind": "pending"}));
    // The scheduler's commit reaches the subscriber like any other.
    client
        .until(|c| c.results[&1] == json!({"kind": "success"}))
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_frames_are_answered_with_their_outcome() {
    let server = TestServer::start(GUEST).await;
    let mut client = server.client().await;
    let action = |request_id: u64, path: &str, args: serde_json::Value| json!({"type": "Action", "requestId": request_id, "udfPath": path, "args": [args]});
    client
        .send(action(
            1,
            "outside:write_and_read",
            json!({"tag": "over ws"}),
        ))
        .await;
    let response = client.next_of_type("ActionResponse").await;
    assert_eq!(response["requestId"], 1);
    assert_eq!(response["success"], true, "{response}");
    assert_eq!(response["result"], json!(["over ws"]));
    client.send(action(2, "outside:panics", json!({}))).await;
    let response = client.next_of_type("ActionResponse").await;
    assert_eq!(response["success"], false, "{response}");
    let message = response["result"].as_str().unwrap();
    assert!(
        message.contains("an action panicked on purpose"),
        "{message}"
    );
    client.send(action(3, "jobs:runs", json!({}))).await;
    let response = client.next_of_type("ActionResponse").await;
    assert_eq!(response["success"], false, "{response}");
    assert!(
        response["result"]
            .as_str()
            .unwrap()
            .contains("is a query, not an action"),
        "{response}"
    );
    // The connection goes on: mutations still run.
    client
        .send(
            json!({"type": "Mutation", "requestId": 4, "udfPath": "jobs:schedule_at",
            "args": [{"tag": "after", "at": 0.0, "action": false}]}),
        )
        .await;
    assert_eq!(
        client.next_of_type("MutationResponse").await["success"],
        true
    );
    server.shutdown().await;
}
