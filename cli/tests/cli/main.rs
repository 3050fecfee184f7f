//! The `runtime` command as a user runs it: real processes, real sockets, real signals.
//!
//! Tests wait for what they expect (a line of output, a frame, an exit), never for time;
//! [`TIMEOUT`] only turns a hang into a failure.

mod admin_key;
mod bad_input;
mod browser_dev;
mod codegen;
mod dashboard;
mod dev;
mod durability;
mod env;
#[allow(dead_code)]
#[path = "../../../runtime/tests/common/guests.rs"]
mod guests;
mod host_bounds;
mod logs;
mod nodes;
mod own_app;
#[allow(dead_code)]
#[path = "../../../runtime/tests/common/pg_cluster.rs"]
mod pg_cluster;
mod postgres;
mod run;
mod scheduler_crash;
mod serve;
// The browser harness shared with tests/e2e names `crate::test_server`.
#[path = "../../../runtime/tests/common/test_server.rs"]
mod test_server;
mod transfer;
mod version;

use serde_json::{json, Value as Json};
pub use serve::http_get;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tungstenite::{Message, WebSocket};

/// Generous: covers building an example app from scratch on a slow machine.
pub const TIMEOUT: Duration = Duration::from_secs(600);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_owned()
}

/// The `runtime` binary cargo built for these tests.
pub fn runtime_bin() -> &'static str {
    env!("CARGO_BIN_EXE_runtime")
}

/// A `runtime` process that printed `listening on http://ADDR`.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    /// Lines of stderr, when started with [`Running::start_reading_stderr`].
    pub stderr: Option<mpsc::Receiver<String>>,
    /// Its data folder (the `--data` it was started with).
    pub data: Option<PathBuf>,
}

impl Running {
    /// Starts `command` (stdout piped, stderr shown) and waits for its `listening on` line.
    pub fn start(command: Command) -> Running {
        Self::start_with(command, false)
    }

    /// As [`Running::start`], with stderr's lines in `stderr` (and still shown).
    pub fn start_reading_stderr(command: Command) -> Running {
        Self::start_with(command, true)
    }

    /// Waits for a line of stderr containing `needle`; returns it.
    pub fn wait_for_stderr(&self, needle: &str) -> String {
        let lines = self.stderr.as_ref().expect("started reading stderr");
        loop {
            let line = lines
                .recv_timeout(TIMEOUT)
                .unwrap_or_else(|_| panic!("runtime never wrote {needle:?} on stderr"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The admin key of its data folder, which the server made at its first start.
    pub fn admin_key(&self) -> String {
        let data = self.data.as_ref().expect("started with --data");
        std::fs::read_to_string(data.join("admin_key"))
            .expect("the server made its admin key")
            .trim()
            .to_owned()
    }

    fn start_with(mut command: Command, read_stderr: bool) -> Running {
        let data = command
            .get_args()
            .skip_while(|arg| *arg != "--data")
            .nth(1)
            .map(PathBuf::from);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(if read_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("starting runtime");
        let stderr = child.stderr.take().map(|stderr| {
            let (line, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for text in BufReader::new(stderr).lines() {
                    let Ok(text) = text else { return };
                    eprintln!("{text}");
                    let _ = line.send(text);
                }
            });
            lines
        });
        let stdout = child.stdout.take().expect("piped");
        let (found, listening) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(url) = line.strip_prefix("listening on http://") {
                    let _ = found.send(url.trim().parse::<SocketAddr>());
                }
            }
        });
        let addr = match listening.recv_timeout(TIMEOUT) {
            Ok(addr) => addr.expect("`listening on` names an address"),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().expect("waiting");
                panic!("runtime never printed `listening on` (exited: {status})");
            }
        };
        Running {
            child,
            addr,
            stderr,
            data,
        }
    }

    /// SIGTERM, then waits for a graceful exit.
    pub fn stop(mut self) {
        signal(&self.child, libc::SIGTERM);
        let status = self.child.wait().expect("waiting for runtime");
        assert!(
            status.success(),
            "runtime exited with {status} after SIGTERM"
        );
    }

