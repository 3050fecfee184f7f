//! `runtime serve --store postgres://...`: one writer per database, enforced by the database.
//! A second server pointed at a database another serves follows it (reads here, commits
//! through the leader) and leads once the first stops; an old writer paused past its lease
//! finds, when it wakes, that its term has ended, commits nothing more and stops.

use crate::pg_cluster::Cluster;
use crate::{message_bodies, post, repo_root, serve_command, Running};
use serde_json::json;

fn serve(data: &std::path::Path, url: &str) -> std::process::Command {
    let mut command = serve_command(&repo_root().join("examples/chat"), data);
    command.args(["--store", url]);
    command
}

fn send(server: &Running, body: &str) -> serde_json::Value {
    let (status, answer) = post(
        server.addr,
        "/api/mutation",
        &json!({"path": "chat:send_message", "args": {"user": "w", "body": body}}),
    );
    assert_eq!(status, 200, "{answer}");
    answer
}

#[test]
fn a_second_server_joins_as_a_follower_and_leads_once_the_first_stops() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let datas: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = Running::start_reading_stderr(serve(datas[0].path(), &url));
    first.wait_for_stderr("(leader: it commits)");
    assert_eq!(send(&first, "from the first")["status"], "success");

    // With the same admin key, the second follows: it serves reads and forwards its commits.
    std::fs::copy(
        datas[0].path().join("admin_key"),
        datas[1].path().join("admin_key"),
    )
    .unwrap();
    let second = Running::start_reading_stderr(serve(datas[1].path(), &url));
    second.wait_for_stderr("(follower: it forwards commits to the leader)");
    assert_eq!(send(&second, "through the second")["status"], "success");
    assert_eq!(
        message_bodies(first.addr),
        ["from the first", "through the second"]
    );
    // Read its own write: answered only once it had applied the commit.
    assert_eq!(
        message_bodies(second.addr),
        ["from the first", "through the second"]
    );

    // A third with another admin key cannot commit through the leader, and says why.
    let stranger = Running::start(serve(datas[2].path(), &url));
    let (status, answer) = post(
        stranger.addr,
        "/api/mutation",
        &json!({"path": "chat:send_message", "args": {"user": "w", "body": "from a stranger"}}),
    );
    let message = answer["message"].as_str().unwrap_or_default();
    assert_eq!(status, 500, "{answer}");
    assert!(
        message.contains("401") && message.contains("same admin key"),
        "{message}"
    );
    stranger.stop();

    // Stopped, the first gives the lease back: the second leads at once and has everything.
    first.stop();
    let leads = second.wait_for_stderr("this node leads now");
    assert!(leads.contains("term 2"), "{leads}");
    assert_eq!(send(&second, "after the handover")["status"], "success");
    assert_eq!(
        message_bodies(second.addr),
        ["from the first", "through the second", "after the handover"]
    );
    second.stop();
}

#[test]
fn a_paused_writer_that_wakes_after_another_took_over_commits_nothing_and_stops() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let (a_data, b_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut old = Running::start_reading_stderr(serve(a_data.path(), &url));
    assert_eq!(send(&old, "before the pause")["status"], "success");
    std::fs::copy(
        a_data.path().join("admin_key"),
        b_data.path().join("admin_key"),
    )
    .unwrap();
    // SIGSTOP: it cannot renew its lease; the new server takes it once it has expired.
    crate::signal(&old.child, libc::SIGSTOP);
    let new = Running::start_reading_stderr(serve(b_data.path(), &url));
    let taken = new.wait_for_stderr("this node leads now");
    assert!(taken.contains("term 2"), "{taken}");
    assert_eq!(send(&new, "from the new writer")["status"], "success");

    // The old one wakes: a commit it attempts is refused by the term check, not applied
    // (a 500 naming the lease), unless it has already stopped; either way it stops, saying
    // why, with the status a supervisor restarts on.
    let old_addr = old.addr;
    let attempt = std::thread::spawn(move || {
        crate::try_post(
            old_addr,
            "/api/mutation",
            &json!({"path": "chat:send_message", "args": {"user": "w", "body": "from the old writer"}}),
        )
    });
    crate::signal(&old.child, libc::SIGCONT);
    if let Some((status, answer)) = attempt.join().unwrap() {
        // Refused at the commit (a 500), or at a read the function made (a failed call).
        assert_ne!(answer["status"], "success", "{answer}");
        assert!(matches!(status, 200 | 500), "{status}: {answer}");
        let message = answer["message"]
            .as_str()
            .or(answer["errorMessage"].as_str())
            .unwrap_or_default();
        assert!(message.contains("writer lease"), "{message}");
    }
    let status = old.child.wait().expect("the old writer stops");
    assert_eq!(status.code(), Some(75), "{status}");
    old.wait_for_stderr("another node took the writer lease");
    let bodies = message_bodies(new.addr);
    assert_eq!(bodies, ["before the pause", "from the new writer"]);
    new.stop();
}

