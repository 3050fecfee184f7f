//! Convex's chat tutorial frontend, `examples/chat-react` (React, Vite and the npm `convex`
//! client's `ConvexReactClient`, `useQuery`, `useMutation` and `usePaginatedQuery`), built with
//! Vite and served as the web folder of a server in this process over the Rust functions of
//! `examples/chat`: one origin, as when `runtime serve` serves a built frontend; then a build
//! served from another origin that reaches the same backend across origins, as in the
//! README's dev set-up. Headless Chromium drives it through the harness of
//! `tests/e2e/browser/`.
//!
//! The build needs the example's npm packages: `scripts/setup` installs them (`npm ci` in
//! examples/chat-react), and the test runs the same `npm ci` when they are missing or older
//! than the lock file. Nothing waits for time: every wait is for a condition in a page, and
//! [`harness::DEADLINE`] only turns a hang into a failure.

use crate::guests;
use crate::harness::{self, Browser, Driver, TestServer};
use fantoccini::key::Key;
use fantoccini::Locator;
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};
use std::process::Command;

const CHAT: &str = "examples/chat";
const FRONTEND: &str = "examples/chat-react";

/// Over `MAX_DOCUMENT_BYTES` (1 MiB) once stored: a message the server refuses.
const OVERSIZED_BODY_CHARS: usize = 1_100_000;

/// `npm ci` if the example's packages are missing or older than its lock file, then
/// `vite build` into its `dist/`, which is returned; once per process (the tests share it).
fn build_frontend() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_frontend_now).clone()
}

fn build_frontend_now() -> PathBuf {
    let dir = frontend_dir();
    let installed = dir.join("node_modules/.package-lock.json");
    let stale = match (
        std::fs::metadata(&installed).and_then(|m| m.modified()),
        std::fs::metadata(dir.join("package-lock.json")).and_then(|m| m.modified()),
    ) {
        (Ok(installed), Ok(locked)) => locked > installed,
        _ => true,
    };
    if stale {
        // The same command as scripts/setup: the packages the lock file pins, no install
        // scripts (none is needed to build), nothing else fetched.
        run(
            &dir,
            Command::new("npm").args([
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ]),
        );
    }
    let dist = dir.join("dist");
    // An empty VITE_CONVEX_URL outranks any .env file of the checkout, so the page talks to
    // the origin serving it.
    vite_build(&dist, "");
    dist
}

/// `vite build` of the example into `out`, with `convex_url` as `VITE_CONVEX_URL`; one at a
/// time (Vite refuses two builds of one project at once).
fn vite_build(out: &Path, convex_url: &str) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _building = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // `--no`: never fetch a package npx does not find installed.
    run(
        &frontend_dir(),
        Command::new("npx")
            .args([
                "--no",
                "vite",
                "build",
                "--logLevel",
                "warn",
                "--emptyOutDir",
            ])
            .arg("--outDir")
            .arg(out)
            .env("VITE_CONVEX_URL", convex_url),
    );
    assert!(
        out.join("index.html").is_file(),
        "vite build wrote no {}/index.html",
        out.display()
    );
}

fn frontend_dir() -> PathBuf {
    guests::repo_root().join(FRONTEND)
}