    /// SIGKILL: the process gets no chance to flush or finish anything.
    pub fn kill(mut self) {
        signal(&self.child, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on a child this test owns and has not reaped yet.
    let result = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(result, 0, "signalling runtime");
}

/// `runtime serve APP --port 0 --data DATA`.
pub fn serve_command(app: &Path, data: &Path) -> Command {
    let mut command = Command::new(runtime_bin());
    command
        .arg("serve")
        .arg(app)
        .args(["--port", "0", "--data"])
        .arg(data);
    command
}

/// Runs a command that must end, and returns its output (stderr captured).
pub fn run_to_end(mut command: Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .expect("running runtime")
}

/// A blocking HTTP/1.1 POST of a JSON body; the response's status and JSON body.
pub fn post(addr: SocketAddr, path: &str, body: &Json) -> (u16, Json) {
    request(addr, "POST", path, Some(body), None)
        .unwrap_or_else(|| panic!("POST {path} to {addr} got no JSON answer"))
}

/// A POST that may fail: `None` when the node is gone (refused, reset, or closed early).
pub fn try_post(addr: SocketAddr, path: &str, body: &Json) -> Option<(u16, Json)> {
    request(addr, "POST", path, Some(body), None)
}

/// One blocking HTTP/1.1 request (a JSON body if given, the admin key if given): the
/// response's status and JSON body, or `None` when the server is gone or answered no JSON.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Json>,
    admin_key: Option<&str>,
) -> Option<(u16, Json)> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(TIMEOUT)).ok()?;
    let body = body.map(Json::to_string).unwrap_or_default();
    let auth = admin_key
        .map(|k| format!("Authorization: Convex {k}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status: u16 = response.get(9..12)?.parse().ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some((status, serde_json::from_str(body).ok()?))
}

/// The bodies `chat:get_messages` returns now.
pub fn message_bodies(addr: SocketAddr) -> Vec<String> {
    let (status, response) = post(
        addr,
        "/api/query",
        &json!({"path": "chat:get_messages", "args": {}}),
    );
    assert_eq!(status, 200, "{response}");
    response["value"]
        .as_array()
        .expect("a list of messages")
        .iter()
        .map(|m| m["body"].as_str().expect("a body").to_owned())
        .collect()
}

/// A WebSocket on `/api/sync` that has sent `Connect` for `session`.
pub fn connect(addr: SocketAddr, session: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connecting");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let (mut socket, _) =
        tungstenite::client(format!("ws://{addr}/api/sync"), stream).expect("the handshake");
    send(
        &mut socket,
        json!({"type": "Connect", "sessionId": session, "connectionCount": 0}),
    );
    socket
}

pub fn send(socket: &mut WebSocket<TcpStream>, message: Json) {
    socket
        .send(Message::text(message.to_string()))
        .expect("sending a frame");
}

/// The next JSON frame, or `None` once the connection is gone.
pub fn receive(socket: &mut WebSocket<TcpStream>) -> Option<Json> {
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(text.as_str()).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// A copy of `examples/chat` that builds from anywhere (its guest-sdk path made absolute).
pub fn copy_chat_example(to: &Path) {
    let from = repo_root().join("examples/chat");
    std::fs::create_dir_all(to.join("src")).unwrap();
    // The examples' lock file, so the copy builds with the same dependency versions.
    std::fs::copy(
        repo_root().join("examples/Cargo.lock"),
        to.join("Cargo.lock"),
    )
    .unwrap();
    for file in std::fs::read_dir(from.join("src")).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, to.join("src").join(file.file_name().unwrap())).unwrap();
    }
    let manifest = std::fs::read_to_string(from.join("Cargo.toml"))
        .unwrap()
        .replace(
            "path = \"../../guest-sdk\"",
            &format!("path = {:?}", repo_root().join("guest-sdk")),
        );
    // A workspace of its own, so cargo does not look for one above the temp folder.
    std::fs::write(to.join("Cargo.toml"), format!("{manifest}\n[workspace]\n")).unwrap();
}
