//! Mistakes a user makes with `runtime serve`: each gets a message that says what is wrong
//! and what to do, and a non-zero exit.

use crate::{copy_chat_example, repo_root, run_to_end, runtime_bin, serve_command};
use std::path::Path;
use std::process::Command;

fn stderr_of_failure(command: Command) -> String {
    let output = run_to_end(command);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "expected a failure, got success: {stderr}"
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn a_missing_app_folder_is_named_with_what_to_do() {
    let data = tempfile::tempdir().unwrap();
    let stderr = stderr_of_failure(serve_command(Path::new("/nonexistent/app"), data.path()));
    assert!(
        stderr.contains("error: no app folder at /nonexistent/app")
            && stderr.contains("runtime new NAME"),
        "{stderr}"
    );

    let not_an_app = tempfile::tempdir().unwrap();
    let stderr = stderr_of_failure(serve_command(not_an_app.path(), data.path()));
    assert!(stderr.contains("has no Cargo.toml"), "{stderr}");
}

#[test]
fn a_data_folder_that_is_not_ours_is_refused() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("notes.txt"), "someone else's").unwrap();
    let stderr = stderr_of_failure(serve_command(
        &repo_root().join("examples/chat"),
        data.path(),
    ));
    assert!(
        stderr.contains("is not a data folder of this runtime") && stderr.contains("--data"),
        "{stderr}"
    );
    // Nothing of ours was written into it.
    let entries: Vec<_> = std::fs::read_dir(data.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn a_port_already_taken_is_named_with_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(runtime_bin());
    command
        .arg("serve")
        .arg(repo_root().join("examples/chat"))
        .args(["--port", &port.to_string(), "--data"])
        .arg(data.path());
    let stderr = stderr_of_failure(command);
    assert!(
        stderr.contains(&format!("port {port} on 127.0.0.1 is already in use"))
            && stderr.contains("--port 0"),
        "{stderr}"
    );
}

#[test]
fn an_app_that_does_not_compile_shows_the_compiler_errors() {
    let app = tempfile::tempdir().unwrap();
    copy_chat_example(app.path());
    std::fs::write(
        app.path().join("src/chat.rs"),
        "use ferrovex_sdk::prelude::*;\n\n#[query]\nfn get_messages(ctx: &QueryCtx) -> Result<Vec<Document>> {\n    let n: u32 = \"not a number\";\n    Ok(vec![])\n}\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let stderr = stderr_of_failure(serve_command(app.path(), data.path()));
    assert!(
        stderr.contains("error[E0308]: mismatched types"),
        "cargo's diagnostics are shown: {stderr}"
    );
    assert!(stderr.contains("src/chat.rs"), "{stderr}");
    assert!(
        stderr.contains("error: building") && stderr.contains("failed"),
        "{stderr}"
    );
}

#[test]
fn help_shows_examples() {
    for args in [&["--help"][..], &["serve", "--help"][..]] {
        let output = Command::new(runtime_bin()).args(args).output().unwrap();
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(
            help.contains("Examples:") && help.contains("runtime serve"),
            "{help}"
        );
    }
}