fn run(dir: &Path, command: &mut Command) {
    let shown = format!("{command:?}");
    let output = command
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {shown}: {e} (scripts/setup installs node and npm)"));
    assert!(
        output.status.success(),
        "{shown} in {} failed ({}):\n{}\n{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Opens the app in `browser` and waits until its chat view shows a first result.
async fn open(browser: &Browser, server: &TestServer) {
    browser.goto(&server.url("/")).await;
    browser
        .wait_for(
            "the chat view's first result from chat:get_messages",
            "document.querySelector('#messages')?.dataset.loaded === 'true'",
        )
        .await;
}

/// Replaces the window's name by typing, as a user would: backspaces, then the name.
async fn set_name(browser: &Browser, name: &str) {
    let input = browser
        .client
        .find(Locator::Id("name"))
        .await
        .expect("#name");
    let old = input
        .prop("value")
        .await
        .expect("#name's value")
        .unwrap_or_default();
    let erase: String = std::iter::once(Key::End.to_string())
        .chain(old.chars().map(|_| Key::Backspace.to_string()))
        .collect();
    input
        .send_keys(&format!("{erase}{name}"))
        .await
        .expect("typing a name");
    let shown = browser
        .run("return document.querySelector('#name').value;", vec![])
        .await;
    assert_eq!(shown, name);
}

/// Puts `text` in the composer as a paste does (too long to type key by key): a new value,
/// then an input event, which is what React's `onChange` listens to.
async fn paste(browser: &Browser, text: &str) {
    browser
        .run(
            r##"
            const input = document.querySelector("#body");
            // The prototype's setter, so that React sees the change as the user's.
            const setValue = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set;
            setValue.call(input, args[0]);
            input.dispatchEvent(new Event("input", { bubbles: true }));
            "##,
            vec![json!(text)],
        )
        .await;
}

/// Records a message sent, for the views' expected contents.
fn sent(messages: &mut Vec<(String, String)>, user: &str, body: &str) {
    messages.push((user.to_owned(), body.to_owned()));
}

/// The bodies of `messages` (oldest first), newest first: what the history view shows.
fn newest_first(messages: &[(String, String)]) -> Vec<String> {
    messages
        .iter()
        .rev()
        .map(|(_, body)| body.clone())
        .collect()
}

/// What the chat view of `me` must show for `messages` (`(user, body)`, oldest first).
fn chat_view_of(me: &str, messages: &[(String, String)]) -> Json {
    json!(messages
        .iter()
        .map(|(user, body)| json!([user, body, user == me]))
        .collect::<Vec<_>>())
}

/// The history view's messages, every loaded page in order, as `[id, body]`.
async fn history(browser: &Browser) -> Json {
    browser
        .run(
            r##"return [...document.querySelectorAll("#pages .message")].map((m) => [
                 m.dataset.id,
                 m.querySelector(".body").textContent,
               ]);"##,
            vec![],
        )
        .await
}

/// Every message in the database, newest first, as `[id, body]`: `chat:get_messages` (the
/// 50 most recent, oldest first) over HTTP, reversed; a test that stays under 50 messages
/// gets them all.
async fn stored_newest_first(browser: &Browser) -> Json {
    let stored = browser
        .run(
            r#"
            const response = await fetch("/api/query", {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ path: "chat:get_messages", args: {}, format: "convex_encoded_json" }),
            });
            const outcome = await response.json();
            if (outcome.status !== "success") throw new Error(JSON.stringify(outcome));
            return outcome.value.map((m) => [m._id, m.body]).reverse();
            "#,
            vec![],
        )
        .await;
    assert!(
        stored.as_array().expect("an array").len() < 50,
        "the test keeps under get_messages' 50, so that it reads every message"
    );
    stored
}

/// Calls a mutation with `POST /api/mutation`, as another program would, from `browser`'s
/// origin, and fails the test if it fails.
async fn http_mutation(browser: &Browser, path: &str, args: Json) {
    browser
        .run(
            r#"
            const response = await fetch("/api/mutation", {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ path: args[0], args: args[1], format: "convex_encoded_json" }),
            });
            const outcome = await response.json();
            if (outcome.status !== "success") throw new Error(JSON.stringify(outcome));
            "#,
            vec![json!(path), args],
        )
        .await;
}

/// Waits until the history view shows the newest of the database's messages, newest first
/// (all of them when `every_page` is loaded), with the bodies `expected`, and returns them as
/// `[id, body]`.
async fn wait_for_history(
    browser: &Browser,
    what: &str,
    expected: &[String],
    every_page: bool,
) -> Vec<Json> {
    let expected = json!(expected);
    harness::eventually(
        &format!("the history view to show {expected} ({what})"),
        || {
            let expected = expected.clone();
            async move {
                let shown = history(browser).await;
                let bodies: Vec<Json> = shown
                    .as_array()?
                    .iter()
                    .map(|pair| pair[1].clone())
                    .collect();
                if Json::from(bodies) != expected {
                    return None;
                }
                // The same ids too, in the same order: no page repeats a message, skips one,
                // or shows a stale copy.
                let shown = shown.as_array()?.clone();
                let stored = stored_newest_first(browser).await.as_array()?.clone();
                let same = if every_page {
                    shown == stored
                } else {
                    stored.starts_with(&shown)
                };
                same.then_some(shown)
            }
        },
    )
    .await
}

