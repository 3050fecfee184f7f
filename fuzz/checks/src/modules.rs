//! The `modules` target: arbitrary wasm modules (wasm-smith), limited to the imports of
//! `runtime_v1` and the exports of a guest (`memory`, a function's call and description),
//! deployed and, when they deploy, called as a query and as a mutation.
//!
//! A description wasm-smith writes is never a valid one, so most inputs get a rewritten
//! module (wasmparser and `wasm_encoder::reencode`): the generated call body stays as it is,
//! the describe export points to an appended function that outputs a valid description
//! (kind, arguments and result types picked by the input), and a second function `m:g`
//! exports the same call body with the other kind. So every deployed module runs its
//! arbitrary code once as a query and once as a mutation. Some inputs keep the generated
//! describe export (the describe path itself), some get a well-formed but invalid
//! description (which deploy must refuse).
//!
//! wasm-smith only calls a function when the operand stack already holds its parameters, so
//! generated code almost never calls a `db_*` import with a request that decodes. It is
//! therefore also offered placeholder imports without parameters (module `fuzz`, see
//! [`PLACEHOLDERS`]); the rewrite turns each into a defined function (a wrapper) that writes a
//! well-formed request into a scratch area of memory, calls the real import, reads the
//! response and logs a line saying what it did and with which status, and returns that
//! status. Which request each wrapper sends (table, fields, patch, scan range, which of
//! the id slots it reads or fills) is picked by the input. Ids live in slots in scratch
//! memory: each call starts with ids of the documents the store was reset to before the
//! input (and one of a deleted document); an insert wrapper stores its new id in its slot,
//! so later wrappers in the same call read, patch, replace or delete it. Output wrappers
//! output a result (mostly of the declared type) or an error. Most generated bodies never
//! output, and a mutation without an output commits nothing, so for three inputs in four the
//! call exports name an entry function that calls the generated body and then outputs
//! `output_0`'s value unless an output wrapper ran. Generated calls of the real write
//! imports go through a shim that logs their status too.
//!
//! Checks: the host never panics; a deploy either succeeds or fails with an error that says
//! why (compile, description; never the ABI check, which every generated module passes); a
//! valid description deploys as written and an invalid one is refused; a call either returns
//! or fails with an error that names the function; a call of the wrong kind or with
//! arguments its description refuses fails before running; a result matches the declared
//! type; a query never moves the store's latest timestamp, a failed mutation commits nothing,
//! a successful one leaves the store at its timestamp; no instance outlives a deploy or a call
//! (the pool's slots are all free afterwards). Store-touching calls, replayed from the
//! wrappers' lines on a model of the tables: every status is the one the model expects
//! (reads and inserts succeed, changing an existing document succeeds, changing a missing
//! one fails); a query never writes and, like a failed mutation, leaves the tables as they
//! were; after a successful mutation the tables at its timestamp are exactly the model with
//! its writes, and one without writes commits nothing.

use arbitrary::Unstructured;
use model::abi::{
    import, output, FunctionDescription, FunctionKind, Type, WasmType, CALL_PREFIX,
    DESCRIBE_PREFIX, IMPORT_MODULE, IMPORT_SIGNATURES,
};
use model::{Object, Value};
use runtime::store::Store;
use runtime::wasm::{CallError, CallOptions, DeployError, HostConfig, WasmHost};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasm_encoder::reencode::{self, Reencode};

/// The Rust path of the generated function; `m:g` is added by the rewrite.
const F: &str = "app::m::f";
const G: &str = "app::m::g";

struct Fixture {
    store: Arc<Store>,
    /// A host of its own, without the module cache: every module here is new.
    host: WasmHost,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = crate::scratch_dir();
        let store = Arc::new(Store::open(&dir.path().join("data")).expect("open the store"));
        let host = WasmHost::new(HostConfig {
            max_instances: 4,
            // Generated loops often never end: a short limit keeps inputs fast, and the
            // timeout path is what is tested either way.
            timeout: Duration::from_millis(100),
            ..HostConfig::default()
        })
        .expect("the wasm host starts");
        Mutex::new(Fixture {
            store,
            host,
            _dir: dir,
        })
    })
}

fn wat_type(t: &WasmType) -> &'static str {
    match t {
        WasmType::I32 => "i32",
        WasmType::I64 => "i64",
        WasmType::F64 => "f64",
    }
}

/// A module whose imports are the placeholders and every import of the ABI: what generated
/// modules may import. The placeholders come first: wasm-smith takes imports in order and
/// counts them against `max_funcs`.
fn imports_module() -> Vec<u8> {
    let mut wat = String::from("(module\n");
    for (name, op) in PLACEHOLDERS {
        let result = if *op == Op::Output {
            ""
        } else {
            "(result i32)"
        };
        wat.push_str(&format!(
            "(import \"{PLACEHOLDER_MODULE}\" \"{name}\" (func {result}))\n"
        ));
    }
    for (name, params, results) in IMPORT_SIGNATURES {
        let params: Vec<&str> = params.iter().map(wat_type).collect();
        let results: Vec<&str> = results.iter().map(wat_type).collect();
        wat.push_str(&format!(
            "(import \"runtime_v1\" \"{name}\" (func (param {}) (result {})))\n",
            params.join(" "),
            results.join(" ")
        ));
    }
    wat.push(')');
    wat::parse_str(&wat).expect("valid WAT")
}

/// A module with the exports of a guest of one function.
fn exports_module() -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (memory (export "memory") 1)
            (func (export "{CALL_PREFIX}{F}") (param i32 i32))
            (func (export "{DESCRIBE_PREFIX}{F}")))"#
    ))
    .expect("valid WAT")
}

fn config(u: &mut Unstructured) -> arbitrary::Result<wasm_smith::Config> {
    static IMPORTS: OnceLock<Vec<u8>> = OnceLock::new();
    static EXPORTS: OnceLock<Vec<u8>> = OnceLock::new();
    let mut config = wasm_smith::Config {
        available_imports: Some(IMPORTS.get_or_init(imports_module).clone()),
        exports: Some(EXPORTS.get_or_init(exports_module).clone()),
        // Imports count too: about half of the 22 offered ones are picked.
        max_funcs: 20,
        max_instructions: 200,
        // The exported memory is generated whatever this says; one more would need the
        // multi-memory proposal, which the host does not enable.
        max_memories: 0,
        reference_types_enabled: false,
        max_memory32_bytes: 4 << 20,
        memory64_enabled: false,
        max_tables: 1,
        max_table_elements: 100,
        max_data_segments: 4,
        threads_enabled: false,
        shared_everything_threads_enabled: false,
        gc_enabled: false,
        exceptions_enabled: false,
        tail_call_enabled: false,
        ..wasm_smith::Config::default()
    };
    // Sometimes features the host refuses at deploy (SIMD), sometimes not.
    config.simd_enabled = u.ratio(1, 8)?;
    config.relaxed_simd_enabled = false;
    // A start function runs before every entry point, describe included, and mostly traps
    // there: sometimes one, mostly none, so that most modules reach their call.
    config.allow_start_export = u.int_in_range(0u8..=3)? == 3;
    // Code that does not trap on bad memory accesses or arithmetic goes further.
    config.disallow_traps = u.arbitrary()?;
    Ok(config)
}

/// What the describe export of a module does.
#[derive(Clone, Debug)]
enum Describe {
    /// The generated one: arbitrary code, never a valid description.
    Generated,
    /// An appended one that outputs this value, which is no valid description.
    Invalid(Value),
    /// Appended ones: `m:f` with this description, `m:g` with the other kind.
    Valid(FunctionDescription),
}

/// Argument types a description may declare.
fn args_type(choice: u8) -> Type {
    let optional = |t: Type| Type::Optional(Box::new(t));
    match choice % 4 {
        0 => Type::object([]),
        1 => Type::object([("x", optional(Type::Int64))]),
        2 => Type::object([("x", Type::String), ("n", optional(Type::Float64))]),
        _ => Type::object([("x", Type::Any)]),
    }
}

/// Result types a description may declare.
fn returns_type(choice: u8) -> Type {
    match choice % 6 {
        0 => Type::Any,
        1 => Type::Null,
        2 => Type::Optional(Box::new(Type::Int64)),
        3 => Type::Array(Box::new(Type::Any)),
        4 => Type::Union(vec![Type::String, Type::Bytes]),
        _ => Type::object([]),
    }
}

