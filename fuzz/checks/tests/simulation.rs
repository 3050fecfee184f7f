//! A short run of the deterministic simulation of the sync engine (`ferrovex_fuzz_checks::sim`): every
//! guarantee of docs/PROTOCOL.md section 3 over the whole history of each seed. The long run is
//! `cargo run --release -p ferrovex-fuzz-checks --example simulate -- FIRST_SEED COUNT`.

use ferrovex_fuzz_checks::server::{channels_wasm, Server, Session};
use ferrovex_fuzz_checks::sim::{run_seed, SimConfig};
use ferrovex_runtime::sync::engine::ConnectionId;
use ferrovex_runtime::sync::protocol::Outgoing;
use serde_json::json;
use std::sync::Arc;

#[test]
fn simulation_seeds_keep_every_guarantee() {
    let mut totals = (0, 0, 0, 0);
    for seed in 0..60 {
        let stats =
            run_seed(seed, SimConfig::default()).unwrap_or_else(|violation| panic!("{violation}"));
        totals.0 += stats.transitions;
        totals.1 += stats.commits;
        totals.2 += stats.restarts;
        totals.3 += stats.fatal_errors;
    }
    // The seeds exercise what the checks are about: transitions, commits, restarts and bad
    // frames all happen.
    let (transitions, commits, restarts, fatal_errors) = totals;
    assert!(transitions > 300, "{transitions} transitions");
    assert!(commits > 300, "{commits} commits");
    assert!(restarts > 5, "{restarts} restarts");
    assert!(fatal_errors > 5, "{fatal_errors} fatal errors");
}

#[test]
fn a_seed_replays_exactly() {
    let first = run_seed(7, SimConfig::default()).expect("seed 7 keeps the guarantees");
    let second = run_seed(7, SimConfig::default()).expect("seed 7 keeps the guarantees");
    assert_eq!(first.digest, second.digest, "two runs of seed 7 differ");
    assert!(first.commits > 0 && first.transitions > 0, "{first:?}");
    let other = run_seed(8, SimConfig::default()).expect("seed 8 keeps the guarantees");
    assert_ne!(
        first.digest, other.digest,
        "the digest does not tell seeds apart"
    );
}

/// A server with the channels guest and `count` connections, each connected and watching
/// channel `x` (query id 7), their first transitions taken.
fn watching_x(dir: &std::path::Path, count: usize) -> (Server, Vec<ConnectionId>) {
    watching(dir, &vec!["x"; count])
}

/// [`watching_x`] with connection `i` watching `channels[i]`.
fn watching(dir: &std::path::Path, channels: &[&str]) -> (Server, Vec<ConnectionId>) {
    let mut server = Server::start(dir, &channels_wasm());
    let ids: Vec<_> = channels.iter().map(|_| server.accept()).collect();
    for (n, (id, channel)) in ids.iter().zip(channels).enumerate() {
        let session = server.sessions.get_mut(id).unwrap();
        let connect =
            json!({"type": "Connect", "sessionId": format!("s{n}"), "connectionCount": 0});
        let watch = json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
            {"type": "Add", "queryId": 7, "udfPath": "channels:list", "args": [{"channel": channel}]}
        ]});
        session
            .inbox
            .extend([connect.to_string(), watch.to_string()]);
        while session.read_one() {}
    }
    server.refresh();
    for id in &ids {
        let session = server.sessions.get_mut(id).unwrap();
        assert!(
            matches!(session.next_transition(), Some(Some(_))),
            "first results"
        );
    }
    (server, ids)
}

/// Commits a message with `body` to channel `x` from outside every connection.
fn send_to_x(server: &Server, body: &str) {
    send_to(server, "x", body)
}

/// Commits a message with `body` to `channel` from outside every connection.
fn send_to(server: &Server, channel: &str, body: &str) {
    let module = server.engine.module();
    let args = ferrovex_model::json::from_json(&json!({"channel": channel, "body": body})).unwrap();
    server
        .engine
        .host
        .run_mutation(
            &server.store,
            &module,
            "channels:send",
            &args,
            Default::default(),
        )
        .expect("channels:send commits");
}

