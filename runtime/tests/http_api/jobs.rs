//! Background and outside work over the HTTP API, against the `jobs` guest: the scheduler
//! (due order, rollback, run-at, cancel, errors), a cron, actions (outbound HTTP against the
//! test's own server on loopback, calls to other functions, failures contained, environment
//! variables) and HTTP actions. Waits are bounded polls of the state, never timing claims.

use crate::http_target::Target;
use crate::{error_message, request_message, TestServer};
use ferrovex_runtime::fetch::OutboundPolicy;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use serde_json::{json, Value as Json};
use std::time::{Duration, Instant};

const GUEST: &str = "runtime/tests/guests/jobs";
/// How long a test waits for scheduled work before it fails (the work itself takes ms).
const WAIT: Duration = Duration::from_secs(60);

async fn call(server: &TestServer, path: &str, args: Json) -> Json {
    let body = json!({ "path": path, "args": args, "format": "json" }).to_string();
    let (status, answer) = server.post_admin("/api/function", &body).await;
    assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    answer
}

/// The value of a call that must succeed.
async fn value(server: &TestServer, path: &str, args: Json) -> Json {
    let answer = call(server, path, args).await;
    assert_eq!(answer["status"], "success", "{path}: {answer}");
    answer["value"].clone()
}

async fn runs(server: &TestServer) -> Vec<String> {
    serde_json::from_value(value(server, "jobs:runs", json!({})).await).unwrap()
}