/// Arguments a call may pass: mostly ones that fit the declared type (`args_type(declared)`),
/// sometimes any of them.
fn call_args(declared: u8, choice: u8) -> Value {
    let x_int = || ("x".to_owned(), Value::Int64(7));
    let x_str = || ("x".to_owned(), Value::from("a"));
    let n = || ("n".to_owned(), Value::Float64(1.5));
    let y = || ("y".to_owned(), Value::Boolean(true));
    let fields: Vec<(String, Value)> = if choice < 192 {
        match (declared % 4, choice % 2) {
            (0, _) | (1 | 3, 0) => vec![],
            (1 | 3, _) => vec![x_int()],
            (_, 0) => vec![x_str()],
            (_, _) => vec![x_str(), n()],
        }
    } else {
        match choice % 5 {
            0 => vec![],
            1 => vec![x_int()],
            2 => vec![x_str()],
            3 => vec![x_str(), n()],
            _ => vec![y()],
        }
    };
    Value::Object(fields.into_iter().collect())
}

/// Well-formed values that are no function description.
fn invalid_description(choice: u8) -> Value {
    let valid = FunctionDescription {
        kind: FunctionKind::Query,
        args: Type::object([]),
        returns: Type::Any,
    }
    .to_value();
    let Value::Object(valid) = valid else {
        unreachable!("a description is an object")
    };
    let with = |key: &str, value: Value| {
        let mut o = valid.clone();
        o.insert(key.to_owned(), value);
        Value::Object(o)
    };
    match choice % 4 {
        0 => with("kind", Value::from("action")),
        1 => with("args", Type::Int64.to_value()),
        2 => with("returns", Value::from("any")),
        _ => Value::Null,
    }
}

/// The input's choices besides the module: its description and the call's arguments.
fn plan(u: &mut Unstructured) -> arbitrary::Result<(Describe, Value)> {
    // Out of input, every choice is 0: a valid description.
    let declared: u8 = u.arbitrary()?;
    let describe = match u.int_in_range(0u8..=15)? {
        15 => Describe::Generated,
        14 => Describe::Invalid(invalid_description(u.arbitrary()?)),
        _ => Describe::Valid(FunctionDescription {
            kind: if u.arbitrary()? {
                FunctionKind::Mutation
            } else {
                FunctionKind::Query
            },
            args: args_type(declared),
            returns: returns_type(u.arbitrary()?),
        }),
    };
    Ok((describe, call_args(declared, u.arbitrary()?)))
}

fn other_kind(kind: FunctionKind) -> FunctionKind {
    match kind {
        FunctionKind::Query => FunctionKind::Mutation,
        FunctionKind::Mutation => FunctionKind::Query,
    }
}

/// The module of the placeholder imports; none is left after the rewrite.
const PLACEHOLDER_MODULE: &str = "fuzz";

/// What a placeholder's wrapper does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Get,
    Insert,
    Patch,
    Replace,
    Delete,
    Scan,
    /// Outputs a result or an error (no line, no status).
    Output,
}

impl Op {
    fn import(self) -> &'static str {
        match self {
            Op::Get => import::DB_GET,
            Op::Insert => import::DB_INSERT,
            Op::Patch => import::DB_PATCH,
            Op::Replace => import::DB_REPLACE,
            Op::Delete => import::DB_DELETE,
            Op::Scan => import::DB_SCAN,
            Op::Output => import::OUTPUT,
        }
    }

    fn writes(self) -> bool {
        matches!(self, Op::Insert | Op::Patch | Op::Replace | Op::Delete)
    }
}

/// The placeholder imports offered to wasm-smith: `() -> i32` (the status) for the store
/// operations, `() -> ()` for outputs.
const PLACEHOLDERS: &[(&str, Op)] = &[
    ("db_get_0", Op::Get),
    ("db_get_1", Op::Get),
    ("db_insert_0", Op::Insert),
    ("db_insert_1", Op::Insert),
    ("db_patch_0", Op::Patch),
    ("db_replace_0", Op::Replace),
    ("db_delete_0", Op::Delete),
    ("db_scan_0", Op::Scan),
    ("output_0", Op::Output),
    ("output_1", Op::Output),
];

/// The real imports whose generated calls go through a shim that logs their status: a
/// write the model does not know of.
const SHIMMED: [&str; 4] = [
    import::DB_INSERT,
    import::DB_PATCH,
    import::DB_REPLACE,
    import::DB_DELETE,
];

/// The tables wrappers use: `t` holds the documents every input starts with, `u` starts
/// empty (and missing, until an insert creates it).
const TABLES: [&str; 2] = ["t", "u"];
/// Id slots in scratch memory.
const SLOTS: usize = 4;
/// Where a request's id goes, replaced at call time by a slot's id.
const ID_MARKER: &str = "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~";
const ID_LEN: i32 = 36;
/// An id as a binary string: tag, length, 36 characters.
const ENCODED_ID: i32 = 2 + ID_LEN;

// The scratch area of the wrappers, in the first page (the rewrite makes every memory at
// least one page). Generated code may write over it too: a request that no longer decodes
// traps, an id that no longer parses is refused, and the lines say what was sent.
const SCRATCH: i32 = 0xC000;
/// `[handle, len]` of the last response.
const OUT: i32 = SCRATCH;
/// A byte counting the lines written.
const SEQ: i32 = SCRATCH + 8;
/// Nonzero once an output wrapper ran.
const OUTPUT_DONE: i32 = SCRATCH + 10;
/// `READY_MARK` once the slots hold their first ids.
const READY: i32 = SCRATCH + 9;
const READY_MARK: i32 = 0x5a;
/// A line: sequence letter, placeholder letter, status digit, the id sent or received.
const LINE: i32 = SCRATCH + 16;
const LINE_LEN: i32 = 3 + ID_LEN;
/// `SLOTS` slots of 64 bytes, each an encoded id.
const SLOT0: i32 = SCRATCH + 64;
const REQUEST: i32 = SCRATCH + 512;
/// Where responses are read to (those that fit), so that handles do not pile up.
const JUNK: i32 = SCRATCH + 2048;
const JUNK_LEN: i32 = 0x10000 - JUNK;

fn slot_address(slot: u8) -> i32 {
    SLOT0 + 64 * i32::from(slot)
}

/// One placeholder's wrapper, as the input picked it.
#[derive(Clone, Debug)]
struct Wrapper {
    op: Op,
    /// The id slot it sends (get, patch, replace, delete) or fills (insert).
    slot: u8,
    /// The request, its id `ID_MARKER`; for an output, the value output.
    request: Value,
    /// For an output: its kind.
    kind: i32,
}

impl Wrapper {
    fn field(&self, name: &str) -> Option<&Value> {
        self.request.as_object()?.get(name)
    }

    fn object(&self, name: &str) -> Object {
        match self.field(name) {
            Some(Value::Object(o)) => o.clone(),
            _ => Object::new(),
        }
    }
}

fn fields_template(choice: u8) -> Object {
    match choice % 5 {
        0 => Object::new(),
        1 => model::obj! { "n" => 1i64 },
        2 => model::obj! { "s" => "x", "f" => 0.5 },
        3 => model::obj! { "b" => vec![1u8, 2, 3], "n" => Value::Null },
        _ => model::obj! {
            "o" => model::obj! { "a" => vec![Value::Int64(1), Value::from("y")] },
            "n" => 2i64,
        },
    }
}

/// A result of the declared type (null when there is none).
fn fitting(returns: Option<&Type>) -> Value {
    match returns {
        Some(Type::Array(_)) => Value::Array(vec![]),
        Some(Type::Union(_)) => Value::from("a"),
        Some(Type::Object(_)) => Value::Object(Object::new()),
        _ => Value::Null,
    }
}

