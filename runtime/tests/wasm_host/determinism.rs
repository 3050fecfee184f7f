//! The same call on the same snapshot gives identical results, logs and writes.

use crate::{args, App};
use ferrovex_runtime::wasm::CallOptions;

const FIXED: CallOptions = CallOptions {
    caller: ferrovex_runtime::auth::Caller {
        identity: None,
        admin: false,
    },
    now_ms: Some(1_732_406_400_000.0),
    seed: Some(7),
    page_ends: Vec::new(),
};

#[test]
fn a_query_twice_on_one_snapshot_is_identical() {
    let app = App::new("runtime/tests/guests/hostile");
    app.mutation("hostile:add", args(r#"{"body": "x"}"#))
        .unwrap();
    let run = || {
        app.host
            .run_query(
                &app.store,
                &app.module,
                "hostile:entropy",
                &args("{}"),
                FIXED,
            )
            .unwrap()
    };
    let (first, second) = (run(), run());
    assert_eq!(first, second);
    assert_eq!(first.log_lines, ["now is 1732406400000"]);
}

#[test]
fn a_mutation_on_identical_stores_makes_identical_writes() {
    let outcomes: Vec<_> = (0..2)
        .map(|_| {
            let app = App::new("examples/chat");
            let mut results = Vec::new();
            for body in ["a", "b"] {
                let sent = app
                    .host
                    .run_mutation(
                        &app.store,
                        &app.module,
                        "chat:send_message",
                        &args(&format!(r#"{{"user": "u", "body": "{body}"}}"#)),
                        FIXED,
                    )
                    .unwrap();
                results.push((sent.value, sent.log_lines));
            }
            let listed = app
                .host
                .run_query(
                    &app.store,
                    &app.module,
                    "chat:get_messages",
                    &args("{}"),
                    FIXED,
                )
                .unwrap();
            (results, listed.value, listed.log_lines)
        })
        .collect();
    // Same ids, creation times and fields: the writes were identical.
    assert_eq!(outcomes[0], outcomes[1]);
}
