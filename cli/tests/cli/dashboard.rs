//! `runtime dashboard`: the link that signs a browser in, printed only once the server took
//! the key.

use crate::{repo_root, runtime_bin, serve_command, Running};
use std::process::Command;

#[test]
fn dashboard_prints_a_sign_in_link_the_server_accepts() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::start(serve_command(
        &repo_root().join("examples/chat"),
        data.path(),
    ));
    let url = format!("http://{}", server.addr);
    // The key of the local data folder, found by --data as the other commands find it.
    let printed = Command::new(runtime_bin())
        .args(["dashboard", "--url", &url, "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(printed.status.success(), "{printed:?}");
    let link = String::from_utf8(printed.stdout).unwrap();
    let key = server.admin_key();
    assert_eq!(link.trim(), format!("{url}/_dashboard/#key={key}"));
    let warning = String::from_utf8_lossy(&printed.stderr);
    assert!(
        warning.contains("signs a browser in as the deployment's admin"),
        "{warning}"
    );

    // Another key: refused, nothing printed.
    let refused = Command::new(runtime_bin())
        .args(["dashboard", "--url", &url, "--admin-key"])
        .arg(format!("fvx_admin_{}", "0".repeat(64)))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("the server refused the admin key (401)"),
        "{message}"
    );
    server.stop();

    // No server: says so, with what to do.
    let none = Command::new(runtime_bin())
        .args(["dashboard", "--url", &url, "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(1));
    let message = String::from_utf8_lossy(&none.stderr);
    assert!(message.contains("no server at"), "{message}");
}
