//! The `abi` target: a guest that replays an arbitrary sequence of raw host calls.
//!
//! The guest (WAT, built here) copies its arguments, `{p: bytes}`, into its memory and runs
//! the program in `p`: 16-byte records `[op, a, b, c]` that call an import with `a, b, c` as
//! they are (bad pointers, huge lengths, forged handles, a second output, writes from a
//! query...). Each `db_*` call's status is kept, and the program ends by logging them, so the
//! host's answers come back in the log lines. The fuzzer picks the records; most point at
//! well-formed requests the harness lays out after them, some are corrupted.
//!
//! Checks:
//! - the host never panics, and every call ends (the call time limit) with a result or an error;
//! - a call that fails (trap, violation, error) leaves the store as it was;
//! - a query never writes: its write imports trap;
//! - where every `db_*` call of a mutation was well-formed, the store matches a model: the
//!   table grows by the inserts that answered OK and shrinks by the deletes that did;
//! - no instance outlives its call (the pool's slots are all free afterwards).

use arbitrary::{Result, Unstructured};
use ferrovex_model::abi::{FunctionDescription, FunctionKind, Type};
use ferrovex_model::limits::MAX_IMPORT_REQUEST_BYTES;
use ferrovex_model::{binary, Object, Value};
use ferrovex_runtime::store::{IndexRange, Order, Store, BY_CREATION_TIME};
use ferrovex_runtime::wasm::{CallOptions, DeployedModule, WasmHost};
use std::sync::{Arc, Mutex, OnceLock};

/// Where the guest copies its arguments.
const ARGS_AT: u32 = 4096;
/// The program's length: fixed, so that its offset in the arguments is fixed too.
const PROGRAM_BYTES: usize = 4000;
/// `{p: bytes(4000)}` in the binary form: object, 1 field, key "p", bytes tag, 2-byte length.
const HEADER_BYTES: u32 = 7;
const PROGRAM_AT: u32 = ARGS_AT + HEADER_BYTES;
const MAX_OPS: usize = 40;
/// Requests and other data follow the records.
const DATA_AT: u32 = PROGRAM_AT + (MAX_OPS as u32 + 1) * 16;
const DATA_BYTES: usize = PROGRAM_BYTES - (MAX_OPS + 1) * 16;
/// Where the guest keeps one status digit per `db_*` call, and out records.
const STATUS_AT: u32 = 512;
const OUT_AT: u32 = 256;

const OP_END: u32 = 0;
const OP_READ_HANDLE: u32 = 1;
const OP_OUTPUT: u32 = 2;
const OP_LOG: u32 = 3;
const OP_PANIC: u32 = 4;
const OP_NOW: u32 = 5;
const OP_SEED: u32 = 6;
const OP_DB_FIRST: u32 = 7; // get, insert, patch, replace, delete, scan
const OP_READ_OUT: u32 = 13;
const OP_TRAP: u32 = 14;

fn describe(kind: FunctionKind) -> Vec<u8> {
    binary::encode(
        &FunctionDescription {
            visibility: ferrovex_model::abi::Visibility::Public,
            kind,
            args: Type::object([("p", Type::Bytes)]),
            returns: Type::Any,
            route: None,
        }
        .to_value(),
    )
}

fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// The interpreter guest: `app::m::q` (a query) and `app::m::w` (a mutation) run the same
/// program.
fn guest_wat() -> String {
    let q = describe(FunctionKind::Query);
    let w = describe(FunctionKind::Mutation);
    let (q_at, w_at) = (16, 16 + q.len());
    let dbs = [
        "db_get",
        "db_insert",
        "db_patch",
        "db_replace",
        "db_delete",
        "db_scan",
    ];
    let mut imports = String::new();
    for name in dbs {
        imports.push_str(&format!(
            "(import \"runtime_v1\" \"{name}\" (func ${name} (param i32 i32 i32) (result i32)))\n"
        ));
    }
    let mut db_cases = String::new();
    for (i, name) in dbs.iter().enumerate() {
        db_cases.push_str(&format!(
            "(if (i32.eq (local.get $op) (i32.const {op})) (then (call $status (call ${name} (local.get $a) (local.get $b) (local.get $c)))))\n",
            op = OP_DB_FIRST + i as u32
        ));
    }
    format!(
        r#"(module
  (import "runtime_v1" "read_handle" (func $read_handle (param i32 i32 i32)))
  (import "runtime_v1" "output" (func $output (param i32 i32 i32)))
  (import "runtime_v1" "log" (func $log (param i32 i32)))
  (import "runtime_v1" "panic" (func $panic (param i32 i32)))
  (import "runtime_v1" "now_ms" (func $now_ms (result f64)))
  (import "runtime_v1" "random_seed" (func $random_seed (result i64)))
  {imports}
  (memory (export "memory") 2)
  (global $n (mut i32) (i32.const 0))
  (data (i32.const {q_at}) "{q_bytes}")
  (data (i32.const {w_at}) "{w_bytes}")
  (func (export "__runtime_v1_describe:app::m::q") (call $output (i32.const 2) (i32.const {q_at}) (i32.const {q_len})))
  (func (export "__runtime_v1_describe:app::m::w") (call $output (i32.const 2) (i32.const {w_at}) (i32.const {w_len})))
  (func $status (param $s i32)
    (i32.store8 (i32.add (i32.const {status_at}) (global.get $n)) (i32.add (i32.const 48) (local.get $s)))
    (global.set $n (i32.add (global.get $n) (i32.const 1))))
  (func $run (param $h i32) (param $len i32)
    (local $pc i32) (local $op i32) (local $a i32) (local $b i32) (local $c i32)
    (global.set $n (i32.const 0))
    (call $read_handle (local.get $h) (i32.const {args_at}) (local.get $len))
    (local.set $pc (i32.const {program_at}))
    (block $done
      (loop $next
        (local.set $op (i32.load (local.get $pc)))
        (local.set $a (i32.load offset=4 (local.get $pc)))
        (local.set $b (i32.load offset=8 (local.get $pc)))
        (local.set $c (i32.load offset=12 (local.get $pc)))
        (local.set $pc (i32.add (local.get $pc) (i32.const 16)))
        (br_if $done (i32.eq (local.get $op) (i32.const {op_end})))
        (if (i32.eq (local.get $op) (i32.const {op_read_handle})) (then (call $read_handle (local.get $a) (local.get $b) (local.get $c))))
        (if (i32.eq (local.get $op) (i32.const {op_output})) (then (call $output (local.get $a) (local.get $b) (local.get $c))))
        (if (i32.eq (local.get $op) (i32.const {op_log})) (then (call $log (local.get $a) (local.get $b))))
        (if (i32.eq (local.get $op) (i32.const {op_panic})) (then (call $panic (local.get $a) (local.get $b))))
        (if (i32.eq (local.get $op) (i32.const {op_now})) (then (drop (call $now_ms))))
        (if (i32.eq (local.get $op) (i32.const {op_seed})) (then (drop (call $random_seed))))
        {db_cases}
        ;; read the handle an earlier call wrote at `b` ([handle, len]) into `a`
        (if (i32.eq (local.get $op) (i32.const {op_read_out}))
          (then (call $read_handle (i32.load (local.get $b)) (local.get $a) (i32.load offset=4 (local.get $b)))))
        (if (i32.eq (local.get $op) (i32.const {op_trap})) (then unreachable))
        (br $next)))
    (call $log (i32.const {status_at}) (global.get $n)))
  (func (export "__runtime_v1_call:app::m::q") (param i32 i32) (call $run (local.get 0) (local.get 1)))
  (func (export "__runtime_v1_call:app::m::w") (param i32 i32) (call $run (local.get 0) (local.get 1)))
)"#,
        q_bytes = wat_bytes(&q),
        w_bytes = wat_bytes(&w),
        q_len = q.len(),
        w_len = w.len(),
        status_at = STATUS_AT,
        args_at = ARGS_AT,
        program_at = PROGRAM_AT,
        op_end = OP_END,
        op_read_handle = OP_READ_HANDLE,
        op_output = OP_OUTPUT,
        op_log = OP_LOG,
        op_panic = OP_PANIC,
        op_now = OP_NOW,
        op_seed = OP_SEED,
        op_read_out = OP_READ_OUT,
        op_trap = OP_TRAP,
    )
}

