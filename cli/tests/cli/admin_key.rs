//! `runtime admin-key`: the key a data folder got at its first start, printed, and rotated
//! while the server runs (the old key stops working at once, the new one works).

use crate::{repo_root, run_to_end, runtime_bin, serve_command, Running};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;

/// The status line of `GET /api/metrics` with `Authorization: Convex <key>`.
fn metrics_with(addr: SocketAddr, key: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connecting");
    write!(
        stream,
        "GET /api/metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Convex {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reading");
    response.lines().next().unwrap_or_default().to_owned()
}

fn admin_key(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(runtime_bin());
    command.arg("admin-key").args(args);
    run_to_end(command)
}

#[test]
fn the_key_is_printed_and_rotated_while_the_server_runs() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();

    // Before any server started with it, a folder has no key, and the command says why.
    let missing = admin_key(&["--data", data_arg]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("admin_key"), "{stderr}");
    assert!(
        stderr.contains("when `runtime serve` first starts"),
        "{stderr}"
    );

    let server = Running::start(serve_command(&repo_root().join("examples/chat"), &data));
    let printed = admin_key(&["--data", data_arg]);
    assert!(printed.status.success(), "{printed:?}");
    let key = String::from_utf8(printed.stdout).unwrap().trim().to_owned();
    assert_eq!(key, server.admin_key());
    assert!(key.starts_with("fvx_admin_") && key.len() == 74, "{key}");
    assert!(metrics_with(server.addr, &key).contains("200"));

    let rotated = admin_key(&["--data", data_arg, "--rotate"]);
    assert!(rotated.status.success(), "{rotated:?}");
    let new_key = String::from_utf8(rotated.stdout).unwrap().trim().to_owned();
    assert_ne!(new_key, key);
    assert!(
        metrics_with(server.addr, &key).contains("401"),
        "the old key stops working"
    );
    assert!(
        metrics_with(server.addr, &new_key).contains("200"),
        "the new key works"
    );
    server.stop();

    // A restart keeps the rotated key.
    let server = Running::start(serve_command(&repo_root().join("examples/chat"), &data));
    assert_eq!(server.admin_key(), new_key);
    assert!(metrics_with(server.addr, &new_key).contains("200"));
    server.stop();
}
