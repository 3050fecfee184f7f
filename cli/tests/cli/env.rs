//! `runtime env`: variables set, listed and unset on a running server, kept in its data
//! folder (private to its owner) across a restart.

use crate::{repo_root, run_to_end, runtime_bin, serve_command, Running};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn env(server: &Running, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(runtime_bin());
    command
        .arg("env")
        .args(args)
        .args(["--url", &format!("http://{}", server.addr)])
        .env("FERROVEX_ADMIN_KEY", server.admin_key());
    run_to_end(command)
}

fn listed(server: &Running) -> String {
    let output = env(server, &["list"]);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn variables_are_set_listed_unset_and_kept() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let app = repo_root().join("examples/chat");
    let server = Running::start(serve_command(&app, &data));
    assert_eq!(listed(&server), "");
    assert!(env(&server, &["set", "API_KEY", "abc 123"])
        .status
        .success());
    assert!(env(&server, &["set", "OTHER", "x"]).status.success());
    assert_eq!(listed(&server), "API_KEY=abc 123\nOTHER=x\n");
    assert!(env(&server, &["unset", "OTHER"]).status.success());

    let refused = env(&server, &["set", "NOT-A-NAME", "x"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("must be letters, digits and '_'"),
        "{stderr}"
    );
    let mode = std::fs::metadata(data.join("env.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only the owner may read the variables");
    server.stop();

    let server = Running::start(serve_command(&app, &data));
    assert_eq!(
        listed(&server),
        "API_KEY=abc 123\n",
        "kept across a restart"
    );
    server.stop();
}
