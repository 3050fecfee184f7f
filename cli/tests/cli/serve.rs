//! `runtime serve` as README.md tells a newcomer to run it.

use crate::{message_bodies, post, repo_root, runtime_bin, Running};
use serde_json::json;
use std::process::Command;

/// The serve command of README.md's set-up section, exactly as written there.
fn readme_serve_command() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    readme
        .lines()
        .map(str::trim)
        .find(|line| line.contains(" serve examples/chat") && !line.starts_with('#'))
        .expect("README.md has a command serving examples/chat")
        .to_owned()
}

#[test]
fn the_readme_serve_command_serves_the_chat_example() {
    let command = readme_serve_command();
    let data = tempfile::tempdir().expect("temp dir");
    // As written, plus a free port and a temporary data folder. The script runs the binary
    // these tests built (cargo's build folder is locked while tests run).
    let mut shell = Command::new("bash");
    shell
        .arg("-c")
        .arg(format!("{command} --port 0 --data \"$DATA\""))
        .current_dir(repo_root())
        .env("DATA", data.path())
        .env("RUNTIME_BIN", runtime_bin());
    let server = Running::start(shell);

    let (status, sent) = post(
        server.addr,
        "/api/mutation",
        &json!({"path": "chat:send_message", "args": {"user": "ada", "body": "hello"}}),
    );
    assert_eq!(status, 200, "{sent}");
    assert_eq!(message_bodies(server.addr), ["hello"]);
    // The chat page and the browser client are served too.
    let page = http_get(server.addr, "/");
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("text/html"),
        "{page}"
    );
    let client = http_get(server.addr, "/api/client.js");
    assert!(
        client.starts_with("HTTP/1.1 200") && client.contains("text/javascript"),
        "{client}"
    );
    server.stop();

    // The data outlives the process.
    let mut again = Command::new(runtime_bin());
    again
        .args(["serve", "examples/chat", "--port", "0", "--data"])
        .arg(data.path())
        .current_dir(repo_root());
    let server = Running::start(again);
    assert_eq!(message_bodies(server.addr), ["hello"]);
    server.stop();
}

pub fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connecting");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reading");
    response
}