fn wrapper(op: Op, slot: u8, choice: u8, returns: Option<&Type>) -> Wrapper {
    let id = || ("id", Value::from(ID_MARKER));
    let table = if choice & 0x80 == 0 { "t" } else { "u" };
    let object = |fields: Vec<(&str, Value)>| {
        Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    };
    let mut kind = output::RESULT;
    let request = match op {
        Op::Get | Op::Delete => object(vec![id()]),
        Op::Insert => object(vec![
            ("table", table.into()),
            ("fields", fields_template(choice).into()),
        ]),
        Op::Replace => object(vec![id(), ("fields", fields_template(choice).into())]),
        Op::Patch => {
            let remove: Vec<Value> = match (choice / 5) % 3 {
                0 => vec![],
                1 => vec!["n".into()],
                _ => vec!["s".into(), "zz".into()],
            };
            object(vec![
                id(),
                ("set", fields_template(choice).into()),
                ("remove", remove.into()),
            ])
        }
        Op::Scan => {
            let by_time = choice & 1 == 0;
            let lower = if by_time && choice & 2 != 0 {
                vec![
                    Value::from("_creationTime"),
                    Value::Float64(0.0),
                    Value::Boolean(true),
                ]
                .into()
            } else {
                Value::Null
            };
            object(vec![
                ("table", table.into()),
                (
                    "index",
                    if by_time {
                        runtime::store::BY_CREATION_TIME
                    } else {
                        runtime::store::BY_ID
                    }
                    .into(),
                ),
                ("eq", Value::Array(vec![])),
                ("lower", lower),
                ("upper", Value::Null),
                ("order", if choice & 4 == 0 { "asc" } else { "desc" }.into()),
                ("limit", Value::Int64(i64::from((choice >> 3) % 5))),
                ("cursor", Value::Null),
            ])
        }
        Op::Output => match choice % 8 {
            0..=5 => fitting(returns),
            6 => Value::Int64(5),
            _ => {
                kind = output::ERROR;
                object(vec![("message", "refused by the fuzz input".into())])
            }
        },
    };
    Wrapper {
        op,
        slot: slot % SLOTS as u8,
        request,
        kind,
    }
}

/// What the wrappers do, and which of the reset documents' ids the slots start with.
#[derive(Clone, Debug)]
struct StorePlan {
    /// One per placeholder, in `PLACEHOLDERS` order.
    wrappers: Vec<Wrapper>,
    /// Per slot, an index into the ids `reset` returns.
    slots: [u8; SLOTS],
    /// Whether the call exports go through an entry function that calls the generated
    /// body and then, unless an output wrapper ran, outputs `output_0`'s value: most
    /// generated bodies never output, and a mutation without an output commits nothing.
    entry: bool,
}

fn store_plan(u: &mut Unstructured, returns: Option<&Type>) -> arbitrary::Result<StorePlan> {
    let mut wrappers = Vec::new();
    for (i, (_, op)) in PLACEHOLDERS.iter().enumerate() {
        // Out of input: slot i, first template.
        let slot = u.arbitrary::<u8>()?.wrapping_add(i as u8);
        wrappers.push(wrapper(*op, slot, u.arbitrary()?, returns));
    }
    let mut slots = [0u8; SLOTS];
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot = u.arbitrary::<u8>()?.wrapping_add(i as u8) % (RESET_DOCUMENTS as u8 + 1);
    }
    // Out of input: with the entry.
    let entry = u.arbitrary::<u8>()? % 4 != 3;
    Ok(StorePlan {
        wrappers,
        slots,
        entry,
    })
}

/// Documents `t` holds at the start of every input.
const RESET_DOCUMENTS: usize = 3;

/// Empties the tables and inserts `RESET_DOCUMENTS` documents in `t`, so that every input
/// starts from the same contents (up to ids) and the tables stay small. Returns their ids
/// and the id of a deleted document.
fn reset(store: &Store) -> Vec<String> {
    let snapshot = store.snapshot();
    let mut tx = store.begin();
    for table in TABLES {
        for document in snapshot.documents(table).expect("reading a table") {
            tx.delete(document.expect("reading a document").id)
                .expect("deleting a document");
        }
    }
    drop(snapshot);
    let mut ids = Vec::new();
    for n in 0..RESET_DOCUMENTS {
        let id = tx
            .insert("t", model::obj! { "n" => n as i64 })
            .expect("inserting a document");
        ids.push(id.to_string());
    }
    let gone = tx.insert("t", Object::new()).expect("inserting a document");
    tx.delete(gone).expect("deleting a document");
    ids.push(gone.to_string());
    store.commit(tx).expect("resetting the tables");
    ids
}

/// The documents of the tables, by id: their table and fields.
type Docs = BTreeMap<String, (String, Object)>;

fn contents(store: &Store) -> Docs {
    let snapshot = store.snapshot();
    let mut docs = Docs::new();
    for table in TABLES {
        for document in snapshot.documents(table).expect("reading a table") {
            let document = document.expect("reading a document");
            docs.insert(document.id.to_string(), (table.to_owned(), document.fields));
        }
    }
    docs
}

/// A line a wrapper or shim logged.
#[derive(Debug)]
struct Line {
    /// The placeholder; `None` for a shim's line.
    placeholder: Option<usize>,
    status: i32,
    /// The id sent, or received from an insert.
    id: String,
}

/// Marks a shim's line where a wrapper's has its placeholder letter.
const SHIM_LETTER: u8 = b'!';

/// The wrappers' and shims' lines among a call's log lines. `None` if a line of their form
/// is out of sequence: generated code logged the scratch area itself.
fn wrapper_lines(log_lines: &[String]) -> Option<Vec<Line>> {
    let mut lines = Vec::new();
    for text in log_lines {
        let bytes = text.as_bytes();
        if bytes.len() < 3
            || !(b'A'..b'A' + 16).contains(&bytes[0])
            || !(bytes[1] == SHIM_LETTER
                || (b'a'..b'a' + PLACEHOLDERS.len() as u8).contains(&bytes[1]))
            || !bytes[2].is_ascii_digit()
        {
            continue;
        }
        if bytes[0] != b'A' + (lines.len() % 16) as u8 {
            return None;
        }
        lines.push(Line {
            placeholder: (bytes[1] != SHIM_LETTER).then(|| usize::from(bytes[1] - b'a')),
            status: i32::from(bytes[2] - b'0'),
            id: text[3..].to_owned(),
        });
    }
    Some(lines)
}

/// Replays a call's lines on `docs`, the tables the call began on, checking every status.
/// Returns whether a write succeeded, or `None` if one the model does not know of did (a
/// generated call of a real write import).
fn replay(
    path: &str,
    kind: FunctionKind,
    lines: &[Line],
    wrappers: &[Wrapper],
    docs: &mut Docs,
) -> Option<bool> {
    use model::abi::status::{INVALID, NOT_FOUND, OK};
    let mut wrote = false;
    for line in lines {
        let Some(placeholder) = line.placeholder else {
            assert!(
                kind == FunctionKind::Mutation || line.status != OK,
                "{path}: a query's write succeeded: {line:?}"
            );
            if line.status == OK {
                return None;
            }
            continue;
        };
        let w = &wrappers[placeholder];
        let status = line.status;
        assert!(
            !w.op.writes() || kind == FunctionKind::Mutation,
            "{path}: a query's {:?} returned instead of trapping: {line:?}",
            w.op
        );
        let exists = docs.contains_key(&line.id);
        let expected: &[i32] = match (w.op, exists) {
            (Op::Get, true) | (Op::Scan | Op::Insert, _) => &[OK],
            (Op::Get, false) => &[OK, INVALID],
            (_, true) => &[OK],
            (_, false) => &[INVALID, NOT_FOUND],
        };
        assert!(
            expected.contains(&status),
            "{path}: {:?} (placeholder {placeholder}) of {} returned {status}, expected {expected:?}; request {:?}",
            w.op,
            if exists { "an existing document" } else { "no existing document" },
            w.request
        );
        if status != OK {
            continue;
        }
        wrote |= w.op.writes();
        match w.op {
            Op::Get | Op::Scan | Op::Output => {}
            Op::Insert => {
                assert!(
                    !exists,
                    "{path}: an insert returned the id of a document: {line:?}"
                );
                let table = w.field("table").and_then(Value::as_str).unwrap_or_default();
                docs.insert(line.id.clone(), (table.to_owned(), w.object("fields")));
            }
            Op::Replace => {
                docs.get_mut(&line.id).expect("exists").1 = w.object("fields");
            }
            Op::Patch => {
                let fields = &mut docs.get_mut(&line.id).expect("exists").1;
                fields.extend(w.object("set"));
                if let Some(Value::Array(remove)) = w.field("remove") {
                    for name in remove.iter().filter_map(Value::as_str) {
                        fields.remove(name);
                    }
                }
            }
            Op::Delete => {
                docs.remove(&line.id);
            }
        }
    }
    Some(wrote)
}

