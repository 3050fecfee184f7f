//! The example apps end to end: chat (docs/PROTOCOL.md section 2) and tasks (declared schema and
//! index, patch, delete, pagination).

use crate::{args, App};
use ferrovex_model::Value;
use ferrovex_runtime::wasm::{CallError, CallOptions, Once};

fn bodies(value: &Value) -> Vec<String> {
    let Value::Array(docs) = value else {
        panic!("expected an array, got {value:?}")
    };
    docs.iter()
        .map(|d| d.as_object().unwrap()["body"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn chat_sends_and_lists_the_50_most_recent_oldest_first() {
    let app = App::new("examples/chat");
    let mut paths: Vec<_> = app
        .module
        .functions()
        .map(|f| (f.path.clone(), f.description.kind.as_str()))
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            ("chat:delete_message".to_owned(), "mutation"),
            ("chat:get_messages".to_owned(), "query"),
            ("chat:list_messages".to_owned(), "query"),
            ("chat:send_message".to_owned(), "mutation"),
            ("wiki:post".to_owned(), "mutation"),
            ("wiki:summary".to_owned(), "action"),
        ]
    );

    let empty = app.query("chat:get_messages", args("{}")).unwrap();
    assert_eq!(empty.value, Value::Array(vec![]));

    for i in 0..60 {
        let sent = app
            .mutation(
                "chat:send_message",
                args(&format!(r#"{{"user": "ada", "body": "m{i}"}}"#)),
            )
            .unwrap();
        assert_eq!(sent.value, Value::Null);
        assert_eq!(
            sent.log_lines,
            ["This Rust function is running on the server."]
        );
        assert_eq!(sent.ts, app.store.latest_ts());
    }
    let listed = app.query("chat:get_messages", args("{}")).unwrap();
    let expected: Vec<String> = (10..60).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies(&listed.value), expected);
    let first = listed.value.clone();
    let Value::Array(docs) = first else {
        unreachable!()
    };
    let doc = docs[0].as_object().unwrap();
    assert_eq!(doc["user"], Value::from("ada"));
    assert!(doc.contains_key("_id") && doc.contains_key("_creationTime"));
    assert!(!listed.read_set.is_empty(), "a query reports what it read");
}

#[test]
fn arguments_are_checked_against_the_exported_schema() {
    let app = App::new("examples/chat");
    let cases = [
        (
            r#"{"user": "ada"}"#,
            "$.body: missing required field of type string",
        ),
        (
            r#"{"user": "ada", "body": 3}"#,
            "$.body: expected string, got float64",
        ),
        (
            r#"{"user": "ada", "body": "hi", "extra": true}"#,
            "unexpected field \"extra\"",
        ),
    ];
    for (given, expected) in cases {
        let failure = app.mutation("chat:send_message", args(given)).unwrap_err();
        assert!(
            matches!(failure.error, CallError::InvalidArguments(_)),
            "{given}: {failure}"
        );
        let message = failure.to_string();
        assert!(
            message.starts_with("chat:send_message: invalid arguments"),
            "{message}"
        );
        assert!(message.contains(expected), "{given}: {message}");
    }
    let wrong_kind = app.mutation("chat:get_messages", args("{}")).unwrap_err();
    assert_eq!(
        wrong_kind.to_string(),
        "chat:get_messages: is a query, not a mutation"
    );
    let unknown = app.query("chat:nope", args("{}")).unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("chat:get_messages, chat:list_messages, chat:send_message"),
        "{unknown}"
    );
}

fn task_titles(value: &Value) -> Vec<String> {
    let Value::Array(docs) = value else {
        panic!("expected an array, got {value:?}")
    };
    docs.iter()
        .map(|d| d.as_object().unwrap()["title"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn tasks_use_a_declared_index_patch_delete_and_pagination() {
    let app = App::new("examples/tasks");
    let mut ids = Vec::new();
    for (title, priority) in [("low", 1), ("high", 9), ("mid", 5), ("mid2", 5)] {
        let added = app
            .mutation(
                "tasks:add",
                Value::Object(
                    ferrovex_model::obj! { "title" => title, "priority" => priority as i64 },
                ),
            )
            .unwrap();
        assert_eq!(added.log_lines.len(), 1);
        ids.push(added.value.as_str().unwrap().to_owned());
    }
    // by_done is (done, priority): open tasks, highest priority first.
    let open = app.query("tasks:list_open", args("{}")).unwrap();
    assert_eq!(task_titles(&open.value)[0], "high");
    assert_eq!(task_titles(&open.value)[3], "low");

    app.mutation(
        "tasks:complete",
        args(&format!(r#"{{"id": "{}"}}"#, ids[1])),
    )
    .unwrap();
    let open = app.query("tasks:list_open", args("{}")).unwrap();
    let titles = task_titles(&open.value);
    assert_eq!(titles.len(), 3, "{titles:?}");
    assert_eq!(titles[2], "low");
    assert!(!task_titles(&open.value).contains(&"high".to_owned()));

    app.mutation("tasks:remove", args(&format!(r#"{{"id": "{}"}}"#, ids[0])))
        .unwrap();
    let missing = app
        .mutation("tasks:remove", args(&format!(r#"{{"id": "{}"}}"#, ids[0])))
        .unwrap_err();
    assert!(missing.error.is_user_error(), "{missing}");
    assert!(missing.to_string().contains("does not exist"), "{missing}");

    // Page through all three remaining tasks two at a time, newest first.
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let mut request = ferrovex_model::Object::new();
        request.insert("cursor".into(), cursor.clone());
        request.insert("size".into(), Value::Int64(2));
        let page = app
            .query("tasks:page", Value::Object(request))
            .unwrap()
            .value;
        let page = page.as_object().unwrap().clone();
        seen.extend(task_titles(&page["page"]));
        if page["isDone"] == Value::Boolean(true) {
            assert_eq!(
                page["continueCursor"],
                Value::from("end"),
                "a string on the last page too"
            );
            break;
        }
        cursor = page["continueCursor"].clone();
        assert!(seen.len() <= 3, "pagination must end: {seen:?}");
    }
    assert_eq!(seen, ["mid2", "mid", "high"]);

    let rejected = app
        .mutation("tasks:add", args(r#"{"title": "  "}"#))
        .unwrap_err();
    match &rejected.error {
        CallError::User { message, data } => {
            assert_eq!(message, "a task needs a title");
            assert_eq!(
                ferrovex_model::json::to_json_string(data.as_ref().unwrap()),
                r#"{"field":"title"}"#
            );
        }
        other => panic!("expected the app's error, got {other}"),
    }
}

#[test]
fn a_forged_cursor_cannot_leave_its_range() {
    let app = App::new("examples/tasks");
    app.mutation("tasks:add", args(r#"{"title": "a"}"#))
        .unwrap();
    let forged = app
        .query(
            "tasks:page",
            args(r#"{"cursor": "00000000", "size": {"$integer": "BQAAAAAAAAA="}}"#),
        )
        .unwrap_err();
    assert!(
        forged
            .to_string()
            .contains("InvalidCursor: the cursor is not a position in this query's range of tasks.by_creation_time"),
        "{forged}"
    );
    assert!(forged.to_string().starts_with("tasks:page"), "{forged}");
}

#[test]
fn mutations_and_queries_run_concurrently() {
    fn shareable<T: Send + Sync>(_: &T) {}
    let app = App::new("examples/chat");
    shareable(&app.host);
    shareable(&app.module);
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let app = &app;
            scope.spawn(move || {
                for i in 0..10 {
                    let message = format!(r#"{{"user": "t{thread}", "body": "{i}"}}"#);
                    app.mutation("chat:send_message", args(&message)).unwrap();
                    app.query("chat:get_messages", args("{}")).unwrap();
                }
            });
        }
    });
    let listed = app.query("chat:get_messages", args("{}")).unwrap();
    assert_eq!(bodies(&listed.value).len(), 40);
    assert_eq!(app.host.live_instances(), 0);
}

#[test]
fn compiled_modules_are_cached_on_disk_by_module_and_engine_hash() {
    let cache = tempfile::tempdir().unwrap();
    let config = || ferrovex_runtime::wasm::HostConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..Default::default()
    };
    let wasm = crate::guest_wasm("examples/chat");
    let hash = ferrovex_runtime::wasm::module_hash(&wasm);
    let first = App::with_host(
        "examples/chat",
        ferrovex_runtime::wasm::WasmHost::new(config()).unwrap(),
    );
    let artifacts: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert!(
        artifacts[0].to_string_lossy().starts_with(&hash),
        "{artifacts:?}"
    );
    assert_eq!(first.module.hash, hash);
    // A second host (as after a restart) loads the artifact and runs it.
    let second = App::with_host(
        "examples/chat",
        ferrovex_runtime::wasm::WasmHost::new(config()).unwrap(),
    );
    second
        .mutation("chat:send_message", args(r#"{"user": "a", "body": "b"}"#))
        .unwrap();
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);
}

#[test]
fn modules_built_with_the_sdk_declare_its_abi_and_version() {
    use ferrovex_model::abi::{BuiltWith, ABI_VERSION, SDK_VERSION};
    let this = BuiltWith {
        abi: ABI_VERSION,
        sdk: SDK_VERSION.to_owned(),
    };
    // The examples link with LTO, the test guests without: the record survives both.
    for guest in ["examples/chat", "runtime/tests/guests/hostile"] {
        let wasm = crate::guest_wasm(guest);
        let declared = ferrovex_runtime::wasm::declared_versions(&wasm)
            .unwrap_or_else(|| panic!("{guest} has no version section"))
            .unwrap_or_else(|e| panic!("{guest}: {e}"));
        assert_eq!(declared, std::slice::from_ref(&this), "{guest}");
    }
}

/// A mutation keyed by a receipt (a client's `(sessionId, requestId)`) runs once: the same key
/// again is answered from the receipt its commit wrote, runs nothing, writes nothing and is
/// not recorded as a second execution, even under a path the module no longer has (a client
/// re-sending after a deploy). A new key runs.
/// A mutation's first attempt runs inline on an async worker; one that runs long there is
/// stopped, thrown away and made again on the blocking pool, and a function whose inline
/// attempts keep running long starts on the pool. With `inline_ticks` 0 every inline attempt
/// is stopped at its first check, so which attempts ran where does not depend on timing.
#[test]
fn a_mutation_that_runs_long_inline_is_made_again_on_the_pool() {
    use ferrovex_runtime::store::{LONG_OVERRUNS, LONG_PROBE_EVERY};
    use std::sync::atomic::Ordering;
    let host = ferrovex_runtime::wasm::WasmHost::new(ferrovex_runtime::wasm::HostConfig {
        inline_ticks: Some(0),
        ..crate::test_config()
    })
    .unwrap();
    let app = App::with_host("examples/chat", host);
    let host = std::sync::Arc::new(app.host);
    let module = std::sync::Arc::new(app.module.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let overruns = || app.store.stats().inline_overruns.load(Ordering::Relaxed);
    let calls = 40u64;
    for i in 0..calls {
        let sent = runtime
            .block_on(host.run_mutation_async(
                &app.store,
                module.clone(),
                "chat:send_message".to_owned(),
                args(&format!(r#"{{"user": "ada", "body": "message {i}"}}"#)),
                CallOptions::default(),
                Some(Once {
                    key: format!("session-1/{i}").into_bytes(),
                    maybe_ran: true,
                }),
            ))
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
        assert_eq!(
            sent.log_lines,
            ["This Rust function is running on the server."],
            "the lines of the attempt that counted, once"
        );
        if i == 0 {
            assert_eq!(
                overruns(),
                1,
                "the first attempt ran inline and was stopped"
            );
        }
    }
    // The first LONG_OVERRUNS calls each had an inline attempt stopped; after that the
    // function starts on the pool, but for one probe in LONG_PROBE_EVERY.
    let later = calls - u64::from(LONG_OVERRUNS);
    assert_eq!(
        overruns(),
        u64::from(LONG_OVERRUNS) + later.div_ceil(LONG_PROBE_EVERY)
    );
    let listed = host
        .run_query(
            &app.store,
            &app.module,
            "chat:get_messages",
            &args("{}"),
            CallOptions::default(),
        )
        .unwrap();
    let mut expected: Vec<String> = (0..calls).map(|i| format!("message {i}")).collect();
    expected.drain(..expected.len() - 50.min(expected.len()));
    assert_eq!(
        bodies(&listed.value),
        expected,
        "each message committed once"
    );
    let (recent, _) = host.executions.follow();
    assert_eq!(
        recent.iter().filter(|r| r.kind == "mutation").count(),
        calls as usize,
        "one execution recorded per call"
    );
}

/// Over PostgreSQL, a mutation's first attempt runs on the async worker until it comes to a
/// read that memory cannot answer (or runs past its tick), and is then stopped and made again
/// on the blocking pool. The stopped attempt committed nothing, so for a request new to its
/// session the attempt that follows still skips its receipt's lookup: a receipt under its key
/// does not answer it.
#[test]
fn an_attempt_stopped_inline_is_made_again_without_its_receipt_lookup() {
    use ferrovex_runtime::store::Store;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    let url = crate::pg_cluster::Cluster::shared().database();
    let wasm = crate::guest_wasm("examples/bank");
    let host = Arc::new(crate::test_host(8));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let open = || {
        let store = Arc::new(Store::open_postgres(&url).unwrap());
        let module = Arc::new(host.deploy(&store, &wasm).unwrap());
        (store, module)
    };
    let transfer = |store: &Arc<Store>, module: &Arc<_>, ids: &Value, maybe_ran: bool| {
        let (from, to) = match ids {
            Value::Array(ids) => (ids[0].clone(), ids[1].clone()),
            other => panic!("bank:seed returned {other:?}"),
        };
        let mut call = ferrovex_model::Object::new();
        call.insert("from".into(), from);
        call.insert("to".into(), to);
        call.insert("amount".into(), Value::Int64(1));
        runtime
            .block_on(host.run_mutation_async(
                store,
                Arc::clone(module),
                "bank:transfer".to_owned(),
                Value::Object(call),
                CallOptions::default(),
                Some(Once {
                    key: b"session-5/1".to_vec(),
                    maybe_ran,
                }),
            ))
            .unwrap()
    };
    let (ids, first) = {
        let (store, module) = open();
        let seeded = host
            .run_mutation(
                &store,
                &module,
                "bank:seed",
                &args(r#"{"count": {"$integer": "AgAAAAAAAAA="}, "balance": {"$integer": "CgAAAAAAAAA="}}"#),
                CallOptions::default(),
            )
            .unwrap();
        let first = transfer(&store, &module, &seeded.value, true);
        (seeded.value, first)
    };
    // Reopened: the accounts are no longer in memory, so reading them waits on PostgreSQL.
    let (store, module) = open();
    let again = transfer(&store, &module, &ids, false);
    assert!(
        again.ts > first.ts,
        "ran and committed again: the receipt was not looked up after the stop"
    );
    let stats = store.stats();
    let stops = stats.inline_network_reads.load(Ordering::Relaxed)
        + stats.inline_overruns.load(Ordering::Relaxed);
    assert_eq!(stops, 1, "the inline attempt was stopped once");
}

/// A request its client has not sent before (`Once::maybe_ran` false: the sync layer says so
/// of a new request id on a session's first socket) skips the lookup of its receipt: even a
/// receipt under its key does not answer it, while the same key marked as maybe run is
/// answered by the receipt, and then by the one the unlooked run recorded.
#[test]
fn a_request_new_to_its_session_is_not_looked_up() {
    let app = App::new("examples/chat");
    let run = |maybe_ran: bool| {
        app.host
            .run_mutation_once(
                &app.store,
                &app.module,
                "chat:send_message",
                &args(r#"{"user": "ada", "body": "once"}"#),
                CallOptions::default(),
                &Once {
                    key: b"session-2/1".to_vec(),
                    maybe_ran,
                },
            )
            .unwrap()
    };
    let first = run(true);
    assert_eq!(run(true).ts, first.ts, "answered by the receipt");
    let unlooked = run(false);
    assert!(
        unlooked.ts > first.ts,
        "ran and committed again: the receipt was not looked up"
    );
    assert_eq!(run(true).ts, unlooked.ts, "its commit recorded its outcome");
}

#[test]
fn a_receipt_answers_a_repeated_mutation_without_running_it() {
    let app = App::new("examples/chat");
    let once = |path: &str, key: &[u8]| {
        app.host.run_mutation_once(
            &app.store,
            &app.module,
            path,
            &args(r#"{"user": "ada", "body": "once"}"#),
            CallOptions::default(),
            &Once {
                key: key.to_vec(),
                maybe_ran: true,
            },
        )
    };
    let executions = || {
        let (recent, _) = app.host.executions.follow();
        recent.iter().filter(|r| r.kind == "mutation").count()
    };
    let first = once("chat:send_message", b"session-1/7").unwrap();
    assert_eq!(executions(), 1);
    let commits = app.store.latest_ts();

    let again = once("chat:send_message", b"session-1/7").unwrap();
    assert_eq!(
        (again.ts, &again.value, &again.log_lines),
        (first.ts, &first.value, &first.log_lines),
        "the first outcome, commit timestamp and log lines included"
    );
    let renamed = once("chat:no_longer_here", b"session-1/7").unwrap();
    assert_eq!(renamed.ts, first.ts);
    assert_eq!(app.store.latest_ts(), commits, "nothing committed again");
    assert_eq!(executions(), 1, "answered from the receipt, not run");

    let unknown = once("chat:no_longer_here", b"session-1/8").unwrap_err();
    assert!(
        unknown.to_string().contains("chat:no_longer_here"),
        "{unknown}"
    );
    let next = once("chat:send_message", b"session-1/9").unwrap();
    assert!(next.ts > first.ts);
    assert_eq!(executions(), 3);
}
