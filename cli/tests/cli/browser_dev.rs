//! The dev loop as a user sees it: the chat page open in headless Chromium while
//! `runtime dev` runs; an edit to the query's source reaches the page with no reload and no
//! reconnect.

use crate::{copy_chat_example, repo_root, runtime_bin, Running};
use std::process::Command;

#[allow(dead_code)]
#[path = "../../../tests/e2e/browser/harness.rs"]
mod harness;

const SHOUTING: &str = r#"use ferrovex_sdk::prelude::*;

#[mutation]
fn send_message(ctx: &mut MutationCtx, user: String, body: String) -> Result<()> {
    ctx.db.insert("messages", doc! { "user": user, "body": body })?;
    Ok(())
}

/// Edited: every body in capitals.
#[query]
fn get_messages(ctx: &QueryCtx) -> Result<Vec<Document>> {
    let mut messages = ctx.db.query("messages").order(Desc).take(50)?;
    messages.reverse();
    for message in &mut messages {
        if let Some(Value::String(body)) = message.fields.get_mut("body") {
            *body = body.to_uppercase();
        }
    }
    Ok(messages)
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_reaches_the_open_page_without_a_reload_or_reconnect() {
    let app = tempfile::tempdir().unwrap();
    copy_chat_example(app.path());
    copy_dir(
        &repo_root().join("examples/chat/web"),
        &app.path().join("web"),
    );
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(runtime_bin());
    command
        .arg("dev")
        .arg(app.path())
        .args(["--port", "0", "--data"])
        .arg(data.path());
    let server = tokio::task::block_in_place(|| {
        let server = Running::start_reading_stderr(command);
        server.wait_for_stderr("for changes");
        server
    });

    let driver = harness::Driver::start();
    let page = driver.browser().await;
    page.goto(&format!("http://{}/", server.addr)).await;
    page.wait_for(
        "the client is live",
        "window.chatClient && window.chatClient.connectionStatus().state === 'connected'",
    )
    .await;
    page.run(
        "document.getElementById('body').value = 'hello there';
         document.getElementById('send').click();
         window.loadedOnce = true;",
        vec![],
    )
    .await;
    page.wait_for(
        "the message",
        "[...document.querySelectorAll('#messages .message .body')].some(b => b.textContent === 'hello there')",
    )
    .await;

    std::fs::write(app.path().join("src/chat.rs"), SHOUTING).unwrap();
    tokio::task::block_in_place(|| server.wait_for_stderr("deployed version"));
    page.wait_for(
        "the edited query's result",
        "[...document.querySelectorAll('#messages .message .body')].some(b => b.textContent === 'HELLO THERE')",
    )
    .await;
    // The same page (no reload) on the same connection (no reconnect).
    let same = page
        .run(
            "return [window.loadedOnce === true, window.chatClient.connectionStatus().connectionCount];",
            vec![],
        )
        .await;
    assert_eq!(same, serde_json::json!([true, 0]));
    page.quit().await;
    tokio::task::block_in_place(|| server.stop());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
