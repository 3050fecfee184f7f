//! Identity and access over HTTP (docs/PROTOCOL.md section 4.3): the admin key on every admin
//! endpoint, `Authorization: Bearer` tokens verified against the app's providers (the tests'
//! own issuers on loopback), and internal functions out of the public's reach.

use crate::issuer::{bad_tokens, TestProviders};
use crate::{error_message, request_message, TestServer};
use hyper::StatusCode;
use serde_json::{json, Value as Json};

const IDENTITY: &str = "runtime/tests/guests/identity";

async fn identity_server() -> (TestProviders, TestServer) {
    let providers = TestProviders::start().await;
    let server = TestServer::start_with_auth(IDENTITY, providers.settings()).await;
    (providers, server)
}

fn query(path: &str) -> String {
    json!({"path": path, "args": {}, "format": "json"}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_endpoint_refuses_without_the_key_and_works_with_it() {
    let server = TestServer::start("examples/tasks").await;
    let wrong = "Convex fvx_admin_0000000000000000000000000000000000000000000000000000000000000000";
    let bearer = "Bearer abc.def.ghi";
    // (method, path, body): the admin endpoints; with the key each gets past access control.
    let endpoints = [
        ("GET", "/api/export", None),
        ("GET", "/api/metrics", None),
        ("POST", "/api/import/tables", Some(r#"{"tables": []}"#)),
        (
            "POST",
            "/api/import/documents",
            Some(r#"{"documents": []}"#),
        ),
    ];
    for (method, path, body) in endpoints {
        for (authorization, code, fragment) in [
            (
                None,
                "MissingAdminKey",
                "this needs the deployment's admin key",
            ),
            (
                Some(wrong),
                "BadAdminKey",
                "the admin key sent is not this deployment's",
            ),
            (
                Some(bearer),
                "MissingAdminKey",
                "this needs the deployment's admin key",
            ),
        ] {
            let answer = match body {
                Some(body) => server.post_with(path, body, authorization).await,
                None => {
                    let (status, _, body) = server.request_with(method, path, authorization).await;
                    (status, crate::parse_json(&body))
                }
            };
            assert_eq!(
                answer.0,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {authorization:?}: {}",
                answer.1
            );
            assert_eq!(answer.1["code"], code, "{}", answer.1);
            let message = request_message(&answer.1);
            assert!(
                message.starts_with(&format!("{method} {path}: ")),
                "{message}"
            );
            assert!(message.contains(fragment), "{message}");
            assert!(
                !message.contains(&server.admin_key),
                "the key never appears in an answer"
            );
        }
        let key = format!("Convex {}", server.admin_key);
        let (status, answer) = match body {
            Some(body) => server.post_with(path, body, Some(&key)).await,
            None => {
                let (status, _, body) = server.request_with(method, path, Some(&key)).await;
                let text = String::from_utf8_lossy(&body).into_owned();
                (status, json!(text))
            }
        };
        assert_eq!(
            status,
            StatusCode::OK,
            "{method} {path} with the key: {answer}"
        );
    }
    // The log stream is an admin WebSocket: refused before the upgrade without the key.
    let upgrade = |authorization: &str| {
        format!(
            "GET /api/logs HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{authorization}\r\n"
        )
    };
    let refused = server
        .raw(upgrade("Connection: close\r\n").as_bytes())
        .await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("MissingAdminKey"), "{refused}");
    let accepted = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let request = upgrade(&format!("Authorization: Convex {}\r\n", server.admin_key));
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = vec![0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        String::from_utf8_lossy(&head).into_owned()
    })
    .await
    .expect("an answer to the upgrade");
    assert_eq!(accepted, "HTTP/1.1 101");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_gives_its_identity_to_the_function() {
    let (providers, server) = identity_server().await;
    let token = providers.token(
        "ada",
        json!({"email": "ada@example.com", "email_verified": true, "org": "analytical"}),
    );
    let (status, answer) = server
        .post_with(
            "/api/query",
            &query("users:whoami"),
            Some(&format!("Bearer {token}")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let identity = &answer["value"];
    assert_eq!(
        identity["tokenIdentifier"],
        providers.token_identifier("ada"),
        "{answer}"
    );
    assert_eq!(identity["subject"], "ada");
    assert_eq!(identity["issuer"], providers.oidc.url.as_str());
    assert_eq!(identity["email"], "ada@example.com");
    assert_eq!(identity["emailVerified"], true);
    assert_eq!(identity["org"], "analytical", "custom claims come through");
    assert!(
        identity.get("exp").is_none() && identity.get("iat").is_none(),
        "{identity}"
    );

    // Without a token the same query sees nobody, and a mutation that needs sign-in fails.
    let (_, answer) = server.post("/api/query", &query("users:whoami")).await;
    assert_eq!(answer["value"], Json::Null, "{answer}");
    let note = json!({"path": "users:note", "args": {"body": "hi"}, "format": "json"}).to_string();
    let (_, answer) = server.post("/api/mutation", &note).await;
    assert!(
        error_message(&answer).contains("users:note: sign in first"),
        "{answer}"
    );
    let (_, answer) = server
        .post_with("/api/mutation", &note, Some(&format!("Bearer {token}")))
        .await;
    assert_eq!(
        answer["value"],
        providers.token_identifier("ada"),
        "{answer}"
    );

    // The custom-JWT providers: RS256 with its JWKS at a URL, ES256 with its JWKS in a file.
    let mut rs = providers.rs.claims("rs-user", crate::issuer::RS_AUDIENCE);
    let rs_token = providers.rs_key.sign(&rs);
    let (_, answer) = server
        .post_with(
            "/api/query",
            &query("users:whoami"),
            Some(&format!("Bearer {rs_token}")),
        )
        .await;
    assert_eq!(
        answer["value"]["tokenIdentifier"],
        format!("{}|rs-user", providers.rs.url),
        "{answer}"
    );
    rs["iss"] = json!(providers.es_issuer);
    rs["aud"] = json!(crate::issuer::ES_AUDIENCE);
    let es_token = providers.es_key.sign(&rs);
    let (_, answer) = server
        .post_with(
            "/api/query",
            &query("users:whoami"),
            Some(&format!("Bearer {es_token}")),
        )
        .await;
    assert_eq!(
        answer["value"]["tokenIdentifier"],
        format!("{}|rs-user", providers.es_issuer),
        "{answer}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_token_gets_a_401_naming_the_rule_and_the_server_goes_on() {
    let (providers, server) = identity_server().await;
    let before = server.store.latest_ts();
    for (what, token, reason) in bad_tokens(&providers) {
        let note =
            json!({"path": "users:note", "args": {"body": what}, "format": "json"}).to_string();
        let (status, answer) = server
            .post_with("/api/mutation", &note, Some(&format!("Bearer {token}")))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {answer}");
        let message = request_message(&answer);
        assert!(
            message.starts_with("POST /api/mutation: the bearer token is refused: "),
            "{what}: {message}"
        );
        assert!(
            message.contains(reason),
            "{what}: {message:?} should contain {reason:?}"
        );
    }
    for (authorization, fragment) in [
        ("Basic dXNlcjpwYXNz", "must be `Bearer <token>`"),
        ("Bearer", "must be `Bearer <token>`"),
    ] {
        let (status, answer) = server
            .post_with("/api/query", &query("users:whoami"), Some(authorization))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert_eq!(answer["code"], "InvalidAuthHeader");
        assert!(request_message(&answer).contains(fragment), "{answer}");
    }
    assert_eq!(
        server.store.latest_ts(),
        before,
        "no refused call wrote anything"
    );
    let good = providers.token("grace", json!({}));
    let (_, answer) = server
        .post_with(
            "/api/query",
            &query("users:whoami"),
            Some(&format!("Bearer {good}")),
        )
        .await;
    assert_eq!(
        answer["value"]["subject"], "grace",
        "the server goes on: {answer}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_functions_are_unknown_to_the_public_and_callable_with_the_admin_key() {
    let (providers, server) = identity_server().await;
    let token = format!("Bearer {}", providers.token("ada", json!({})));
    let unknown_answer = |path: &str, answer: &Json| error_message(answer).replace(path, "PATH");
    let (_, missing) = server.post("/api/query", &query("users:nope")).await;
    for (endpoint, path) in [
        ("/api/query", "users:secret"),
        ("/api/function", "users:secret"),
        ("/api/mutation", "users:wipe"),
        ("/api/function", "users:wipe"),
        ("/api/action", "users:wipe"),
    ] {
        for authorization in [None, Some(token.as_str())] {
            let (status, answer) = server
                .post_with(endpoint, &query(path), authorization)
                .await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            let message = error_message(&answer);
            assert_eq!(
                unknown_answer(path, &answer),
                unknown_answer("users:nope", &missing),
                "{endpoint} {path}: exactly what an unknown function gets"
            );
            assert!(
                !message.contains("users:secret") || path == "users:secret",
                "{message}"
            );
            assert!(
                !message.contains("users:wipe") || path == "users:wipe",
                "{message}"
            );
        }
    }
    // The listing hides them from everyone but the admin.
    let paths = |answer: &Json| -> Vec<String> {
        answer["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, _, body) = server.get("/api/functions").await;
    assert_eq!(
        paths(&crate::parse_json(&body)),
        ["users:note", "users:notes", "users:whoami"]
    );
    let (_, _, body) = server.get_admin("/api/functions").await;
    let listing = crate::parse_json(&body);
    assert_eq!(
        paths(&listing),
        [
            "users:note",
            "users:notes",
            "users:secret",
            "users:whoami",
            "users:wipe"
        ]
    );
    assert_eq!(listing["functions"][2]["visibility"], "internal");
    assert_eq!(listing["functions"][0]["visibility"], "public");

    // With the admin key they run.
    let (_, answer) = server
        .post_admin("/api/query", &query("users:secret"))
        .await;
    assert_eq!(answer["value"], "internal, called as nobody", "{answer}");
    let (_, answer) = server
        .post_admin("/api/function", &query("users:wipe"))
        .await;
    assert_eq!(answer["status"], "success", "{answer}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variables_are_admin_only_and_the_auth_config_reads_them_at_once() {
    let (providers, server) = identity_server().await;
    let (status, _, body) = server.get("/api/env").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, refused) = server
        .post(
            "/api/env",
            r#"{"set": {"OIDC_APPLICATION_ID": "other-app"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    let (status, _, body) = server.get_admin("/api/env").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(crate::parse_json(&body), json!({"variables": {}}));

    let whoami_as = |token: String| {
        let server = &server;
        async move {
            server
                .post_with(
                    "/api/query",
                    &query("users:whoami"),
                    Some(&format!("Bearer {token}")),
                )
                .await
        }
    };
    let for_audience = |audience: &str| {
        let mut claims = providers.oidc.claims("ada", audience);
        claims["name"] = json!("Ada");
        providers.oidc_key.sign(&claims)
    };
    assert_eq!(whoami_as(for_audience("test-app")).await.0, StatusCode::OK);

    // The deployment's variable overrides the process's, and the providers follow at once.
    let (status, answer) = server
        .post_admin(
            "/api/env",
            r#"{"set": {"OIDC_APPLICATION_ID": "other-app", "API_KEY": "s3cret"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"variables": ["API_KEY", "OIDC_APPLICATION_ID"]})
    );
    let (status, refused) = whoami_as(for_audience("test-app")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    assert!(
        request_message(&refused).contains("this app is \"other-app\""),
        "{refused}"
    );
    let (status, answer) = whoami_as(for_audience("other-app")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["value"]["name"], "Ada");
    let (_, _, body) = server.get_admin("/api/env").await;
    assert_eq!(crate::parse_json(&body)["variables"]["API_KEY"], "s3cret");

    // A bad change is refused whole, naming the rule.
    for (body, fragment) in [
        (
            r#"{"set": {"1BAD": "x", "FINE": "y"}}"#,
            "not starting with a digit",
        ),
        (r#"{"set": {"A": 5}}"#, "\"set\" must map names to strings"),
        (r#"{"unset": ["A"]}"#, "expected {\"set\""),
    ] {
        let (status, refused) = server.post_admin("/api/env", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        assert_eq!(refused["code"], "BadEnvironmentVariables");
        assert!(request_message(&refused).contains(fragment), "{refused}");
    }
    let (_, _, body) = server.get_admin("/api/env").await;
    assert!(crate::parse_json(&body)["variables"].get("FINE").is_none());

    // Removed, the process's value applies again.
    let (status, answer) = server
        .post_admin("/api/env", r#"{"set": {"OIDC_APPLICATION_ID": null}}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(whoami_as(for_audience("test-app")).await.0, StatusCode::OK);
    server.shutdown().await;
}