/// What one input did, for the corpus test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ran {
    pub deployed: bool,
    /// Calls that got past the kind and argument checks and ran the generated body.
    pub queries: usize,
    pub mutations: usize,
    /// Store calls the wrappers made (and logged), over all calls.
    pub db_calls: usize,
    /// Those that succeeded and wrote, in mutations.
    pub db_writes: usize,
    /// Mutations that committed (a timestamp after the one they began on).
    pub commits: usize,
    /// Calls whose lines were not checked against the model (see `wrapper_lines`, `replay`).
    pub unmodeled: usize,
}

pub fn modules(data: &[u8]) {
    run(data);
}

pub(crate) fn run(data: &[u8]) -> Ran {
    let mut ran = Ran::default();
    let mut u = Unstructured::new(data);
    let Ok(config) = config(&mut u) else {
        return ran;
    };
    let Ok((describe, args)) = plan(&mut u) else {
        return ran;
    };
    let returns = match &describe {
        Describe::Valid(f) => Some(&f.returns),
        _ => None,
    };
    let Ok(store_plan) = store_plan(&mut u, returns) else {
        return ran;
    };
    let Ok(module) = wasm_smith::Module::new(config, &mut u) else {
        return ran;
    };
    let generated = module.to_bytes();
    let verbose = std::env::var_os("FUZZ_CHECKS_VERBOSE").is_some();
    if verbose {
        eprintln!(
            "modules run: the call body calls {:?}",
            host_calls(&generated)
        );
    }
    let fixture = fixture().lock().unwrap_or_else(|e| e.into_inner());
    let (store, host) = (&fixture.store, &fixture.host);
    let ids = reset(store);
    let slot_ids: Vec<String> = store_plan
        .slots
        .iter()
        .map(|&i| ids[usize::from(i)].clone())
        .collect();
    let outputs = match &describe {
        Describe::Generated => vec![],
        Describe::Invalid(value) => vec![binary(value)],
        Describe::Valid(f) => {
            let g = FunctionDescription {
                kind: other_kind(f.kind),
                ..f.clone()
            };
            vec![binary(&f.to_value()), binary(&g.to_value())]
        }
    };
    let wasm = rewrite(
        &generated,
        &outputs,
        &store_plan.wrappers,
        &slot_ids,
        store_plan.entry,
    );
    let before = store.latest_ts();
    let deployed = host.deploy(store, &wasm);
    if verbose {
        match &deployed {
            Ok(m) => eprintln!("modules run: deployed, {} functions", m.functions().count()),
            Err(e) => eprintln!("modules run: refused: {e}"),
        }
    }
    assert_eq!(host.live_instances(), 0, "a deploy left an instance");
    assert_eq!(store.latest_ts(), before, "a deploy committed");
    let module = match deployed {
        Ok(module) => module,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "a deploy error without a reason");
            assert!(
                !matches!(e, DeployError::Abi(_)),
                "a module within the ABI refused by the ABI check: {e}"
            );
            return ran;
        }
    };
    ran.deployed = true;
    match &describe {
        Describe::Generated => {}
        Describe::Invalid(value) => panic!("deployed with the description {value:?}"),
        Describe::Valid(f) => {
            let described: Vec<_> = module
                .functions()
                .map(|info| (info.path.as_str(), info.description.clone()))
                .collect();
            let g = FunctionDescription {
                kind: other_kind(f.kind),
                ..f.clone()
            };
            assert_eq!(
                described,
                [("m:f", f.clone()), ("m:g", g)],
                "the deployed functions differ from their descriptions"
            );
        }
    }
    // Replays a call's lines on the tables it began on; `None` when they cannot be.
    let check_lines =
        |ran: &mut Ran, path: &str, kind: FunctionKind, log: &[String], docs: &mut Docs| {
            let lines = wrapper_lines(log);
            if verbose {
                eprintln!("modules run: {kind} {path}: lines {lines:?}");
            }
            let wrote = lines.as_ref().and_then(|lines| {
                ran.db_calls += lines.len();
                replay(path, kind, lines, &store_plan.wrappers, docs)
            });
            if wrote.is_none() {
                ran.unmodeled += 1;
            }
            wrote
        };
    let functions: Vec<_> = module.functions().cloned().collect();
    for function in functions {
        let path = &function.path;
        let description = &function.description;
        // What the host must refuse before running anything.
        let refused =
            |kind: FunctionKind| description.kind != kind || description.args.check(&args).is_err();
        let expect_refusal = |kind: FunctionKind, e: &CallError| {
            if description.kind != kind {
                assert!(matches!(e, CallError::WrongKind { .. }), "{path}: {e}");
            } else {
                assert!(matches!(e, CallError::InvalidArguments(_)), "{path}: {e}");
            }
        };

        let before = store.latest_ts();
        let docs_before = contents(store);
        let query = host.run_query(store, &module, path, &args, CallOptions::default());
        if verbose {
            eprintln!(
                "modules run: query {path}: {:?}",
                query.as_ref().map(|o| &o.value)
            );
        }
        assert_eq!(host.live_instances(), 0, "a query left an instance");
        assert_eq!(store.latest_ts(), before, "a query moved the store");
        assert!(
            contents(store) == docs_before,
            "{path}: a query changed the tables"
        );
        if !refused(FunctionKind::Query) {
            ran.queries += 1;
        }
        let log = match &query {
            Ok(outcome) => &outcome.log_lines,
            Err(failure) => &failure.log_lines,
        };
        check_lines(
            &mut ran,
            path,
            FunctionKind::Query,
            log,
            &mut docs_before.clone(),
        );
        match query {
            Ok(outcome) => {
                assert!(!refused(FunctionKind::Query), "{path}: ran a refused query");
                assert_eq!(outcome.ts, before, "{path}: a query read an old snapshot");
                check_result(path, &description.returns, &outcome.value);
            }
            Err(e) => {
                assert!(e.to_string().starts_with(path.as_str()), "{e}");
                if refused(FunctionKind::Query) {
                    expect_refusal(FunctionKind::Query, &e.error);
                }
            }
        }

        let before = store.latest_ts();
        let mutation = host.run_mutation(store, &module, path, &args, CallOptions::default());
        if verbose {
            eprintln!(
                "modules run: mutation {path}: {:?}",
                mutation.as_ref().map(|o| &o.value)
            );
        }
        assert_eq!(host.live_instances(), 0, "a mutation left an instance");
        if !refused(FunctionKind::Mutation) {
            ran.mutations += 1;
        }
        let log = match &mutation {
            Ok(outcome) => outcome.log_lines.clone(),
            Err(failure) => failure.log_lines.clone(),
        };
        let log = &log;
        let mut model = docs_before.clone();
        let wrote = check_lines(&mut ran, path, FunctionKind::Mutation, log, &mut model);
        let docs_after = contents(store);
        match mutation {
            Ok(outcome) => {
                assert!(
                    !refused(FunctionKind::Mutation),
                    "{path}: ran a refused mutation"
                );
                assert!(outcome.ts >= before, "{path}: committed in the past");
                assert_eq!(store.latest_ts(), outcome.ts, "{path}: commit not visible");
                check_result(path, &description.returns, &outcome.value);
                if outcome.ts > before {
                    ran.commits += 1;
                }
                if let Some(wrote) = wrote {
                    ran.db_writes += wrapper_lines(log)
                        .unwrap_or_default()
                        .iter()
                        .filter(|l| {
                            l.status == 0
                                && l.placeholder
                                    .is_some_and(|p| store_plan.wrappers[p].op.writes())
                        })
                        .count();
                    assert!(
                        docs_after == model,
                        "{path}: after the mutation committed at {}, the tables are\n{docs_after:?}\nbut its writes make them\n{model:?}",
                        outcome.ts
                    );
                    if !wrote {
                        assert_eq!(outcome.ts, before, "{path}: committed without writes");
                    }
                    if model != docs_before {
                        assert!(outcome.ts > before, "{path}: wrote without committing");
                    }
                }
            }
            Err(e) => {
                assert!(e.to_string().starts_with(path.as_str()), "{e}");
                assert_eq!(store.latest_ts(), before, "a failed mutation committed");
                assert!(
                    docs_after == docs_before,
                    "{path}: a failed mutation changed the tables"
                );
                if refused(FunctionKind::Mutation) {
                    expect_refusal(FunctionKind::Mutation, &e.error);
                }
            }
        }
    }
    ran
}

