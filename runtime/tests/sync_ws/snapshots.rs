//! Guarantee 1 (one snapshot per transition): two queries over the same table, read through
//! different indexes, never disagree in any state the client is shown, while many clients
//! write concurrently. And the snapshot a restarted engine starts at: never behind a commit.

use crate::{add_messages_query, bodies, modify, send_message, Client, TestServer};
use ferrovex_model::json::decode_u64;
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;

const WRITERS: usize = 4;
const TASKS_PER_WRITER: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_queries_over_one_table_never_disagree_in_any_transition() {
    let server = TestServer::start("examples/tasks").await;
    let mut reader = server.client().await;
    reader
        .send(modify(
            0,
            json!([
                {"type": "Add", "queryId": 1, "udfPath": "tasks:list_open", "args": {}},
                {"type": "Add", "queryId": 2, "udfPath": "tasks:page",
                 "args": {"cursor": null, "size": {"$integer": "ECcAAAAAAAA="}}},
            ]),
        ))
        .await;
    reader.until(|c| c.results.len() == 2).await;

    // Each writer adds tasks and completes every one: each commit changes what both
    // queries return (list_open through `by_done`, page through `by_creation_time`).
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut writer = server.client().await;
        writers.push(tokio::spawn(async move {
            for t in 0..TASKS_PER_WRITER {
                let request = 2 * t as u64;
                writer
                    .send(json!({"type": "Mutation", "requestId": request, "udfPath": "tasks:add",
                        "args": {"title": format!("task {w}.{t}"), "priority": {"$integer": "AQAAAAAAAAA="}}}))
                    .await;
                let added = writer.next_of_type("MutationResponse").await;
                assert_eq!(added["success"], true, "{added}");
                writer
                    .send(json!({"type": "Mutation", "requestId": request + 1, "udfPath": "tasks:complete",
                        "args": {"id": added["result"]}}))
                    .await;
                let completed = writer.next_of_type("MutationResponse").await;
                assert_eq!(completed["success"], true, "{completed}");
            }
        }));
    }
    let all_written = WRITERS * TASKS_PER_WRITER;
    let mut transitions = 0;
    loop {
        let frame = reader.next_frame().await;
        assert_eq!(frame["type"], "Transition", "{frame}");
        transitions += 1;
        assert_consistent(&reader);
        let (page, open) = (page_of(&reader), open_of(&reader));
        if page.len() == all_written && open.is_empty() {
            break;
        }
    }
    for writer in writers {
        writer.await.expect("a writer failed");
    }
    assert!(transitions > 1, "the reader saw the writes arrive");
    server.shutdown().await;
}

/// The open tasks as `tasks:list_open` sees them must be exactly the not-done tasks of
/// `tasks:page`: both are the same state of the table.
fn assert_consistent(client: &Client) {
    let page = page_of(client);
    let open_in_page: BTreeSet<String> = page
        .iter()
        .filter(|task| task["done"] == false)
        .map(|task| task["_id"].as_str().unwrap().to_owned())
        .collect();
    let open: BTreeSet<String> = open_of(client)
        .iter()
        .map(|task| task["_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        open, open_in_page,
        "guarantee 1: two results of one transition (at ts {}) disagree",
        client.version["ts"]
    );
}

fn page_of(client: &Client) -> Vec<Json> {
    let result = &client.results[&2];
    assert_eq!(result["isDone"], true, "{result}");
    result["page"].as_array().expect("a page").clone()
}

fn open_of(client: &Client) -> Vec<Json> {
    client.results[&1]
        .as_array()
        .expect("a list of tasks")
        .clone()
}

/// A client that reconnects after a restart must not be shown a state older than a commit it
/// was answered about: the restarted engine's results start valid at the latest commit, not
/// at 0, even before any new commit wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_first_transition_is_not_behind_earlier_commits() {
    let server = TestServer::start("examples/chat").await;
    let mut before = server.client_of_session("session-behind", 0).await;
    before.send(send_message(1, "ada", "answered")).await;
    let answered = before.next_of_type("MutationResponse").await;
    assert_eq!(answered["success"], true, "{answered}");
    let committed: u64 = decode_u64(answered["ts"].as_str().unwrap()).unwrap();
    drop(before);

    let server = server.restart().await;
    let mut after = server.client_of_session("session-behind", 1).await;
    // An empty change of the query set is acknowledged at once, with the engine's timestamp
    // as it stands, before anything has woken the engine since it started.
    after.send(modify(0, json!([]))).await;
    let first = after.next_of_type("Transition").await;
    assert!(
        after.ts() >= committed,
        "the first transition after the restart is at {}, behind the commit at {committed} the client was answered about: {first}",
        after.ts()
    );
    after.send(modify(1, json!([add_messages_query(1)]))).await;
    after.until(|c| c.results.contains_key(&1)).await;
    assert_eq!(bodies(&after.results[&1]), ["answered"]);
    server.shutdown().await;
}
