//! Subscriptions, mutations and one-shot queries against a real server.

use crate::{bodies, client, current_bodies, until, within, TestServer};
use ferrovex_client::{from_value, obj, Error, Value};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_gets_live_updates_from_another_clients_mutation() {
    let server = TestServer::start().await;
    // Both URL forms name the same endpoint.
    let reader = client(&server.url()).await;
    let writer = client(&format!("http://{}", server.addr)).await;
    assert_ne!(reader.session_id(), writer.session_id());

    let mut messages = reader.subscribe("chat:get_messages", ()).unwrap();
    let first = within("the first result", messages.next()).await.unwrap();
    assert_eq!(first, Ok(Value::Array(vec![])));

    let result = writer
        .mutation(
            "chat:send_message",
            obj! { "user" => "ada", "body" => "hello" },
        )
        .await;
    assert_eq!(result, Ok(Value::Null));
    let seen = within("the update", messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bodies(&seen), ["hello"]);

    writer
        .mutation(
            "chat:send_message",
            obj! { "user" => "bob", "body" => "hi ada" },
        )
        .await
        .unwrap();
    until(&mut messages, "the second update", |v| {
        bodies(v) == ["hello", "hi ada"]
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_returns_only_once_its_write_shows_in_the_clients_subscriptions() {
    let server = TestServer::start().await;
    let client = client(&server.url()).await;
    let messages = client.subscribe("chat:get_messages", ()).unwrap();
    // A second query over the same table, subscribed before any result came.
    let again = client.subscribe("chat:get_messages", ()).unwrap();
    for i in 0..20 {
        let body = format!("message {i}");
        client
            .mutation(
                "chat:send_message",
                obj! { "user" => "ada", "body" => body.as_str() },
            )
            .await
            .unwrap();
        // No waiting: the answer came after the transition that shows the write.
        assert_eq!(current_bodies(&messages).last(), Some(&body));
        assert_eq!(current_bodies(&again).len(), i + 1);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serde_arguments_and_results() {
    #[derive(Serialize)]
    struct SendMessage<'a> {
        user: &'a str,
        body: &'a str,
    }
    #[derive(Deserialize, Debug, PartialEq)]
    struct Message {
        user: String,
        body: String,
        #[serde(rename = "_creationTime")]
        creation_time: f64,
    }
    let server = TestServer::start().await;
    let client = client(&server.url()).await;
    client
        .mutation(
            "chat:send_message",
            &SendMessage {
                user: "ada",
                body: "typed",
            },
        )
        .await
        .unwrap();
    client
        .mutation(
            "chat:send_message",
            &serde_json::json!({"user": "bob", "body": "from json"}),
        )
        .await
        .unwrap();
    let value = client.query("chat:get_messages", ()).await.unwrap();
    let messages: Vec<Message> = from_value(value).unwrap();
    assert_eq!(
        messages
            .iter()
            .map(|m| (m.user.as_str(), m.body.as_str()))
            .collect::<Vec<_>>(),
        [("ada", "typed"), ("bob", "from json")]
    );
    assert!(messages[0].creation_time < messages[1].creation_time);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_errors_are_reported_and_the_connection_stays_open() {
    let server = TestServer::start().await;
    let client = client(&server.url()).await;

    let Err(Error::Function(error)) = client.mutation("chat:send_message", ()).await else {
        panic!("a mutation without its arguments must fail");
    };
    assert!(error.message.contains("chat:send_message"), "{error}");

    let mut missing = client.subscribe("chat:nope", ()).unwrap();
    let failed = within("the query's failure", missing.next()).await.unwrap();
    let error = failed.expect_err("an unknown query fails");
    assert!(error.message.contains("chat:nope"), "{error}");
    let Err(Error::Function(error)) = client.query("chat:nope", ()).await else {
        panic!("a one-shot query of an unknown function must fail");
    };
    assert!(error.message.contains("chat:nope"), "{error}");

    // Still the first connection, and it still works.
    client
        .mutation(
            "chat:send_message",
            obj! { "user" => "ada", "body" => "still here" },
        )
        .await
        .unwrap();
    assert_eq!(
        bodies(&client.query("chat:get_messages", ()).await.unwrap()),
        ["still here"]
    );
    assert_eq!(client.status().connection_count, 1);
    assert!(client.status().connected);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscription_stops_while_others_go_on() {
    let server = TestServer::start().await;
    let client = client(&server.url()).await;
    let mut kept = client.subscribe("chat:get_messages", ()).unwrap();
    let dropped = client.subscribe("chat:get_messages", ()).unwrap();
    client
        .mutation(
            "chat:send_message",
            obj! { "user" => "ada", "body" => "one" },
        )
        .await
        .unwrap();
    assert_eq!(current_bodies(&dropped), ["one"]);
    drop(dropped);
    // The server answers the removal with `QueryRemoved`; the connection carries on.
    client
        .mutation(
            "chat:send_message",
            obj! { "user" => "ada", "body" => "two" },
        )
        .await
        .unwrap();
    assert_eq!(current_bodies(&kept), ["one", "two"]);
    until(&mut kept, "the kept subscription", |v| bodies(v).len() == 2).await;
    assert_eq!(client.status().connection_count, 1);
    server.shutdown().await;
}