fn check_result(path: &str, returns: &Type, value: &Value) {
    if let Err(e) = returns.check(value) {
        panic!("{path}: returned {value:?}, which breaks its type: {e}");
    }
}

/// The imports the call export's body calls directly, in order (for `FUZZ_CHECKS_VERBOSE`).
fn host_calls(wasm: &[u8]) -> Vec<String> {
    let mut imports = Vec::new();
    let (mut call, mut defined) = (None, 0);
    let mut calls = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(wasmparser::Payload::ImportSection(section)) => {
                for import in section.into_iter().flatten() {
                    if let wasmparser::TypeRef::Func(_) = import.ty {
                        imports.push(import.name.to_owned());
                    }
                }
            }
            Ok(wasmparser::Payload::ExportSection(section)) => {
                for export in section.into_iter().flatten() {
                    if export.name.strip_prefix(CALL_PREFIX) == Some(F) {
                        call = Some(export.index);
                    }
                }
            }
            Ok(wasmparser::Payload::CodeSectionEntry(body)) => {
                if call == Some(imports.len() as u32 + defined) {
                    let Ok(reader) = body.get_operators_reader() else {
                        break;
                    };
                    for op in reader.into_iter().flatten() {
                        if let wasmparser::Operator::Call { function_index } = op {
                            if let Some(name) = imports.get(function_index as usize) {
                                calls.push(name.clone());
                            }
                        }
                    }
                }
                defined += 1;
            }
            _ => {}
        }
    }
    calls
}

fn binary(value: &Value) -> Vec<u8> {
    model::binary::encode(value)
}

/// The generated module made deployable and callable. With `outputs`, the describe export
/// is replaced: `outputs[0]` becomes the description of `m:f`; with a second one, `m:g`
/// exports `m:f`'s call body with that description. Every placeholder import becomes its
/// wrapper (`wrappers`, in `PLACEHOLDERS` order), whose id slots start with `slot_ids`;
/// generated calls of real write imports go through a shim. With `entry`, the call exports
/// name an entry function that calls the generated body and outputs if it did not. Every
/// other function, and the call body, stays as generated.
fn rewrite(
    wasm: &[u8],
    outputs: &[Vec<u8>],
    wrappers: &[Wrapper],
    slot_ids: &[String],
    entry: bool,
) -> Vec<u8> {
    let mut rewriter = Rewriter::scan(wasm, outputs, wrappers, slot_ids, entry);
    let mut module = wasm_encoder::Module::new();
    rewriter
        .parse_core_module(&mut module, wasmparser::Parser::new(0), wasm)
        .expect("re-encoding a module wasm-smith generated");
    let rewritten = module.finish();
    if let Err(e) = wasmparser::validate(&rewritten) {
        panic!("the rewritten module is invalid: {e}");
    }
    rewritten
}

/// A function the rewrite appends after the generated ones, in this order.
#[derive(Clone, Copy, Debug)]
enum Appended {
    /// The wrapper of a placeholder (index into `PLACEHOLDERS`).
    Wrapper(usize),
    /// The shim of a real write import (its name).
    Shim(&'static str),
    /// Writes the first ids into the slots, once per instance.
    InitSlots,
    /// Outputs `outputs[i]` as a description.
    Describe(usize),
    /// `(i32, i32) -> ()`: calls the generated call body, then outputs `output_0`'s value
    /// unless an output wrapper ran.
    Entry,
}

/// Types the rewrite appends after the generated ones, in this order.
const T_VOID: u32 = 0; // () -> ()
const T_III: u32 = 1; // (i32, i32, i32) -> ()
const T_II: u32 = 2; // (i32, i32) -> ()
const T_III_I: u32 = 3; // (i32, i32, i32) -> i32
const T_I: u32 = 4; // () -> i32
const T_CALL: u32 = 5; // (i32, i32) -> ()

/// The real imports the appended functions call.
const NEEDED: [&str; 9] = [
    import::OUTPUT,
    import::READ_HANDLE,
    import::LOG,
    import::DB_GET,
    import::DB_INSERT,
    import::DB_PATCH,
    import::DB_REPLACE,
    import::DB_DELETE,
    import::DB_SCAN,
];

/// Rewrites a module. The function index space becomes: the generated module's real
/// imports, the real imports it lacks and the appended functions need, its defined
/// functions, then the appended functions.
struct Rewriter<'a> {
    outputs: &'a [Vec<u8>],
    wrappers: &'a [Wrapper],
    slot_ids: &'a [String],
    /// The generated module's function imports, placeholders included.
    imported: u32,
    /// Its defined functions.
    defined: u32,
    /// Its types.
    types: u32,
    /// The function its call export names.
    call: u32,
    /// The generated real imports, which stay.
    kept: u32,
    /// The new index of each generated import.
    import_map: Vec<u32>,
    /// The real imports appended to the import section.
    added: Vec<&'static str>,
    /// The new index of each real import the appended functions call.
    real: BTreeMap<&'static str, u32>,
    appended: Vec<Appended>,
    /// Whether the import section was written (a module may have none).
    imports_written: bool,
}

