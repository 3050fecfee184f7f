//! The browser client (`/api/client.js`) and the chat example's page, in headless Chromium
//! driven over WebDriver, against a server running in this process.
//!
//! The client tests load a page that wraps `WebSocket` so a test can drop or hold frames
//! the server sent and close the socket, which makes lost answers and broken version chains
//! happen on cue instead of by chance. Nothing waits for time: tests poll for a condition,
//! and [`crate::harness::DEADLINE`] only turns a hang into a failure.

use crate::harness::{Browser, Driver, TestServer};
use serde_json::{json, Value as Json};
use std::path::PathBuf;

const HOSTILE: &str = "runtime/tests/guests/hostile";

/// The client test page: loads `/api/client.js` behind a `WebSocket` that tests can fault.
const CLIENT_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>browser client test</title>
<script type="module">
  const faults = (window.faults = {
    dropTransitions: 0,
    dropMutationResponses: false,
    holdTransitions: false,
    held: [],
    mutationResponses: 0,
    sockets: [],
    sent: [],
    release() {
      const held = this.held;
      this.held = [];
      for (const [handler, event] of held) handler(event);
    },
  });
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      faults.sockets.push(this);
    }
    send(data) {
      faults.sent.push(JSON.parse(data));
      super.send(data);
    }
    set onmessage(handler) {
      super.onmessage = (event) => {
        const type = JSON.parse(event.data).type;
        if (type === "Transition" && faults.dropTransitions > 0) {
          faults.dropTransitions--;
          return;
        }
        if (type === "Transition" && faults.holdTransitions) {
          faults.held.push([handler, event]);
          return;
        }
        if (type === "MutationResponse" && faults.dropMutationResponses) return;
        handler(event);
        if (type === "MutationResponse") faults.mutationResponses++;
      };
    }
  };
  window.runtime = await import("/api/client.js");
</script>
"#;

fn client_page_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("index.html"), CLIENT_PAGE).expect("writing the page");
    dir
}

/// Opens the client test page with a `Client` subscribed to `hostile:list_values`; each
/// result lands in `window.seen`.
async fn open_client_page(browser: &Browser, server: &TestServer) {
    browser.goto(&server.url("/")).await;
    browser
        .wait_for("the page to load /api/client.js", "!!window.runtime")
        .await;
    browser
        .run(
            r#"
            window.client = new window.runtime.Client();
            window.seen = [];
            window.client.subscribe("hostile:list_values", {}, (docs) => window.seen.push(docs));
            "#,
            vec![],
        )
        .await;
    browser
        .wait_for("the first result", "window.seen.length > 0")
        .await;
}

