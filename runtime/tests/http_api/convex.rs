//! The rest of Convex's HTTP surface (docs/PROTOCOL.md section 4): `/api/function`,
//! `/api/run/...`, `GET /api/query`, `/api/query_ts` with `/api/query_at_ts`,
//! `/api/query_batch`, the value formats, CORS, and a deployment URL with a trailing slash.

use crate::{error_message, parse_json, request_message, TestServer};
use ferrovex_model::json::{decode_u64, encode_u64};
use hyper::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_endpoint_runs_functions_as_convex_serves_them() {
    let server = TestServer::start("examples/chat").await;
    // `/api/function` runs whatever kind the function is; its args are a bare object.
    let (status, sent) = server
        .post(
            "/api/function",
            r#"{"path": "chat:send_message", "args": {"user": "ada", "body": "one"}, "format": "convex_encoded_json", "componentPath": null}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(
        sent,
        json!({"status": "success", "value": null, "logLines": ["[LOG] This Rust function is running on the server."]})
    );
    // `/api/run/{module}/{function}`.
    let (status, sent) = server
        .post(
            "/api/run/chat/send_message",
            r#"{"args": {"user": "bob", "body": "two"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let (_, read) = server
        .post("/api/run/chat/get_messages", r#"{"args": {}}"#)
        .await;
    let bodies = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(bodies(&read["value"]), ["one", "two"]);

    // GET /api/query with the arguments as JSON in the query string.
    let (status, _, body) = server
        .get("/api/query?path=chat:get_messages&args=%7B%7D&format=json")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bodies(&parse_json(&body)["value"]), ["one", "two"]);

    // query_ts pins a timestamp; query_at_ts reads there even after later commits.
    let (status, pinned) = server.post("/api/query_ts", "").await;
    assert_eq!(status, StatusCode::OK, "{pinned}");
    let ts = pinned["ts"].as_str().unwrap().to_owned();
    assert!(decode_u64(&ts).unwrap() > 0);
    server
        .post(
            "/api/mutation",
            r#"{"path": "chat:send_message", "args": [{"user": "c", "body": "three"}]}"#,
        )
        .await;
    let (status, then) = server
        .post(
            "/api/query_at_ts",
            &json!({"path": "chat:get_messages", "args": [{}], "ts": ts}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{then}");
    assert_eq!(
        bodies(&then["value"]),
        ["one", "two"],
        "read at the pinned timestamp"
    );
    let (status, refused) = server
        .post(
            "/api/query_at_ts",
            &json!({"path": "chat:get_messages", "args": [{}], "ts": encode_u64(5)}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["code"], "QueryTsNotAvailable");

    // query_batch: each query's answer, in order, failures included.
    let (status, batch) = server
        .post(
            "/api/query_batch",
            r#"{"queries": [{"path": "chat:get_messages", "args": {}}, {"path": "chat:nope", "args": {}}]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(
        bodies(&batch["results"][0]["value"]),
        ["one", "two", "three"]
    );
    assert!(error_message(&batch["results"][1]).contains("chat:nope: no such function"));
    let (status, bad) = server
        .post("/api/query_batch", r#"{"queries": [{"path": "a:-"}]}"#)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(request_message(&bad).starts_with("queries[0]:"), "{bad}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_batch_is_bounded_in_bytes_in_all() {
    let server = TestServer::start("runtime/tests/guests/hostile").await;
    let eight_mib =
        r#"{"path": "hostile:big_string", "args": {"mib": {"$integer": "CAAAAAAAAAA="}}}"#;
    // Three answers of 8 MiB fit in 32 MiB; five do not, and the refusal names the limit.
    let (status, batch) = server
        .post(
            "/api/query_batch",
            &format!(r#"{{"queries": [{eight_mib}, {eight_mib}, {eight_mib}]}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        batch["results"][2]["value"].as_str().unwrap().len(),
        8 * 1024 * 1024
    );
    let five = [eight_mib; 5].join(", ");
    let (status, refused) = server
        .post("/api/query_batch", &format!(r#"{{"queries": [{five}]}}"#))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{refused}");
    assert_eq!(refused["code"], "BatchTooLarge");
    assert!(
        request_message(&refused).contains("over the limit MAX_QUERY_BATCH_BYTES (33554432 bytes)"),
        "{refused}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_calls_are_allowed_and_leading_slashes_fold() {
    let server = TestServer::start("examples/chat").await;
    let preflight = server
        .raw(
            b"OPTIONS /api/query HTTP/1.1\r\nHost: localhost\r\nOrigin: http://127.0.0.1:5173\r\n\
              Access-Control-Request-Method: POST\r\n\
              Access-Control-Request-Headers: content-type, convex-client\r\nConnection: close\r\n\r\n",
        )
        .await
        .to_ascii_lowercase();
    assert!(preflight.starts_with("http/1.1 204"), "{preflight}");
    for header in [
        "access-control-allow-origin: http://127.0.0.1:5173",
        "access-control-allow-credentials: true",
        "access-control-allow-headers: content-type, convex-client",
        "access-control-max-age: 86400",
    ] {
        assert!(preflight.contains(header), "{header}: {preflight}");
    }
    let body = r#"{"path": "chat:get_messages", "args": [{}], "format": "convex_encoded_json"}"#;
    let answer = server
        .raw(
            format!(
                "POST //api/query HTTP/1.1\r\nHost: localhost\r\nOrigin: http://127.0.0.1:5173\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await;
    let lower = answer.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{answer}");
    assert!(
        lower.contains("access-control-allow-origin: http://127.0.0.1:5173"),
        "{answer}"
    );
    assert!(answer.contains(r#""status":"success""#), "{answer}");
    server.shutdown().await;
}