impl<'a> Rewriter<'a> {
    fn scan(
        wasm: &[u8],
        outputs: &'a [Vec<u8>],
        wrappers: &'a [Wrapper],
        slot_ids: &'a [String],
        entry: bool,
    ) -> Self {
        let mut imports = Vec::new();
        let mut rewriter = Rewriter {
            outputs,
            wrappers,
            slot_ids,
            imported: 0,
            defined: 0,
            types: 0,
            call: u32::MAX,
            kept: 0,
            import_map: vec![],
            added: vec![],
            real: BTreeMap::new(),
            appended: vec![],
            imports_written: false,
        };
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            match payload.expect("wasm-smith generates valid modules") {
                wasmparser::Payload::TypeSection(section) => {
                    for group in section {
                        let group = group.expect("a valid type section");
                        rewriter.types += group.types().len() as u32;
                    }
                }
                wasmparser::Payload::ImportSection(section) => {
                    for import in section {
                        let import = import.expect("a valid import section");
                        if let wasmparser::TypeRef::Func(_) = import.ty {
                            imports.push((import.module.to_owned(), import.name.to_owned()));
                        }
                    }
                }
                wasmparser::Payload::FunctionSection(section) => {
                    rewriter.defined = section.count();
                }
                wasmparser::Payload::ExportSection(section) => {
                    for export in section {
                        let export = export.expect("a valid export section");
                        if export.name.strip_prefix(CALL_PREFIX) == Some(F) {
                            rewriter.call = export.index;
                        }
                    }
                }
                _ => {}
            }
        }
        assert_ne!(
            rewriter.call,
            u32::MAX,
            "the generated module exports its call"
        );
        rewriter.imported = imports.len() as u32;
        let mut kept = 0;
        for (module, name) in &imports {
            if module == IMPORT_MODULE {
                if let Some(needed) = NEEDED.iter().find(|n| **n == name) {
                    rewriter.real.insert(needed, kept);
                }
                kept += 1;
            }
        }
        for name in NEEDED {
            if !rewriter.real.contains_key(name) {
                rewriter
                    .real
                    .insert(name, kept + rewriter.added.len() as u32);
                rewriter.added.push(name);
            }
        }
        rewriter.kept = kept;
        let first_appended = kept + rewriter.added.len() as u32 + rewriter.defined;
        let mut kept = 0;
        for (module, name) in &imports {
            let index = if module == PLACEHOLDER_MODULE {
                let placeholder = PLACEHOLDERS
                    .iter()
                    .position(|(n, _)| n == name)
                    .expect("a placeholder");
                rewriter.appended.push(Appended::Wrapper(placeholder));
                first_appended + rewriter.appended.len() as u32 - 1
            } else if let Some(shimmed) = SHIMMED.iter().find(|n| **n == name) {
                rewriter.appended.push(Appended::Shim(shimmed));
                kept += 1;
                first_appended + rewriter.appended.len() as u32 - 1
            } else {
                kept += 1;
                kept - 1
            };
            rewriter.import_map.push(index);
        }
        rewriter.appended.push(Appended::InitSlots);
        for i in 0..outputs.len() {
            rewriter.appended.push(Appended::Describe(i));
        }
        if entry {
            rewriter.appended.push(Appended::Entry);
        }
        rewriter
    }

    fn appended_index(&self, which: impl Fn(&Appended) -> bool) -> u32 {
        let at = self.appended.iter().position(which).expect("appended");
        self.kept + self.added.len() as u32 + self.defined + at as u32
    }

    fn init_slots(&self) -> u32 {
        self.appended_index(|a| matches!(a, Appended::InitSlots))
    }

    fn describe(&self, i: usize) -> u32 {
        self.appended_index(|a| matches!(a, Appended::Describe(j) if *j == i))
    }

    fn add_imports(&mut self, imports: &mut wasm_encoder::ImportSection) {
        self.imports_written = true;
        for name in &self.added {
            let (_, params, results) = IMPORT_SIGNATURES
                .iter()
                .find(|(n, _, _)| n == name)
                .expect("an ABI import");
            let ty = match (params.len(), results.len()) {
                (3, 0) => T_III,
                (2, 0) => T_II,
                (3, 1) => T_III_I,
                _ => unreachable!("no needed import has this signature"),
            };
            imports.import(
                IMPORT_MODULE,
                name,
                wasm_encoder::EntityType::Function(self.types + ty),
            );
        }
    }

    fn body(&self, appended: Appended) -> wasm_encoder::Function {
        match appended {
            Appended::Wrapper(p) => self.wrapper_body(p),
            Appended::Shim(name) => self.shim_body(name),
            Appended::InitSlots => self.init_slots_body(),
            Appended::Describe(i) => self.describe_body(&self.outputs[i]),
            Appended::Entry => self.entry_body(),
        }
    }

    fn type_of(&self, appended: Appended) -> u32 {
        self.types
            + match appended {
                Appended::Wrapper(p) if PLACEHOLDERS[p].1 != Op::Output => T_I,
                Appended::Shim(_) => T_III_I,
                Appended::Entry => T_CALL,
                _ => T_VOID,
            }
    }

    /// `() -> ()`: writes its description at address 0 (growing an empty memory) and
    /// outputs it.
    fn describe_body(&self, bytes: &[u8]) -> wasm_encoder::Function {
        use wasm_encoder::{BlockType, Instruction as I};
        let mut f = wasm_encoder::Function::new([]);
        f.instruction(&I::MemorySize(0))
            .instruction(&I::I32Eqz)
            .instruction(&I::If(BlockType::Empty))
            .instruction(&I::I32Const(1))
            .instruction(&I::MemoryGrow(0))
            .instruction(&I::Drop)
            .instruction(&I::End);
        store_bytes(&mut f, 0, bytes);
        f.instruction(&I::I32Const(output::DESCRIPTION))
            .instruction(&I::I32Const(0))
            .instruction(&I::I32Const(bytes.len() as i32))
            .instruction(&I::Call(self.real[import::OUTPUT]))
            .instruction(&I::End);
        f
    }

    /// `() -> ()`: unless the ready mark is set, writes each slot's first id and the mark.
    fn init_slots_body(&self) -> wasm_encoder::Function {
        use wasm_encoder::{BlockType, Instruction as I};
        let mut f = wasm_encoder::Function::new([]);
        f.instruction(&I::I32Const(READY))
            .instruction(&I::I32Load8U(MEMARG))
            .instruction(&I::I32Const(READY_MARK))
            .instruction(&I::I32Ne)
            .instruction(&I::If(BlockType::Empty));
        for (slot, id) in self.slot_ids.iter().enumerate() {
            store_bytes(
                &mut f,
                slot_address(slot as u8),
                &binary(&Value::from(id.as_str())),
            );
        }
        f.instruction(&I::I32Const(READY))
            .instruction(&I::I32Const(READY_MARK))
            .instruction(&I::I32Store8(MEMARG))
            .instruction(&I::End)
            .instruction(&I::End);
        f
    }

    /// Logs a line from the status in local `status` and the id at `id`.
    fn log_line(&self, f: &mut wasm_encoder::Function, letter: u8, status: u32, id: i32) {
        use wasm_encoder::Instruction as I;
        f.instruction(&I::I32Const(LINE))
            .instruction(&I::I32Const(SEQ))
            .instruction(&I::I32Load8U(MEMARG))
            .instruction(&I::I32Const(15))
            .instruction(&I::I32And)
            .instruction(&I::I32Const(i32::from(b'A')))
            .instruction(&I::I32Add)
            .instruction(&I::I32Store8(MEMARG))
            .instruction(&I::I32Const(SEQ))
            .instruction(&I::I32Const(SEQ))
            .instruction(&I::I32Load8U(MEMARG))
            .instruction(&I::I32Const(1))
            .instruction(&I::I32Add)
            .instruction(&I::I32Store8(MEMARG))
            .instruction(&I::I32Const(LINE + 1))
            .instruction(&I::I32Const(i32::from(letter)))
            .instruction(&I::I32Store8(MEMARG))
            .instruction(&I::I32Const(LINE + 2))
            .instruction(&I::LocalGet(status))
            .instruction(&I::I32Const(i32::from(b'0')))
            .instruction(&I::I32Add)
            .instruction(&I::I32Store8(MEMARG));
        copy_id(f, id, LINE + 3);
        f.instruction(&I::I32Const(LINE))
            .instruction(&I::I32Const(LINE_LEN))
            .instruction(&I::Call(self.real[import::LOG]));
    }

    /// Reads the last response into the junk area if it fits there.
    fn read_junk(&self, f: &mut wasm_encoder::Function, len: u32) {
        use wasm_encoder::{BlockType, Instruction as I};
        f.instruction(&I::LocalGet(len))
            .instruction(&I::I32Const(JUNK_LEN))
            .instruction(&I::I32LeU)
            .instruction(&I::If(BlockType::Empty))
            .instruction(&I::I32Const(OUT))
            .instruction(&I::I32Load(MEMARG))
            .instruction(&I::I32Const(JUNK))
            .instruction(&I::LocalGet(len))
            .instruction(&I::Call(self.real[import::READ_HANDLE]))
            .instruction(&I::End);
    }

    /// A placeholder's wrapper: an output outputs its value; a store operation writes its
    /// request (with its slot's id), calls the import, reads the response (an insert's new
    /// id into its slot), logs its line and returns the status.
    fn wrapper_body(&self, placeholder: usize) -> wasm_encoder::Function {
        use wasm_encoder::{BlockType, Instruction as I, ValType};
        let w = &self.wrappers[placeholder];
        let bytes = binary(&w.request);
        if w.op == Op::Output {
            let mut f = wasm_encoder::Function::new([]);
            f.instruction(&I::I32Const(OUTPUT_DONE))
                .instruction(&I::I32Const(1))
                .instruction(&I::I32Store8(MEMARG));
            store_bytes(&mut f, REQUEST, &bytes);
            f.instruction(&I::I32Const(w.kind))
                .instruction(&I::I32Const(REQUEST))
                .instruction(&I::I32Const(bytes.len() as i32))
                .instruction(&I::Call(self.real[import::OUTPUT]))
                .instruction(&I::End);
            return f;
        }
        let (status, len) = (0, 1);
        let mut f = wasm_encoder::Function::new([(2, ValType::I32)]);
        f.instruction(&I::Call(self.init_slots()));
        store_bytes(&mut f, REQUEST, &bytes);
        let slot = slot_address(w.slot);
        let id_at = bytes
            .windows(ID_MARKER.len())
            .position(|window| window == ID_MARKER.as_bytes())
            .map(|at| REQUEST + at as i32);
        if let Some(at) = id_at {
            copy_id(&mut f, slot + 2, at);
        }
        f.instruction(&I::I32Const(REQUEST))
            .instruction(&I::I32Const(bytes.len() as i32))
            .instruction(&I::I32Const(OUT))
            .instruction(&I::Call(self.real[w.op.import()]))
            .instruction(&I::LocalSet(status))
            .instruction(&I::I32Const(OUT + 4))
            .instruction(&I::I32Load(MEMARG))
            .instruction(&I::LocalSet(len));
        if w.op == Op::Insert {
            f.instruction(&I::LocalGet(status))
                .instruction(&I::I32Eqz)
                .instruction(&I::LocalGet(len))
                .instruction(&I::I32Const(ENCODED_ID))
                .instruction(&I::I32Eq)
                .instruction(&I::I32And)
                .instruction(&I::If(BlockType::Empty))
                .instruction(&I::I32Const(OUT))
                .instruction(&I::I32Load(MEMARG))
                .instruction(&I::I32Const(slot))
                .instruction(&I::I32Const(ENCODED_ID))
                .instruction(&I::Call(self.real[import::READ_HANDLE]))
                .instruction(&I::Else);
            self.read_junk(&mut f, len);
            f.instruction(&I::End);
        } else {
            self.read_junk(&mut f, len);
        }
        let logged_id = match (w.op, id_at) {
            (Op::Insert, _) | (_, None) => slot + 2,
            (_, Some(at)) => at,
        };
        self.log_line(&mut f, b'a' + placeholder as u8, status, logged_id);
        f.instruction(&I::LocalGet(status)).instruction(&I::End);
        f
    }

    /// The call export's function: the generated one, or the entry that calls it.
    fn call_export(&mut self) -> u32 {
        if self.appended.iter().any(|a| matches!(a, Appended::Entry)) {
            self.appended_index(|a| matches!(a, Appended::Entry))
        } else {
            let call = self.call;
            self.function_index(call).expect("infallible")
        }
    }

    fn entry_body(&self) -> wasm_encoder::Function {
        use wasm_encoder::{BlockType, Instruction as I};
        let output = PLACEHOLDERS
            .iter()
            .position(|(name, _)| *name == "output_0")
            .expect("output_0");
        let call = match self.import_map.get(self.call as usize) {
            Some(&new) => new,
            None => self.call - self.imported + self.kept + self.added.len() as u32,
        };
        let mut f = wasm_encoder::Function::new([]);
        f.instruction(&I::LocalGet(0))
            .instruction(&I::LocalGet(1))
            .instruction(&I::Call(call))
            .instruction(&I::I32Const(OUTPUT_DONE))
            .instruction(&I::I32Load8U(MEMARG))
            .instruction(&I::I32Eqz)
            .instruction(&I::If(BlockType::Empty));
        let w = &self.wrappers[output];
        let bytes = binary(&w.request);
        store_bytes(&mut f, REQUEST, &bytes);
        f.instruction(&I::I32Const(w.kind))
            .instruction(&I::I32Const(REQUEST))
            .instruction(&I::I32Const(bytes.len() as i32))
            .instruction(&I::Call(self.real[import::OUTPUT]))
            .instruction(&I::End)
            .instruction(&I::End);
        f
    }

    /// `(ptr, len, out) -> status`: calls the real import and logs its status.
    fn shim_body(&self, name: &'static str) -> wasm_encoder::Function {
        use wasm_encoder::{Instruction as I, ValType};
        let status = 3;
        let mut f = wasm_encoder::Function::new([(1, ValType::I32)]);
        f.instruction(&I::LocalGet(0))
            .instruction(&I::LocalGet(1))
            .instruction(&I::LocalGet(2))
            .instruction(&I::Call(self.real[name]))
            .instruction(&I::LocalSet(status));
        self.log_line(&mut f, SHIM_LETTER, status, slot_address(0) + 2);
        f.instruction(&I::LocalGet(status)).instruction(&I::End);
        f
    }
}