async fn history_status(browser: &Browser) -> Json {
    browser
        .run(
            "return document.querySelector('#history').dataset.status;",
            vec![],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn react_chat_live_in_two_windows_with_errors_and_live_pagination() {
    let dist = tokio::task::block_in_place(build_frontend);
    let server = TestServer::start(CHAT, Some(dist)).await;
    let driver = Driver::start();
    // Two browsers: two sessions, each with its own storage and name.
    let alice = driver.browser().await;
    let bob = driver.browser().await;
    for browser in [&alice, &bob] {
        open(browser, &server).await;
        let name = browser
            .run("return document.querySelector('#name').value;", vec![])
            .await;
        assert!(
            name.as_str()
                .is_some_and(|n| n.starts_with("User ") && n[5..].parse::<u32>().is_ok()),
            "a random default name: {name}"
        );
    }
    assert_eq!(alice.chat_messages().await, json!([]), "a new database");
    set_name(&alice, "Alice").await;
    set_name(&bob, "Bob").await;

    // Chat both ways: each message shows in both windows, in the order sent.
    let mut messages: Vec<(String, String)> = Vec::new();
    alice.send_chat_message("hello from alice", true).await;
    sent(&mut messages, "Alice", "hello from alice");
    bob.wait_for_chat("Bob", &json!([["Alice", "hello from alice", false]]))
        .await;
    bob.send_chat_message("hi alice", false).await;
    sent(&mut messages, "Bob", "hi alice");
    alice
        .wait_for_chat("Alice", &chat_view_of("Alice", &messages))
        .await;
    // Three in a row, without waiting: one window's mutations apply in the order sent.
    for (n, body) in ["one", "two", "three"].into_iter().enumerate() {
        alice.send_chat_message(body, n % 2 == 0).await;
        sent(&mut messages, "Alice", body);
    }
    // Bob answers once he sees them, so the order across windows is the order sent.
    bob.wait_for_chat("Bob", &chat_view_of("Bob", &messages))
        .await;
    bob.send_chat_message("and four", true).await;
    sent(&mut messages, "Bob", "and four");
    alice
        .wait_for_chat("Alice", &chat_view_of("Alice", &messages))
        .await;
    bob.wait_for_chat("Bob", &chat_view_of("Bob", &messages))
        .await;
    assert_eq!(
        alice
            .run("return document.querySelector('#body').value;", vec![])
            .await,
        "",
        "sending clears the composer"
    );

    // A failed mutation: a pasted message over the server's 1 MiB document limit. The page
    // shows the server's refusal, keeps the text, and nothing is stored.
    paste(&alice, &"x".repeat(OVERSIZED_BODY_CHARS)).await;
    alice
        .wait_for(
            "the send button to take the pasted text",
            "!document.querySelector('#send').disabled",
        )
        .await;
    alice.click("#send").await;
    let error = alice
        .wait_for(
            "the page to show why sending failed",
            "document.querySelector('#error')?.textContent",
        )
        .await;
    let error = error.as_str().expect("text");
    for part in ["Sending failed", "chat:send_message", "MAX_DOCUMENT_BYTES"] {
        assert!(error.contains(part), "{part:?} in the error shown: {error}");
    }
    assert_eq!(
        alice
            .run(
                "return document.querySelector('#body').value.length;",
                vec![]
            )
            .await,
        json!(OVERSIZED_BODY_CHARS),
        "the refused message is back in the composer"
    );
    assert_eq!(
        stored_newest_first(&alice).await.as_array().unwrap().len(),
        messages.len(),
        "the refused message was not stored"
    );
    // The next message goes through and clears the error.
    paste(&alice, "").await;
    alice.send_chat_message("after the failure", true).await;
    sent(&mut messages, "Alice", "after the failure");
    bob.wait_for_chat("Bob", &chat_view_of("Bob", &messages))
        .await;
    alice
        .wait_for(
            "a successful send to clear the error",
            "!document.querySelector('#error')",
        )
        .await;

    // Five more from another program over HTTP: twelve in all.
    for n in 1..=5 {
        let body = format!("news {n}");
        http_mutation(
            &alice,
            "chat:send_message",
            json!({"user": "Newsbot", "body": body}),
        )
        .await;
        sent(&mut messages, "Newsbot", &body);
    }
    assert_eq!(messages.len(), 12);
    alice
        .wait_for_chat("Alice", &chat_view_of("Alice", &messages))
        .await;

    // The history, five at a time: the first page, then two more with "Load more".
    bob.click("#to-history").await;
    let all = newest_first(&messages);
    wait_for_history(&bob, "the first page", &all[..5], false).await;
    bob.wait_for(
        "the first page to offer more",
        "document.querySelector('#history').dataset.status === 'CanLoadMore'",
    )
    .await;
    bob.click("#load-more").await;
    wait_for_history(&bob, "two pages", &all[..10], false).await;
    bob.wait_for(
        "the second page to offer more",
        "document.querySelector('#history').dataset.status === 'CanLoadMore'",
    )
    .await;
    bob.click("#load-more").await;
    wait_for_history(&bob, "three pages, the last one short", &all, true).await;
    bob.wait_for(
        "the last page to end the history",
        "document.querySelector('#history').dataset.status === 'Exhausted'",
    )
    .await;
    assert_eq!(
        bob.run(
            "return document.querySelector('#load-more').disabled;",
            vec![]
        )
        .await,
        true,
        "nothing more to load"
    );

    // Live pages: a new message from the other window lands on top of the first page.
    alice.send_chat_message("sent while paginated", true).await;
    sent(&mut messages, "Alice", "sent while paginated");
    let shown = wait_for_history(
        &bob,
        "a new message on the first page",
        &newest_first(&messages),
        true,
    )
    .await;
    assert_eq!(shown.len(), 13);

    // A deletion over HTTP in the middle of the second page (the first page now holds six,
    // the second the next five): the page closes up, with nothing lost or repeated at its
    // edges.
    let middle_of_second_page = shown[6 + 2].clone();
    http_mutation(
        &alice,
        "chat:delete_message",
        json!({"id": middle_of_second_page[0]}),
    )
    .await;
    messages.retain(|(_, body)| *body != middle_of_second_page[1]);
    let shown = wait_for_history(
        &bob,
        "a deletion in the middle of the second page",
        &newest_first(&messages),
        true,
    )
    .await;

    // Bob deletes the oldest message (on the last page) with its button.
    let oldest = shown.last().expect("messages").clone();
    assert_eq!(oldest[1], "hello from alice");
    bob.click(&format!(
        "#pages .message[data-id='{}'] .delete",
        oldest[0].as_str().unwrap()
    ))
    .await;
    messages.retain(|(_, body)| *body != "hello from alice");
    wait_for_history(
        &bob,
        "Bob's deletion on the last page",
        &newest_first(&messages),
        true,
    )
    .await;
    // And one more message after the deletions.
    alice.send_chat_message("last word", false).await;
    sent(&mut messages, "Alice", "last word");
    let shown = wait_for_history(
        &bob,
        "a message after the deletions",
        &newest_first(&messages),
        true,
    )
    .await;
    assert_eq!(shown.len(), 12);
    assert_eq!(history_status(&bob).await, "Exhausted");
    assert!(
        bob.run("return document.querySelector('#error');", vec![])
            .await
            .is_null(),
        "no error in the history view"
    );
    // The chat view follows deletions too.
    alice
        .wait_for_chat("Alice", &chat_view_of("Alice", &messages))
        .await;

    // The dev set-up of the README: the page from one origin (there, Vite's dev server),
    // the backend at another, reached across origins. Here a build that names the backend
    // in VITE_CONVEX_URL, served by a second server.
    let backend = server.url("");
    let cross_origin_web = tempfile::tempdir().expect("temp dir");
    tokio::task::block_in_place(|| vite_build(cross_origin_web.path(), &backend));
    let page_server = TestServer::start(CHAT, Some(cross_origin_web.path().to_owned())).await;
    let carol = driver.browser().await;
    open(&carol, &page_server).await;
    set_name(&carol, "Carol").await;
    carol
        .wait_for_chat("Carol", &chat_view_of("Carol", &messages))
        .await;
    carol.send_chat_message("from another origin", true).await;
    sent(&mut messages, "Carol", "from another origin");
    alice
        .wait_for_chat("Alice", &chat_view_of("Alice", &messages))
        .await;
    carol
        .wait_for_chat("Carol", &chat_view_of("Carol", &messages))
        .await;
    wait_for_history(
        &bob,
        "a message from the other origin",
        &newest_first(&messages),
        true,
    )
    .await;

    // Every window loaded everything from the server it was given, and nothing else.
    for (browser, origin) in [
        (&alice, server.url("")),
        (&bob, server.url("")),
        (&carol, page_server.url("")),
    ] {
        let elsewhere = browser
            .run(
                r#"return performance.getEntriesByType("resource")
                     .concat(performance.getEntriesByType("navigation"))
                     .map((entry) => entry.name)
                     .filter((url) => new URL(url).origin !== args[0]);"#,
                vec![json!(origin)],
            )
            .await;
        assert_eq!(elsewhere, json!([]), "requests beyond the server");
    }

    alice.quit().await;
    bob.quit().await;
    carol.quit().await;
}

/// The tutorial's second chapter: `/wiki TOPIC` makes the mutation schedule an action that
/// fetches the topic's summary (from the test's own server on loopback, named by the
/// deployment's `WIKI_SUMMARY_URL`) and posts it; every window shows it, through the npm
/// client's live query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn react_chat_wiki_command_posts_a_summary_from_an_action() {
    let dist = tokio::task::block_in_place(build_frontend);
    let summaries = crate::http_target::Target::start().await;
    let server = TestServer::start(CHAT, Some(dist)).await;
    server.set_env("WIKI_SUMMARY_URL", &summaries.url("/wiki"));
    let driver = Driver::start();
    let alice = driver.browser().await;
    let bob = driver.browser().await;
    for browser in [&alice, &bob] {
        open(browser, &server).await;
    }
    set_name(&alice, "Alice").await;
    set_name(&bob, "Bob").await;
    let mut messages: Vec<(String, String)> = Vec::new();
    alice.send_chat_message("/wiki Rust language", true).await;
    sent(&mut messages, "Alice", "/wiki Rust language");
    sent(
        &mut messages,
        "Wikipedia",
        "Rust language is a summary from the test's server.",
    );
    alice
        .wait_for_chat("Alice", &chat_view_of("Alice", &messages))
        .await;
    bob.wait_for_chat("Bob", &chat_view_of("Bob", &messages))
        .await;
    let hits = summaries.hits();
    assert_eq!(hits.len(), 1, "one action run, one request: {hits:?}");
    assert_eq!(hits[0].target, "/wiki/Rust_language");
    // An empty topic asks nothing; a topic the service does not know gets an answer that
    // says so.
    bob.send_chat_message("/wiki", true).await;
    bob.send_chat_message("/wiki Nowhere", true).await;
    sent(&mut messages, "Bob", "/wiki");
    sent(&mut messages, "Bob", "/wiki Nowhere");
    sent(
        &mut messages,
        "Wikipedia",
        "No summary of \"Nowhere\" (the service answered 404).",
    );
    alice
        .wait_for_chat("Alice", &chat_view_of("Alice", &messages))
        .await;
    bob.wait_for_chat("Bob", &chat_view_of("Bob", &messages))
        .await;
    assert_eq!(summaries.hits().len(), 2);
    alice.quit().await;
    bob.quit().await;
}
