//! The hostile-guest suite: each case must fail with its own error naming the function, leave
//! the store unchanged, free its pool slot, and leave the module working for the next call.

use crate::{args, test_host, App};
use ferrovex_model::limits::{SLOT_KEEP_RESIDENT_BYTES, SLOT_RELEASE_EVERY_CALLS};
use ferrovex_model::Value;
use ferrovex_runtime::store::StoreError;
use ferrovex_runtime::wasm::{CallError, Violation};

#[derive(Clone, Copy)]
enum Kind {
    Query,
    Mutation,
}

struct Case {
    function: &'static str,
    kind: Kind,
    expect: fn(&CallError) -> bool,
    /// Text the error message must contain.
    message: &'static str,
}

const CASES: &[Case] = &[
    Case {
        function: "spin",
        kind: Kind::Query,
        expect: |e| matches!(e, CallError::Timeout { .. }),
        message: "execution time limit of 300 ms",
    },
    Case {
        function: "memory_bomb",
        kind: Kind::Query,
        expect: |e| matches!(e, CallError::Violation(Violation::MemoryLimit { .. })),
        message: "guest memory exceeds the limit of 64 MiB",
    },
    Case {
        function: "deep_recursion",
        kind: Kind::Query,
        expect: |e| matches!(e, CallError::StackOverflow { .. }),
        message: "overflowed its call stack",
    },
    Case {
        function: "panic_after_writes",
        kind: Kind::Mutation,
        expect: |e| matches!(e, CallError::Panic { .. }),
        message: "panicked at hostile/src/hostile.rs",
    },
    Case {
        function: "err_after_writes",
        kind: Kind::Mutation,
        expect: |e| matches!(e, CallError::User { data: Some(_), .. }),
        message: "deliberate error after a write",
    },
    Case {
        function: "huge_length",
        kind: Kind::Query,
        expect: |e| {
            matches!(
                e,
                CallError::Violation(Violation::OutOfBounds {
                    import: "log",
                    len: 0xFFFF_FFF0,
                    ..
                })
            )
        },
        message: "log: pointer",
    },
    Case {
        function: "overflowing_pointer",
        kind: Kind::Query,
        expect: |e| {
            matches!(
                e,
                CallError::Violation(Violation::OutOfBounds {
                    import: "db_get",
                    ptr: 0xFFFF_FFF0,
                    ..
                })
            )
        },
        message: "outside guest memory",
    },
    Case {
        function: "out_of_bounds_out_pointer",
        kind: Kind::Query,
        expect: |e| {
            matches!(
                e,
                CallError::Violation(Violation::OutOfBounds {
                    import: "db_get",
                    len: 8,
                    ..
                })
            )
        },
        message: "outside guest memory",
    },
    Case {
        function: "forged_handle",
        kind: Kind::Query,
        expect: |e| {
            matches!(
                e,
                CallError::Violation(Violation::UnknownHandle { handle: 12345 })
            )
        },
        message: "handle 12345 was never issued",
    },
    Case {
        function: "stale_handle",
        kind: Kind::Query,
        expect: |e| matches!(e, CallError::Violation(Violation::UnknownHandle { .. })),
        message: "already read",
    },
    Case {
        function: "write_from_query",
        kind: Kind::Query,
        expect: |e| {
            matches!(
                e,
                CallError::Violation(Violation::WriteFromQuery {
                    import: "db_insert"
                })
            )
        },
        message: "a query cannot write",
    },
    Case {
        function: "too_many_reads",
        kind: Kind::Query,
        expect: |e| {
            matches!(
                e,
                CallError::Violation(Violation::Store(StoreError::LimitExceeded {
                    limit: "MAX_INDEX_RANGES_READ",
                    ..
                }))
            )
        },
        message: "MAX_INDEX_RANGES_READ",
    },
    Case {
        function: "huge_result",
        kind: Kind::Query,
        expect: |e| matches!(e, CallError::Violation(Violation::OutputTooLarge { .. })),
        message: "exceeds the limit MAX_ARGS_OR_RESULT_BYTES",
    },
    Case {
        function: "second_output",
        kind: Kind::Query,
        expect: |e| matches!(e, CallError::Violation(Violation::SecondOutput)),
        message: "called a second time",
    },
    Case {
        function: "too_many_logs",
        kind: Kind::Query,
        expect: |e| matches!(e, CallError::Violation(Violation::TooManyLogLines { .. })),
        message: "more than 256 log lines",
    },
];

fn note_count(app: &App) -> Value {
    app.query("hostile:count", args("{}"))
        .expect("hostile:count works")
        .value
}

