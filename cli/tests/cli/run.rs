//! `runtime run` against a running server: one-shot calls, `--watch`, and mistakes.

use crate::{repo_root, runtime_bin, serve_command, Running, TIMEOUT};
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

fn run(url: &str, args: &[&str]) -> Output {
    Command::new(runtime_bin())
        .arg("run")
        .args(args)
        .args(["--url", url])
        .output()
        .expect("running runtime run")
}

#[test]
fn run_calls_functions_and_watch_prints_each_new_result() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::start(serve_command(
        &repo_root().join("examples/chat"),
        data.path(),
    ));
    let url = format!("http://{}", server.addr);

    let sent = run(
        &url,
        &["chat:send_message", r#"{"user": "ada", "body": "first"}"#],
    );
    assert!(sent.status.success(), "{sent:?}");
    assert_eq!(String::from_utf8_lossy(&sent.stdout).trim(), "null");
    assert!(
        String::from_utf8_lossy(&sent.stderr)
            .contains("[LOG] This Rust function is running on the server."),
        "log lines go to stderr: {sent:?}"
    );
    let listed = run(&url, &["chat:get_messages"]);
    assert!(listed.status.success(), "{listed:?}");
    let value: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(value[0]["body"], "first");

    // --watch prints the current result, then each new one.
    let mut watcher = Command::new(runtime_bin())
        .args(["run", "chat:get_messages", "--watch", "--url", &url])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (line, lines) = mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for text in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line.send(text);
        }
    });
    let wait_for = |needle: &str| loop {
        let text = lines.recv_timeout(TIMEOUT).expect("watch output");
        if text.contains(needle) {
            return;
        }
    };
    wait_for("\"body\": \"first\"");
    assert!(run(
        &url,
        &["chat:send_message", r#"{"user": "bob", "body": "second"}"#]
    )
    .status
    .success());
    wait_for("\"body\": \"second\"");
    let _ = watcher.kill();
    let _ = watcher.wait();

    // Mistakes: each a message saying what to do, and exit status 1.
    for (args, needle) in [
        (vec!["chat:nope"], "chat:nope: no such function; the deployed functions are: chat:delete_message, chat:get_messages"),
        (vec!["chat:nope", "--watch"], "the server has no function \"chat:nope\"; it has: chat:delete_message, chat:get_messages"),
        (vec!["chat:send_message", "{not json"], "the arguments must be a JSON object"),
        (vec!["chat:send_message", "[1]"], "the arguments must be a JSON object"),
        (vec!["chat:send_message", "{}"], "chat:send_message"),
        (vec!["chat:send_message", "{}", "--watch"], "--watch subscribes to a query, and chat:send_message is a mutation"),
    ] {
        let output = run(&url, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    server.stop();

    let nobody = run(&url, &["chat:get_messages"]);
    assert_eq!(nobody.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("Start one with `runtime serve APP_DIR`"),
        "{nobody:?}"
    );
}