struct Fixture {
    runs: u64,
    store: Arc<Store>,
    host: Arc<WasmHost>,
    module: DeployedModule,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| Mutex::new(Fixture::new()))
}

impl Fixture {
    /// A fresh store with the interpreter deployed.
    fn new() -> Fixture {
        let dir = crate::scratch_dir();
        let store = Arc::new(Store::open(&dir.path().join("data")).expect("open the store"));
        let host = crate::server::host();
        let wasm = wat::parse_str(guest_wat()).expect("the interpreter guest is valid WAT");
        let module = host
            .deploy(&store, &wasm)
            .expect("the interpreter guest deploys");
        Fixture {
            runs: 0,
            store,
            host,
            module,
            _dir: dir,
        }
    }
}

/// A program and what the harness knows about it.
struct Program {
    records: Vec<[u32; 4]>,
    data: Vec<u8>,
    /// Every `db_*` call is a well-formed request at a valid place (and nothing else in the
    /// program can fail before the end).
    well_formed: bool,
    /// The `db_*` calls, in order: what each does when it answers OK.
    db_calls: Vec<DbCall>,
}

struct DbCall {
    /// Insert, patch, replace or delete: a write, which a query may never have answered OK.
    writes: bool,
    /// How it changes the table's document count.
    effect: i64,
}

impl Program {
    fn place(&mut self, bytes: &[u8]) -> Option<u32> {
        if self.data.len() + bytes.len() > DATA_BYTES {
            return None;
        }
        let at = DATA_AT + self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        Some(at)
    }

    fn encode(&self) -> Value {
        let mut p = vec![0u8; PROGRAM_BYTES];
        for (i, r) in self.records.iter().enumerate() {
            for (j, word) in r.iter().enumerate() {
                p[i * 16 + j * 4..i * 16 + j * 4 + 4].copy_from_slice(&word.to_le_bytes());
            }
        }
        let data_start = (DATA_AT - PROGRAM_AT) as usize;
        p[data_start..data_start + self.data.len()].copy_from_slice(&self.data);
        Value::Object(Object::from([("p".to_owned(), Value::Bytes(p))]))
    }
}

