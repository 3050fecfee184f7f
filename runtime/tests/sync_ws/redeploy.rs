//! Deploying a new version while clients are connected: no connection closes, subscriptions
//! re-run on the new code, and a module that fails to deploy leaves the old one serving.

use crate::guests::guest_wasm;
use crate::{add_messages_query, bodies, modify, send_message, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_reruns_subscriptions_on_the_new_code_over_the_same_connection() {
    let server = TestServer::start("examples/chat").await;
    let mut client = server.client().await;
    client.send(modify(0, json!([add_messages_query(1)]))).await;
    client.send(send_message(1, "ada", "hello")).await;
    assert_eq!(
        client.next_of_type("MutationResponse").await["success"],
        true
    );
    client
        .until(|c| c.results.get(&1).is_some_and(|r| bodies(r) == ["hello"]))
        .await;
    let before = client.ts();

    // Version 2 of `chat:get_messages` returns only the bodies.
    let v2 = tokio::task::block_in_place(|| guest_wasm("runtime/tests/guests/chat_v2"));
    let deployed = server
        .deployer
        .deploy(v2)
        .await
        .expect("deploying version 2");
    assert_eq!(server.deployer.current().hash, deployed.hash);

    // The same socket (`next_frame` fails the test if it closed) gets the new result, in a
    // transition that chains on the last one (checked by `apply`).
    client.until(|c| c.results[&1] == json!(["hello"])).await;
    assert!(client.ts() >= before);

    // Mutations on the same connection run the new version, and the subscription follows.
    client.send(send_message(2, "bob", "again")).await;
    assert_eq!(
        client.next_of_type("MutationResponse").await["success"],
        true
    );
    client
        .until(|c| c.results[&1] == json!(["hello", "again"]))
        .await;

    // A client connecting now subscribes to the new version directly.
    let mut late = server.client().await;
    late.send(modify(0, json!([add_messages_query(5)]))).await;
    late.until(|c| c.results.contains_key(&5)).await;
    assert_eq!(late.results[&5], json!(["hello", "again"]));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_fails_to_deploy_leaves_the_old_version_serving() {
    let server = TestServer::start("examples/chat").await;
    let mut client = server.client().await;
    client.send(modify(0, json!([add_messages_query(1)]))).await;
    client.until(|c| c.results.contains_key(&1)).await;
    let serving = server.deployer.current().hash.clone();

    let Err(error) = server
        .deployer
        .deploy(b"\0asm but not really".to_vec())
        .await
    else {
        panic!("garbage deployed as a module");
    };
    assert!(!error.to_string().is_empty());
    assert_eq!(server.deployer.current().hash, serving);

    // The old code still answers, on the same connection.
    client.send(send_message(1, "ada", "still here")).await;
    assert_eq!(
        client.next_of_type("MutationResponse").await["success"],
        true
    );
    client
        .until(|c| bodies(&c.results[&1]) == ["still here"])
        .await;
    server.shutdown().await;
}