/// The connection's task sends `channels:send` of `body` to `channel` as request
/// `request_id`, which runs and is answered; the frames the answer wrote.
fn mutate(session: &mut Session, request_id: u64, channel: &str, body: &str) -> Vec<String> {
    let mutation = json!({"type": "Mutation", "requestId": request_id, "udfPath": "channels:send",
        "args": [{"channel": channel, "body": body}]});
    session.inbox.push_back(mutation.to_string());
    assert!(session.read_one() && session.run_one() && session.answer());
    session.outbox.drain(..).collect()
}

/// The transition the connection's task takes once woken.
fn woken_with_transition(session: &mut Session) -> Arc<Outgoing> {
    session
        .next_transition()
        .expect("woken")
        .expect("a transition")
}

/// Two commits refreshed while the connection's task has not yet taken the first one's
/// transition: its one wake-up permit covers the first; taking it wakes the task again, and
/// the second commit reaches the client.
#[test]
fn a_commit_refreshed_while_the_outbox_is_full_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, ids) = watching_x(dir.path(), 1);
    send_to_x(&server, "first");
    server.refresh();
    send_to_x(&server, "second");
    server.refresh();
    let session = server.sessions.get_mut(&ids[0]).unwrap();
    let one = woken_with_transition(session);
    assert!(one.message.to_frame().contains("first"));
    let two = session
        .next_transition()
        .expect("woken again after taking a transition a later refresh found waiting")
        .expect("a transition");
    let frame = two.message.to_frame();
    assert!(frame.contains("second"), "{frame}");
    server.stop();
}

/// A transition the refresh prepared before the connection's own commit was answered goes
/// out before the `MutationResponse`, never after it (guarantee 5: nothing older than the
/// commit follows its response).
#[test]
fn a_transition_older_than_a_commit_is_sent_before_its_response() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, ids) = watching_x(dir.path(), 1);
    send_to_x(&server, "from-elsewhere");
    server.refresh();
    let session = server.sessions.get_mut(&ids[0]).unwrap();
    session.outbox.clear();
    let frames = mutate(session, 1, "x", "mine");
    let position = |needle: &str| frames.iter().position(|f| f.contains(needle));
    let older = position("from-elsewhere").expect("the prepared transition was sent");
    let response = position("MutationResponse").expect("the response was sent");
    assert!(older < response, "{frames:?}");
    server.stop();
}

/// After a commit, the refresh leaves every subscriber of the result it changed one shared
/// transition (the same message, serialized once), in each connection's outbox; connections
/// whose results did not change are not woken.
#[test]
fn subscribers_of_a_changed_result_share_one_prepared_transition() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, ids) = watching(dir.path(), &["x", "x", "x", "y"]);
    send_to(&server, "x", "hi");
    server.refresh();
    let mut sent = Vec::new();
    for id in &ids[..3] {
        let session = server.sessions.get_mut(id).unwrap();
        let transition = woken_with_transition(session);
        sent.push(transition);
    }
    assert!(
        sent.iter().all(|t| Arc::ptr_eq(t, &sent[0])),
        "three connections sent the same transition, each with its own copy"
    );
    let frame = sent[0].frames(false)[0].as_str().to_owned();
    assert!(
        frame.contains(r#""type":"Transition""#) && frame.contains("hi"),
        "{frame}"
    );
    let untouched = server.sessions.get_mut(&ids[3]).unwrap();
    assert!(
        untouched.next_transition().is_none(),
        "a connection whose result did not change was woken"
    );
    server.stop();
}

