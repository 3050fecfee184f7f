//! Guarantee 7 (durable before visible) against a server killed with SIGKILL, on each storage
//! engine: after a restart, every mutation any client saw acknowledged, and every result any
//! subscriber was shown, is still there. On PostgreSQL the restarted server also takes over
//! the writer lease the killed one left behind.

use crate::pg_cluster::Cluster;
use crate::{connect, message_bodies, receive, repo_root, send, serve_command, Running};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};

const WRITERS: usize = 4;
/// Per writer; all of them together stay within the 50 messages `get_messages` returns.
const MUTATIONS_PER_WRITER: usize = 12;

#[derive(Default)]
struct Seen {
    /// Bodies whose `MutationResponse` said success.
    acknowledged: BTreeSet<String>,
    /// Bodies a subscriber was shown in a transition.
    shown: BTreeSet<String>,
}

#[test]
fn every_acknowledged_or_shown_write_survives_sigkill_rocksdb() {
    survives_sigkill(None);
}

#[test]
fn every_acknowledged_or_shown_write_survives_sigkill_postgres() {
    let cluster = Cluster::start();
    survives_sigkill(Some(&cluster));
}

/// `serve` of the chat over `data`, with its documents in a database of `cluster` if given.
fn serve(data: &std::path::Path, store: Option<&str>) -> std::process::Command {
    let mut command = serve_command(&repo_root().join("examples/chat"), data);
    if let Some(url) = store {
        command.args(["--store", url]);
    }
    command
}

fn survives_sigkill(cluster: Option<&Cluster>) {
    // Kill at different points: after few and after many acknowledgements.
    for (round, kill_after) in [3usize, 17, 31, 44].into_iter().enumerate() {
        let data = tempfile::tempdir().unwrap();
        let store = cluster.map(Cluster::database);
        let server = Running::start(serve(data.path(), store.as_deref()));
        let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));

        let subscriber = {
            let mut socket = connect(server.addr, &format!("reader-{round}"));
            send(
                &mut socket,
                json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
                "modifications": [{"type": "Add", "queryId": 1, "udfPath": "chat:get_messages", "args": {}}]}),
            );
            let seen = seen.clone();
            std::thread::spawn(move || {
                while let Some(frame) = receive(&mut socket) {
                    if frame["type"] != "Transition" {
                        continue;
                    }
                    for modification in frame["modifications"].as_array().unwrap() {
                        if let Some(messages) = modification["value"].as_array() {
                            let mut seen = seen.0.lock().unwrap();
                            for message in messages {
                                seen.shown
                                    .insert(message["body"].as_str().unwrap().to_owned());
                            }
                        }
                    }
                }
            })
        };
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let mut socket = connect(server.addr, &format!("writer-{round}-{w}"));
                let seen = seen.clone();
                std::thread::spawn(move || {
                    for m in 0..MUTATIONS_PER_WRITER {
                        let body = format!("{round}.{w}.{m}");
                        send(
                            &mut socket,
                            json!({"type": "Mutation", "requestId": m,
                            "udfPath": "chat:send_message", "args": {"user": "w", "body": body}}),
                        );
                        let response = loop {
                            match receive(&mut socket) {
                                Some(frame) if frame["type"] == "MutationResponse" => break frame,
                                Some(_) => continue,
                                None => return, // killed
                            }
                        };
                        assert_eq!(response["success"], true, "{response}");
                        let (lock, acknowledged) = &*seen;
                        lock.lock().unwrap().acknowledged.insert(body);
                        acknowledged.notify_all();
                    }
                })
            })
            .collect();

        {
            let (lock, acknowledged) = &*seen;
            let mut state = lock.lock().unwrap();
            while state.acknowledged.len() < kill_after {
                state = acknowledged.wait(state).unwrap();
            }
        }
        server.kill();
        for writer in writers {
            writer.join().expect("a writer failed");
        }
        subscriber.join().expect("the subscriber failed");

        let server = Running::start(serve(data.path(), store.as_deref()));
        let present: BTreeSet<String> = message_bodies(server.addr).into_iter().collect();
        let seen = seen.0.lock().unwrap();
        assert!(seen.acknowledged.len() >= kill_after);
        let lost: Vec<_> = seen.acknowledged.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged but lost: {lost:?}"
        );
        let phantom: Vec<_> = seen.shown.difference(&present).collect();
        assert!(
            phantom.is_empty(),
            "round {round}: shown but not durable: {phantom:?}"
        );
        server.stop();
    }
}