const MEMARG: wasm_encoder::MemArg = wasm_encoder::MemArg {
    offset: 0,
    align: 0,
    memory_index: 0,
};

/// Stores `bytes` at `address`, 8 at a time (the last store may write up to 7 more).
fn store_bytes(f: &mut wasm_encoder::Function, address: i32, bytes: &[u8]) {
    use wasm_encoder::Instruction as I;
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        f.instruction(&I::I32Const(address + i as i32 * 8))
            .instruction(&I::I64Const(i64::from_le_bytes(word)))
            .instruction(&I::I64Store(MEMARG));
    }
}

/// Copies the 36 bytes of an id from `from` to `to`.
fn copy_id(f: &mut wasm_encoder::Function, from: i32, to: i32) {
    use wasm_encoder::Instruction as I;
    for i in 0..4 {
        f.instruction(&I::I32Const(to + 8 * i))
            .instruction(&I::I32Const(from + 8 * i))
            .instruction(&I::I64Load(MEMARG))
            .instruction(&I::I64Store(MEMARG));
    }
    f.instruction(&I::I32Const(to + 32))
        .instruction(&I::I32Const(from + 32))
        .instruction(&I::I32Load(MEMARG))
        .instruction(&I::I32Store(MEMARG));
}

impl Reencode for Rewriter<'_> {
    type Error = Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, reencode::Error<Infallible>> {
        Ok(match self.import_map.get(func as usize) {
            Some(&new) => new,
            None => func - self.imported + self.kept + self.added.len() as u32,
        })
    }

    fn memory_type(
        &mut self,
        memory_ty: wasmparser::MemoryType,
    ) -> Result<wasm_encoder::MemoryType, reencode::Error<Infallible>> {
        // The scratch area is in the first page.
        let mut ty = reencode::utils::memory_type(self, memory_ty);
        ty.minimum = ty.minimum.max(1);
        ty.maximum = ty.maximum.map(|m| m.max(1));
        Ok(ty)
    }

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        use wasm_encoder::ValType::I32;
        reencode::utils::parse_type_section(self, types, section)?;
        // In the order of T_VOID, T_III, T_II, T_III_I, T_I, T_CALL.
        types.ty().function([], []);
        types.ty().function([I32; 3], []);
        types.ty().function([I32; 2], []);
        types.ty().function([I32; 3], [I32]);
        types.ty().function([], [I32]);
        types.ty().function([I32; 2], []);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut wasm_encoder::ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        for import in section {
            let import = import?;
            if import.module != PLACEHOLDER_MODULE {
                reencode::utils::parse_import(self, imports, import)?;
            }
        }
        self.add_imports(imports);
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<wasm_encoder::SectionId>,
        before: Option<wasm_encoder::SectionId>,
    ) -> Result<(), reencode::Error<Infallible>> {
        // A module without imports gets an import section before its function section.
        if before == Some(wasm_encoder::SectionId::Function) && !self.imports_written {
            let mut imports = wasm_encoder::ImportSection::new();
            self.add_imports(&mut imports);
            module.section(&imports);
        }
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        reencode::utils::parse_function_section(self, functions, section)?;
        for appended in self.appended.clone() {
            functions.function(self.type_of(appended));
        }
        Ok(())
    }

    fn parse_export(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        export: wasmparser::Export<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        if export.name.strip_prefix(DESCRIBE_PREFIX) == Some(F) && !self.outputs.is_empty() {
            exports.export(
                export.name,
                wasm_encoder::ExportKind::Func,
                self.describe(0),
            );
            Ok(())
        } else if export.name.strip_prefix(CALL_PREFIX) == Some(F) {
            let call = self.call_export();
            exports.export(export.name, wasm_encoder::ExportKind::Func, call);
            Ok(())
        } else {
            reencode::utils::parse_export(self, exports, export)
        }
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        reencode::utils::parse_export_section(self, exports, section)?;
        if self.outputs.len() > 1 {
            let call = self.call_export();
            exports.export(
                &format!("{CALL_PREFIX}{G}"),
                wasm_encoder::ExportKind::Func,
                call,
            );
            exports.export(
                &format!("{DESCRIBE_PREFIX}{G}"),
                wasm_encoder::ExportKind::Func,
                self.describe(1),
            );
        }
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        reencode::utils::parse_code_section(self, code, section)?;
        for appended in self.appended.clone() {
            code.function(&self.body(appended));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .expect("a corpus folder")
            .map(|e| e.expect("a directory entry").path())
            .collect();
        files.sort();
        files
    }

    /// Totals over inputs.
    #[derive(Debug, Default)]
    struct Totals {
        inputs: usize,
        deployed: usize,
        called: usize,
        /// Inputs whose calls made store calls through the wrappers.
        with_db_calls: usize,
        db_calls: usize,
        /// Inputs with a mutation that wrote through the wrappers and committed.
        with_commits: usize,
        commits: usize,
        db_writes: usize,
        unmodeled: usize,
    }

    impl Totals {
        fn add(&mut self, ran: Ran) {
            self.inputs += 1;
            self.deployed += usize::from(ran.deployed);
            self.called += usize::from(ran.queries > 0 && ran.mutations > 0);
            self.with_db_calls += usize::from(ran.db_calls > 0);
            self.db_calls += ran.db_calls;
            self.with_commits += usize::from(ran.commits > 0 && ran.db_writes > 0);
            self.commits += ran.commits;
            self.db_writes += ran.db_writes;
            self.unmodeled += ran.unmodeled;
        }
    }

    /// The seed corpus deploys: a share of its inputs get past describe and run their
    /// generated call body as a query and as a mutation, some of them call the store
    /// through the wrappers, and some of those mutations write and commit.
    #[test]
    fn seed_corpus_deploys_and_calls() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/modules");
        let files = corpus_files(&dir);
        let mut totals = Totals::default();
        for file in &files {
            let ran = run(&std::fs::read(file).expect("a corpus file"));
            eprintln!("{}: {ran:?}", file.display());
            totals.add(ran);
        }
        eprintln!("{totals:?}");
        assert!(
            totals.called >= 3 && totals.called * 3 >= files.len(),
            "{} of {} seed inputs deployed and ran as a query and a mutation",
            totals.called,
            files.len()
        );
        assert!(
            totals.with_db_calls >= 2,
            "only {} seed inputs reach the store",
            totals.with_db_calls
        );
        assert!(
            totals.with_commits >= 1,
            "no seed input writes to the store and commits"
        );
    }

    /// Counts for a folder of inputs (`FUZZ_MODULES_DIR`) or for `FUZZ_MODULES_RANDOM`
    /// random inputs: `cargo test --release -p fuzz-checks --lib measure -- --ignored
    /// --nocapture`. With `FUZZ_MODULES_SAVE` (a folder), the random inputs that reach the
    /// store are saved there: candidates for seeds.
    #[test]
    #[ignore]
    fn measure() {
        let mut totals = Totals::default();
        if let Some(dir) = std::env::var_os("FUZZ_MODULES_DIR") {
            for file in corpus_files(std::path::Path::new(&dir)) {
                totals.add(run(&std::fs::read(file).expect("a corpus file")));
            }
        }
        let random: usize = std::env::var("FUZZ_MODULES_RANDOM")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let save = std::env::var_os("FUZZ_MODULES_SAVE").map(std::path::PathBuf::from);
        for i in 0..random {
            let len = 64 + (next() % 4096) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let ran = run(&data);
            totals.add(ran);
            if let Some(save) = &save {
                if ran.commits > 0 && ran.db_writes > 0 {
                    std::fs::write(save.join(format!("commit-{i}")), &data).unwrap();
                } else if ran.db_calls > 0 {
                    std::fs::write(save.join(format!("db-{i}")), &data).unwrap();
                }
            }
        }
        eprintln!("{totals:?}");
    }

    fn mutation_description() -> FunctionDescription {
        FunctionDescription {
            kind: FunctionKind::Mutation,
            args: Type::object([]),
            returns: Type::Any,
        }
    }

    /// A rewritten module is what the ABI asks for, with and without imports of its own.
    #[test]
    fn rewrite_without_imports() {
        let wasm = wat::parse_str(format!(
            r#"(module
                (memory (export "memory") 1)
                (func (export "{CALL_PREFIX}{F}") (param i32 i32))
                (func (export "{DESCRIBE_PREFIX}{F}")))"#
        ))
        .unwrap();
        let description = mutation_description();
        let g = FunctionDescription {
            kind: FunctionKind::Query,
            ..description.clone()
        };
        let plan = store_plan(&mut Unstructured::new(&[]), None).unwrap();
        let wasm = rewrite(
            &wasm,
            &[binary(&description.to_value()), binary(&g.to_value())],
            &plan.wrappers,
            &vec![String::from(ID_MARKER); SLOTS],
            true,
        );
        let fixture = fixture().lock().unwrap_or_else(|e| e.into_inner());
        let module = fixture.host.deploy(&fixture.store, &wasm).expect("deploys");
        assert_eq!(module.function("m:f").unwrap().description, description);
        assert_eq!(module.function("m:g").unwrap().description, g);
    }

    /// Wrappers called in a known order do what their lines say, and the model agrees with
    /// the store: insert into slot 2, patch, replace and get it, delete a reset document,
    /// scan, output; the mutation commits exactly that, the query traps at its insert.
    #[test]
    fn wrappers_reach_the_store() {
        let calls = [
            "db_insert_0",
            "db_patch_0",
            "db_replace_0",
            "db_get_0",
            "db_delete_0",
            "db_scan_0",
        ];
        let mut wat = String::from("(module\n");
        for name in calls {
            wat.push_str(&format!(
                "(import \"fuzz\" \"{name}\" (func (result i32)))\n"
            ));
        }
        // An insert into a table whose name is refused.
        let refused = binary(&Value::Object(
            model::obj! { "table" => "_x", "fields" => Object::new() },
        ));
        let refused_data: String = refused.iter().map(|b| format!("\\{b:02x}")).collect();
        let refused_len = refused.len();
        wat.push_str(&format!(
            r#"(import "fuzz" "output_0" (func))
               (import "runtime_v1" "db_insert" (func (param i32 i32 i32) (result i32)))
               (memory (export "memory") 0)
               (func (export "{CALL_PREFIX}{F}") (param i32 i32)
                 call 0 drop call 1 drop call 2 drop call 3 drop call 4 drop call 5 drop
                 ;; a generated call of a real write import: it goes through the shim
                 (drop (call 7 (i32.const 256) (i32.const {refused_len}) (i32.const 0)))
                 call 6)
               (func (export "{DESCRIBE_PREFIX}{F}"))
               (data (i32.const 256) "{refused_data}"))"#
        ));
        let wasm = wat::parse_str(&wat).unwrap();
        let mut wrappers = store_plan(&mut Unstructured::new(&[]), None)
            .unwrap()
            .wrappers;
        let op = |name: &str| PLACEHOLDERS.iter().position(|(n, _)| *n == name).unwrap();
        // Insert, patch, replace and get slot 2; delete slot 0.
        for name in ["db_insert_0", "db_patch_0", "db_replace_0", "db_get_0"] {
            let w = &wrappers[op(name)];
            wrappers[op(name)] = wrapper(w.op, 2, 1, None);
        }
        wrappers[op("db_delete_0")] = wrapper(Op::Delete, 0, 0, None);
        let fixture = fixture().lock().unwrap_or_else(|e| e.into_inner());
        let store = &fixture.store;
        let ids = reset(store);
        let wasm = rewrite(
            &wasm,
            &[
                binary(&mutation_description().to_value()),
                binary(
                    &FunctionDescription {
                        kind: FunctionKind::Query,
                        ..mutation_description()
                    }
                    .to_value(),
                ),
            ],
            &wrappers,
            &ids,
            false,
        );
        let module = fixture.host.deploy(store, &wasm).expect("deploys");
        let before = contents(store);
        let ts = store.latest_ts();
        let outcome = fixture
            .host
            .run_mutation(
                store,
                &module,
                "m:f",
                &Value::Object(Object::new()),
                CallOptions::default(),
            )
            .expect("the mutation succeeds");
        let lines = wrapper_lines(&outcome.log_lines).expect("lines in sequence");
        let statuses: Vec<_> = lines.iter().map(|l| (l.placeholder, l.status)).collect();
        assert_eq!(
            statuses,
            [
                (Some(op("db_insert_0")), 0),
                (Some(op("db_patch_0")), 0),
                (Some(op("db_replace_0")), 0),
                (Some(op("db_get_0")), 0),
                (Some(op("db_delete_0")), 0),
                (Some(op("db_scan_0")), 0),
                (None, 1),
            ],
            "{:?}",
            outcome.log_lines
        );
        let mut model = before.clone();
        let wrote = replay("m:f", FunctionKind::Mutation, &lines, &wrappers, &mut model);
        assert_eq!(wrote, Some(true));
        assert!(outcome.ts > ts);
        assert_eq!(contents(store), model);
        assert_eq!(model.len(), before.len(), "one inserted, one deleted");
        assert!(!model.contains_key(&ids[0]));
        let query = fixture
            .host
            .run_query(
                store,
                &module,
                "m:g",
                &Value::Object(Object::new()),
                CallOptions::default(),
            )
            .expect_err("a query's insert traps");
        assert!(wrapper_lines(&query.log_lines).unwrap().is_empty());
        assert_eq!(contents(store), model);
    }
}
