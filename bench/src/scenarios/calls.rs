//! `calls`: the cost of one call: an empty query (`bank:ping`), `chat:get_messages` over 50
//! documents, and `chat:send_message` (a durable commit), each
//!
//! - in process through the wasm host, beside the same logic as native Rust against the
//!   same store (the difference is the sandbox), and
//! - over HTTP (`POST /api/query`, `/api/mutation`) to `runtime serve`, one kept-alive
//!   connection, one call after another (adds HTTP, JSON and the blocking pool).
//!
//! A `host floor` row runs a hand-written module whose function outputs null without
//! allocating: instantiation and the host's own work, nothing of the guest.

use super::Context;
use crate::http::Http;
use crate::report::Row;
use crate::server::build_app;
use crate::server::BaselineServer;
use crate::stats::Latency;
use ferrovex_model::{obj, Value};
use ferrovex_runtime::store::{IndexRange, Order, Store, BY_CREATION_TIME};
use ferrovex_runtime::wasm::{CallOptions, HostConfig, WasmHost};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Times `n` calls one by one, after a warm-up of `n / 10`.
fn time(n: usize, f: &mut dyn FnMut()) -> Latency {
    for _ in 0..(n / 10).max(10) {
        f();
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        f();
        samples.push(t0.elapsed());
    }
    Latency::of(samples)
}

fn native_case(call: &str) -> String {
    format!("native Rust, {call}")
}

/// A case to time: its name, how many calls, the call in wasm, the same work natively.
type Case<'a> = (String, usize, Box<dyn FnMut() + 'a>, Box<dyn FnMut() + 'a>);

pub fn run(ctx: &mut Context) -> Result<(), String> {
    let (queries, mutations) = if ctx.quick {
        (1_000, 100)
    } else {
        (5_000, 400)
    };
    in_process(ctx, queries, mutations)?;
    over_http(ctx, queries / 2, mutations)
}

