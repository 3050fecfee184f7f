//! `runtime serve --store postgres://...`: one writer per database, enforced by the database.
//! A second server pointed at a database another serves waits out the lease, then refuses
//! to start, saying why; an old writer paused past its lease finds, when it wakes, that its
//! term has ended, and commits nothing more.

use crate::pg_cluster::Cluster;
use crate::{message_bodies, post, repo_root, run_to_end, serve_command, Running};
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
fn a_second_server_cannot_write_to_a_database_another_serves() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let (a_data, b_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = Running::start_reading_stderr(serve(a_data.path(), &url));
    first.wait_for_stderr("store: PostgreSQL at");
    assert_eq!(send(&first, "from the first")["status"], "success");

    // The second waits for the lease, which the first keeps renewing, then gives up.
    let refused = run_to_end(serve(b_data.path(), &url));
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("holds the writer lease") && said.contains("waiting for it to expire"),
        "{said}"
    );
    assert!(
        said.contains(
            "keeps renewing its lease: one database has one writer; stop that server first"
        ),
        "{said}"
    );
    // The first went on serving all along.
    assert_eq!(send(&first, "still the first")["status"], "success");

    // Stopped, it gives the lease back: the next server starts at once and has everything.
    first.stop();
    let second = Running::start_reading_stderr(serve(b_data.path(), &url));
    let taken = second.wait_for_stderr("writer lease on");
    assert!(taken.contains("term 2"), "{taken}");
    assert_eq!(
        message_bodies(second.addr),
        ["from the first", "still the first"]
    );
    second.stop();
}

#[test]
fn a_paused_writer_that_wakes_after_another_took_over_commits_nothing() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let (a_data, b_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = Running::start(serve(a_data.path(), &url));
    assert_eq!(send(&old, "before the pause")["status"], "success");
    // SIGSTOP: it cannot renew its lease; the new server takes it once it has expired.
    crate::signal(&old.child, libc::SIGSTOP);
    let new = Running::start_reading_stderr(serve(b_data.path(), &url));
    let taken = new.wait_for_stderr("writer lease on");
    assert!(taken.contains("term 2"), "{taken}");
    assert_eq!(send(&new, "from the new writer")["status"], "success");

    // The old one wakes: its commits are refused by the term check, not applied, and it
    // says so (a 500: the store failed, not the function).
    crate::signal(&old.child, libc::SIGCONT);
    let (status, answer) = post(
        old.addr,
        "/api/mutation",
        &json!({"path": "chat:send_message", "args": {"user": "w", "body": "from the old writer"}}),
    );
    assert_eq!(status, 500, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("writer lease") && message.contains("commits nothing more"),
        "{message}"
    );
    let bodies = message_bodies(new.addr);
    assert_eq!(bodies, ["before the pause", "from the new writer"]);
    old.kill();
    new.stop();
}

#[test]
fn while_postgres_is_down_the_server_commits_nothing_says_why_and_resumes_after() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let data = tempfile::tempdir().unwrap();
    let server = Running::start(serve(data.path(), &url));
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let body = format!("before {i}");
        assert_eq!(send(&server, &body)["status"], "success");
        acknowledged.push(body);
    }

    // A crash of the database: no shutdown checkpoint, recovered from its log at restart.
    cluster.stop("immediate");
    for i in 0..3 {
        let (status, answer) = post(
            server.addr,
            "/api/mutation",
            &json!({"path": "chat:send_message", "args": {"user": "w", "body": format!("while down {i}")}}),
        );
        assert_eq!(status, 500, "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains("PostgreSQL"), "{message}");
    }

    // Back up: the next commit asks the database what it holds, and goes on.
    cluster.start_server();
    let start = std::time::Instant::now();
    loop {
        let (status, answer) = post(
            server.addr,
            "/api/mutation",
            &json!({"path": "chat:send_message", "args": {"user": "w", "body": "after"}}),
        );
        if status == 200 && answer["status"] == "success" {
            acknowledged.push("after".to_owned());
            break;
        }
        assert!(
            start.elapsed() < crate::TIMEOUT,
            "the server never committed again: {status} {answer}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for i in 0..5 {
        let body = format!("after {i}");
        assert_eq!(send(&server, &body)["status"], "success");
        acknowledged.push(body);
    }
    let present = message_bodies(server.addr);
    for body in &acknowledged {
        assert!(
            present.contains(body),
            "acknowledged {body:?} is missing: {present:?}"
        );
    }
    assert!(
        present.iter().all(|b| !b.starts_with("while down")),
        "a refused write was applied: {present:?}"
    );
    server.stop();
}