#[test]
fn while_postgres_is_down_the_server_commits_nothing_says_why_and_resumes_after() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    const WRITERS: usize = 4;
    let cluster = Cluster::start();
    let url = cluster.database();
    let data = tempfile::tempdir().unwrap();
    let server = Running::start(serve(data.path(), &url));
    let addr = server.addr;

    // Writers under load all along: each keeps sending, and keeps what was acknowledged and
    // every refusal's message.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let refusals = Arc::new(Mutex::new(Vec::<String>::new()));
    let (stop, successes) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (acknowledged, refusals) = (acknowledged.clone(), refusals.clone());
            let (stop, successes) = (stop.clone(), successes.clone());
            std::thread::spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let body = format!("{w}.{n}");
                    let (status, answer) = post(
                        addr,
                        "/api/mutation",
                        &json!({"path": "chat:send_message", "args": {"user": "w", "body": body}}),
                    );
                    if status == 200 && answer["status"] == "success" {
                        acknowledged.lock().unwrap().push(body);
                        successes.fetch_add(1, Ordering::SeqCst);
                    } else {
                        refusals
                            .lock()
                            .unwrap()
                            .push(format!("{status} {}", answer["message"]));
                        // Not a spin while the database is down.
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();
    let wait_for = |count: usize| {
        let start = std::time::Instant::now();
        while successes.load(Ordering::SeqCst) < count {
            assert!(
                start.elapsed() < crate::TIMEOUT,
                "fewer than {count} commits"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    wait_for(40);

    // A crash of the database: no shutdown checkpoint, recovered from its log at restart.
    cluster.stop("immediate");
    let start = std::time::Instant::now();
    while refusals.lock().unwrap().len() < WRITERS * 3 {
        assert!(
            start.elapsed() < crate::TIMEOUT,
            "no refusals while the database is down"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let during = successes.load(Ordering::SeqCst);
    // Back up: the next commit asks the database what it holds, and the writers go on.
    cluster.start_server();
    wait_for(during + 40);
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().expect("a writer failed");
    }

    // Every refusal said why, as a 500 naming the store.
    for refusal in refusals.lock().unwrap().iter() {
        assert!(
            refusal.starts_with("500") && refusal.contains("PostgreSQL"),
            "{refusal}"
        );
    }
    // Nothing acknowledged was lost: every message, read back a page at a time.
    let acknowledged = acknowledged.lock().unwrap().clone();
    let mut present = std::collections::BTreeSet::new();
    let mut cursor = serde_json::Value::Null;
    loop {
        let (status, answer) = post(
            server.addr,
            "/api/query",
            &json!({"path": "chat:list_messages", "format": "json",
                    "args": {"paginationOpts": {"numItems": 500, "cursor": cursor}}}),
        );
        assert_eq!(status, 200, "{answer}");
        let page = &answer["value"];
        for message in page["page"].as_array().unwrap() {
            present.insert(message["body"].as_str().unwrap().to_owned());
        }
        if page["isDone"] == true {
            break;
        }
        cursor = page["continueCursor"].clone();
    }
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|b| !present.contains(*b))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(
        acknowledged.len() >= 80,
        "{} acknowledged",
        acknowledged.len()
    );
    server.stop();
}
