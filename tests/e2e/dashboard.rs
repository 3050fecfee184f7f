//! The dashboard (`/_dashboard/`) in headless Chromium beside the chat example's page, as the
//! tutorial has the reader keep them: a message sent in the chat appears in the Data page's
//! grid without a reload, and its log line on the Logs page; an edit in the grid changes the
//! chat page live; a document the schema refuses is refused with the reason shown; the
//! function runner runs a live query, a mutation, an action and a failing call, acting as a
//! chosen user too; a browser without the admin key sees nothing. Each page's screenshot is
//! kept in `target/screenshots/dashboard/`.
//!
//! Nothing waits for time: every step polls the page for what it must show, and
//! [`crate::harness::DEADLINE`] only turns a hang into a failure.

use crate::harness::{Browser, Driver, TestServer};
use serde_json::{json, Value as Json};
use std::path::PathBuf;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .to_owned()
}

async fn chat_server() -> TestServer {
    TestServer::start("examples/chat", Some(repo_root().join("examples/chat/web"))).await
}

/// Keeps a PNG of what `browser` shows as a test artifact.
async fn screenshot(browser: &Browser, name: &str) {
    let png = browser
        .client
        .screenshot()
        .await
        .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
    let dir = repo_root().join("target/screenshots/dashboard");
    std::fs::create_dir_all(&dir).expect("the screenshots folder");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("writing a screenshot");
}

/// Opens the dashboard signed in, at `route`, with a desktop-sized window.
async fn open_dashboard(browser: &Browser, server: &TestServer, route: &str) {
    browser
        .client
        .set_window_size(1280, 800)
        .await
        .expect("sizing the window");
    let key: String = form_urlencoded::byte_serialize(server.admin_key().as_bytes()).collect();
    browser
        .goto(&server.url(&format!("/_dashboard/#key={key}")))
        .await;
    browser
        .wait_for(
            "the dashboard to sign in",
            "!document.querySelector('#app').hidden",
        )
        .await;
    // The key left the address bar at once.
    let address = browser.run("return location.href;", vec![]).await;
    assert!(
        !address.as_str().unwrap().contains("key="),
        "the key stays out of the address bar: {address}"
    );
    go(browser, route).await;
}

async fn go(browser: &Browser, route: &str) {
    browser
        .run("location.hash = arguments[0];", vec![json!(route)])
        .await;
}

/// The body cells of the grid's rows, in the order shown.
async fn grid_bodies(browser: &Browser) -> Json {
    browser
        .run(
            r##"return [...document.querySelectorAll("#grid tr.doc td[data-field='body']")].map((c) => c.textContent);"##,
            vec![],
        )
        .await
}

