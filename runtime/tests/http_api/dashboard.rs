//! The dashboard's API (docs/PROTOCOL.md section 4.5) over real sockets: the admin key on
//! every endpoint, exact counts as commits land, pages that cover a table once in any
//! index's order, filters within the scan budget, writes that are one transaction each and
//! checked like a function's, the live stream of commits and executions, health figures,
//! jobs and crons, and the dashboard's files.

use crate::{parse_json, request_message, TestServer};
use ferrovex_model::{Object, Value};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const CHAT: &str = "examples/chat";
/// How long a test waits for the server to show something before it fails.
const WAIT: Duration = Duration::from_secs(60);

async fn get(server: &TestServer, path: &str) -> (StatusCode, Json) {
    let (status, _, body) = server.get_admin(path).await;
    (status, parse_json(&body))
}

async fn ok(server: &TestServer, path: &str) -> Json {
    let (status, answer) = get(server, path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    answer
}

async fn post(server: &TestServer, path: &str, body: Json) -> (StatusCode, Json) {
    server.post_admin(path, &body.to_string()).await
}

async fn send(server: &TestServer, user: &str, body: &str) {
    let call = json!({"path": "chat:send_message", "args": {"user": user, "body": body}});
    let (status, answer) = server.post("/api/mutation", &call.to_string()).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::OK, &json!("success")),
        "{answer}"
    );
}