/// More subscribers than one round prepares before letting the engine's lock go
/// (`PREPARE_CHUNK`, 64): every one of them gets the commit, in the one shared transition.
#[test]
fn a_round_reaches_subscribers_past_the_first_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, ids) = watching_x(dir.path(), 150);
    send_to_x(&server, "to-all");
    assert!(
        server.refresh_if_requested(),
        "the commit asked for a round"
    );
    let mut sent = Vec::new();
    for id in &ids {
        let session = server.sessions.get_mut(id).unwrap();
        let transition = woken_with_transition(session);
        assert!(transition.message.to_frame().contains("to-all"));
        sent.push(transition);
    }
    assert!(sent.iter().all(|t| Arc::ptr_eq(t, &sent[0])));
    server.stop();
}

/// Once a connection's commit is answered, no transition older than it is built for it, even
/// when the last refresh is behind that commit: the connection waits for the round that
/// reaches it, which folds in everything before (guarantee 5).
#[test]
fn nothing_older_than_an_answered_commit_follows_its_response() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, ids) = watching_x(dir.path(), 1);
    // Two outside commits refreshed before the task takes anything: the first's transition
    // waits in the outbox, the second is owed.
    send_to_x(&server, "outside-1");
    assert!(server.refresh_if_requested());
    send_to_x(&server, "outside-2");
    assert!(server.refresh_if_requested());
    let session = server.sessions.get_mut(&ids[0]).unwrap();
    session.outbox.clear();
    let answered = mutate(session, 1, "x", "mine");
    assert!(
        answered.last().unwrap().contains("MutationResponse"),
        "{answered:?}"
    );
    // The engine's results are still those of the round before the commit: nothing to send.
    assert!(session.send_transition(), "woken");
    assert!(
        session.outbox.is_empty(),
        "a transition older than the answered commit: {:?}",
        session.outbox
    );
    // The round the commit asked for brings both the owed commit and the client's own.
    assert!(server.refresh_if_requested());
    let session = server.sessions.get_mut(&ids[0]).unwrap();
    let transition = woken_with_transition(session);
    let frame = transition.message.to_frame();
    assert!(
        frame.contains("outside-2") && frame.contains("mine"),
        "{frame}"
    );
    server.stop();
}

/// A commit that changes no result anyone holds is shown to its writer in the same write as
/// its `MutationResponse`: the results move to the commit without a query run and without
/// waiting for a round (`SyncEngine::advance_in_place`); the round that follows has nothing
/// more for the writer. A commit that changes a held result still waits for the round.
#[test]
fn a_commit_no_result_reads_is_shown_with_its_response() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, ids) = watching(dir.path(), &["y", "x"]);
    let session = server.sessions.get_mut(&ids[0]).unwrap();
    let answered = mutate(session, 1, "x2", "elsewhere");
    assert_eq!(answered.len(), 2, "{answered:?}");
    let response: serde_json::Value = serde_json::from_str(&answered[0]).unwrap();
    let transition: serde_json::Value = serde_json::from_str(&answered[1]).unwrap();
    assert_eq!(response["type"], "MutationResponse", "{response}");
    assert_eq!(transition["type"], "Transition", "{transition}");
    let committed = ferrovex_model::json::decode_u64(response["ts"].as_str().unwrap()).unwrap();
    let shown =
        ferrovex_model::json::decode_u64(transition["endVersion"]["ts"].as_str().unwrap()).unwrap();
    assert!(shown >= committed, "{answered:?}");
    assert_eq!(transition["modifications"], json!([]), "{transition}");
    assert!(
        server.refresh_if_requested(),
        "the commit asked for a round"
    );
    let session = server.sessions.get_mut(&ids[0]).unwrap();
    assert!(
        !matches!(session.next_transition(), Some(Some(_))),
        "the round sent the writer its commit again"
    );

    // Channel x is watched (by the second connection): its commit waits for the round.
    let answered = mutate(session, 2, "x", "watched");
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert!(answered[0].contains("MutationResponse"), "{answered:?}");
    assert!(server.refresh_if_requested());
    for id in &ids {
        let session = server.sessions.get_mut(id).unwrap();
        assert!(
            matches!(session.next_transition(), Some(Some(_))),
            "connection {id} has the round's transition"
        );
    }
    server.stop();
}