async fn open_chat(browser: &Browser, server: &TestServer, name: &str) {
    browser
        .client
        .set_window_size(640, 800)
        .await
        .expect("sizing the window");
    browser.goto(&server.url("/")).await;
    browser
        .wait_for(
            "the chat page to connect",
            "document.querySelector('#status').dataset.state === 'connected'",
        )
        .await;
    browser.type_into("#name", name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_and_logs_pages_follow_the_chat_live_and_edits_reach_it() {
    let server = chat_server().await;
    let driver = Driver::start();
    let chat = driver.browser().await;
    let dashboard = driver.browser().await;
    open_chat(&chat, &server, "Ada").await;
    chat.send_chat_message("before the dashboard", true).await;
    chat.wait_for_chat("Ada", &json!([["Ada", "before the dashboard", true]]))
        .await;

    open_dashboard(&dashboard, &server, "#/data/messages").await;
    dashboard
        .wait_for(
            "the grid to show the first message",
            r##"document.querySelector("#grid tr.doc td[data-field='body']")?.textContent === "before the dashboard""##,
        )
        .await;
    let count = dashboard
        .wait_for(
            "the table list to count one message",
            r##"document.querySelector(".table-item[data-table='messages'] .count")?.textContent.trim() === "1" && "1""##,
        )
        .await;
    assert_eq!(count, "1");
    // A mark on the page: still there afterwards means no reload happened.
    dashboard.run("window.notReloaded = true;", vec![]).await;

    // The scene: a message sent in the chat appears in the grid, newest first, live.
    chat.send_chat_message("hello, dashboard", true).await;
    dashboard
        .wait_for(
            "the grid to show the new message",
            r##"document.querySelector("#grid tr.doc td[data-field='body']")?.textContent === "hello, dashboard""##,
        )
        .await;
    assert_eq!(
        grid_bodies(&dashboard).await,
        json!(["hello, dashboard", "before the dashboard"])
    );
    dashboard
        .wait_for(
            "the count to follow",
            r##"document.querySelector(".table-item[data-table='messages'] .count")?.textContent.trim() === "2""##,
        )
        .await;
    assert_eq!(
        dashboard
            .run("return window.notReloaded === true;", vec![])
            .await,
        true
    );
    screenshot(&chat, "chat").await;
    screenshot(&dashboard, "data").await;

    // Its log line on the Logs page.
    go(&dashboard, "#/logs").await;
    let line = dashboard
        .wait_for(
            "the mutation's log line on the Logs page",
            r##"[...document.querySelectorAll(".log-row[data-path='chat:send_message'] .lines")].map((l) => l.textContent).find((t) => t.includes("This Rust function is running on the server."))"##,
        )
        .await;
    assert!(line.as_str().is_some(), "{line}");
    let outcomes = dashboard
        .run(
            r##"return [...document.querySelectorAll(".log-row[data-path='chat:send_message']")].map((r) => r.dataset.outcome);"##,
            vec![],
        )
        .await;
    assert_eq!(outcomes, json!(["success", "success"]));
    // A new execution arrives live, on top.
    chat.send_chat_message("third", true).await;
    dashboard
        .wait_for(
            "a third execution on the Logs page",
            r##"document.querySelectorAll(".log-row[data-path='chat:send_message']").length === 3"##,
        )
        .await;
    screenshot(&dashboard, "logs").await;
    assert_eq!(
        dashboard
            .run("return window.notReloaded === true;", vec![])
            .await,
        true
    );

    // An edit in the grid changes the chat page live.
    go(&dashboard, "#/data/messages").await;
    dashboard
        .wait_for(
            "the grid's newest row",
            r##"document.querySelector("#grid tr.doc td[data-field='body']")?.textContent === "third""##,
        )
        .await;
    dashboard.click("#grid tr.doc button.edit").await;
    dashboard
        .wait_for("the editor", "document.querySelector('#editor-text') && document.querySelector('#editor-text').offsetParent !== null")
        .await;
    let shown = dashboard
        .run(
            "return JSON.parse(document.querySelector('#editor-text').value);",
            vec![],
        )
        .await;
    assert_eq!(shown, json!({"user": "Ada", "body": "third"}));
    dashboard
        .type_into(
            "#editor-text",
            r##"{"user": "Ada", "body": "edited in the dashboard"}"##,
        )
        .await;
    dashboard.click("#editor-save").await;
    chat.wait_for_chat(
        "Ada",
        &json!([
            ["Ada", "before the dashboard", true],
            ["Ada", "hello, dashboard", true],
            ["Ada", "edited in the dashboard", true]
        ]),
    )
    .await;

    // A document the schema refuses: the reason is shown, nothing is written.
    dashboard.click("#add-doc").await;
    dashboard
        .type_into("#editor-text", r##"{"user": "Ada", "body": 42}"##)
        .await;
    dashboard.click("#editor-save").await;
    let reason = dashboard
        .wait_for(
            "the schema's refusal in the editor",
            "document.querySelector('#editor-error')?.textContent",
        )
        .await;
    let reason = reason.as_str().unwrap();
    assert!(
        reason.contains("does not match its schema") && reason.contains("body"),
        "{reason}"
    );
    screenshot(&dashboard, "schema-refused").await;
    // Malformed JSON is caught before anything is sent.
    dashboard.type_into("#editor-text", r##"{"user": "##).await;
    dashboard.click("#editor-save").await;
    dashboard
        .wait_for(
            "the syntax error in the editor",
            "!(document.querySelector('#editor-error')?.textContent || '').includes('schema')",
        )
        .await;
    dashboard.click("#editor-cancel").await;
    assert_eq!(grid_bodies(&dashboard).await.as_array().unwrap().len(), 3);

    // Deleting in the grid deletes in the chat: the button asks to be pressed twice.
    dashboard.click("#grid tr.doc button.delete").await;
    dashboard
        .wait_for(
            "the delete to ask for confirmation",
            "document.querySelector('#grid tr.doc button.delete.confirming')",
        )
        .await;
    dashboard
        .click("#grid tr.doc button.delete.confirming")
        .await;
    chat.wait_for_chat(
        "Ada",
        &json!([
            ["Ada", "before the dashboard", true],
            ["Ada", "hello, dashboard", true]
        ]),
    )
    .await;
    chat.quit().await;
    dashboard.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_runner_runs_a_live_query_a_mutation_an_action_and_a_failing_call() {
    let summaries = crate::http_target::Target::start().await;
    let server = chat_server().await;
    server.set_env("WIKI_SUMMARY_URL", &summaries.url("/wiki"));
    let driver = Driver::start();
    let dashboard = driver.browser().await;
    open_dashboard(&dashboard, &server, "#/functions/chat:get_messages").await;
    dashboard
        .wait_for(
            "the function's detail",
            "document.querySelector('#fn-kind')?.textContent.includes('query')",
        )
        .await;
    dashboard.click("#run").await;
    dashboard
        .wait_for(
            "the query to run live",
            "document.querySelector('#run-status')?.textContent === 'live'",
        )
        .await;
    assert_eq!(
        dashboard
            .run(
                "return JSON.parse(document.querySelector('#run-result').textContent);",
                vec![]
            )
            .await,
        json!([])
    );

    // A mutation from the runner's form: its result, log lines and duration shown, and the
    // live query above it sees the write.
    go(&dashboard, "#/functions/chat:send_message").await;
    dashboard
        .wait_for(
            "the mutation's form",
            "document.querySelector('[data-arg=user]')",
        )
        .await;
    dashboard.type_into("[data-arg=user]", "Runner").await;
    dashboard
        .type_into("[data-arg=body]", "sent from the runner")
        .await;
    let args = dashboard
        .wait_for(
            "the form and the JSON to agree",
            "(() => { try { const a = JSON.parse(document.querySelector('#args-json').value); return a.body === 'sent from the runner' && a; } catch { return false; } })()",
        )
        .await;
    assert_eq!(
        args,
        json!({"user": "Runner", "body": "sent from the runner"})
    );
    dashboard.click("#run").await;
    dashboard
        .wait_for(
            "the mutation to succeed",
            "document.querySelector('#run-status')?.textContent === 'success'",
        )
        .await;
    let logs = dashboard
        .run(
            "return document.querySelector('#run-logs').textContent;",
            vec![],
        )
        .await;
    assert!(
        logs.as_str()
            .unwrap()
            .contains("This Rust function is running on the server."),
        "{logs}"
    );
    let duration = dashboard
        .run(
            "return document.querySelector('#run-duration').textContent;",
            vec![],
        )
        .await;
    assert!(duration.as_str().unwrap().contains("ms"), "{duration}");
    screenshot(&dashboard, "functions-mutation").await;

    // The query's result follows the data: back to it, and a write from elsewhere.
    go(&dashboard, "#/functions/chat:get_messages").await;
    dashboard
        .wait_for(
            "the function's detail",
            "document.querySelector('#fn-kind')?.textContent.includes('query')",
        )
        .await;
    dashboard.click("#run").await;
    dashboard
        .wait_for(
            "the query's result to hold the runner's message",
            "document.querySelector('#run-result')?.textContent.includes('sent from the runner')",
        )
        .await;
    let call = json!({"path": "chat:send_message", "args": {"user": "Elsewhere", "body": "a later write"}});
    let response = reqwest_post(&server.url("/api/mutation"), &call).await;
    assert_eq!(response["status"], "success", "{response}");
    dashboard
        .wait_for(
            "the live result to show the later write",
            "document.querySelector('#run-result')?.textContent.includes('a later write') && document.querySelector('#run-status').textContent === 'live'",
        )
        .await;
    screenshot(&dashboard, "functions-query").await;

    // A failing call: the error is shown.
    go(&dashboard, "#/functions/chat:delete_message").await;
    dashboard
        .wait_for(
            "the mutation's form",
            "document.querySelector('[data-arg=id]')",
        )
        .await;
    dashboard.type_into("[data-arg=id]", "no-such-id").await;
    dashboard.click("#run").await;
    dashboard
        .wait_for(
            "the call to fail",
            "document.querySelector('#run-status')?.textContent === 'error'",
        )
        .await;
    let error = dashboard
        .run(
            "return document.querySelector('#run-error').textContent;",
            vec![],
        )
        .await;
    assert!(error.as_str().unwrap().contains("no-such-id"), "{error}");
    screenshot(&dashboard, "functions-error").await;

    // An internal action, which only the admin may run: it fetches from the test's own
    // summary server and posts through an internal mutation.
    go(&dashboard, "#/functions/wiki:summary").await;
    dashboard
        .wait_for("the action's form", "document.querySelector('#fn-kind')?.textContent.includes('action') && document.querySelector('[data-arg=topic]')")
        .await;
    dashboard
        .type_into("[data-arg=topic]", "Rust language")
        .await;
    dashboard.click("#run").await;
    dashboard
        .wait_for(
            "the action to succeed",
            "document.querySelector('#run-status')?.textContent === 'success'",
        )
        .await;
    let call = json!({"path": "chat:get_messages", "args": {}, "format": "json"});
    let listed = reqwest_post(&server.url("/api/query"), &call).await;
    let newest = listed["value"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (newest["user"].as_str(), newest["body"].as_str()),
        (
            Some("Wikipedia"),
            Some("Rust language is a summary from the test's server.")
        ),
        "{listed}"
    );

    // The other pages, as they look with this traffic.
    go(&dashboard, "#/health").await;
    dashboard
        .wait_for(
            "the mutation's figures on the Health page",
            r##"document.querySelector(".fn-health[data-path='chat:send_message']")"##,
        )
        .await;
    screenshot(&dashboard, "health").await;
    go(&dashboard, "#/settings").await;
    let version = dashboard
        .wait_for(
            "the module's version on the Settings page",
            "document.querySelector('#module-version')?.title",
        )
        .await;
    let module_hash =
        reqwest_get_admin(&server, "/api/dashboard/deployment").await["version"].clone();
    assert_eq!(version, module_hash);
    screenshot(&dashboard, "settings").await;
    go(&dashboard, "#/schedules").await;
    dashboard
        .wait_for("the Schedules page", "document.querySelector('#jobs')")
        .await;
    screenshot(&dashboard, "schedules").await;
    dashboard.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_runner_acts_as_a_chosen_user() {
    // The chat with sign-in: its functions read the caller's identity.
    let key = crate::issuer::TestKey::rsa("dashboard-1");
    let issuer = crate::issuer::Issuer::start(&[&key]).await;
    let server = TestServer::start_with_auth(
        "examples/chat-auth",
        None,
        crate::issuer::chat_auth_settings(&issuer),
    )
    .await;
    let driver = Driver::start();
    let dashboard = driver.browser().await;
    open_dashboard(&dashboard, &server, "#/functions/users:whoami").await;
    dashboard
        .wait_for(
            "the function's detail",
            "document.querySelector('#fn-kind')?.textContent.includes('query')",
        )
        .await;
    // As the admin alone: no user.
    dashboard.click("#run").await;
    dashboard
        .wait_for("whoami as nobody", "document.querySelector('#run-status')?.textContent === 'live' && document.querySelector('#run-result').textContent.trim() === 'null'")
        .await;
    // As a user of the deployment's provider: whoami answers with that identity.
    dashboard
        .type_into(
            "#acting-as",
            r##"{"subject": "user-7", "issuer": "https://issuer.example", "name": "Ann"}"##,
        )
        .await;
    dashboard.click("#run").await;
    let whoami = dashboard
        .wait_for(
            "whoami as Ann",
            "(() => { try { const v = JSON.parse(document.querySelector('#run-result').textContent); return v && v.subject === 'user-7' && v; } catch { return false; } })()",
        )
        .await;
    assert_eq!(whoami["name"], "Ann", "{whoami}");
    assert_eq!(whoami["issuer"], "https://issuer.example", "{whoami}");
    screenshot(&dashboard, "functions-acting-as").await;
    // A mutation acting as her is written as hers.
    go(&dashboard, "#/functions/chat:send").await;
    dashboard
        .wait_for(
            "the mutation's form",
            "document.querySelector('[data-arg=body]')",
        )
        .await;
    dashboard
        .type_into("[data-arg=body]", "written as Ann")
        .await;
    dashboard
        .type_into(
            "#acting-as",
            r##"{"subject": "user-7", "issuer": "https://issuer.example", "name": "Ann"}"##,
        )
        .await;
    dashboard.click("#run").await;
    dashboard
        .wait_for(
            "the mutation to succeed",
            "document.querySelector('#run-status')?.textContent === 'success'",
        )
        .await;
    let call = json!({"path": "chat:list", "args": {}, "format": "json"});
    let listed = reqwest_post(&server.url("/api/query"), &call).await;
    assert_eq!(listed["value"][0]["body"], "written as Ann", "{listed}");
    assert_eq!(listed["value"][0]["name"], "Ann", "{listed}");
    assert_eq!(
        listed["value"][0]["author"], "https://issuer.example|user-7",
        "{listed}"
    );
    dashboard.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_refuses_a_browser_without_the_admin_key() {
    let server = chat_server().await;
    let call = json!({"path": "chat:send_message", "args": {"user": "Ada", "body": "private"}});
    reqwest_post(&server.url("/api/mutation"), &call).await;
    let driver = Driver::start();
    let browser = driver.browser().await;
    browser
        .goto(&server.url("/_dashboard/#/data/messages"))
        .await;
    browser
        .wait_for(
            "the sign-in form",
            "!document.querySelector('#signin').hidden",
        )
        .await;
    assert_eq!(
        browser
            .run("return document.querySelector('#app').hidden;", vec![])
            .await,
        true
    );
    // A wrong key is refused with the server's reason, and shows nothing.
    browser
        .type_into("#admin-key", &format!("fvx_admin_{}", "0".repeat(64)))
        .await;
    browser.click("#signin-submit").await;
    let refusal = browser
        .wait_for(
            "the refusal",
            "document.querySelector('#signin-error')?.textContent",
        )
        .await;
    assert!(refusal.as_str().unwrap().contains("admin key"), "{refusal}");
    let text = browser.run("return document.body.innerText;", vec![]).await;
    assert!(!text.as_str().unwrap().contains("private"), "{text}");
    assert_eq!(
        browser
            .run("return document.querySelector('#app').hidden;", vec![])
            .await,
        true
    );
    screenshot(&browser, "signin-refused").await;
    // The right one opens it.
    browser.type_into("#admin-key", &server.admin_key()).await;
    browser.click("#signin-submit").await;
    browser
        .wait_for(
            "the dashboard to open",
            "!document.querySelector('#app').hidden",
        )
        .await;
    go(&browser, "#/data/messages").await;
    browser
        .wait_for(
            "the message in the grid",
            r##"document.querySelector("#grid tr.doc td[data-field='body']")?.textContent === "private""##,
        )
        .await;
    // A sign-in link opened in a tab that is signed in already keeps it signed in.
    let key: String = form_urlencoded::byte_serialize(server.admin_key().as_bytes()).collect();
    go(&browser, &format!("#key={key}")).await;
    browser
        .wait_for(
            "the tab to sign in again from the link",
            "!location.hash.includes('key=') && !document.querySelector('#app').hidden && document.querySelector('#signin').hidden",
        )
        .await;
    go(&browser, "#/data/messages").await;
    browser
        .wait_for(
            "the grid after the link",
            r##"document.querySelector("#grid tr.doc td[data-field='body']")?.textContent === "private""##,
        )
        .await;
    // Signing out forgets the key.
    browser.click("#signout").await;
    browser
        .wait_for(
            "the sign-in form again",
            "!document.querySelector('#signin').hidden",
        )
        .await;
    browser.goto(&server.url("/_dashboard/")).await;
    browser
        .wait_for(
            "the sign-in form after a reload",
            "!document.querySelector('#signin').hidden",
        )
        .await;
    browser.quit().await;
}

async fn reqwest_post(url: &str, body: &Json) -> Json {
    http(hyper::Method::POST, url, Some(body), None).await
}

async fn reqwest_get_admin(server: &TestServer, path: &str) -> Json {
    http(
        hyper::Method::GET,
        &server.url(path),
        None,
        Some(&server.admin_key()),
    )
    .await
}

/// One HTTP request to the test's server on loopback; the JSON answer.
async fn http(
    method: hyper::Method,
    url: &str,
    body: Option<&Json>,
    admin_key: Option<&str>,
) -> Json {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<hyper::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(key) = admin_key {
        request = request.header("authorization", format!("Convex {key}"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let response = client
        .request(request.body(Full::new(body.into())).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{url}: {e}"))
}
