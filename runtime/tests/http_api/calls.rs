//! `POST /api/query`, `POST /api/mutation`, `GET /api/functions`: the chat example end to
//! end, and each error with its status and message.

use crate::{error_message, parse_json, request_message, TestServer};
use ferrovex_runtime::server::MAX_REQUEST_BODY_BYTES;
use hyper::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_by_mutation_is_read_by_query() {
    let server = TestServer::start("examples/chat").await;

    let (status, sent) = server
        .post(
            "/api/mutation",
            r#"{"path": "chat:send_message", "args": {"user": "ada", "body": "hello over HTTP"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(sent["status"], "success");
    assert_eq!(sent["value"], json!(null));
    assert_eq!(
        sent["logLines"],
        json!(["[LOG] This Rust function is running on the server."])
    );
    assert!(
        sent.get("ts").is_none(),
        "Convex's answers carry no ts: {sent}"
    );
    let committed = server.store.latest_ts();

    let (status, read) = server
        .post("/api/query", r#"{"path": "chat:get_messages", "args": {}}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["status"], "success");
    assert_eq!(
        server.store.latest_ts(),
        committed,
        "a query commits nothing"
    );
    let messages = read["value"].as_array().expect("an array of messages");
    assert_eq!(messages.len(), 1, "{read}");
    assert_eq!(messages[0]["user"], "ada");
    assert_eq!(messages[0]["body"], "hello over HTTP");
    assert!(messages[0]["_id"].is_string());
    assert!(messages[0]["_creationTime"].is_number());

    // `args` may be left out for a function without parameters.
    let (status, read) = server
        .post("/api/query", r#"{"path": "chat:get_messages"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["value"].as_array().unwrap().len(), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_call_gets_its_status_and_a_message_naming_the_cause() {
    let server = TestServer::start("examples/chat").await;
    // A call that reached its function (or was refused by it) is status 200 with
    // `{"status": "error"}`; a request refused before that is a 4xx with `{"code"}`.
    let ok = StatusCode::OK;
    let bad = StatusCode::BAD_REQUEST;
    let cases: &[(&str, &str, StatusCode, Option<&str>, &[&str])] = &[
        (
            "/api/query",
            r#"{"path": "chat:nope", "args": {}}"#,
            ok,
            None,
            &[
                "chat:nope: no such function",
                "chat:get_messages",
                "chat:send_message",
            ],
        ),
        (
            "/api/mutation",
            r#"{"path": "chat:send_message", "args": {"user": "ada"}}"#,
            ok,
            None,
            &[
                "chat:send_message: invalid arguments",
                "$.body: missing required field",
            ],
        ),
        (
            "/api/mutation",
            r#"{"path": "chat:send_message", "args": [{"user": "ada", "body": 3}]}"#,
            ok,
            None,
            &[
                "chat:send_message: invalid arguments",
                "$.body: expected string, got float64",
            ],
        ),
        (
            "/api/mutation",
            r#"{"path": "chat:send_message", "args": [1]}"#,
            ok,
            None,
            &["chat:send_message: invalid arguments: arguments must be an object, got a number"],
        ),
        (
            "/api/mutation",
            r#"{"path": "chat:send_message", "args": {"$bad": 1}}"#,
            ok,
            None,
            &["chat:send_message: invalid arguments: invalid value at $"],
        ),
        (
            "/api/mutation",
            r#"{"path": "chat:send_message", "args": {"user": "ada", "body": {"$integer": "AQI="}}}"#,
            ok,
            None,
            &[
                "chat:send_message: invalid arguments",
                "not the 8 little-endian bytes",
            ],
        ),
        (
            "/api/query",
            r#"{"path": "chat:get_messages", "args": {"#,
            bad,
            Some("BadJsonBody"),
            &["the request body is not valid JSON", r#"expected {"path""#],
        ),
        (
            "/api/query",
            r#""chat:get_messages""#,
            bad,
            Some("BadJsonBody"),
            &["the request body must be a JSON object, got a string"],
        ),
        (
            "/api/query",
            r#"{"args": {}}"#,
            bad,
            Some("BadRequest"),
            &["missing field \"path\""],
        ),
        (
            "/api/query",
            r#"{"path": "chat:get_messages", "arguments": {}}"#,
            bad,
            Some("BadRequest"),
            &["unexpected field \"arguments\""],
        ),
        (
            "/api/query",
            r#"{"path": "chat:get-messages", "args": {}}"#,
            bad,
            Some("BadConvexFunctionIdentifier"),
            &["function name \"get-messages\" must be 1 to 64 characters"],
        ),
        (
            "/api/query",
            r#"{"path": "chat:get_messages", "args": {}, "format": "yaml"}"#,
            bad,
            Some("BadFormat"),
            &["format \"yaml\""],
        ),
        // A function sent to the other endpoint: the message names the right one.
        (
            "/api/mutation",
            r#"{"path": "chat:get_messages", "args": {}}"#,
            ok,
            None,
            &["chat:get_messages: is a query, not a mutation; call it with POST /api/query"],
        ),
        (
            "/api/query",
            r#"{"path": "chat:send_message", "args": {"user": "a", "body": "b"}}"#,
            ok,
            None,
            &["chat:send_message: is a mutation, not a query; call it with POST /api/mutation"],
        ),
        (
            "/api/action",
            r#"{"path": "chat:send_message", "args": {"user": "a", "body": "b"}}"#,
            ok,
            None,
            &["chat:send_message: is a mutation, not an action; call it with POST /api/mutation"],
        ),
    ];
    for (endpoint, body, expected_status, code, expected_parts) in cases {
        let (status, answer) = server.post(endpoint, body).await;
        assert_eq!(status, *expected_status, "{endpoint} {body}: {answer}");
        let message = match code {
            None => error_message(&answer),
            Some(code) => {
                assert_eq!(answer["code"], *code, "{endpoint} {body}: {answer}");
                answer["message"].as_str().unwrap()
            }
        };
        for part in *expected_parts {
            assert!(message.contains(part), "{endpoint} {body}: {message}");
        }
        assert!(answer.get("errorData").is_none(), "{answer}");
    }
    // None of the rejected calls wrote anything.
    let (_, read) = server
        .post("/api/query", r#"{"path": "chat:get_messages", "args": {}}"#)
        .await;
    assert_eq!(read["value"], json!([]));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_error_carries_its_data_and_log_lines() {
    let server = TestServer::start("examples/tasks").await;
    let (status, answer) = server
        .post(
            "/api/mutation",
            r#"{"path": "tasks:add", "args": {"title": "  "}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(error_message(&answer), "tasks:add: a task needs a title");
    assert_eq!(answer["errorData"], json!({"field": "title"}));

    // int64 arguments and results in their wire form.
    let (status, added) = server
        .post(
            "/api/mutation",
            r#"{"path": "tasks:add", "args": {"title": "t", "priority": {"$integer": "BwAAAAAAAAA="}}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(added["logLines"].as_array().unwrap().len(), 1, "{added}");
    let (status, open) = server
        .post(
            "/api/query",
            r#"{"path": "tasks:list_open", "format": "convex_encoded_json"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{open}");
    assert_eq!(
        open["value"][0]["priority"],
        json!({"$integer": "BwAAAAAAAAA="})
    );
    // Without a format (curl), values come back as plain JSON: an int64 as a decimal string.
    let (_, plain) = server
        .post("/api/query", r#"{"path": "tasks:list_open"}"#)
        .await;
    assert_eq!(plain["value"][0]["priority"], json!("7"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_with_413() {
    let server = TestServer::start("examples/chat").await;

    // Declared too large: refused before a byte of the body is read.
    let declared = MAX_REQUEST_BODY_BYTES + 1;
    let answer = server
        .raw(
            format!(
                "POST /api/mutation HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                 Content-Length: {declared}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains(&format!(
            "exceeds the limit MAX_REQUEST_BODY_BYTES ({MAX_REQUEST_BODY_BYTES} bytes): got {declared} bytes"
        )),
        "{answer}"
    );

    // Undeclared (chunked): refused once the bytes read pass the limit.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let chunk = vec![b' '; MAX_REQUEST_BODY_BYTES + 1];
    let write = async {
        let head = "POST /api/mutation HTTP/1.1\r\nHost: localhost\r\n\
                    Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        writer.write_all(head.as_bytes()).await?;
        writer
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await?;
        writer.write_all(&chunk).await?;
        writer.write_all(b"\r\n0\r\n\r\n").await
    };
    let read = async {
        let mut answer = Vec::new();
        // The server may close before reading all of it; what it answered is what counts.
        let _ = reader.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let (_, answer) = tokio::join!(write, read);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("MAX_REQUEST_BODY_BYTES"), "{answer}");
    drop(stream);

    // Just under the limit is read, and then judged on its content.
    let padded = format!(
        r#"{{"path": "chat:get_messages", "args": {{}}}}{}"#,
        " ".repeat(MAX_REQUEST_BODY_BYTES - 100)
    );
    let (status, answer) = server.post("/api/query", &padded).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_are_listed_with_kind_and_schemas() {
    let server = TestServer::start("examples/chat").await;
    let (status, headers, body) = server.get("/api/functions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let listing = parse_json(&body);
    assert_eq!(listing["moduleHash"], server.module.hash.as_str());
    let functions = listing["functions"].as_array().unwrap();
    let summary: Vec<(&str, &str)> = functions
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("chat:delete_message", "mutation"),
            ("chat:get_messages", "query"),
            ("chat:list_messages", "query"),
            ("chat:send_message", "mutation")
        ]
    );
    let send = &functions[3];
    assert_eq!(
        send["args"],
        json!({"type": "object", "fields": {"user": {"type": "string"}, "body": {"type": "string"}}})
    );
    assert_eq!(send["returns"], json!({"type": "null"}));
    assert_eq!(
        functions[1]["args"],
        json!({"type": "object", "fields": {}})
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_api_paths_and_methods_answer_in_json() {
    let server = TestServer::start("examples/chat").await;
    let cases = [
        (
            "PUT",
            "/api/query",
            StatusCode::METHOD_NOT_ALLOWED,
            "/api/query accepts GET, POST, not PUT",
        ),
        (
            "PUT",
            "/api/mutation",
            StatusCode::METHOD_NOT_ALLOWED,
            "accepts POST",
        ),
        (
            "POST",
            "/api/functions",
            StatusCode::METHOD_NOT_ALLOWED,
            "accepts GET",
        ),
        (
            "GET",
            "/api/sync",
            StatusCode::UPGRADE_REQUIRED,
            "/api/sync is a WebSocket endpoint",
        ),
        (
            "GET",
            "/api/nope",
            StatusCode::NOT_FOUND,
            "GET /api/nope: no such API endpoint",
        ),
        (
            "DELETE",
            "/index.html",
            StatusCode::METHOD_NOT_ALLOWED,
            "accepts GET, HEAD",
        ),
    ];
    for (method, path, expected_status, expected) in cases {
        let (status, headers, body) = server.request(method, path).await;
        assert_eq!(status, expected_status, "{method} {path}");
        let answer = parse_json(&body);
        let message = request_message(&answer);
        assert!(message.contains(expected), "{method} {path}: {message}");
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(headers.contains_key("allow"), "{method} {path}");
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_imports_are_refused_naming_the_document_and_the_rule() {
    let server = TestServer::start("examples/tasks").await;
    let (status, prepared) = server
        .post_admin(
            "/api/import/tables",
            r#"{"tables": [{"name": "tasks", "number": 1, "indexes": [{"name": "by_done", "fields": ["done", "priority"]}]}, {"name": "notes", "number": 9}]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{prepared}");
    let number = prepared["tables"][0]["number"].as_u64().unwrap() as u32;
    assert_eq!(prepared["tables"][1], json!({"name": "notes", "number": 9}));
    let note = ferrovex_model::DocumentId::new(9, [7; 16]).to_string();
    let id = |n: u8| ferrovex_model::DocumentId::new(number, [n; 16]).to_string();
    let document = |n: u8, fields: &str| {
        format!(
            r#"{{"table": "tasks", "value": {{"_id": "{}", "_creationTime": 1000.0{fields}}}}}"#,
            id(n)
        )
    };
    let good = document(1, r#", "title": "a", "done": false"#);
    let before = server.store.latest_ts();
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                r#"{{"documents": [{good}, {}]}}"#,
                document(2, r#", "title": 5, "done": false"#)
            ),
            "documents[1]: document",
        ),
        (
            format!(r#"{{"documents": [{good}, {good}]}}"#),
            "documents[1]: document",
        ),
        (
            format!(
                r#"{{"documents": [{{"table": "notes", "value": {{"_id": "{note}", "_creationTime": 1.0, "_x": 1.0}}}}]}}"#
            ),
            "documents[0]: invalid document for table \"notes\": field \"_x\" starts with '_'",
        ),
        (r#"{"documents": 3}"#.to_owned(), "expected {\"documents\""),
        (
            r#"{"documents": [{"table": "tasks", "value": {"_creationTime": 1.0}}]}"#.to_owned(),
            "documents[0]: a document without _id is inserted as a new one, and takes no _creationTime",
        ),
    ];
    for (body, expected) in &cases {
        let (status, answer) = server.post_admin("/api/import/documents", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = request_message(&answer);
        assert!(
            message.starts_with("POST /api/import/documents"),
            "{message}"
        );
        assert!(
            message.contains(expected),
            "{message:?} should contain {expected:?}"
        );
    }
    // The schema rule and the duplicate are named as such.
    let (_, answer) = server
        .post_admin("/api/import/documents", &cases[0].0)
        .await;
    assert!(
        request_message(&answer).contains("does not match its schema"),
        "{answer}"
    );
    let (_, answer) = server
        .post_admin("/api/import/documents", &cases[1].0)
        .await;
    assert!(
        request_message(&answer).contains("already exists"),
        "{answer}"
    );
    assert_eq!(
        server.store.latest_ts(),
        before,
        "a refused batch writes nothing"
    );

    // The good document goes in with its id, a document without system fields as a new one,
    // and then the table is no longer open to imports that keep ids.
    let (status, answer) = server
        .post_admin(
            "/api/import/documents",
            &format!(
                r#"{{"documents": [{good}, {{"table": "notes", "value": {{"text": "fresh"}}}}]}}"#
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["imported"], 2);
    let (status, answer) = server
        .post_admin(
            "/api/import/tables",
            r#"{"tables": [{"name": "tasks", "number": 1}]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        request_message(&answer).contains("table \"tasks\" already has documents"),
        "{answer}"
    );
    let (status, _, _) = server.request("GET", "/api/import/documents").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // The export shows it, and the server went on serving throughout.
    let (status, headers, body) = server.get_admin("/api/export").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains(&id(1)), "{text}");
    assert!(text.contains("\"text\":\"fresh\""), "{text}");
    assert!(
        text.ends_with("{\"type\":\"end\",\"documents\":2}\n"),
        "{text}"
    );
    server.shutdown().await;
}