/// The `value` fields of the latest `hostile:list_values` result the page holds.
const LATEST_VALUES: &str = "window.seen.at(-1).map((doc) => doc.value)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_client_decodes_values_and_resolves_mutations_once_shown() {
    let web = client_page_dir();
    let server = TestServer::start(HOSTILE, Some(web.path().to_owned())).await;
    let driver = Driver::start();
    let browser = driver.browser().await;
    open_client_page(&browser, &server).await;

    let served = browser
        .run(
            r#"const response = await fetch("/api/client.js");
               return [response.status, response.headers.get("content-type")];"#,
            vec![],
        )
        .await;
    assert_eq!(served, json!([200, "text/javascript; charset=utf-8"]));

    // Every wire type, both ways: encoded into arguments, decoded from the mutation's result
    // and from the subscription.
    let values = browser
        .run(
            r#"
            const value = {
              int: 42n, min: -(2n ** 63n), bytes: new Uint8Array([0, 1, 254, 255]),
              nan: NaN, inf: Infinity, ninf: -Infinity, float: 1.5, s: "all types",
              nested: [7n, { x: null, t: true }],
            };
            const result = await window.client.mutation("hostile:put_value", { value });
            const latest = window.seen.at(-1);
            const doc = latest.find((d) => d.value.s === "all types");
            if (!doc) throw new Error("the mutation resolved before the subscription showed it");
            const describe = (v) => ({
              int: typeof v.int, intText: v.int.toString(), min: v.min.toString(),
              bytes: v.bytes instanceof Uint8Array, bytesList: Array.from(v.bytes),
              nan: Number.isNaN(v.nan), inf: v.inf === Infinity, ninf: v.ninf === -Infinity,
              float: v.float, nested: typeof v.nested[0], nestedText: v.nested[0].toString(),
              inner: v.nested[1],
            });
            const response = await fetch("/api/query", {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ path: "hostile:list_values", args: [{}], format: "convex_encoded_json" }),
            });
            const wire = (await response.json()).value[0];
            return {
              result: describe(result), stored: describe(doc.value), wire: wire.value,
              system: [typeof doc._id, typeof doc._creationTime],
            };
            "#,
            vec![],
        )
        .await;
    let decoded = json!({
        "int": "bigint", "intText": "42", "min": "-9223372036854775808",
        "bytes": true, "bytesList": [0, 1, 254, 255],
        "nan": true, "inf": true, "ninf": true,
        "float": 1.5, "nested": "bigint", "nestedText": "7", "inner": {"x": null, "t": true},
    });
    assert_eq!(values["result"], decoded, "the mutation's result");
    assert_eq!(values["stored"], decoded, "the subscription's document");
    assert_eq!(values["system"], json!(["string", "number"]));
    assert_eq!(
        values["wire"],
        json!({
            "int": {"$integer": "KgAAAAAAAAA="}, "min": {"$integer": "AAAAAAAAAIA="},
            "bytes": {"$bytes": "AAH+/w=="},
            "nan": {"$float": "AAAAAAAA+H8="}, "inf": {"$float": "AAAAAAAA8H8="}, "ninf": {"$float": "AAAAAAAA8P8="},
            "float": 1.5, "s": "all types", "nested": [{"$integer": "BwAAAAAAAAA="}, {"x": null, "t": true}],
        }),
        "what the server stored from the encoded arguments"
    );

    // Read your writes: with transitions held back, the answered mutation stays pending;
    // once they are let through it resolves, and the subscription already shows the write.
    let held = browser
        .run(
            r#"
            const faults = window.faults;
            faults.holdTransitions = true;
            const answered = faults.mutationResponses;
            let resolved = false;
            const done = window.client.mutation("hostile:put_value", { value: "held" }).then(() => {
              resolved = true;
              return window.seen.at(-1).map((doc) => doc.value);
            });
            await new Promise((ready) => {
              const poll = () => (faults.mutationResponses > answered ? ready() : setTimeout(poll, 10));
              poll();
            });
            // A task after the answer was handled: its promise reactions have all run.
            await new Promise((next) => setTimeout(next, 0));
            const resolvedOnAnswerAlone = resolved;
            faults.holdTransitions = false;
            faults.release();
            const shown = await done;
            return { resolvedOnAnswerAlone, shown: shown.includes("held") };
            "#,
            vec![],
        )
        .await;
    assert_eq!(
        held,
        json!({"resolvedOnAnswerAlone": false, "shown": true}),
        "guarantee 5: a mutation resolves once a transition at or after its commit is applied"
    );

    // Failures reject with the function's message, data and log lines; a one-shot query.
    let failures = browser
        .run(
            r#"
            const outcome = async (promise) => {
              try {
                await promise;
                return "resolved";
              } catch (e) {
                return {
                  name: e.name, message: e.message, logLines: e.logLines ?? null,
                  data: e.data === undefined ? "absent" : { type: typeof e.data.code, text: String(e.data.code) },
                };
              }
            };
            const client = window.client;
            const count = await client.query("hostile:count", {});
            return {
              error: await outcome(client.mutation("hostile:err_after_writes", {})),
              panic: await outcome(client.mutation("hostile:panic_after_writes", {})),
              dollar: await outcome(client.mutation("hostile:put_value", { value: { $x: 1 } })),
              count: [typeof count, count.toString()],
            };
            "#,
            vec![],
        )
        .await;
    let error = &failures["error"];
    assert_eq!(error["name"], "FunctionError", "{failures}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("deliberate error after a write"),
        "{failures}"
    );
    assert_eq!(error["data"], json!({"type": "bigint", "text": "42"}));
    assert_eq!(error["logLines"], json!([]));
    let panic = &failures["panic"];
    assert!(
        panic["message"].as_str().unwrap().contains("panicked"),
        "{failures}"
    );
    assert_eq!(panic["data"], "absent");
    assert_eq!(panic["logLines"], json!(["[LOG] about to panic"]));
    assert!(
        failures["dollar"]["message"]
            .as_str()
            .unwrap()
            .contains("$x"),
        "a field name starting with $ is refused before sending: {failures}"
    );
    assert_eq!(failures["count"], json!(["bigint", "0"]));

    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_client_reconnects_resends_and_survives_a_server_restart() {
    let web = client_page_dir();
    let mut server = TestServer::start(HOSTILE, Some(web.path().to_owned())).await;
    let driver = Driver::start();
    let browser = driver.browser().await;
    open_client_page(&browser, &server).await;

    // A transition that does not chain (one was lost) makes the client reconnect, and the
    // new connection brings both writes.
    let chained = browser
        .run(
            r#"
            const faults = window.faults;
            faults.dropTransitions = 1;
            const first = window.client.mutation("hostile:put_value", { value: "a" });
            await new Promise((ready) => {
              const poll = () => (faults.dropTransitions === 0 ? ready() : setTimeout(poll, 10));
              poll();
            });
            const second = window.client.mutation("hostile:put_value", { value: "b" });
            await Promise.all([first, second]);
            return window.seen.at(-1).map((doc) => doc.value);
            "#,
            vec![],
        )
        .await;
    assert_eq!(chained, json!(["a", "b"]));
    let sent = browser.run("return window.faults.sent;", vec![]).await;
    let connects = frames(&sent, "Connect");
    assert_eq!(connects.len(), 2, "a broken chain reconnects once: {sent}");
    assert_eq!(connects[0]["connectionCount"], 0);
    assert_eq!(connects[1]["connectionCount"], 1);
    assert_eq!(connects[0]["sessionId"], connects[1]["sessionId"]);
    // After the reconnect: Connect, then the whole query set from version 0.
    let after = frames_after_nth_connect(&sent, 1);
    assert_eq!(after[0]["type"], "ModifyQuerySet", "{sent}");
    assert_eq!(after[0]["baseVersion"], 0);
    assert_eq!(after[0]["newVersion"], 1);
    assert_eq!(
        after[0]["modifications"],
        json!([{"type": "Add", "queryId": 1, "udfPath": "hostile:list_values", "args": [{}]}])
    );

    // An answer lost with the connection: the client re-sends the mutation with its request
    // id, the server returns the original outcome, and it is applied once.
    browser
        .run(
            r#"
            window.faults.dropMutationResponses = true;
            window.lost = window.client.mutation("hostile:put_value", { value: "c" })
              .then((result) => (window.lostResult = result));
            "#,
            vec![],
        )
        .await;
    browser
        .wait_for(
            "the write of the unanswered mutation",
            &format!("{LATEST_VALUES}.includes('c')"),
        )
        .await;
    browser
        .run(
            r#"
            const faults = window.faults;
            faults.dropMutationResponses = false;
            faults.sockets.at(-1).close();
            await window.lost;
            "#,
            vec![],
        )
        .await;
    let state = browser
        .run(
            &format!("return {{ values: {LATEST_VALUES}, result: window.lostResult, sent: window.faults.sent }};"),
            vec![],
        )
        .await;
    assert_eq!(state["values"], json!(["a", "b", "c"]), "applied once");
    assert_eq!(state["result"], "c");
    let resent: Vec<&Json> = frames(&state["sent"], "Mutation")
        .into_iter()
        .filter(|m| m["args"][0]["value"] == "c")
        .collect();
    assert_eq!(resent.len(), 2, "sent, then re-sent after the reconnect");
    assert_eq!(resent[0]["requestId"], resent[1]["requestId"]);

    // A mutation the server applied but whose answer is lost with the server; then the
    // server stops, and a mutation made meanwhile waits. Once the server is back on the same
    // port and data the client reconnects and sends both: each is applied exactly once.
    browser
        .run(
            r#"
            window.faults.dropMutationResponses = true;
            window.unanswered = window.client.mutation("hostile:put_value", { value: "c2" })
              .then((result) => (window.unansweredResult = result));
            "#,
            vec![],
        )
        .await;
    browser
        .wait_for(
            "the write of the mutation whose answer is lost",
            &format!("{LATEST_VALUES}.includes('c2')"),
        )
        .await;
    browser
        .run("window.faults.dropMutationResponses = false;", vec![])
        .await;
    server.stop().await;
    browser
        .wait_for(
            "the client to notice the server is gone",
            "window.client.connectionStatus().state !== 'connected'",
        )
        .await;
    browser
        .run(
            r#"
            window.queued = window.client.mutation("hostile:put_value", { value: "d" })
              .then((result) => (window.queuedResult = result));
            "#,
            vec![],
        )
        .await;
    server.restart().await;
    browser
        .wait_for(
            "the queued mutation to resolve",
            "window.queuedResult === 'd'",
        )
        .await;
    browser
        .wait_for(
            "the re-sent mutation to resolve",
            "window.unansweredResult === 'c2'",
        )
        .await;
    assert_eq!(
        browser
            .run(&format!("return {LATEST_VALUES};"), vec![])
            .await,
        json!(["a", "b", "c", "c2", "d"])
    );
    // Another client's write reaches the subscription on the new connection.
    browser
        .run(
            r#"
            await fetch("/api/mutation", {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ path: "hostile:put_value", args: { value: "e" } }),
            });
            "#,
            vec![],
        )
        .await;
    browser
        .wait_for(
            "the subscription to show a write made after the restart",
            &format!("{LATEST_VALUES}.includes('e')"),
        )
        .await;
    let end = browser
        .run(
            &format!(
                "return {{ values: {LATEST_VALUES}, status: window.client.connectionStatus(), sent: window.faults.sent }};"
            ),
            vec![],
        )
        .await;
    assert_eq!(end["values"], json!(["a", "b", "c", "c2", "d", "e"]));
    let resent: Vec<&Json> = frames(&end["sent"], "Mutation")
        .into_iter()
        .filter(|m| m["args"][0]["value"] == "c2")
        .collect();
    assert_eq!(
        resent.len(),
        2,
        "sent, then re-sent to the restarted server"
    );
    assert_eq!(resent[0]["requestId"], resent[1]["requestId"]);
    assert_eq!(end["status"]["state"], "connected");
    assert_eq!(end["status"]["pendingMutations"], 0);
    let connects = frames(&end["sent"], "Connect");
    let counts: Vec<u64> = connects
        .iter()
        .map(|c| c["connectionCount"].as_u64().unwrap())
        .collect();
    assert_eq!(
        counts,
        (0..counts.len() as u64).collect::<Vec<_>>(),
        "each connection counts one more"
    );
    assert!(connects
        .iter()
        .all(|c| c["sessionId"] == connects[0]["sessionId"]));
    browser.quit().await;
}

