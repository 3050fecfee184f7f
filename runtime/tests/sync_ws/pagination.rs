//! Reactive pagination as `usePaginatedQuery` drives it: pages keep their ends while
//! documents come and go (so consecutive pages stay gapless and without duplicates), every
//! page's `continueCursor` is a string, and a page's journal brings its bounds back on a
//! restarted server.

use crate::{send_message, Client, TestServer};
use serde_json::{json, Value as Json};

/// `chat:list_messages` (newest first) from `cursor`, `num_items` at a time.
fn page_query(query_id: u64, cursor: Json, journal: Json) -> Json {
    json!({"type": "Add", "queryId": query_id, "udfPath": "chat:list_messages",
           "args": [{"paginationOpts": {"numItems": 2, "cursor": cursor, "id": query_id}}],
           "journal": journal})
}

fn bodies_of(client: &Client, query_id: u64) -> Vec<String> {
    crate::bodies(&client.results[&query_id]["page"])
}

async fn send(client: &mut Client, request_id: u64, body: &str) -> Json {
    client.send(send_message(request_id, "ada", body)).await;
    let response = client.next_of_type("MutationResponse").await;
    assert_eq!(response["success"], true, "{response}");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_keep_their_ends_while_messages_come_and_go_and_across_a_restart() {
    let server = TestServer::start("examples/chat").await;
    let mut writer = server.client().await;
    for (i, body) in ["m1", "m2", "m3", "m4", "m5"].iter().enumerate() {
        send(&mut writer, i as u64, body).await;
    }

    let mut reader = server.client().await;
    reader
        .send(crate::modify(
            0,
            json!([page_query(1, Json::Null, Json::Null)]),
        ))
        .await;
    reader.until(|c| c.results.contains_key(&1)).await;
    assert_eq!(bodies_of(&reader, 1), ["m5", "m4"]);
    let first = reader.results[&1].clone();
    assert_eq!(first["isDone"], false, "{first}");
    let cursor = first["continueCursor"].clone();
    assert!(cursor.is_string(), "{first}");
    assert!(
        first["splitCursor"].is_string(),
        "a page of two can be split: {first}"
    );
    let journal = reader.journals[&1].clone();
    assert!(journal.is_string(), "a paginated query returns a journal");

    reader
        .send(crate::modify(
            1,
            json!([page_query(2, cursor.clone(), Json::Null)]),
        ))
        .await;
    reader.until(|c| c.results.contains_key(&2)).await;
    assert_eq!(bodies_of(&reader, 2), ["m3", "m2"]);

    // A new message lands on the first page, which grows rather than pushing m4 onto the
    // second page: the two pages stay gapless and without duplicates.
    send(&mut writer, 10, "m6").await;
    reader
        .until(|c| bodies_of(c, 1) == ["m6", "m5", "m4"])
        .await;
    assert_eq!(bodies_of(&reader, 2), ["m3", "m2"]);
    assert_eq!(
        reader.results[&1]["continueCursor"], cursor,
        "the first page's end stays"
    );

    // Deleting m3 shrinks the second page in place.
    let m3 = reader.results[&2]["page"][0]["_id"].clone();
    writer
        .send(json!({"type": "Mutation", "requestId": 11, "udfPath": "chat:delete_message", "args": [{"id": m3}]}))
        .await;
    let deleted = writer.next_of_type("MutationResponse").await;
    assert_eq!(deleted["success"], true, "{deleted}");
    reader.until(|c| bodies_of(c, 2) == ["m2"]).await;
    let journal = reader.journals[&1].clone();
    drop(reader);
    drop(writer);

    // A restarted server takes back the journal it issued: the first page keeps its end (three
    // messages, not a fresh page of two).
    let server = server.restart().await;
    let mut again = server.client().await;
    again
        .send(crate::modify(
            0,
            json!([page_query(1, Json::Null, journal)]),
        ))
        .await;
    again.until(|c| c.results.contains_key(&1)).await;
    assert_eq!(bodies_of(&again, 1), ["m6", "m5", "m4"]);

    // Without a journal the same arguments start a fresh page of two.
    let mut fresh = server.client().await;
    fresh
        .send(crate::modify(
            0,
            json!([page_query(7, Json::Null, Json::Null)]),
        ))
        .await;
    fresh.until(|c| c.results.contains_key(&7)).await;
    assert_eq!(bodies_of(&fresh, 7), ["m6", "m5"]);

    // The last page: isDone, with a string cursor; a journal that is not ours is the
    // query's InvalidCursor failure, not the connection's.
    fresh
        .send(crate::modify(
            1,
            json!([
                page_query(8, json!("end"), Json::Null),
                page_query(9, Json::Null, json!("bm90IG91cnM="))
            ]),
        ))
        .await;
    fresh
        .until(|c| c.results.contains_key(&8) && c.results.contains_key(&9))
        .await;
    assert_eq!(fresh.results[&8]["isDone"], true);
    assert_eq!(fresh.results[&8]["continueCursor"], "end");
    let error = fresh.results[&9]["error"].as_str().unwrap().to_owned();
    assert!(error.contains("InvalidCursor"), "{error}");
    assert!(error.starts_with("chat:list_messages"), "{error}");
    server.shutdown().await;
}