fn object(fields: &[(&str, Value)]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

fn program(u: &mut Unstructured, table: &str, ids: &[String]) -> Result<Program> {
    let mut p = Program {
        records: Vec::new(),
        data: Vec::new(),
        well_formed: true,
        db_calls: Vec::new(),
    };
    // Half the programs make only well-formed calls, so that the model has runs to judge.
    let clean = u.arbitrary::<bool>()?;
    let ops = u.int_in_range(0..=MAX_OPS - 2)?;
    for _ in 0..ops {
        let kind = if clean {
            *u.choose(&[0, 1, 2, 3, 4, 5, 6, 9, 11])?
        } else {
            u.int_in_range(0..=13)?
        };
        let record = match kind {
            0..=5 => {
                // A db call with a well-formed request, sometimes corrupted.
                let pick_id = |u: &mut Unstructured| -> Result<Value> {
                    Ok(if ids.is_empty() || u.ratio(1, 4)? {
                        Value::String("00000000000000000000000000000000000".into())
                    } else {
                        Value::String(u.choose(ids)?.clone())
                    })
                };
                let fields = object(&[("n", Value::Int64(u.int_in_range(0..=9)?))]);
                let (op, request, effect) = match u.int_in_range(0..=5)? {
                    0 => (0, object(&[("id", pick_id(u)?)]), 0),
                    1 => (
                        1,
                        object(&[("table", Value::String(table.into())), ("fields", fields)]),
                        1,
                    ),
                    2 => (
                        2,
                        object(&[
                            ("id", pick_id(u)?),
                            ("set", fields),
                            ("remove", Value::Array(vec![])),
                        ]),
                        0,
                    ),
                    3 => (3, object(&[("id", pick_id(u)?), ("fields", fields)]), 0),
                    4 => (4, object(&[("id", pick_id(u)?)]), -1),
                    _ => (
                        5,
                        object(&[
                            ("table", Value::String(table.into())),
                            ("index", Value::String(BY_CREATION_TIME.into())),
                            ("eq", Value::Array(vec![])),
                            ("lower", Value::Null),
                            ("upper", Value::Null),
                            ("order", Value::String("asc".into())),
                            ("limit", Value::Int64(u.int_in_range(0..=5)?)),
                            ("cursor", Value::Null),
                        ]),
                        0,
                    ),
                };
                let mut bytes = binary::encode(&request);
                let corrupt = !clean && u.ratio(1, 6)?;
                if corrupt && !bytes.is_empty() {
                    let at = u.choose_index(bytes.len())?;
                    bytes[at] = u.arbitrary()?;
                }
                let Some(at) = p.place(&bytes) else { break };
                let (mut ptr, mut len, mut out) = (at, bytes.len() as u32, OUT_AT);
                if !clean && u.ratio(1, 8)? {
                    // A pointer, length or out pointer from anywhere.
                    match u.int_in_range(0..=2)? {
                        0 => ptr = u.arbitrary()?,
                        1 => len = u.arbitrary()?,
                        _ => out = u.arbitrary()?,
                    }
                    p.well_formed = false;
                }
                if corrupt {
                    p.well_formed = false;
                }
                p.db_calls.push(DbCall {
                    writes: (1..=4).contains(&op),
                    effect,
                });
                [OP_DB_FIRST + op, ptr, len, out]
            }
            6 => {
                // Read the handle the last call wrote, to where the data ends.
                let dest = DATA_AT + DATA_BYTES as u32 + 16;
                [OP_READ_OUT, dest, OUT_AT, 0]
            }
            7 => {
                p.well_formed = false;
                [
                    OP_READ_HANDLE,
                    u.arbitrary()?,
                    u.arbitrary()?,
                    u.arbitrary()?,
                ]
            }
            8 => {
                // An output: a valid result, or anything.
                let result = binary::encode(&Value::Null);
                let Some(at) = p.place(&result) else { break };
                // A second output traps (the program ends with one), as does one of
                // arbitrary kind, place or length.
                p.well_formed = false;
                if u.ratio(1, 2)? {
                    [OP_OUTPUT, 0, at, result.len() as u32]
                } else {
                    [OP_OUTPUT, u.arbitrary()?, u.arbitrary()?, u.arbitrary()?]
                }
            }
            9 => [OP_LOG, DATA_AT, u.int_in_range(0..=64)?, 0],
            12 => {
                // A request just past MAX_IMPORT_REQUEST_BYTES: refused before it is read.
                p.well_formed = false;
                let over = u.int_in_range(1..=4096)?;
                let op = u.int_in_range(0..=5)?;
                [
                    OP_DB_FIRST + op,
                    0,
                    (MAX_IMPORT_REQUEST_BYTES + over) as u32,
                    OUT_AT,
                ]
            }
            13 => {
                // A result a client could not decode: an object key starting with `$`.
                let result = binary::encode(&object(&[("$integer", Value::String("x".into()))]));
                let Some(at) = p.place(&result) else { break };
                p.well_formed = false;
                [OP_OUTPUT, 0, at, result.len() as u32]
            }
            10 => {
                p.well_formed = false;
                match u.int_in_range(0..=3)? {
                    0 => [OP_LOG, u.arbitrary()?, u.arbitrary()?, 0],
                    1 => [OP_PANIC, u.arbitrary()?, u.arbitrary()?, 0],
                    2 => [OP_TRAP, 0, 0, 0],
                    _ => [
                        u.arbitrary()?,
                        u.arbitrary()?,
                        u.arbitrary()?,
                        u.arbitrary()?,
                    ],
                }
            }
            _ => [*u.choose(&[OP_NOW, OP_SEED])?, 0, 0, 0],
        };
        p.records.push(record);
    }
    // The function's result, so that a mutation can commit.
    let result = binary::encode(&Value::Null);
    if let Some(at) = p.place(&result) {
        p.records.push([OP_OUTPUT, 0, at, result.len() as u32]);
    }
    Ok(p)
}

fn count(store: &Store, table: &str) -> usize {
    store.snapshot().count_documents(table).expect("count") as usize
}

pub fn abi(data: &[u8]) {
    let mut fixture = fixture().lock().unwrap_or_else(|e| e.into_inner());
    // The table grows with every run: start over now and then, so that runs stay fast.
    fixture.runs += 1;
    if fixture.runs.is_multiple_of(512) {
        *fixture = Fixture::new();
    }
    let mut u = Unstructured::new(data);
    let table = "things";
    // Ids that exist, for requests that name one.
    let ids: Vec<String> = {
        let mut tx = fixture.store.begin_read_only();
        tx.query(table, BY_CREATION_TIME, &IndexRange::all(), Order::Desc, 4)
            .expect("scan")
            .iter()
            .map(|d| d.id.to_string())
            .collect()
    };
    let Ok(query) = u.arbitrary::<bool>() else {
        return;
    };
    let Ok(program) = program(&mut u, table, &ids) else {
        return;
    };
    let args = program.encode();
    let before_ts = fixture.store.latest_ts();
    let before = count(&fixture.store, table);
    let path = if query { "m:q" } else { "m:w" };
    let (host, store, module) = (&fixture.host, &fixture.store, &fixture.module);
    let ran = if query {
        host.run_query(store, module, path, &args, CallOptions::default())
            .map(|o| o.log_lines)
    } else {
        host.run_mutation(store, module, path, &args, CallOptions::default())
            .map(|o| o.log_lines)
    };
    let (outcome, log_lines) = match ran {
        Ok(log_lines) => (Ok(()), log_lines),
        Err(e) => (Err(e.to_string()), e.log_lines),
    };
    if std::env::var_os("FUZZ_CHECKS_VERBOSE").is_some() {
        eprintln!(
            "abi run: {path}, {} records, well-formed {}, outcome {outcome:?}, logs {log_lines:?}",
            program.records.len(),
            program.well_formed
        );
    }
    assert_eq!(
        fixture.host.live_instances(),
        0,
        "an instance outlived its call"
    );
    let after = count(&fixture.store, table);
    match &outcome {
        Err(error) => {
            assert!(
                error.starts_with(path),
                "an error that does not name {path}: {error}"
            );
            assert_eq!(
                fixture.store.latest_ts(),
                before_ts,
                "a failed call committed: {error}"
            );
            assert_eq!(after, before, "a failed call changed the table: {error}");
        }
        Ok(()) if query => {
            assert_eq!(fixture.store.latest_ts(), before_ts, "a query committed");
        }
        Ok(()) => {}
    }
    if query && outcome.is_ok() {
        // A write from a query traps: a query that ran to its end had no write answered OK.
        // (Only then is the last log line the statuses; a trap leaves the program's own.)
        if let Some(statuses) = log_lines.last() {
            let writes_ok = statuses
                .bytes()
                .zip(&program.db_calls)
                .any(|(s, call)| s == b'0' && call.writes);
            assert!(!writes_ok, "a query's write answered OK: {statuses}");
        }
    }
    // The model: a well-formed mutation that succeeded changed the table by exactly its
    // answered inserts and deletes.
    if !query && program.well_formed && outcome.is_ok() {
        let statuses = log_lines.last().expect("the program logs its statuses");
        assert_eq!(statuses.len(), program.db_calls.len(), "{statuses}");
        let delta: i64 = statuses
            .bytes()
            .zip(&program.db_calls)
            .map(|(s, call)| {
                assert!(
                    matches!(s, b'0' | b'1' | b'2'),
                    "a status that is not a status code: {s}"
                );
                if s == b'0' {
                    call.effect
                } else {
                    0
                }
            })
            .sum();
        // Deleting an id twice answers NOT_FOUND the second time, so the sum is exact.
        assert_eq!(
            after as i64 - before as i64,
            delta,
            "the table changed by {} documents, the answers say {delta} ({statuses})",
            after as i64 - before as i64
        );
    }
}
