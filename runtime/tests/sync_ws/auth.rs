//! Identity on a connection (docs/PROTOCOL.md section 3.3): an accepted `Authenticate` raises
//! `identity` and re-runs the connection's queries for the new caller in one transition;
//! refused tokens and a token that expires while connected get `AuthError` and the socket
//! closes; the admin key reaches internal functions. Tokens come from the tests' own issuers
//! on loopback (`tests/common/issuer.rs`).

use crate::issuer::{bad_tokens, now, TestKey, TestProviders};
use crate::{modify, Client, TestServer};
use serde_json::{json, Value as Json};

const IDENTITY: &str = "runtime/tests/guests/identity";

fn authenticate(base: u64, token: &str) -> Json {
    json!({"type": "Authenticate", "baseVersion": base, "tokenType": "User", "value": token})
}

fn add(query_id: u64, path: &str) -> Json {
    json!({"type": "Add", "queryId": query_id, "udfPath": path, "args": [{}]})
}

/// A client subscribed to `users:whoami` (query 0), with its first result (null) applied.
async fn watching_whoami(server: &TestServer) -> Client {
    let mut client = server.client().await;
    client
        .send(modify(0, json!([add(0, "users:whoami")])))
        .await;
    client.until(|c| c.results.contains_key(&0)).await;
    assert_eq!(
        client.results[&0],
        Json::Null,
        "signed out, a function sees nobody"
    );
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_reruns_the_queries_in_one_transition_and_sign_out_again() {
    let providers = TestProviders::start().await;
    let server = TestServer::start_with_auth(IDENTITY, providers.settings()).await;
    let mut client = watching_whoami(&server).await;

    client
        .send(authenticate(
            0,
            &providers.token("ada", json!({"name": "Ada"})),
        ))
        .await;
    let transition = client.next_of_type("Transition").await;
    assert_eq!(transition["startVersion"]["identity"], 0);
    assert_eq!(transition["endVersion"]["identity"], 1, "{transition}");
    let identity = &client.results[&0];
    assert_eq!(
        identity["tokenIdentifier"],
        providers.token_identifier("ada"),
        "{transition}"
    );
    assert_eq!(identity["name"], "Ada");

    // A mutation sent after the Authenticate runs as the new identity.
    client
        .send(json!({"type": "Mutation", "requestId": 0, "udfPath": "users:note", "args": [{"body": "hello"}]}))
        .await;
    let response = client.next_of_type("MutationResponse").await;
    assert_eq!(
        response["result"],
        providers.token_identifier("ada"),
        "{response}"
    );

    // A refreshed token of the same user (the npm client sends one right after the first is
    // confirmed): the identity version moves, and the result stays (the client checks that
    // no transition repeats a result it holds).
    client
        .send(authenticate(
            1,
            &providers.token("ada", json!({"name": "Ada"})),
        ))
        .await;
    client.until(|c| c.version["identity"] == 2).await;
    assert_eq!(
        client.results[&0]["tokenIdentifier"],
        providers.token_identifier("ada")
    );

    // Signing out: the query re-runs for nobody, in the transition that acknowledges it.
    client
        .send(json!({"type": "Authenticate", "baseVersion": 2, "tokenType": "None"}))
        .await;
    client.until(|c| c.version["identity"] == 3).await;
    assert_eq!(client.results[&0], Json::Null);
    client
        .send(json!({"type": "Mutation", "requestId": 1, "udfPath": "users:note", "args": [{"body": "again"}]}))
        .await;
    let response = client.next_of_type("MutationResponse").await;
    assert_eq!(response["success"], false);
    assert!(
        response["result"]
            .as_str()
            .unwrap()
            .contains("sign in first"),
        "{response}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_on_one_query_each_see_their_own_identity() {
    let providers = TestProviders::start().await;
    let server = TestServer::start_with_auth(IDENTITY, providers.settings()).await;
    let mut ada = watching_whoami(&server).await;
    let mut grace = watching_whoami(&server).await;
    let mut ada_again = watching_whoami(&server).await;
    ada.send(authenticate(0, &providers.token("ada", json!({}))))
        .await;
    grace
        .send(authenticate(0, &providers.token("grace", json!({}))))
        .await;
    ada_again
        .send(authenticate(0, &providers.token("ada", json!({}))))
        .await;
    for (client, subject) in [
        (&mut ada, "ada"),
        (&mut grace, "grace"),
        (&mut ada_again, "ada"),
    ] {
        client.until(|c| c.results[&0] != Json::Null).await;
        assert_eq!(client.results[&0]["subject"], subject);
        assert_eq!(
            client.results[&0]["tokenIdentifier"],
            providers.token_identifier(subject)
        );
    }
    // A write both results depend on: each is told about its own.
    grace
        .send(json!({"type": "ModifyQuerySet", "baseVersion": 1, "newVersion": 2, "modifications": [add(1, "users:notes")]}))
        .await;
    grace.until(|c| c.results.contains_key(&1)).await;
    assert_eq!(grace.results[&0]["subject"], "grace");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_token_gets_an_auth_error_naming_the_rule_and_nothing_leaks() {
    let providers = TestProviders::start().await;
    let server = TestServer::start_with_auth(IDENTITY, providers.settings()).await;
    for (what, token, reason) in bad_tokens(&providers) {
        let mut client = watching_whoami(&server).await;
        client.send(authenticate(0, &token)).await;
        // Then a mutation, which must never run as anyone.
        client
            .send(json!({"type": "Mutation", "requestId": 0, "udfPath": "users:note", "args": [{"body": what}]}))
            .await;
        let error = client.next_of_type("AuthError").await;
        assert_eq!(error["authUpdateAttempted"], true, "{what}: {error}");
        assert_eq!(error["baseVersion"], 0, "{what}: {error}");
        let message = error["error"].as_str().unwrap();
        assert!(
            message.contains(reason),
            "{what}: {message:?} should contain {reason:?}"
        );
        assert!(
            client.closed().await.is_some(),
            "{what}: the socket closes after AuthError"
        );
        assert_eq!(
            client.version["identity"], 0,
            "{what}: no identity was ever acknowledged"
        );
        assert_eq!(
            client.results[&0],
            Json::Null,
            "{what}: no identity was ever shown"
        );
    }
    // Nothing ran as anyone, and the server goes on serving.
    let mut client = watching_whoami(&server).await;
    client.send(modify(1, json!([add(1, "users:notes")]))).await;
    client.until(|c| c.results.contains_key(&1)).await;
    assert_eq!(
        client.results[&1],
        json!([]),
        "no refused connection wrote a note"
    );
    client
        .send(authenticate(0, &providers.token("ada", json!({}))))
        .await;
    client.until(|c| c.results[&0] != Json::Null).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_fetched_once_and_a_key_rotated_at_the_issuer_is_picked_up() {
    let providers = TestProviders::start().await;
    let server = TestServer::start_with_auth(IDENTITY, providers.settings()).await;
    let mut client = watching_whoami(&server).await;
    client
        .send(authenticate(0, &providers.token("ada", json!({}))))
        .await;
    client.until(|c| c.results[&0] != Json::Null).await;
    let fetched = providers.oidc.jwks_fetches();
    assert!(fetched >= 1, "the keys were fetched");
    // More sign-ins with known keys: no fetch, on any path.
    for (base, subject) in [(1, "ada"), (2, "grace"), (3, "ada")] {
        client
            .send(authenticate(base, &providers.token(subject, json!({}))))
            .await;
        client.until(|c| c.version["identity"] == base + 1).await;
    }
    assert_eq!(
        providers.oidc.jwks_fetches(),
        fetched,
        "cached keys are not fetched again"
    );

    // The issuer rotates to a new key: a token signed with it brings one refetch.
    let rotated = TestKey::rsa("oidc-2");
    providers.oidc.rotate(&[&rotated]);
    let mut claims = providers
        .oidc
        .claims("hopper", crate::issuer::OIDC_APPLICATION_ID);
    claims["name"] = json!("Grace Hopper");
    client.send(authenticate(4, &rotated.sign(&claims))).await;
    client.until(|c| c.results[&0]["subject"] == "hopper").await;
    assert_eq!(client.version["identity"], 5);
    assert_eq!(providers.oidc.jwks_fetches(), fetched + 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_while_connected_gets_an_auth_error() {
    let providers = TestProviders::start().await;
    let server = TestServer::start_with_auth(IDENTITY, providers.settings()).await;
    let mut client = watching_whoami(&server).await;
    // Valid now (exp is one second away, plus the leeway), expired soon after.
    let token = providers.token("ada", json!({"exp": now() + 1}));
    client.send(authenticate(0, &token)).await;
    client.until(|c| c.results[&0] != Json::Null).await;
    let error = client.next_of_type("AuthError").await;
    assert_eq!(error["authUpdateAttempted"], false, "{error}");
    assert_eq!(
        error["baseVersion"], 1,
        "the identity of the last transition: {error}"
    );
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("the token expired"),
        "{error}"
    );
    assert!(client.closed().await.is_some());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_key_reaches_internal_functions_and_may_act_as_a_user() {
    let providers = TestProviders::start().await;
    let server = TestServer::start_with_auth(IDENTITY, providers.settings()).await;
    // To a client without the key, an internal query is an unknown function.
    let mut public = server.client().await;
    public
        .send(modify(
            0,
            json!([add(0, "users:secret"), add(1, "users:nope")]),
        ))
        .await;
    public.until(|c| c.results.len() == 2).await;
    let generic = |v: &Json, path: &str| v["error"].as_str().unwrap().replace(path, "PATH");
    assert_eq!(
        generic(&public.results[&0], "users:secret"),
        generic(&public.results[&1], "users:nope")
    );
    assert!(!public.results[&1]["error"]
        .as_str()
        .unwrap()
        .contains("users:secret"));
    public
        .send(json!({"type": "Mutation", "requestId": 0, "udfPath": "users:wipe", "args": [{}]}))
        .await;
    let refused = public.next_of_type("MutationResponse").await;
    assert_eq!(refused["success"], false, "{refused}");

    // A wrong key is an AuthError like a bad token.
    let mut wrong = server.client().await;
    wrong
        .send(json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "Admin", "value": "fvx_admin_nope"}))
        .await;
    let error = wrong.next_of_type("AuthError").await;
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("not this deployment's"),
        "{error}"
    );

    // The key: the same queries run, and the key may act as a user.
    let mut admin = server.client().await;
    admin
        .send(json!({"type": "Authenticate", "baseVersion": 0, "tokenType": "Admin", "value": server.admin_key}))
        .await;
    admin.send(modify(0, json!([add(0, "users:secret")]))).await;
    admin.until(|c| c.results.contains_key(&0)).await;
    assert_eq!(admin.results[&0], "internal, called as nobody");
    admin
        .send(json!({"type": "Authenticate", "baseVersion": 1, "tokenType": "Admin", "value": server.admin_key,
            "impersonating": {"tokenIdentifier": "https://x|someone", "issuer": "https://x", "subject": "someone"}}))
        .await;
    admin
        .until(|c| c.results[&0] == "internal, called as https://x|someone")
        .await;
    assert_eq!(admin.version["identity"], 2);
    admin
        .send(json!({"type": "Mutation", "requestId": 0, "udfPath": "users:wipe", "args": [{}]}))
        .await;
    let response = admin.next_of_type("MutationResponse").await;
    assert_eq!(response["success"], true, "{response}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_outcome_is_answered_only_to_the_caller_it_ran_for() {
    let providers = TestProviders::start().await;
    let server = TestServer::start_with_auth(IDENTITY, providers.settings()).await;
    let note = |body: &str| json!({"type": "Mutation", "requestId": 7, "udfPath": "users:note", "args": [{"body": body}]});
    let mut ada = server.client_of_session("shared-session", 0).await;
    ada.send(authenticate(0, &providers.token("ada", json!({}))))
        .await;
    ada.send(note("from ada")).await;
    let original = ada.next_of_type("MutationResponse").await;
    assert_eq!(original["result"], providers.token_identifier("ada"));
    drop(ada);

    // Ada again, with a refreshed token whose claims changed: her original outcome.
    let mut again = server.client_of_session("shared-session", 1).await;
    again
        .send(authenticate(
            0,
            &providers.token("ada", json!({"name": "Ada L."})),
        ))
        .await;
    again.send(note("from ada")).await;
    assert_eq!(again.next_of_type("MutationResponse").await, original);
    drop(again);

    // Someone else with the same session and request ids: not Ada's outcome, their own call.
    let mut grace = server.client_of_session("shared-session", 2).await;
    grace
        .send(authenticate(0, &providers.token("grace", json!({}))))
        .await;
    grace.send(note("from grace")).await;
    let theirs = grace.next_of_type("MutationResponse").await;
    assert_eq!(
        theirs["result"],
        providers.token_identifier("grace"),
        "{theirs}"
    );
    let mut anonymous = server.client_of_session("shared-session", 3).await;
    anonymous.send(note("from nobody")).await;
    let refused = anonymous.next_of_type("MutationResponse").await;
    assert_eq!(refused["success"], false, "{refused}");
    assert!(refused["result"]
        .as_str()
        .unwrap()
        .contains("sign in first"));
    server.shutdown().await;
}
