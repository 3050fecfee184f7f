//! A flood of mutations from one connection that does not read its answers: every mutation
//! is answered, in order, and other connections are served meanwhile (the flooding
//! connection waits in its own TCP buffers, not in server memory or in others' way).

use crate::{add_messages_query, bodies, modify, send_message, TestServer};
use serde_json::json;

const FLOOD: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_connection_is_answered_in_order_and_others_go_on() {
    let server = TestServer::start("examples/chat").await;
    let mut flooder = server.client().await;
    // Written in one go, not read: the server has far more than it may queue
    // (MAX_QUEUED_MUTATIONS), and its answers fill the socket's buffers.
    for request_id in 1..=FLOOD {
        flooder
            .send(send_message(request_id, "flood", &format!("f{request_id}")))
            .await;
    }

    let mut bystander = server.client().await;
    bystander
        .send(modify(0, json!([add_messages_query(1)])))
        .await;
    bystander.until(|c| c.results.contains_key(&1)).await;
    bystander.send(send_message(1, "ada", "hello")).await;
    let response = bystander.next_of_type("MutationResponse").await;
    assert_eq!(response["success"], true, "{response}");
    bystander
        .until(|c| bodies(&c.results[&1]).contains(&"hello".to_owned()))
        .await;

    // Every flooded mutation is answered, once, in the order sent.
    for request_id in 1..=FLOOD {
        let response = flooder.next_of_type("MutationResponse").await;
        assert_eq!(response["requestId"], request_id, "{response}");
        assert_eq!(response["success"], true, "{response}");
    }
    let mut reader = server.client().await;
    reader.send(modify(0, json!([add_messages_query(1)]))).await;
    reader.until(|c| c.results.contains_key(&1)).await;
    let last = bodies(&reader.results[&1]);
    assert_eq!(last.len(), 50);
    assert!(last.contains(&format!("f{FLOOD}")), "{last:?}");
    server.shutdown().await;
}
