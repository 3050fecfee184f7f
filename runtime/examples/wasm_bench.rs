//! Per-call latency of wasm functions beside the same logic as native Rust against the same
//! store; the difference is the cost of the sandbox. Not a test: run it with
//!
//! ```sh
//! cargo run --release -p runtime --example wasm_bench [-- ITERATIONS [ROW_FILTER]]
//! ```
//!
//! It builds `examples/chat` and the test guest `runtime/tests/guests/hostile` (for its empty
//! query `hostile:ok`) into `$CARGO_TARGET_DIR/guests`.

use model::{obj, Value};
use runtime::store::{IndexRange, Order, Store, BY_CREATION_TIME};
use runtime::wasm::{build_app, CallOptions, HostConfig, WasmHost};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    // An optional second argument runs only the rows whose name contains it (for profiling).
    let only = std::env::args().nth(2).unwrap_or_default();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guests");
    let chat_wasm =
        std::fs::read(build_app(&root.join("examples/chat"), &target).expect("building chat"))
            .unwrap();
    let hostile_wasm = std::fs::read(
        build_app(&root.join("runtime/tests/guests/hostile"), &target)
            .expect("building the test guest"),
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("data")).unwrap());
    let host = WasmHost::new(HostConfig::default()).unwrap();
    let chat = host.deploy(&store, &chat_wasm).unwrap();
    let hostile = host.deploy(&store, &hostile_wasm).unwrap();
    let floor = host.deploy(&store, &floor_module()).unwrap();
    let no_args = Value::Object(Default::default());
    let message = Value::Object(obj! { "user" => "ada", "body" => "hello" });
    for _ in 0..50 {
        host.run_mutation(
            &store,
            &chat,
            "chat:send_message",
            &message,
            CallOptions::default(),
        )
        .unwrap();
    }

    println!(
        "{iterations} iterations per row in {BATCHES} batches; mean latency per call in the fastest \
         batch (the last column: the sandbox's cost over all batches)\n"
    );
    println!(
        "{:<28} {:>12} {:>12} {:>14} {:>14}",
        "call", "wasm µs", "native µs", "sandbox µs", "(all) µs"
    );
    let row = |name: &str, n: u32, wasm: &mut dyn FnMut(), native: &mut dyn FnMut()| {
        if !name.contains(only.as_str()) {
            return;
        }
        // Warm up both paths (compiled code, page cache, pool slots).
        for _ in 0..n.min(100) {
            wasm();
            native();
        }
        let (w, w_all) = time(n, wasm);
        let (v, v_all) = time(n, native);
        println!(
            "{name:<28} {:>12.2} {:>12.2} {:>14.2} {:>14.2}",
            micros(w),
            micros(v),
            micros(w) - micros(v),
            micros(w_all) - micros(v_all)
        );
    };

    row(
        "host floor (WAT, no guest)",
        iterations,
        &mut || {
            host.run_query(
                &store,
                &floor,
                "floor:empty",
                &no_args,
                CallOptions::default(),
            )
            .unwrap();
        },
        &mut || {
            std::hint::black_box(store.begin_read_only());
        },
    );
    row(
        "empty query (hostile:ok)",
        iterations,
        &mut || {
            host.run_query(
                &store,
                &hostile,
                "hostile:ok",
                &no_args,
                CallOptions::default(),
            )
            .unwrap();
        },
        &mut || {
            let tx = store.begin_read_only();
            std::hint::black_box((Value::from("ok"), tx.read_set().clone()));
        },
    );
    row(
        "chat:get_messages (50 docs)",
        iterations,
        &mut || {
            let out = host
                .run_query(
                    &store,
                    &chat,
                    "chat:get_messages",
                    &no_args,
                    CallOptions::default(),
                )
                .unwrap();
            assert!(matches!(&out.value, Value::Array(a) if a.len() == 50));
        },
        &mut || {
            let mut tx = store.begin_read_only();
            let mut docs = tx
                .query(
                    "messages",
                    BY_CREATION_TIME,
                    &IndexRange::all(),
                    Order::Desc,
                    50,
                )
                .unwrap();
            docs.reverse();
            let value = Value::Array(docs.iter().map(|d| d.to_value()).collect());
            std::hint::black_box((value, tx.read_set().clone()));
        },
    );
    let mutations = (iterations / 10).max(50);
    row(
        "chat:send_message",
        mutations,
        &mut || {
            host.run_mutation(
                &store,
                &chat,
                "chat:send_message",
                &message,
                CallOptions::default(),
            )
            .unwrap();
        },
        &mut || {
            store
                .run_mutation(|tx| {
                    tx.insert("messages", obj! { "user" => "ada", "body" => "hello" })
                })
                .unwrap();
        },
    );
    println!("\n(send_message includes a durable commit; its sandbox columns are differences of two noisy figures)");
}

/// The least a call can cost: a hand-written module whose function outputs null without
/// allocating, so instantiation and the host's own work are all that is measured.
fn floor_module() -> Vec<u8> {
    use model::abi::{FunctionDescription, FunctionKind, Type};
    let description = FunctionDescription {
        kind: FunctionKind::Query,
        args: Type::object([]),
        returns: Type::Any,
    };
    let escape = |bytes: Vec<u8>| {
        bytes
            .iter()
            .map(|b| format!("\\{b:02x}"))
            .collect::<String>()
    };
    let described = model::binary::encode(&description.to_value());
    let wat = format!(
        r#"(module
            (import "runtime_v1" "output" (func $output (param i32 i32 i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "\00")
            (data (i32.const 32) "{}")
            (func (export "__runtime_v1_call:bench::floor::empty") (param i32 i32)
                (call $output (i32.const 0) (i32.const 16) (i32.const 1)))
            (func (export "__runtime_v1_describe:bench::floor::empty")
                (call $output (i32.const 2) (i32.const 32) (i32.const {}))))"#,
        escape(described.clone()),
        described.len()
    );
    wat::parse_str(wat).expect("valid WAT")
}

/// Batches each row is timed in.
const BATCHES: u32 = 10;

/// Mean latency in the fastest of [`BATCHES`] batches, and over all of them. On a shared
/// machine a batch that was descheduled or had its caches thrashed by other work reads slower,
/// never faster, so the fastest batch is the most repeatable figure.
fn time(n: u32, f: &mut dyn FnMut()) -> (Duration, Duration) {
    let per_batch = (n / BATCHES).max(1);
    let batches: Vec<Duration> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            start.elapsed() / per_batch
        })
        .collect();
    let fastest = *batches.iter().min().expect("at least one batch");
    (fastest, batches.iter().sum::<Duration>() / BATCHES)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