/// The frames of one type a page's client sent.
fn frames<'a>(sent: &'a Json, kind: &str) -> Vec<&'a Json> {
    sent.as_array()
        .expect("an array of frames")
        .iter()
        .filter(|frame| frame["type"] == kind)
        .collect()
}

/// The frames sent after the `n`th (from 0) `Connect`.
fn frames_after_nth_connect(sent: &Json, n: usize) -> Vec<&Json> {
    let sent = sent.as_array().expect("an array of frames");
    let at = sent
        .iter()
        .enumerate()
        .filter(|(_, frame)| frame["type"] == "Connect")
        .nth(n)
        .map(|(i, _)| i)
        .expect("that many connects");
    sent[at + 1..].iter().collect()
}

async fn set_name(browser: &Browser, name: &str) {
    browser.type_into("#name", name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_page_shows_messages_live_in_two_windows_across_a_restart() {
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .join("examples/chat/web");
    let mut server = TestServer::start("examples/chat", Some(web)).await;
    let driver = Driver::start();
    // Two browsers: two sessions, each with its own storage and name.
    let alice = driver.browser().await;
    let bob = driver.browser().await;
    for browser in [&alice, &bob] {
        browser.goto(&server.url("/")).await;
        browser
            .wait_for(
                "the chat page to connect",
                "document.querySelector('#status').dataset.state === 'connected'",
            )
            .await;
        let name = browser
            .run("return document.querySelector('#name').value;", vec![])
            .await;
        assert!(
            name.as_str()
                .is_some_and(|n| n.starts_with("User ") && n[5..].parse::<u32>().is_ok()),
            "a random default name: {name}"
        );
    }
    set_name(&alice, "Alice").await;
    set_name(&bob, "Bob").await;

    alice.send_chat_message("hello from alice", true).await;
    bob.wait_for_chat("Bob", &json!([["Alice", "hello from alice", false]]))
        .await;
    bob.send_chat_message("hi alice", false).await;
    let mut expected = vec![("Alice", "hello from alice"), ("Bob", "hi alice")];
    for (n, body) in ["one", "two", "three"].into_iter().enumerate() {
        alice.send_chat_message(body, n % 2 == 0).await;
        expected.push(("Alice", body));
    }
    let shown = |me: &str, expected: &[(&str, &str)]| {
        json!(expected
            .iter()
            .map(|(user, body)| json!([user, body, *user == me]))
            .collect::<Vec<_>>())
    };
    alice
        .wait_for_chat("Alice", &shown("Alice", &expected))
        .await;
    bob.wait_for_chat("Bob", &shown("Bob", &expected)).await;
    let composer = alice
        .run("return document.querySelector('#body').value;", vec![])
        .await;
    assert_eq!(composer, "", "sending clears the composer");

    // A restart on the same port and data: both pages reconnect, keep every message, and
    // new messages still flow both ways.
    server.restart().await;
    bob.send_chat_message("still here?", true).await;
    expected.push(("Bob", "still here?"));
    alice
        .wait_for_chat("Alice", &shown("Alice", &expected))
        .await;
    alice.send_chat_message("yes", true).await;
    expected.push(("Alice", "yes"));
    bob.wait_for_chat("Bob", &shown("Bob", &expected)).await;
    alice
        .wait_for_chat("Alice", &shown("Alice", &expected))
        .await;

    // A reload keeps the window's name and shows the stored history.
    bob.client.refresh().await.expect("reloading");
    bob.wait_for_chat("Bob after a reload", &shown("Bob", &expected))
        .await;
    assert_eq!(
        bob.run("return document.querySelector('#name').value;", vec![])
            .await,
        "Bob"
    );

    alice.quit().await;
    bob.quit().await;
}
