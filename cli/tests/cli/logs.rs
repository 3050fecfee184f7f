//! `runtime logs`: past executions, then (with `-f`) each new one as it ends.

use crate::{post, repo_root, runtime_bin, serve_command, Running, TIMEOUT};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

#[test]
fn logs_show_past_executions_and_follow_new_ones() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::start(serve_command(
        &repo_root().join("examples/chat"),
        data.path(),
    ));
    let url = format!("http://{}", server.addr);
    let send = |body: &str| {
        post(
            server.addr,
            "/api/mutation",
            &json!({"path": "chat:send_message", "args": {"user": "ada", "body": body}}),
        )
    };
    assert_eq!(send("one").0, 200);
    let (status, _) = post(
        server.addr,
        "/api/mutation",
        &json!({"path": "chat:send_message", "args": {}}),
    );
    // A function's failure is a 200 with `{"status": "error"}`, as Convex answers it.
    assert_eq!(status, 200);

    // Without the key the log stream is refused, saying where to get one.
    let refused = Command::new(runtime_bin())
        .args([
            "logs",
            "--url",
            &url,
            "--admin-key",
            "fvx_admin_not_the_key",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let refused = String::from_utf8_lossy(&refused.stderr);
    assert!(refused.contains("401"), "{refused}");

    let past = Command::new(runtime_bin())
        .args(["logs", "--url", &url, "--admin-key", &server.admin_key()])
        .output()
        .unwrap();
    assert!(past.status.success(), "{past:?}");
    let past = String::from_utf8_lossy(&past.stdout);
    let lines: Vec<&str> = past.lines().collect();
    assert!(
        lines[0].contains("mutation")
            && lines[0].contains("chat:send_message")
            && lines[0].contains(" ms ok"),
        "{past}"
    );
    assert_eq!(
        lines[1], "    This Rust function is running on the server.",
        "{past}"
    );
    assert!(
        lines[2].contains("chat:send_message")
            && lines[2].contains("error:")
            && lines[2].contains("user"),
        "the failure and its cause: {past}"
    );

    let mut follower = Command::new(runtime_bin())
        .args(["logs", "-f", "--url", &url])
        .env("FERROVEX_ADMIN_KEY", server.admin_key())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (line, lines) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for text in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line.send(text);
        }
    });
    // The two past executions come first; then the new one.
    for _ in 0..3 {
        lines.recv_timeout(TIMEOUT).expect("the past executions");
    }
    assert_eq!(send("two").0, 200);
    let query = post(
        server.addr,
        "/api/query",
        &json!({"path": "chat:get_messages", "args": {}}),
    );
    assert_eq!(query.0, 200);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("query") && l.contains("chat:get_messages"))
    {
        seen.push(lines.recv_timeout(TIMEOUT).expect("followed executions"));
    }
    assert!(
        seen[0].contains("mutation") && seen[0].contains("chat:send_message"),
        "{seen:?}"
    );
    let _ = follower.kill();
    let _ = follower.wait();
    server.stop();
}