async fn count(server: &TestServer, table: &str) -> u64 {
    let tables = ok(server, "/api/dashboard/tables").await;
    tables["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == table)
        .unwrap_or_else(|| panic!("{table} is listed: {tables}"))["documents"]
        .as_u64()
        .unwrap()
}

fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Every page of `table` in `index` order from the first, with `filter`: the documents and
/// how many pages it took.
async fn all_pages(
    server: &TestServer,
    table: &str,
    index: &str,
    order: &str,
    limit: usize,
    filter: Option<&str>,
) -> (Vec<Json>, usize) {
    let mut documents = Vec::new();
    let mut cursor = String::new();
    for pages in 1.. {
        let limit = limit.to_string();
        let mut pairs = vec![
            ("table", table),
            ("index", index),
            ("order", order),
            ("limit", limit.as_str()),
            ("cursor", cursor.as_str()),
        ];
        if let Some(filter) = filter {
            pairs.push(("filter", filter));
        }
        let page = ok(
            server,
            &format!("/api/dashboard/documents?{}", query(&pairs)),
        )
        .await;
        let shown = page["documents"].as_array().unwrap();
        assert!(shown.len() <= limit.parse().unwrap(), "{page}");
        documents.extend(shown.iter().cloned());
        if page["isDone"] == true {
            return (documents, pages);
        }
        cursor = page["cursor"]
            .as_str()
            .expect("a page not done has a cursor")
            .to_owned();
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_endpoint_needs_the_admin_key_and_its_files_hold_no_data() {
    let server = TestServer::start(CHAT).await;
    let endpoints = [
        ("GET", "/api/dashboard/deployment"),
        ("GET", "/api/dashboard/tables"),
        ("GET", "/api/dashboard/documents?table=messages"),
        ("GET", "/api/dashboard/events"),
        ("GET", "/api/dashboard/health"),
        ("GET", "/api/dashboard/jobs"),
        ("GET", "/api/dashboard/crons"),
        ("POST", "/api/dashboard/documents/insert"),
        ("POST", "/api/dashboard/documents/replace"),
        ("POST", "/api/dashboard/documents/patch"),
        ("POST", "/api/dashboard/documents/delete"),
        ("POST", "/api/dashboard/jobs/cancel"),
        ("GET", "/api/dashboard/no-such-page"),
    ];
    for (method, path) in endpoints {
        let (status, _, body) = server.request(method, path).await;
        let answer = parse_json(&body);
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {answer}"
        );
        assert_eq!(answer["code"], "MissingAdminKey", "{method} {path}");
        let wrong = format!("Convex fvx_admin_{}", "0".repeat(64));
        let (status, _, body) = server.request_with(method, path, Some(&wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(parse_json(&body)["code"], "BadAdminKey", "{method} {path}");
        // A user's token is not the admin key either.
        let (status, _, _) = server
            .request_with(method, path, Some("Bearer some.user.token"))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // With the key: an unknown page names the real ones; a wrong method says which to use.
    let (status, answer) = get(&server, "/api/dashboard/no-such-page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        request_message(&answer).contains("/api/dashboard/tables"),
        "{answer}"
    );
    let (status, answer) = post(&server, "/api/dashboard/tables", json!({})).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{answer}");

    // The files are served to anyone: they are the same for every deployment.
    send(&server, "ada", "a secret message").await;
    let (status, headers, body) = server.get("/_dashboard/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("main.js"), "{page}");
    assert!(!page.contains("secret message"));
    for file in [
        "main.js",
        "data.js",
        "functions.js",
        "logs.js",
        "schedules.js",
        "health.js",
        "settings.js",
        "util.js",
        "style.css",
    ] {
        let (status, _, body) = server.get(&format!("/_dashboard/{file}")).await;
        assert_eq!(status, StatusCode::OK, "{file}");
        assert!(!body.is_empty(), "{file} is empty");
    }
    let (status, _, _) = server.get("/_dashboard/../Cargo.toml").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_stay_exact_as_commits_land_and_tables_show_their_schema() {
    let server = TestServer::start(CHAT).await;
    // Declared, not yet written: listed empty, with its type and indexes.
    let tables = ok(&server, "/api/dashboard/tables").await;
    let messages = &tables["tables"][0];
    assert_eq!(messages["name"], "messages", "{tables}");
    assert_eq!(messages["documents"], 0);
    assert_eq!(
        messages["schema"]["fields"]["user"]["type"], "string",
        "{messages}"
    );
    let indexes: Vec<&str> = messages["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(indexes, ["by_id", "by_creation_time", "by_user"]);

    for i in 0..5 {
        send(&server, "ada", &format!("m{i}")).await;
    }
    // The first count scans; the system tables are listed after the app's.
    let tables = ok(&server, "/api/dashboard/tables").await;
    let names: Vec<&str> = tables["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "messages", "{names:?}");
    assert!(names[1..].iter().all(|n| n.starts_with('_')), "{names:?}");
    assert_eq!(count(&server, "messages").await, 5);
    // From then on each commit's inserts and deletes move it: by functions and by the
    // dashboard's own writes, several in one transaction too.
    send(&server, "bob", "m5").await;
    assert_eq!(count(&server, "messages").await, 6);
    let (docs, _) = all_pages(&server, "messages", "by_creation_time", "asc", 50, None).await;
    let ids: Vec<&Json> = docs.iter().map(|d| &d["_id"]).take(3).collect();
    let (status, answer) = post(
        &server,
        "/api/dashboard/documents/delete",
        json!({"ids": ids}),
    )
    .await;
    assert_eq!((status, &answer), (StatusCode::OK, &json!({"deleted": 3})));
    assert_eq!(count(&server, "messages").await, 3);
    let (status, _) = post(
        &server,
        "/api/dashboard/documents/insert",
        json!({"table": "messages", "fields": {"user": "cy", "body": "hi"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // An edit moves nothing.
    let (status, _) = post(
        &server,
        "/api/dashboard/documents/patch",
        json!({"id": docs[5]["_id"], "set": {"body": "edited"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(count(&server, "messages").await, 4);
    // A table the first commit creates is counted from its first document.
    let (status, _) = post(
        &server,
        "/api/dashboard/documents/insert",
        json!({"table": "notes", "fields": {"text": "new table"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(count(&server, "notes").await, 1);
    // The counts agree with a scan of what is there.
    let (docs, _) = all_pages(&server, "messages", "by_id", "asc", 2, None).await;
    assert_eq!(docs.len(), 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_cover_a_table_once_in_any_index_order_and_filters_stay_within_the_budget() {
    let server = TestServer::start(CHAT).await;
    for i in 0..120 {
        send(&server, &format!("u{}", i % 4), &format!("m{i:03}")).await;
    }
    // Newest first by creation time, in pages of 50: every document once.
    let (docs, pages) = all_pages(&server, "messages", "by_creation_time", "desc", 50, None).await;
    assert_eq!(pages, 3);
    let bodies: Vec<&str> = docs.iter().map(|d| d["body"].as_str().unwrap()).collect();
    let mut expected: Vec<String> = (0..120).map(|i| format!("m{i:03}")).collect();
    expected.reverse();
    assert_eq!(bodies, expected);
    // By a declared index, ascending: grouped by user, each group oldest first.
    let (docs, _) = all_pages(&server, "messages", "by_user", "asc", 7, None).await;
    let users: Vec<&str> = docs.iter().map(|d| d["user"].as_str().unwrap()).collect();
    let mut sorted = users.clone();
    sorted.sort();
    assert_eq!(users, sorted);
    assert_eq!(docs.len(), 120);
    let ids: BTreeSet<&str> = docs.iter().map(|d| d["_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 120);
    // Filtered: exactly the matching documents, over as many pages as it takes.
    let (docs, _) = all_pages(
        &server,
        "messages",
        "by_creation_time",
        "desc",
        10,
        Some(r#"{"user": "u2"}"#),
    )
    .await;
    assert_eq!(docs.len(), 30);
    assert!(docs.iter().all(|d| d["user"] == "u2"));
    let (docs, _) = all_pages(
        &server,
        "messages",
        "by_id",
        "asc",
        50,
        Some(r#"{"user": "u1", "body": "m005"}"#),
    )
    .await;
    assert_eq!(docs.len(), 1);

    // A filter that matches one old document among more than the scan budget: the first
    // page stops after MAX_DASHBOARD_SCAN documents, empty and not done, and the next one
    // finds it.
    let budget = ferrovex_model::limits::MAX_DASHBOARD_SCAN;
    for _ in 0..(budget / 1000 + 1) {
        server
            .store
            .run_mutation(|tx| {
                for i in 0..1000 {
                    let mut fields = Object::new();
                    fields.insert("user".into(), Value::from("bulk"));
                    fields.insert("body".into(), Value::from(format!("b{i}").as_str()));
                    tx.insert("messages", fields)?;
                }
                Ok::<_, ferrovex_runtime::store::StoreError>(())
            })
            .unwrap();
    }
    let filter = r#"{"body": "m000"}"#;
    let first = ok(
        &server,
        &format!(
            "/api/dashboard/documents?{}",
            query(&[("table", "messages"), ("limit", "5"), ("filter", filter)])
        ),
    )
    .await;
    assert_eq!(first["documents"], json!([]), "{}", first["scanned"]);
    assert_eq!(first["scanned"], budget);
    assert_eq!(first["isDone"], false);
    let (found, _) = all_pages(
        &server,
        "messages",
        "by_creation_time",
        "desc",
        5,
        Some(filter),
    )
    .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["user"], "u0");

    // Refusals name the rule and what was given.
    let cases = [
        (
            "table=nope",
            StatusCode::NOT_FOUND,
            "NoSuchTable",
            "table \"nope\" does not exist",
        ),
        (
            "table=messages&index=by_colour",
            StatusCode::BAD_REQUEST,
            "UnknownIndex",
            "has no index \"by_colour\" (it has: by_id, by_creation_time, by_user)",
        ),
        (
            "table=messages&limit=9999",
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "MAX_DASHBOARD_PAGE (500), got \"9999\"",
        ),
        (
            "table=messages&filter=%7B%22user%22",
            StatusCode::BAD_REQUEST,
            "BadFilter",
            "the filter is not JSON",
        ),
    ];
    for (query, status, code, message) in cases {
        let (got, answer) = get(&server, &format!("/api/dashboard/documents?{query}")).await;
        assert_eq!(
            (got, answer["code"].as_str().unwrap()),
            (status, code),
            "{query}: {answer}"
        );
        assert!(
            request_message(&answer).contains(message),
            "{query}: {answer}"
        );
    }
    // A cursor of one index handed to another is refused, not read elsewhere.
    let page = ok(
        &server,
        "/api/dashboard/documents?table=messages&index=by_user&limit=1",
    )
    .await;
    let cursor = page["cursor"].as_str().unwrap();
    let (status, answer) = get(
        &server,
        &format!("/api/dashboard/documents?table=messages&index=by_id&cursor={cursor}"),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "BadCursor"),
        "{answer}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_of_large_documents_end_early_and_miss_nothing() {
    let server = TestServer::start(CHAT).await;
    // 60 documents of 400 KiB: 50 of them are more than one transaction may read (16 MiB)
    // and more than a page holds (MAX_DASHBOARD_PAGE_BYTES).
    let blob = "x".repeat(400 * 1024);
    for batch in 0..4 {
        server
            .store
            .run_mutation(|tx| {
                for i in 0..15 {
                    let mut fields = Object::new();
                    fields.insert("n".into(), Value::Float64((batch * 15 + i) as f64));
                    fields.insert("blob".into(), Value::from(blob.as_str()));
                    tx.insert("blobs", fields)?;
                }
                Ok::<_, ferrovex_runtime::store::StoreError>(())
            })
            .unwrap();
    }
    let first = ok(&server, "/api/dashboard/documents?table=blobs&limit=50").await;
    let shown = first["documents"].as_array().unwrap().len();
    assert!(
        shown > 0 && shown < 50,
        "{shown} documents on the first page"
    );
    assert_eq!(first["isDone"], false);
    let (docs, pages) = all_pages(&server, "blobs", "by_creation_time", "asc", 50, None).await;
    assert!(pages >= 2, "{pages} pages");
    let numbers: Vec<f64> = docs.iter().map(|d| d["n"].as_f64().unwrap()).collect();
    assert_eq!(numbers, (0..60).map(f64::from).collect::<Vec<_>>());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_are_one_transaction_each_and_checked_like_a_functions() {
    let server = TestServer::start(CHAT).await;
    send(&server, "ada", "first").await;
    send(&server, "bob", "second").await;
    let (docs, _) = all_pages(&server, "messages", "by_creation_time", "asc", 50, None).await;
    let (ada, bob) = (docs[0]["_id"].clone(), docs[1]["_id"].clone());
    let missing = {
        // An id of the right table that names no document: one deleted a moment ago.
        let (status, answer) = post(
            &server,
            "/api/dashboard/documents/insert",
            json!({"table": "messages", "fields": {"user": "x", "body": "gone"}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let id = answer["id"].clone();
        post(
            &server,
            "/api/dashboard/documents/delete",
            json!({"ids": [id]}),
        )
        .await;
        id
    };

    // (endpoint, body, status, code, what the message must say)
    let cases = [
        (
            "insert",
            json!({"table": "messages", "fields": {"user": "ada"}}),
            StatusCode::BAD_REQUEST,
            "SchemaMismatch",
            "document for table \"messages\" does not match its schema",
        ),
        (
            "insert",
            json!({"table": "messages", "fields": {"user": 7, "body": "x"}}),
            StatusCode::BAD_REQUEST,
            "SchemaMismatch",
            "user",
        ),
        (
            "insert",
            json!({"table": "messages", "fields": {"user": "a", "body": "b", "extra": true}}),
            StatusCode::BAD_REQUEST,
            "SchemaMismatch",
            "extra",
        ),
        (
            "replace",
            json!({"id": ada, "fields": {"body": "no user"}}),
            StatusCode::BAD_REQUEST,
            "SchemaMismatch",
            "user",
        ),
        (
            "patch",
            json!({"id": ada, "remove": ["body"]}),
            StatusCode::BAD_REQUEST,
            "SchemaMismatch",
            "body",
        ),
        (
            "insert",
            json!({"table": "_scheduled_functions", "fields": {"name": "x"}}),
            StatusCode::BAD_REQUEST,
            "SystemTable",
            "_scheduled_functions is a system table",
        ),
        (
            "insert",
            json!({"table": "notes", "fields": {"_secret": 1}}),
            StatusCode::BAD_REQUEST,
            "BadDocument",
            "_secret",
        ),
        (
            "insert",
            json!({"table": "bad name!", "fields": {}}),
            StatusCode::BAD_REQUEST,
            "BadDocument",
            "invalid table name",
        ),
        (
            "replace",
            json!({"id": missing, "fields": {"user": "a", "body": "b"}}),
            StatusCode::NOT_FOUND,
            "DocumentNotFound",
            "does not exist",
        ),
        (
            "delete",
            json!({"ids": [bob, missing]}),
            StatusCode::NOT_FOUND,
            "DocumentNotFound",
            "does not exist",
        ),
        (
            "delete",
            json!({"ids": "all"}),
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "\"ids\" must be an array of document ids",
        ),
        (
            "patch",
            json!({"id": "not-an-id"}),
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "\"id\" \"not-an-id\"",
        ),
        (
            "insert",
            json!({"table": "messages", "fields": {"n": {"$integer": "xx"}}}),
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "\"fields\" is not a valid value",
        ),
    ];
    for (endpoint, body, status, code, says) in cases {
        let path = format!("/api/dashboard/documents/{endpoint}");
        let (got, answer) = post(&server, &path, body.clone()).await;
        assert_eq!(
            (got, answer["code"].as_str().unwrap_or_default()),
            (status, code),
            "{path} {body}: {answer}"
        );
        let message = request_message(&answer);
        assert!(message.starts_with(&format!("POST {path}: ")), "{message}");
        assert!(message.contains(says), "{path} {body}: {message}");
    }
    // Nothing of any of them was written: the delete of two, one missing, deleted neither.
    let (after, _) = all_pages(&server, "messages", "by_creation_time", "asc", 50, None).await;
    assert_eq!(after, docs);

    // Valid writes go through, each visible to functions at once.
    let (status, answer) = post(
        &server,
        "/api/dashboard/documents/replace",
        json!({"id": ada, "fields": {"user": "ada", "body": "replaced"}}),
    )
    .await;
    assert_eq!((status, &answer["id"]), (StatusCode::OK, &ada));
    let (status, _) = post(
        &server,
        "/api/dashboard/documents/patch",
        json!({"id": bob, "set": {"body": "patched"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let call = json!({"path": "chat:get_messages", "args": {}, "format": "json"});
    let (_, answer) = server.post("/api/query", &call.to_string()).await;
    let bodies: Vec<&str> = answer["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["replaced", "patched"]);
    server.shutdown().await;
}

/// Reads the events stream line by line.
struct Events {
    body: hyper::body::Incoming,
    buffer: Vec<u8>,
}

impl Events {
    async fn open(server: &TestServer) -> Events {
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::get("/api/dashboard/events")
            .header("host", "localhost")
            .header("authorization", format!("Convex {}", server.admin_key))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/x-ndjson");
        Events {
            body: response.into_body(),
            buffer: Vec::new(),
        }
    }

    /// The next line, or `None` once the stream has ended.
    async fn next(&mut self) -> Option<Json> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(parse_json(&line));
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("the stream says something within a minute (it pings every 15 s)")?
                .expect("reading the stream");
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }

    /// Reads until a line `wanted` accepts.
    async fn until(&mut self, what: &str, wanted: impl Fn(&Json) -> bool) -> Json {
        let start = Instant::now();
        loop {
            let line = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the stream ended before {what}"));
            if wanted(&line) {
                return line;
            }
            assert!(start.elapsed() < WAIT, "waited {WAIT:?} for {what}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_events_stream_shows_commits_and_executions_as_they_happen_and_ends_on_shutdown() {
    let server = TestServer::start(CHAT).await;
    send(&server, "ada", "before the stream").await;
    let mut events = Events::open(&server).await;
    assert_eq!(events.next().await.unwrap()["type"], "hello");
    // The executions the server kept, then caughtUp.
    let kept = events.next().await.unwrap();
    assert_eq!(
        (kept["type"].as_str(), kept["path"].as_str()),
        (Some("execution"), Some("chat:send_message")),
        "{kept}"
    );
    assert_eq!(
        kept["logLines"][0],
        "This Rust function is running on the server."
    );
    assert_eq!(events.next().await.unwrap()["type"], "caughtUp");

    send(&server, "bob", "live").await;
    // The execution is recorded as the call ends and the commit announced once durable:
    // either may come first.
    let (mut commit, mut execution) = (None, None);
    while commit.is_none() || execution.is_none() {
        let line = events
            .until("the mutation's commit and execution", |l| {
                l["type"] == "commit" || l["type"] == "execution"
            })
            .await;
        match line["type"].as_str() {
            Some("commit") => commit = Some(line),
            _ => execution = Some(line),
        }
    }
    let (commit, execution) = (commit.unwrap(), execution.unwrap());
    assert_eq!(commit["tables"], json!(["messages"]), "{commit}");
    assert_eq!(
        (execution["path"].as_str(), execution["outcome"].as_str()),
        (Some("chat:send_message"), Some("success")),
        "{execution}"
    );
    // A failing call is shown with its error.
    let call = json!({"path": "chat:delete_message", "args": {"id": "nope"}});
    server.post("/api/mutation", &call.to_string()).await;
    let failed = events
        .until("the failed execution", |l| l["type"] == "execution")
        .await;
    assert_eq!(
        (failed["path"].as_str(), failed["outcome"].as_str()),
        (Some("chat:delete_message"), Some("error")),
        "{failed}"
    );
    assert!(
        failed["error"].as_str().unwrap().contains("nope"),
        "{failed}"
    );
    // A dashboard write is a commit like any other.
    post(
        &server,
        "/api/dashboard/documents/insert",
        json!({"table": "notes", "fields": {"n": 1}}),
    )
    .await;
    let commit = events
        .until("a commit of notes", |l| l["type"] == "commit")
        .await;
    assert_eq!(commit["tables"], json!(["notes"]));

    // Shutting down ends the stream: a dashboard left open never holds a server up.
    let stop = tokio::spawn(server.shutdown());
    while events.next().await.is_some() {}
    stop.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn health_counts_calls_errors_and_commits() {
    let server = TestServer::start(CHAT).await;
    for i in 0..4 {
        send(&server, "ada", &format!("m{i}")).await;
    }
    let call = json!({"path": "chat:delete_message", "args": {"id": "nope"}});
    server.post("/api/mutation", &call.to_string()).await;
    let health = ok(&server, "/api/dashboard/health").await;
    let functions = health["functions"].as_array().unwrap();
    let of = |path: &str| {
        functions
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path} in {health}"))
    };
    let send_stats = of("chat:send_message");
    assert_eq!(
        (send_stats["calls"].as_u64(), send_stats["errors"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(send_stats["kind"], "mutation");
    assert!(send_stats["p50Ms"].as_f64().unwrap() > 0.0);
    assert!(send_stats["p99Ms"].as_f64() >= send_stats["p50Ms"].as_f64());
    assert_eq!(send_stats["perSecond"].as_array().unwrap().len(), 60);
    let failing = of("chat:delete_message");
    assert_eq!(
        (failing["calls"].as_u64(), failing["errors"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(failing["errorRate"], 1.0);
    assert!(
        health["commits"]["total"].as_u64().unwrap() >= 4,
        "{health}"
    );
    assert!(health["dataBytes"].as_u64().unwrap() > 0, "{health}");
    assert_eq!(health["liveQueries"], 0);
    // A server on RocksDB is a deployment of one node, as /api/cluster/nodes says too.
    assert_eq!(health["cluster"]["nodes"][0]["role"], "single", "{health}");
    assert_eq!(health["cluster"]["leader"], serde_json::Value::Null);
    let nodes = ok(&server, "/api/cluster/nodes").await;
    assert_eq!(nodes, health["cluster"]);

    let deployment = ok(&server, "/api/dashboard/deployment").await;
    assert_eq!(
        deployment["version"].as_str(),
        Some(server.module.hash.as_str())
    );
    assert_eq!(deployment["functions"], server.module.functions().count());
    assert!(
        deployment["deployedAtMs"].as_f64().unwrap() > 1.6e12,
        "{deployment}"
    );
    assert_eq!(deployment["runtimeVersion"], env!("CARGO_PKG_VERSION"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_are_listed_with_their_arguments_and_a_pending_one_cancels() {
    let server = TestServer::start("runtime/tests/guests/jobs").await;
    let far = 4.0e12; // Due in 2096: pending for the whole test.
    let call = json!({"path": "jobs:schedule_at", "args": {"tag": "later", "at": far, "action": false}, "format": "json"});
    let (_, answer) = server.post("/api/mutation", &call.to_string()).await;
    let id = answer["value"].clone();
    assert!(id.is_string(), "{answer}");

    let pending = ok(&server, "/api/dashboard/jobs?state=pending").await;
    let job = pending["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {pending}"))
        .clone();
    assert_eq!(job["name"], "jobs:record");
    assert_eq!(
        job["args"],
        json!({"tag": "later"}),
        "decoded from its stored bytes"
    );
    assert_eq!(job["state"]["kind"], "pending");
    assert_eq!(job["scheduledTime"], far);

    let (status, answer) = post(&server, "/api/dashboard/jobs/cancel", json!({"id": id})).await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"state": {"kind": "canceled"}}))
    );
    let canceled = ok(&server, "/api/dashboard/jobs?state=canceled").await;
    assert!(canceled["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["id"] == id));
    // Cancelling again leaves it as it is.
    let (_, answer) = post(&server, "/api/dashboard/jobs/cancel", json!({"id": id})).await;
    assert_eq!(answer, json!({"state": {"kind": "canceled"}}));
    let (status, answer) = post(&server, "/api/dashboard/jobs/cancel", json!({"id": "nope"})).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NoSuchJob")),
        "{answer}"
    );
    let (status, answer) = get(&server, "/api/dashboard/jobs?state=sleeping").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        request_message(&answer).contains("got \"sleeping\""),
        "{answer}"
    );

    // The guest's cron, with its next run once the scheduler has written it, and its jobs.
    let crons = {
        let start = Instant::now();
        loop {
            let crons = ok(&server, "/api/dashboard/crons").await;
            if crons["crons"][0]["lastJob"].is_object() {
                break crons;
            }
            assert!(start.elapsed() < WAIT, "the cron never ran: {crons}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let tick = &crons["crons"][0];
    assert_eq!(
        (
            tick["name"].as_str(),
            tick["schedule"].as_str(),
            tick["function"].as_str()
        ),
        (Some("tick"), Some("every 200ms"), Some("jobs:cron_tick")),
        "{tick}"
    );
    assert!(tick["nextRunMs"].as_f64().unwrap() > 1.6e12);
    assert_eq!(tick["lastJob"]["cron"], "tick");
    server.shutdown().await;
}
