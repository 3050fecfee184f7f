//! Sign-in with the official npm client in Chromium: `ConvexClient.setAuth` with tokens of an
//! OpenID Connect issuer of the test's own on loopback, against `examples/chat-auth`. The
//! page loads the npm package's browser bundle (`convex/dist/browser.bundle.js`, from
//! tests/js's packages, which `scripts/setup` installs) from the server's own web folder.
//!
//! Shows: `onChange(true)` fires once the server acknowledges the identity; a live query
//! sees the identity, and re-runs when the user signs out; a mutation's author comes from
//! the token. Nothing waits for time: every wait is for a condition in the page.

use crate::guests;
use crate::harness::{Driver, TestServer};
use crate::issuer::{chat_auth_settings, Issuer, TestKey, OIDC_APPLICATION_ID};
use serde_json::json;

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>sign-in</title>
<script src="/convex.js"></script>
<script>
  // What the test reads: every whoami result, every onChange, every token asked for.
  window.seen = { whoami: [], authChanges: [], tokenRequests: [], messages: [] };
  window.nextToken = null;
  const client = new convex.ConvexClient(location.origin);
  window.client = client;
  client.onUpdate(convex.anyApi.users.whoami, {}, (value) => window.seen.whoami.push(value));
  client.onUpdate(convex.anyApi.chat.list, {}, (value) => { window.seen.messages = value; });
  window.signIn = () => client.setAuth(
    async ({ forceRefreshToken }) => {
      window.seen.tokenRequests.push(forceRefreshToken);
      return window.nextToken;
    },
    (isAuthenticated) => window.seen.authChanges.push(isAuthenticated),
  );
  window.signOut = () => client.client.clearAuth();
</script>
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_npm_client_signs_in_and_out_with_set_auth() {
    let key = TestKey::rsa("browser-1");
    let issuer = Issuer::start(&[&key]).await;
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), PAGE).unwrap();
    let bundle = guests::repo_root().join("tests/js/node_modules/convex/dist/browser.bundle.js");
    std::fs::copy(&bundle, web.path().join("convex.js")).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/setup (npm ci in tests/js)",
            bundle.display()
        )
    });
    let settings = chat_auth_settings(&issuer);
    let server =
        TestServer::start_with_auth("examples/chat-auth", Some(web.path().to_owned()), settings)
            .await;
    let driver = Driver::start();
    let browser = driver.browser().await;
    browser.goto(&server.url("/")).await;
    browser
        .wait_for("the first whoami result", "window.seen.whoami.length === 1")
        .await;
    assert_eq!(
        browser.run("return window.seen.whoami[0];", vec![]).await,
        json!(null),
        "signed out, the query sees nobody"
    );

    // A mutation that needs sign-in fails while signed out.
    let refused = browser
        .run(
            "try { await window.client.mutation(convex.anyApi.chat.send, { body: 'anon' }); return 'sent'; } catch (e) { return String(e.message); }",
            vec![],
        )
        .await;
    assert!(
        refused
            .as_str()
            .unwrap()
            .contains("chat:send: sign in to send messages"),
        "{refused}"
    );

    // Sign in: the server acknowledges the identity, onChange(true) fires, the live query
    // re-runs for the user.
    let mut claims = issuer.claims("ada", OIDC_APPLICATION_ID);
    claims["name"] = json!("Ada Lovelace");
    let token = key.sign(&claims);
    browser
        .run(
            "window.nextToken = args[0]; window.signIn();",
            vec![json!(token)],
        )
        .await;
    browser
        .wait_for("onChange(true)", "window.seen.authChanges.includes(true)")
        .await;
    let identity = browser
        .wait_for(
            "whoami to show the user",
            "window.seen.whoami.map((v) => v && v.tokenIdentifier).find(Boolean)",
        )
        .await;
    assert_eq!(identity, json!(format!("{}|ada", issuer.url)));
    let requests = browser
        .run("return window.seen.tokenRequests;", vec![])
        .await;
    assert!(
        requests.as_array().unwrap().contains(&json!(true)),
        "after the acknowledgement the client fetched a fresh token: {requests}"
    );

    // A message's author is the token's identity, whatever the page would claim.
    browser
        .run(
            "await window.client.mutation(convex.anyApi.chat.send, { body: 'hello' });",
            vec![],
        )
        .await;
    let author = browser
        .wait_for(
            "the message in the live list",
            "window.seen.messages.length === 1 && window.seen.messages[0]",
        )
        .await;
    assert_eq!(author["name"], "Ada Lovelace", "{author}");
    assert_eq!(
        author["author"],
        json!(format!("{}|ada", issuer.url)),
        "{author}"
    );

    // Sign out: the query re-runs for nobody.
    let before = browser
        .run("return window.seen.whoami.length;", vec![])
        .await;
    browser.run("window.signOut();", vec![]).await;
    browser
        .wait_for(
            "whoami to re-run signed out",
            &format!(
                "window.seen.whoami.length > {before} && window.seen.whoami[window.seen.whoami.length - 1] === null"
            ),
        )
        .await;
    browser.quit().await;
}