fn in_process(ctx: &mut Context, queries: usize, mutations: usize) -> Result<(), String> {
    let read =
        |p: std::path::PathBuf| std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()));
    let chat_wasm = read(build_app(&ctx.app("examples/chat"))?)?;
    let bank_wasm = read(build_app(&ctx.app("examples/bank"))?)?;
    let dir = ctx.store_dir("calls-in-process");
    let store = Arc::new(Store::open(&dir).map_err(|e| e.to_string())?);
    let host = WasmHost::new(HostConfig {
        cache_dir: Some(ctx.app("examples/chat").join("target/runtime-compiled")),
        ..HostConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let deploy = |wasm: &[u8]| host.deploy(&store, wasm).map_err(|e| e.to_string());
    let chat = deploy(&chat_wasm)?;
    let bank = deploy(&bank_wasm)?;
    let floor = deploy(&floor_module())?;
    let no_args = Value::Object(Default::default());
    let message = Value::Object(obj! { "user" => "ada", "body" => "hello" });
    let send_message = || {
        host.run_mutation(
            &store,
            &chat,
            "chat:send_message",
            &message,
            CallOptions::default(),
        )
        .map_err(|e| format!("{e:?}"))
    };
    for _ in 0..50 {
        send_message()?;
    }
    let query = |module: &ferrovex_runtime::wasm::DeployedModule, path: &str| {
        host.run_query(&store, module, path, &no_args, CallOptions::default())
            .expect("the query runs")
    };

    let mut rows: Vec<Case<'_>> = vec![
        (
            "host floor (WAT module, no guest)".into(),
            queries,
            Box::new(|| {
                query(&floor, "floor:empty");
            }),
            Box::new(|| {
                std::hint::black_box(store.begin_read_only());
            }),
        ),
        (
            "empty query bank:ping".into(),
            queries,
            Box::new(|| {
                query(&bank, "bank:ping");
            }),
            Box::new(|| {
                let tx = store.begin_read_only();
                std::hint::black_box((Value::Null, tx.read_set().clone()));
            }),
        ),
        (
            "chat:get_messages (50 docs)".into(),
            queries,
            Box::new(|| {
                let out = query(&chat, "chat:get_messages");
                assert!(matches!(&out.value, Value::Array(a) if a.len() == 50));
            }),
            Box::new(|| {
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
            }),
        ),
        (
            "chat:send_message".into(),
            mutations,
            Box::new(|| {
                send_message().expect("the mutation runs");
            }),
            Box::new(|| {
                store
                    .run_mutation(|tx| {
                        tx.insert("messages", obj! { "user" => "ada", "body" => "hello" })
                    })
                    .unwrap();
            }),
        ),
    ];
    let mut measured = Vec::new();
    for (name, n, wasm, native) in &mut rows {
        let w = time(*n, &mut **wasm);
        let v = time(*n, &mut **native);
        measured.push((name.clone(), w, v));
    }
    drop(rows);
    for (name, wasm, native) in measured {
        let native_row = Row::new("baseline", native_case(&name))
            .latency(native.clone())
            .note("the same logic against the same store, no sandbox");
        let added_us = (wasm.p50_ms - native.p50_ms) * 1e3;
        ctx.push(native_row);
        ctx.push(
            Row::new("calls", format!("in process, wasm, {name}"))
                .value(wasm.mean_ms * 1e3, "us mean")
                .latency(wasm)
                .latency_ratio(native_case(&name), native.p50_ms)
                .note(format!("the sandbox adds {added_us:.1} us at p50")),
        );
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn over_http(ctx: &mut Context, queries: usize, mutations: usize) -> Result<(), String> {
    let chat = ctx.serve("examples/chat", "calls-chat")?;
    let bank = ctx.serve("examples/bank", "calls-bank")?;
    let connect = |addr| Http::connect(addr).map_err(|e| e.to_string());
    let (mut chat_http, mut bank_http) = (connect(chat.addr)?, connect(bank.addr)?);
    let message = json!({"user": "ada", "body": "hello"});
    for _ in 0..50 {
        chat_http.call("mutation", "chat:send_message", message.clone())?;
    }
    let mut failure = None;
    let mut check = |r: Result<serde_json::Value, String>| {
        if let Err(e) = r {
            failure.get_or_insert(e);
        }
    };
    let ping = time(queries, &mut || {
        check(bank_http.call("query", "bank:ping", json!({})))
    });
    // The floor: the same request and answer bytes through a minimal hyper server.
    let floor_server = BaselineServer::start("http_floor")?;
    let mut floor_http = connect(floor_server.addr)?;
    let floor = time(queries, &mut || {
        check(floor_http.call("query", "bank:ping", json!({})))
    });
    drop((floor_http, floor_server));
    let get = time(queries, &mut || {
        check(chat_http.call("query", "chat:get_messages", json!({})))
    });
    let send = time(mutations, &mut || {
        check(chat_http.call("mutation", "chat:send_message", message.clone()))
    });
    drop((chat_http, bank_http));
    chat.stop()?;
    bank.stop()?;
    if let Some(e) = failure {
        return Err(e);
    }
    let floor_p50 = floor.p50_ms;
    ctx.push(
        Row::new("baseline", "HTTP floor, a minimal hyper server")
            .value(floor.mean_ms * 1e3, "us mean")
            .latency(floor)
            .note("bank:ping's request and answer bytes, nothing run (src/bin/http_floor.rs); one connection, one call after another"),
    );
    for (name, latency) in [
        ("empty query bank:ping", ping),
        ("chat:get_messages (50 docs)", get),
        ("chat:send_message", send),
    ] {
        let mut row = Row::new("calls", format!("HTTP to runtime serve, {name}"))
            .value(latency.mean_ms * 1e3, "us mean")
            .latency(latency);
        if let Some(native) = ctx.find("baseline", &native_case(name)) {
            row = row.latency_ratio(native.label(), native.latency.unwrap().p50_ms);
        }
        if name.starts_with("empty query") {
            row = row.latency_ratio("baseline HTTP floor, a minimal hyper server", floor_p50);
        }
        ctx.push(row.note("one connection, one call after another"));
    }
    Ok(())
}

/// The least a call can cost: a hand-written module whose function outputs null without
/// allocating, so instantiation and the host's own work are all that is measured.
fn floor_module() -> Vec<u8> {
    use ferrovex_model::abi::{FunctionDescription, FunctionKind, Type};
    let description = FunctionDescription {
        visibility: ferrovex_model::abi::Visibility::Public,
        kind: FunctionKind::Query,
        args: Type::object([]),
        returns: Type::Any,
        route: None,
    };
    let escape = |bytes: Vec<u8>| {
        bytes
            .iter()
            .map(|b| format!("\\{b:02x}"))
            .collect::<String>()
    };
    let described = ferrovex_model::binary::encode(&description.to_value());
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
