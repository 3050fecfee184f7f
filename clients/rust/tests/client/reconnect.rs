//! Lost connections and server restarts: mutations apply exactly once, subscriptions resume.

use crate::proxy::Proxy;
use crate::{bodies, client, current_bodies, until, within, TestServer};
use ferrovex_client::{obj, Client, Value};
use futures_util::future::join_all;
use futures_util::FutureExt;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

type Call<'a> = Pin<Box<dyn Future<Output = Result<Value, ferrovex_client::Error>> + Send + 'a>>;

/// Calls `chat:send_message` with bodies `{prefix} 0..count`, in that order (each call is
/// polled once, which hands it to the client), without waiting for answers.
fn send_all<'a>(client: &'a Client, prefix: &str, count: usize) -> Vec<Call<'a>> {
    (0..count)
        .map(|i| {
            let body = format!("{prefix} {i}");
            let mut call: Call<'a> = Box::pin(client.mutation(
                "chat:send_message",
                obj! { "user" => "ada", "body" => body },
            ));
            assert!((&mut call).now_or_never().is_none());
            call
        })
        .collect()
}

async fn all_succeed(calls: Vec<Call<'_>>) {
    let results = within("every mutation to be answered", join_all(calls)).await;
    for result in results {
        assert_eq!(result, Ok(Value::Null));
    }
}

/// Every body appears exactly once among the messages.
fn assert_once_each(messages: &[String], expected: impl IntoIterator<Item = String>) {
    let expected: BTreeSet<String> = expected.into_iter().collect();
    let seen: BTreeSet<String> = messages.iter().cloned().collect();
    assert_eq!(
        seen.len(),
        messages.len(),
        "a mutation applied twice: {messages:?}"
    );
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_in_flight_when_the_connection_is_cut_apply_exactly_once() {
    const COUNT: usize = 10;
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let client = client(&proxy.url()).await;
    let mut messages = client.subscribe("chat:get_messages", ()).unwrap();
    until(&mut messages, "the first result", |v| bodies(v).is_empty()).await;
    let observer = crate::client(&server.url()).await;
    let mut observed = observer.subscribe("chat:get_messages", ()).unwrap();

    // The server applies every mutation, but none of its answers reach the client.
    proxy.hold_replies();
    let calls = send_all(&client, "held", COUNT);
    until(&mut observed, "the server to apply every mutation", |v| {
        bodies(v).len() == COUNT
    })
    .await;
    assert_eq!(client.status().connection_count, 1);
    proxy.cut();
    // The client re-sends all of them after reconnecting; the server answers each with its
    // first outcome instead of running it again.
    all_succeed(calls).await;
    assert!(client.status().connection_count >= 2);
    let held = (0..COUNT).map(|i| format!("held {i}"));
    assert_once_each(&current_bodies(&messages), held.clone());

    // Cut at once: some are sent, some answered, some not yet sent at all.
    let calls = send_all(&client, "cut", COUNT);
    proxy.cut();
    all_succeed(calls).await;
    let cut = (0..COUNT).map(|i| format!("cut {i}"));
    let expected: Vec<String> = held.chain(cut).collect();
    // Read your writes holds across the reconnect.
    assert_once_each(&current_bodies(&messages), expected.clone());
    assert_once_each(
        &bodies(&observer.query("chat:get_messages", ()).await.unwrap()),
        expected.clone(),
    );
    // Mutations of one client run in the order they were called.
    let mut ordered = current_bodies(&messages);
    ordered.retain(|b| b.starts_with("cut"));
    let mut sorted = ordered.clone();
    sorted.sort_by_key(|b| b[4..].parse::<usize>().unwrap());
    assert_eq!(ordered, sorted);

    // The subscription is live on the new connection.
    observer
        .mutation(
            "chat:send_message",
            obj! { "user" => "bob", "body" => "after" },
        )
        .await
        .unwrap();
    until(&mut messages, "the update after reconnecting", |v| {
        bodies(v).last().map(String::as_str) == Some("after")
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_comes_back_after_a_server_restart() {
    let server = TestServer::start().await;
    let url = server.url();
    let client = client(&url).await;
    let mut messages = client.subscribe("chat:get_messages", ()).unwrap();
    client
        .mutation(
            "chat:send_message",
            obj! { "user" => "ada", "body" => "before" },
        )
        .await
        .unwrap();
    assert_eq!(current_bodies(&messages), ["before"]);

    let (dir, addr) = server.shutdown().await;
    let mut status = client.watch_status();
    within("the client to notice", status.wait_for(|s| !s.connected))
        .await
        .unwrap();
    // Called while the server is down: sent once the client is back.
    let pending = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .mutation(
                    "chat:send_message",
                    obj! { "user" => "ada", "body" => "during" },
                )
                .await
        })
    };
    let server = TestServer::start_in(dir, addr).await;
    assert_eq!(server.url(), url);
    assert_eq!(
        within("the pending mutation", pending).await.unwrap(),
        Ok(Value::Null)
    );
    // The data survived and the subscription was renewed on the new server.
    assert_eq!(current_bodies(&messages), ["before", "during"]);
    let other = crate::client(&url).await;
    other
        .mutation(
            "chat:send_message",
            obj! { "user" => "bob", "body" => "after" },
        )
        .await
        .unwrap();
    until(&mut messages, "the update from the new server", |v| {
        bodies(v) == ["before", "during", "after"]
    })
    .await;
    assert!(client.status().connection_count >= 2);
    server.shutdown().await;
}
