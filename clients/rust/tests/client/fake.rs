//! A fake server that sends what a real one never would: transitions that do not chain,
//! malformed frames, answers that arrive just before the connection drops.

use crate::{within, TIMEOUT};
use ferrovex_client::{obj, Client, Error, Value};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{json, Value as Json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

struct FakeServer {
    listener: TcpListener,
}

impl FakeServer {
    async fn start() -> FakeServer {
        FakeServer {
            listener: TcpListener::bind("127.0.0.1:0").await.expect("binding"),
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/api/sync", self.listener.local_addr().unwrap())
    }

    /// The next connection, after its WebSocket handshake.
    async fn accept(&self) -> Connection {
        let (stream, _) = within("the client to connect", self.listener.accept())
            .await
            .expect("accepting");
        let ws = tokio_tungstenite::accept_async(stream)
            .await
            .expect("the WebSocket handshake");
        Connection { ws }
    }

    /// A client connected to this server, and its connection.
    async fn client(&self) -> (Client, Connection) {
        let url = self.url();
        let (client, connection) = tokio::join!(crate::client(&url), self.accept());
        (client, connection)
    }
}

struct Connection {
    ws: WebSocketStream<TcpStream>,
}

impl Connection {
    /// The next text frame from the client, as JSON.
    async fn recv(&mut self) -> Json {
        loop {
            let message = within("a frame from the client", self.ws.next())
                .await
                .expect("the client closed the connection")
                .expect("reading a frame");
            if let Message::Text(text) = message {
                return serde_json::from_str(text.as_str()).expect("the client sends JSON");
            }
        }
    }

    async fn send(&mut self, frame: Json) {
        self.send_message(Message::text(frame.to_string())).await;
    }

    async fn send_message(&mut self, message: Message) {
        self.ws.send(message).await.expect("sending a frame");
    }

    /// Reads `Connect` and the opening `ModifyQuerySet`; returns both.
    async fn opening(&mut self) -> (Json, Json) {
        let connect = self.recv().await;
        assert_eq!(connect["type"], "Connect", "{connect}");
        let modify = self.recv().await;
        assert_eq!(modify["type"], "ModifyQuerySet", "{modify}");
        assert_eq!(modify["baseVersion"], 0, "{modify}");
        assert_eq!(modify["newVersion"], 1, "{modify}");
        (connect, modify)
    }

    /// Expects the client to close or drop this connection (it reconnects on its own).
    async fn expect_dropped(&mut self) {
        loop {
            match tokio::time::timeout(TIMEOUT, self.ws.next()).await {
                Err(_) => panic!("the client kept a connection it should have dropped"),
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
                Ok(Some(Ok(Message::Text(text)))) => {
                    panic!("a frame on a connection the client should have dropped: {text}")
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

fn transition(start: (u64, &str), end: (u64, &str), modifications: Json) -> Json {
    json!({
        "type": "Transition",
        "startVersion": {"querySet": start.0, "ts": start.1},
        "endVersion": {"querySet": end.0, "ts": end.1},
        "modifications": modifications,
    })
}

fn updated(query_id: &Json, value: Json) -> Json {
    json!({"type": "QueryUpdated", "queryId": query_id, "value": value, "logLines": []})
}

async fn next(subscription: &mut ferrovex_client::Subscription) -> Value {
    within("a subscription result", subscription.next())
        .await
        .expect("the subscription ended")
        .expect("the query failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_that_does_not_chain_makes_the_client_reconnect() {
    let server = FakeServer::start().await;
    let (client, mut first) = server.client().await;
    let (connect, opening) = first.opening().await;
    assert_eq!(connect["sessionId"], client.session_id());
    assert_eq!(connect["connectionCount"], 0);
    assert!(connect.get("maxObservedTimestamp").is_none(), "{connect}");
    assert_eq!(opening["modifications"], json!([]));

    let mut subscription = client
        .subscribe("counter:get", obj! { "name" => "a" })
        .unwrap();
    let add = first.recv().await;
    assert_eq!(add["baseVersion"], 1, "{add}");
    let query_id = add["modifications"][0]["queryId"].clone();
    assert_eq!(
        add["modifications"],
        json!([{"type": "Add", "queryId": query_id, "udfPath": "counter:get", "args": {"name": "a"}}])
    );
    first
        .send(transition(
            (0, "0"),
            (2, "10"),
            json!([updated(&query_id, json!({"$integer": "1"}))]),
        ))
        .await;
    assert_eq!(next(&mut subscription).await, Value::Int64(1));

    // Starts at ts 9, but the previous transition ended at ts 10.
    first
        .send(transition(
            (2, "9"),
            (2, "11"),
            json!([updated(&query_id, json!({"$integer": "2"}))]),
        ))
        .await;
    first.expect_dropped().await;

    let mut second = server.accept().await;
    let (connect, opening) = second.opening().await;
    assert_eq!(connect["sessionId"], client.session_id());
    assert_eq!(connect["connectionCount"], 1);
    assert_eq!(connect["maxObservedTimestamp"], "10");
    assert_eq!(
        opening["modifications"],
        json!([{"type": "Add", "queryId": query_id, "udfPath": "counter:get", "args": {"name": "a"}}]),
        "the whole query set again, from version 0"
    );
    assert_eq!(
        subscription.current(),
        Some(Ok(Value::Int64(1))),
        "nothing of the rejected transition was applied"
    );
    second
        .send(transition(
            (0, "0"),
            (1, "12"),
            json!([updated(&query_id, json!({"$integer": "3"}))]),
        ))
        .await;
    assert_eq!(next(&mut subscription).await, Value::Int64(3));
    assert_eq!(client.status().connection_count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_make_the_client_reconnect_and_resend_its_mutation() {
    let server = FakeServer::start().await;
    let (client, mut connection) = server.client().await;
    connection.opening().await;
    let mutation = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .mutation("chat:send_message", obj! { "body" => "hi" })
                .await
        })
    };
    let sent = connection.recv().await;
    assert_eq!(
        sent,
        json!({"type": "Mutation", "requestId": 1, "udfPath": "chat:send_message", "args": {"body": "hi"}})
    );

    let bad_frames = [
        Message::text("{not json"),
        Message::text("[1, 2]"),
        Message::binary(vec![1u8, 2, 3]),
        Message::text(r#"{"type": "Welcome"}"#),
        Message::text(
            transition(
                (0, "0"),
                (1, "5"),
                json!([{"type": "QueryUpdated", "queryId": 1, "value": {"$bad": 1}}]),
            )
            .to_string(),
        ),
        Message::text(transition((0, "0"), (1, "not a number"), json!([])).to_string()),
        Message::text(
            r#"{"type": "MutationResponse", "requestId": 99, "success": true, "result": null, "ts": "5", "logLines": []}"#,
        ),
        Message::text(r#"{"type": "MutationResponse", "requestId": 1, "success": "yes"}"#),
        // Acknowledges a query set the client never sent.
        Message::text(transition((0, "0"), (7, "5"), json!([])).to_string()),
        Message::text(r#"{"type": "FatalError", "error": "go away"}"#),
    ];
    for (count, bad) in bad_frames.into_iter().enumerate() {
        let shown = format!("{bad:?}");
        connection.send_message(bad).await;
        connection.expect_dropped().await;
        connection = server.accept().await;
        let (connect, _) = connection.opening().await;
        assert_eq!(connect["connectionCount"], count + 1, "after {shown}");
        assert_eq!(connect["sessionId"], client.session_id());
        // The unanswered mutation goes again, under its original request id.
        assert_eq!(connection.recv().await, sent, "after {shown}");
        assert!(!mutation.is_finished(), "after {shown}");
    }

    connection
        .send(json!({"type": "MutationResponse", "requestId": 1, "success": true, "result": "done", "ts": "30", "logLines": []}))
        .await;
    connection
        .send(transition((0, "0"), (1, "30"), json!([])))
        .await;
    let result = within("the mutation", mutation).await.unwrap();
    assert_eq!(result, Ok(Value::from("done")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_answered_before_a_drop_resolves_once_the_new_connection_catches_up() {
    let server = FakeServer::start().await;
    let (client, mut first) = server.client().await;
    first.opening().await;
    let mut subscription = client.subscribe("counter:get", ()).unwrap();
    let query_id = first.recv().await["modifications"][0]["queryId"].clone();
    first
        .send(transition(
            (0, "0"),
            (2, "5"),
            json!([updated(&query_id, json!("a"))]),
        ))
        .await;
    assert_eq!(next(&mut subscription).await, Value::from("a"));

    // Polled once, so that the mutation is sent.
    let mut mutation = Box::pin(client.mutation("counter:bump", ()));
    assert!((&mut mutation).now_or_never().is_none());
    let sent = first.recv().await;
    assert_eq!(sent["type"], "Mutation");
    first
        .send(json!({"type": "MutationResponse", "requestId": 1, "success": true, "result": "bumped", "ts": "20", "logLines": []}))
        .await;
    // A transition before the commit does not show the write.
    first
        .send(transition(
            (2, "5"),
            (2, "6"),
            json!([updated(&query_id, json!("b"))]),
        ))
        .await;
    assert_eq!(next(&mut subscription).await, Value::from("b"));
    assert!(
        (&mut mutation).now_or_never().is_none(),
        "answered before the client showed the commit"
    );
    first.send_message(Message::Close(None)).await;
    first.expect_dropped().await;

    let mut second = server.accept().await;
    let (connect, _) = second.opening().await;
    assert_eq!(connect["maxObservedTimestamp"], "20");
    // The answered mutation is not sent again with the opening frames.
    second
        .send(transition(
            (0, "0"),
            (1, "19"),
            json!([updated(&query_id, json!("c"))]),
        ))
        .await;
    assert_eq!(next(&mut subscription).await, Value::from("c"));
    assert!(
        (&mut mutation).now_or_never().is_none(),
        "answered before the client showed the commit"
    );
    // This connection's first transition is behind the commit: the client sends the
    // mutation again, so that the server follows its (recorded) answer with a transition
    // that reaches the commit.
    assert_eq!(second.recv().await, sent);
    second
        .send(json!({"type": "MutationResponse", "requestId": 1, "success": true, "result": "bumped", "ts": "20", "logLines": []}))
        .await;
    second
        .send(transition(
            (1, "19"),
            (1, "20"),
            json!([updated(&query_id, json!("d"))]),
        ))
        .await;
    assert_eq!(
        within("the mutation", mutation).await,
        Ok(Value::from("bumped"))
    );
    assert_eq!(subscription.current(), Some(Ok(Value::from("d"))));

    // Answered, then the connection drops; the next connection starts past the commit.
    let mut mutation = Box::pin(client.mutation("counter:bump", ()));
    assert!((&mut mutation).now_or_never().is_none());
    assert_eq!(second.recv().await["requestId"], 2);
    second
        .send(json!({"type": "MutationResponse", "requestId": 2, "success": true, "result": "again", "ts": "30", "logLines": []}))
        .await;
    second.send_message(Message::Close(None)).await;
    second.expect_dropped().await;
    let mut third = server.accept().await;
    let (connect, _) = third.opening().await;
    assert_eq!(connect["maxObservedTimestamp"], "30");
    third
        .send(transition(
            (0, "0"),
            (1, "31"),
            json!([updated(&query_id, json!("e"))]),
        ))
        .await;
    assert_eq!(
        within("the mutation", mutation).await,
        Ok(Value::from("again"))
    );
    assert_eq!(subscription.current(), Some(Ok(Value::from("e"))));
    // Nothing was sent again: the next frame is this query-set change.
    let _other = client.subscribe("counter:other", ()).unwrap();
    let next_frame = third.recv().await;
    assert_eq!(next_frame["type"], "ModifyQuerySet", "{next_frame}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_subscription_removes_it_from_the_query_set() {
    let server = FakeServer::start().await;
    let (client, mut connection) = server.client().await;
    connection.opening().await;
    let kept = client
        .subscribe("counter:get", obj! { "n" => 1i64 })
        .unwrap();
    let add_kept = connection.recv().await;
    assert_eq!(
        add_kept["modifications"][0]["args"],
        json!({"n": {"$integer": "1"}})
    );
    let dropped = client
        .subscribe("counter:get", obj! { "n" => 2i64 })
        .unwrap();
    let add_dropped = connection.recv().await;
    assert_eq!(add_dropped["baseVersion"], 2);
    let dropped_id = add_dropped["modifications"][0]["queryId"].clone();
    drop(dropped);
    assert_eq!(
        connection.recv().await,
        json!({"type": "ModifyQuerySet", "baseVersion": 3, "newVersion": 4,
               "modifications": [{"type": "Remove", "queryId": dropped_id}]})
    );
    drop(kept);
    let remove = connection.recv().await;
    assert_eq!(remove["baseVersion"], 4);
    assert_eq!(remove["modifications"][0]["type"], "Remove");
    // A reconnect re-sends only what is still subscribed.
    let _third = client.subscribe("counter:third", ()).unwrap();
    connection.recv().await;
    connection.send_message(Message::text("not json")).await;
    connection.expect_dropped().await;
    let mut connection = server.accept().await;
    let (_, opening) = connection.opening().await;
    let listed: Vec<&str> = opening["modifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["udfPath"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["counter:third"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_closes_the_connection_and_ends_its_subscriptions() {
    let server = FakeServer::start().await;
    let (client, mut connection) = server.client().await;
    connection.opening().await;
    let mut subscription = client.subscribe("counter:get", ()).unwrap();
    connection.recv().await;
    drop(client);
    connection.expect_dropped().await;
    assert_eq!(
        within("the subscription to end", subscription.next()).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_urls_are_refused_before_anything_is_sent() {
    let server = FakeServer::start().await;
    let (client, mut connection) = server.client().await;
    connection.opening().await;
    assert!(matches!(
        client.mutation("a:b", Value::Int64(1)).await,
        Err(Error::InvalidArgs(_))
    ));
    assert!(matches!(
        client.subscribe("a:b", Value::from("x")),
        Err(Error::InvalidArgs(_))
    ));
    // The first frame after the opening is this one: the refused calls sent nothing.
    let _subscription = client.subscribe("a:b", ()).unwrap();
    assert_eq!(connection.recv().await["baseVersion"], 1);

    for url in ["wss://example.com", "localhost:3210", "ftp://x"] {
        assert!(
            matches!(Client::connect(url).await, Err(Error::InvalidUrl(_))),
            "{url}"
        );
    }
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let refused = Client::connect(&format!("http://{addr}")).await;
    assert!(matches!(refused, Err(Error::Connect(_))), "{refused:?}");
}