/// Polls `check` until it gives `Some`, for at most [`WAIT`].
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(start.elapsed() < WAIT, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn job_state(server: &TestServer, id: &Json) -> Json {
    value(server, "jobs:job", json!({ "id": id })).await
}

async fn state_becomes(server: &TestServer, id: &Json, kind: &str) -> Json {
    eventually(&format!("job {id} to be {kind}"), || async {
        let state = job_state(server, id).await;
        (state["kind"] == kind).then_some(state)
    })
    .await
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_mutations_run_once_each_in_due_order_and_a_rolled_back_mutation_schedules_nothing(
) {
    let server = TestServer::start(GUEST).await;
    let failed = call(
        &server,
        "jobs:schedule_then_fail",
        json!({ "tag": "ghost" }),
    )
    .await;
    assert!(
        error_message(&failed).contains("failing on purpose"),
        "{failed}"
    );
    // Scheduled in one mutation, due in another order than written.
    let ids = value(
        &server,
        "jobs:schedule_many",
        json!({ "entries": [
            { "tag": "third", "delay_ms": 300 },
            { "tag": "first", "delay_ms": 0 },
            { "tag": "second", "delay_ms": 150 },
        ] }),
    )
    .await;
    for id in ids.as_array().unwrap() {
        let state = state_becomes(&server, id, "success").await;
        assert!(state.get("error").is_none(), "{state}");
    }
    // Jobs run in due order, one after another: once "third" ran, any job due before it
    // (the rolled-back one's would have been) ran too.
    assert_eq!(runs(&server).await, ["first", "second", "third"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_at_its_time_or_is_canceled_and_its_state_is_a_document() {
    let server = TestServer::start(GUEST).await;
    let later = value(
        &server,
        "jobs:schedule_at",
        json!({ "tag": "later", "at": now_ms() + 3_600_000.0, "action": false }),
    )
    .await;
    assert_eq!(
        job_state(&server, &later).await,
        json!({ "kind": "pending" })
    );
    value(&server, "jobs:cancel", json!({ "id": later })).await;
    assert_eq!(job_state(&server, &later).await["kind"], "canceled");
    // A canceled job stays canceled; canceling again changes nothing.
    value(&server, "jobs:cancel", json!({ "id": later })).await;
    // A time in the past means now.
    let now = value(
        &server,
        "jobs:schedule_at",
        json!({ "tag": "past", "at": 0.0, "action": false }),
    )
    .await;
    state_becomes(&server, &now, "success").await;
    // Canceling a job that ran leaves its outcome.
    value(&server, "jobs:cancel", json!({ "id": now })).await;
    assert_eq!(job_state(&server, &now).await["kind"], "success");
    assert_eq!(runs(&server).await, ["past"]);
    // An id that is not a job's.
    let answer = call(&server, "jobs:cancel", json!({ "id": "not-an-id" })).await;
    assert!(
        error_message(&answer).contains("not the id of a scheduled job"),
        "{answer}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_errors_name_the_rule_and_what_was_given() {
    let server = TestServer::start(GUEST).await;
    let cases = [
        (
            "jobs:schedule_too_many",
            json!({ "count": 1001 }),
            "MAX_JOBS_SCHEDULED_PER_CALL (1000)",
        ),
        (
            "jobs:schedule_path",
            json!({ "path": "nope:x" }),
            "schedule nope:x: no such function",
        ),
        (
            "jobs:schedule_path",
            json!({ "path": "jobs:runs" }),
            "it is a query; only mutations and actions can be scheduled",
        ),
        (
            "jobs:schedule_path",
            json!({ "path": "jobs:cancel" }),
            "schedule jobs:cancel: invalid arguments",
        ),
        (
            "jobs:forge_job",
            json!({}),
            "_scheduled_functions is a system table",
        ),
    ];
    for (path, args, expected) in cases {
        let answer = call(&server, path, args).await;
        let message = error_message(&answer);
        assert!(message.contains(expected), "{path}: {message}");
        assert!(message.starts_with(path), "names the function: {message}");
    }
    // Nothing of it was scheduled: the next job to run is this one.
    let id = value(
        &server,
        "jobs:schedule_at",
        json!({ "tag": "after", "at": 0.0, "action": false }),
    )
    .await;
    state_becomes(&server, &id, "success").await;
    assert_eq!(runs(&server).await, ["after"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_ticks_and_has_at_most_one_run_going() {
    let server = TestServer::start(GUEST).await;
    eventually("the cron to tick three times", || async {
        let ticks = value(&server, "jobs:cron_ticks", json!({})).await;
        (ticks.as_f64().unwrap() >= 3.0).then_some(())
    })
    .await;
    // Its runs are jobs like any: at most one of them pending or running at a time, and the
    // cron's next time is remembered in `_cron_jobs`.
    let mut tx = server.store.begin_read_only();
    let jobs = tx
        .query(
            "_scheduled_functions",
            "by_creation_time",
            &Default::default(),
            ferrovex_runtime::store::Order::Asc,
            10_000,
        )
        .unwrap();
    let cron_jobs: Vec<_> = jobs
        .iter()
        .filter(|d| d.fields.get("cron").and_then(|c| c.as_str()) == Some("tick"))
        .collect();
    assert!(cron_jobs.len() >= 3, "{cron_jobs:?}");
    let going = cron_jobs
        .iter()
        .filter(|d| {
            let kind = &d.fields["state"].as_object().unwrap()["kind"];
            kind.as_str() != Some("success")
        })
        .count();
    assert!(going <= 1, "{cron_jobs:?}");
    let crons = tx
        .query(
            "_cron_jobs",
            "by_creation_time",
            &Default::default(),
            ferrovex_runtime::store::Order::Asc,
            10,
        )
        .unwrap();
    assert_eq!(crons.len(), 1, "{crons:?}");
    assert_eq!(crons[0].fields["name"].as_str(), Some("tick"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_fetch_over_http_with_headers_bodies_and_statuses_both_ways() {
    let server = TestServer::start(GUEST).await;
    let target = Target::start().await;
    let fetch = |method: &str, path: &str, body: Option<&str>, timeout_ms: i64| {
        json!({
            "method": method,
            "url": target.url(path),
            "headers": [["x-custom", "sent by the action"]],
            "body": body,
            "timeout_ms": timeout_ms,
        })
    };
    let answer = value(
        &server,
        "outside:fetch",
        fetch("POST", "/echo", Some("hello"), 0),
    )
    .await;
    assert_eq!(answer["status"], "200", "{answer}");
    assert_eq!(answer["body"], "POST hello");
    let header = |name: &str| {
        answer["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| h[1].clone())
    };
    assert_eq!(header("x-target"), Some(json!("yes")));
    assert_eq!(header("x-got-custom"), Some(json!("sent by the action")));
    // A status is an answer, not an error.
    let teapot = value(
        &server,
        "outside:fetch",
        fetch("GET", "/status/418", None, 0),
    )
    .await;
    assert_eq!(teapot["status"], "418");
    assert_eq!(teapot["body"], "status 418");
    // Redirects are followed, each hop checked; the final URL comes back.
    let moved = value(&server, "outside:fetch", fetch("GET", "/redirect", None, 0)).await;
    assert_eq!(moved["status"], "200");
    assert_eq!(moved["url"], target.url("/echo"));
    let hits = target.hits();
    assert_eq!(hits[0].method, "POST");
    assert_eq!(hits[0].body, "hello");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_failures_are_clear_errors_naming_the_action_and_the_limit() {
    let server = TestServer::start(GUEST).await;
    let target = Target::start().await;
    let cases = [
        ("/slow", 200, "no complete response within 200 ms"),
        ("/big", 0, "MAX_FETCH_RESPONSE_BYTES (8388608 bytes)"),
        ("/loop", 0, "a redirect loop"),
    ];
    for (path, timeout_ms, expected) in cases {
        let answer = call(
            &server,
            "outside:fetch",
            json!({ "method": "GET", "url": target.url(path), "headers": [], "body": null, "timeout_ms": timeout_ms }),
        )
        .await;
        let message = error_message(&answer);
        assert!(message.starts_with("outside:fetch: "), "{message}");
        assert!(message.contains(expected), "{path}: {message}");
    }
    let answer = call(
        &server,
        "outside:fetch",
        json!({ "method": "GET", "url": "ftp://example.com/", "headers": [], "body": null, "timeout_ms": 0 }),
    )
    .await;
    assert!(
        error_message(&answer).contains("the scheme must be http or https"),
        "{answer}"
    );
    // The server goes on serving.
    let fine = value(
        &server,
        "outside:fetch",
        json!({ "method": "GET", "url": target.url("/echo"), "headers": [], "body": null, "timeout_ms": 0 }),
    )
    .await;
    assert_eq!(fine["status"], "200");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_without_the_operators_permission() {
    let server = TestServer::start_with_policy(GUEST, OutboundPolicy::default()).await;
    let target = Target::start().await;
    for url in [
        target.url("/echo"),
        format!("http://localhost:{}/echo", target.addr.port()),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.1/".to_owned(),
    ] {
        let answer = call(
            &server,
            "outside:fetch",
            json!({ "method": "GET", "url": url, "headers": [], "body": null, "timeout_ms": 0 }),
        )
        .await;
        let message = error_message(&answer);
        assert!(
            message.contains("refused to connect") && message.contains("--allow-private-fetch"),
            "{url}: {message}"
        );
    }
    assert!(
        target.hits().is_empty(),
        "nothing reached the loopback server"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_calls_functions_gets_their_errors_and_its_own_failures_are_contained() {
    let server = TestServer::start(GUEST).await;
    // A failing mutation's message and data come back to the action; it wrote nothing.
    let got = value(&server, "outside:call_failing", json!({})).await;
    assert_eq!(got, json!(["fail: refused on purpose", { "code": "42" }]));
    // A panic fails the action with its message, and nothing else.
    let panicked = call(&server, "outside:panics", json!({})).await;
    assert!(
        error_message(&panicked).contains("an action panicked on purpose"),
        "{panicked}"
    );
    // Writes through a mutation and reads them back through a query.
    let read = value(
        &server,
        "outside:write_and_read",
        json!({ "tag": "via action" }),
    )
    .await;
    assert_eq!(read, json!(["via action"]));
    // Actions call actions, to a bounded depth.
    assert_eq!(
        value(&server, "outside:nest", json!({ "depth": 2 }))
            .await
            .as_f64(),
        Some(2.0)
    );
    let deep = call(&server, "outside:nest", json!({ "depth": 10 })).await;
    assert!(
        error_message(&deep).contains("MAX_ACTION_DEPTH (2)"),
        "{deep}"
    );
    // Real time and randomness.
    let entropy = value(&server, "outside:entropy", json!({})).await;
    assert!(
        (entropy[0].as_f64().unwrap() - now_ms()).abs() < 3_600_000.0,
        "{entropy}"
    );
    assert_ne!(entropy[1], entropy[2]);
    // An action scheduled from an action, and one through the scheduler, both run.
    let id = value(
        &server,
        "outside:schedule_from_action",
        json!({ "tag": "from action" }),
    )
    .await;
    state_becomes(&server, &id, "success").await;
    let id = value(
        &server,
        "jobs:schedule_at",
        json!({ "tag": "scheduled", "at": 0.0, "action": true }),
    )
    .await;
    state_becomes(&server, &id, "success").await;
    eventually("the scheduled action to record", || async {
        runs(&server)
            .await
            .contains(&"scheduled-action".to_owned())
            .then_some(())
    })
    .await;
    assert!(!runs(&server).await.contains(&"never".to_owned()));
    // An action is not a mutation, and the mutation endpoint says where to call it.
    let body = json!({ "path": "outside:entropy", "args": {} }).to_string();
    let (_, wrong) = server.post("/api/mutation", &body).await;
    assert!(
        error_message(&wrong)
            .contains("is an action, not a mutation; call it with POST /api/action"),
        "{wrong}"
    );
    let (_, right) = server.post("/api/action", &body).await;
    assert_eq!(right["status"], "success", "{right}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_reads_the_deployments_environment_variables() {
    let server = TestServer::start(GUEST).await;
    assert_eq!(
        value(&server, "outside:env", json!({ "name": "GREETING" })).await,
        Json::Null
    );
    let (status, answer) = server
        .post_admin(
            "/api/env",
            &json!({ "set": { "GREETING": "hello" } }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        value(&server, "outside:env", json!({ "name": "GREETING" })).await,
        "hello"
    );
    server.shutdown().await;
}

async fn http(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, hyper::HeaderMap, Vec<u8>) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    server
        .send(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_actions_serve_the_apps_routes() {
    let server = TestServer::start(GUEST).await;
    let (status, headers, body) = http(
        &server,
        "POST",
        "/http/echo?x=1",
        &[("x-custom", "from the client")],
        b"ping".to_vec(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(body, b"ping");
    assert_eq!(headers["x-method"], "POST");
    assert_eq!(headers["x-query"], "x=1");
    assert_eq!(headers["x-path"], "/echo");
    assert_eq!(headers["x-custom-echo"], "from the client");
    for (method, path, expected) in [
        ("GET", "/http/files/a/b.txt", "GET a/b.txt"),
        ("DELETE", "/http/files/x", "DELETE x"),
    ] {
        let (status, headers, body) = http(&server, method, path, &[], vec![]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(String::from_utf8(body).unwrap(), expected);
    }
    let (status, _, body) = http(
        &server,
        "POST",
        "/http/hooks/record",
        &[],
        b"webhook".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(crate::parse_json(&body), json!({ "recorded": "webhook" }));
    assert_eq!(runs(&server).await, ["webhook"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_action_errors_have_their_statuses() {
    let server = TestServer::start(GUEST).await;
    let (status, _, body) = http(&server, "GET", "/http/nothing", &[], vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let answer = crate::parse_json(&body);
    assert_eq!(answer["code"], "NoRouteMatched");
    assert!(
        request_message(&answer).contains("POST /http/echo (routes:echo)"),
        "{answer}"
    );
    let (status, _, body) = http(&server, "GET", "/http/echo", &[], vec![]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body:?}");
    // Refused by its declared length, before the body is read.
    let limit = ferrovex_model::limits::MAX_HTTP_ACTION_BODY_BYTES;
    let answer = server
        .raw(
            format!(
                "POST /http/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                limit + 1
            )
            .as_bytes(),
        )
        .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("MAX_HTTP_ACTION_BODY_BYTES"), "{answer}");
    let (status, _, body) = http(&server, "GET", "/http/fail", &[], vec![]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        request_message(&crate::parse_json(&body))
            .contains("routes:fail: the route failed on purpose"),
        "{body:?}"
    );
    let (status, _, body) = http(&server, "GET", "/http/bad-status", &[], vec![]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        request_message(&crate::parse_json(&body)).contains("status 1000"),
        "{body:?}"
    );
    // An HTTP action is not a function clients call.
    let body = json!({ "path": "routes:echo", "args": {} }).to_string();
    let (_, answer) = server.post("/api/function", &body).await;
    assert!(
        error_message(&answer).contains("no such function"),
        "{answer}"
    );
    // And the server goes on serving.
    let (status, _, _) = http(&server, "POST", "/http/echo", &[], b"still".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    server.shutdown().await;
}
