//! Back-pressure: a subscriber that stops reading does not make the server queue a
//! transition per commit. When it reads again its missed updates arrive folded together,
//! ending at the latest state, with versions still chaining.

use crate::{add_messages_query, bodies, modify, send_message, TestServer};
use serde_json::json;

/// Large enough that a handful of transitions fill the socket buffers between server and
/// client, after which the server holds nothing but the connection's last-sent results.
const BODY_BYTES: usize = 64 * 1024;
const COMMITS: u64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_catches_up_with_folded_transitions() {
    let server = TestServer::start("examples/chat").await;
    let mut slow = server.client().await;
    slow.send(modify(0, json!([add_messages_query(1)]))).await;
    slow.until(|c| c.results.contains_key(&1)).await;

    // The subscriber stops reading while another client commits, each commit changing its
    // query's result (up to 50 messages of 64 KiB: several MiB per transition).
    let mut writer = server.client().await;
    for request_id in 1..=COMMITS {
        let body = format!("{request_id:03}{}", "x".repeat(BODY_BYTES));
        writer.send(send_message(request_id, "w", &body)).await;
        let response = writer.next_of_type("MutationResponse").await;
        assert_eq!(response["success"], true, "{response}");
    }

    // Reading again: transitions chain (checked by `apply`) and end at the latest state.
    let last = format!("{COMMITS:03}");
    let mut transitions = 0;
    while !slow.results[&1].as_array().is_some_and(|m| {
        m.last()
            .is_some_and(|m| m["body"].as_str().unwrap().starts_with(&last))
    }) {
        let frame = slow.next_frame().await;
        if frame["type"] == "Transition" {
            transitions += 1;
        }
    }
    assert_eq!(bodies(&slow.results[&1]).len(), 50);
    assert!(
        transitions < COMMITS,
        "{transitions} transitions for {COMMITS} commits: missed updates were not folded"
    );
    server.shutdown().await;
}