#[test]
fn every_hostile_call_fails_cleanly_and_the_next_call_succeeds() {
    // Two slots: a leaked one would make the following calls fail to instantiate.
    let app = App::with_host("runtime/tests/guests/hostile", test_host(2));
    app.mutation("hostile:add", args(r#"{"body": "kept"}"#))
        .unwrap();
    for case in CASES {
        let path = format!("hostile:{}", case.function);
        let ts_before = app.store.latest_ts();
        let count_before = note_count(&app);
        let failure = match case.kind {
            Kind::Query => app.query(&path, args("{}")).map(|_| ()),
            Kind::Mutation => app.mutation(&path, args("{}")).map(|_| ()),
        }
        .expect_err(&path);
        let message = failure.to_string();
        assert!(
            (case.expect)(&failure.error),
            "{path}: unexpected error {:?}",
            failure.error
        );
        assert!(
            message.starts_with(&format!("{path}: ")),
            "the error names the function: {message}"
        );
        assert!(
            message.contains(case.message),
            "{path}: {message:?} lacks {:?}",
            case.message
        );
        assert_eq!(app.store.latest_ts(), ts_before, "{path} changed the store");
        assert_eq!(
            note_count(&app),
            count_before,
            "{path} left documents behind"
        );
        assert_eq!(app.host.live_instances(), 0, "{path} leaked a pool slot");
        assert_eq!(
            app.query("hostile:ok", args("{}")).unwrap().value,
            Value::from("ok"),
            "after {path}"
        );
    }
}

#[test]
fn log_lines_written_before_a_failure_reach_the_caller() {
    let app = App::new("runtime/tests/guests/hostile");
    let failure = app
        .mutation("hostile:panic_after_writes", args("{}"))
        .unwrap_err();
    assert_eq!(failure.log_lines, ["about to panic"]);
    assert!(
        failure
            .to_string()
            .contains("deliberate panic after 3 writes"),
        "{failure}"
    );
}

#[test]
fn declared_schemas_are_enforced_on_every_write() {
    let app = App::new("runtime/tests/guests/hostile");
    let id = app
        .mutation(
            "hostile:write_strict",
            args(r#"{"value": {"$integer": "BwAAAAAAAAA="}}"#),
        )
        .unwrap()
        .value;
    let id = id.as_str().unwrap().to_owned();
    let bad_insert = app
        .mutation("hostile:write_strict", args(r#"{"value": "seven"}"#))
        .unwrap_err();
    assert!(
        bad_insert.to_string().contains(r#"document for table "strict" does not match its schema: $.n: expected int64, got string"#),
        "{bad_insert}"
    );
    app.mutation(
        "hostile:patch_strict",
        args(&format!(r#"{{"id": "{id}", "note": "fine"}}"#)),
    )
    .unwrap();
    let bad_patch = app
        .mutation(
            "hostile:patch_strict",
            args(&format!(r#"{{"id": "{id}", "note": 1}}"#)),
        )
        .unwrap_err();
    assert!(
        bad_patch
            .to_string()
            .contains("$.note: expected string, got float64"),
        "{bad_patch}"
    );
    // Undeclared tables stay schemaless.
    app.mutation("hostile:add", args(r#"{"body": "anything"}"#))
        .unwrap();
}

/// A mutation that never returns, run as WebSocket sessions run mutations (its first attempt
/// inline on the worker): the inline attempt is stopped at the first epoch tick and made again
/// on the blocking pool, which stops it at the call's own limit and reports that limit; its
/// write is gone. With an inline bound no shorter than that limit, nothing runs inline (it
/// would hold the worker for the whole limit): the one attempt times out on the pool, and
/// nothing is run twice. Ticks, not time, decide each stop, so the outcome does not depend
/// on timing.
#[test]
fn a_mutation_that_never_returns_inline_times_out_at_the_call_limit() {
    use std::sync::atomic::Ordering;
    for (inline_ticks, overruns) in [(Some(1), 1), (Some(1_000), 0), (None, 0)] {
        let host = ferrovex_runtime::wasm::WasmHost::new(ferrovex_runtime::wasm::HostConfig {
            inline_ticks,
            ..crate::test_config()
        })
        .unwrap();
        let app = App::with_host("runtime/tests/guests/hostile", host);
        let host = std::sync::Arc::new(app.host);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ts_before = app.store.latest_ts();
        let failure = runtime
            .block_on(host.run_mutation_async(
                &app.store,
                std::sync::Arc::new(app.module.clone()),
                "hostile:spin_after_write".to_owned(),
                args("{}"),
                ferrovex_runtime::wasm::CallOptions::default(),
                Some(ferrovex_runtime::wasm::Once {
                    key: b"session-1/1".to_vec(),
                    maybe_ran: true,
                }),
            ))
            .expect_err("it never returns");
        let case = format!("inline_ticks {inline_ticks:?}");
        assert!(
            matches!(failure.error, CallError::Timeout { .. }),
            "{case}: {:?}",
            failure.error
        );
        assert!(
            failure
                .to_string()
                .contains("execution time limit of 300 ms"),
            "{case}: {failure}"
        );
        assert_eq!(
            app.store.latest_ts(),
            ts_before,
            "{case}: the write survived"
        );
        assert_eq!(
            app.store.stats().inline_overruns.load(Ordering::Relaxed),
            overruns,
            "{case}: inline attempts thrown away"
        );
    }
}

/// Resetting a memory slot clears every page it keeps, on every call in it: a large call
/// must not leave its pages behind for all the small calls after it to clear.
#[test]
fn a_large_call_leaves_no_pages_behind_for_the_calls_after_it() {
    let app = App::with_host("runtime/tests/guests/hostile", test_host(2));
    app.query("hostile:ok", args("{}")).unwrap();
    let small = app.host.idle_memory_bytes_resident();
    assert!(small > 0, "a call's slot keeps its pages for the next call");

    // 768 KiB of the heap the initial memory holds: a call that grows memory gets its slot
    // mapped afresh, one that does not leaves every page it wrote present.
    let filled = app
        .query(
            "hostile:fill_heap",
            args(r#"{"kib": {"$integer": "AAMAAAAAAAA="}}"#),
        )
        .unwrap();
    assert_eq!(filled.value, Value::from(768i64 * 1024));
    app.query("hostile:ok", args("{}")).unwrap();
    let after = app.host.idle_memory_bytes_resident();
    assert!(
        after <= small + SLOT_KEEP_RESIDENT_BYTES,
        "after a call that wrote 768 KiB, the idle slots keep {after} bytes (a small \
         call's slot kept {small}, SLOT_KEEP_RESIDENT_BYTES is {SLOT_KEEP_RESIDENT_BYTES}): \
         every call in them clears all of it"
    );
}

/// A slot whose kept pages reach `SLOT_KEEP_RESIDENT_BYTES` gives everything past them back
/// to the kernel on every reset (a TLB shootdown each), and the next call there takes page
/// faults for it. The slot of a call that wrote 96 KiB, like many ordinary calls, must not
/// reach it; one where a call wrote 1 MiB does, until the slot is emptied (one call in
/// `SLOT_RELEASE_EVERY_CALLS`). Page faults are counted for this thread, where calls run.
#[test]
fn small_calls_after_a_larger_one_in_its_slot_take_few_page_faults() {
    fn faults_of_this_thread() -> i64 {
        // SAFETY: `rusage` is plain integers, for which all zero bytes are a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `getrusage` writes only the `rusage` it is given, a live local.
        let status = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        assert_eq!(status, 0, "getrusage(RUSAGE_THREAD)");
        usage.ru_minflt
    }
    let period = SLOT_RELEASE_EVERY_CALLS as usize;
    for kib in [96i64, 1024] {
        let app = App::with_host("runtime/tests/guests/hostile", test_host(1));
        let json = ferrovex_model::json::to_json_string(&Value::from(kib));
        let filled = app
            .query("hostile:fill_heap", args(&format!(r#"{{"kib": {json}}}"#)))
            .unwrap();
        assert_eq!(filled.value, Value::from(kib * 1024));
        // A slot emptied once is past the large call; the first calls after either fault in
        // what they touch for the first time.
        for _ in 0..period {
            app.query("hostile:ok", args("{}")).unwrap();
        }
        let before = faults_of_this_thread();
        let calls = 2 * period;
        for _ in 0..calls {
            app.query("hostile:ok", args("{}")).unwrap();
        }
        let faults = faults_of_this_thread() - before;
        assert!(
            faults < period as i64,
            "{calls} calls in a slot where {kib} KiB was written took {faults} page faults: \
             the slot gives its pages back on every reset (SLOT_KEEP_RESIDENT_BYTES is \
             {SLOT_KEEP_RESIDENT_BYTES}, SLOT_RELEASE_EVERY_CALLS {period}; the slot keeps {} \
             bytes)",
            app.host.idle_memory_bytes_resident()
        );
    }
}

/// A query run on an async worker is stopped after a tick or so and reported as not run, for
/// the caller to run where it may block; a short one answers there.
#[test]
fn a_query_run_inline_is_stopped_when_it_runs_long() {
    use std::sync::atomic::Ordering;
    for (inline_ticks, overruns) in [(Some(1), 1), (None, 0)] {
        let host = ferrovex_runtime::wasm::WasmHost::new(ferrovex_runtime::wasm::HostConfig {
            inline_ticks,
            ..crate::test_config()
        })
        .unwrap();
        let app = App::with_host("runtime/tests/guests/hostile", host);
        let case = format!("inline_ticks {inline_ticks:?}");
        let inline = |path: &str| {
            app.host.try_run_query_inline(
                &app.store,
                &app.module,
                path,
                &args("{}"),
                ferrovex_runtime::wasm::CallOptions::default(),
            )
        };
        assert!(inline("hostile:spin").is_none(), "{case}: spin answered");
        assert_eq!(
            app.store.stats().inline_overruns.load(Ordering::Relaxed),
            overruns,
            "{case}: inline runs stopped"
        );
        let short = inline("hostile:ok");
        match inline_ticks {
            Some(_) => assert_eq!(short.unwrap().unwrap().value, Value::from("ok")),
            None => assert!(short.is_none(), "{case}: nothing runs inline"),
        }
        assert_eq!(app.host.live_instances(), 0, "{case}: a pool slot leaked");
    }
}
