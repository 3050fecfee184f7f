//! The placeholder imports and their wrappers. wasm-smith only calls a function when the
//! operand stack already holds its parameters, so generated code almost never calls a
//! `db_*` import with a request that decodes. Generated modules are therefore also offered
//! placeholder imports without parameters (module `fuzz`, see [`PLACEHOLDERS`]); the rewrite
//! turns each into a defined function (a wrapper) that writes a well-formed request into a
//! scratch area of memory, calls the real import, reads the response and logs a line saying
//! what it did and with which status, and returns that status.
//!
//! Which request each wrapper sends (table, fields, patch, scan range, which of the id slots
//! it reads or fills) is picked by the input. Ids live in slots in scratch memory: each call
//! starts with ids of the documents the store was reset to before the input (and one of a
//! deleted document); an insert wrapper stores its new id in its slot, so later wrappers in
//! the same call read, patch, replace or delete it. Output wrappers output a result (mostly
//! of the declared type) or an error.

use super::binary;
use super::rewrite::{store_bytes, Rewriter, MEMARG};
use super::tables::RESET_DOCUMENTS;
use arbitrary::Unstructured;
use ferrovex_model::abi::{import, output, Type};
use ferrovex_model::{Object, Value};

/// The module of the placeholder imports; none is left after the rewrite.
pub(super) const PLACEHOLDER_MODULE: &str = "fuzz";

/// What a placeholder's wrapper does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
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
    pub(super) fn import(self) -> &'static str {
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

    pub(super) fn writes(self) -> bool {
        matches!(self, Op::Insert | Op::Patch | Op::Replace | Op::Delete)
    }
}

/// The placeholder imports offered to wasm-smith: `() -> i32` (the status) for the store
/// operations, `() -> ()` for outputs.
pub(super) const PLACEHOLDERS: &[(&str, Op)] = &[
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
pub(super) const SHIMMED: [&str; 4] = [
    import::DB_INSERT,
    import::DB_PATCH,
    import::DB_REPLACE,
    import::DB_DELETE,
];

/// Id slots in scratch memory.
pub(super) const SLOTS: usize = 4;
/// Where a request's id goes, replaced at call time by a slot's id.
pub(super) const ID_MARKER: &str = "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~";
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
pub(super) const OUTPUT_DONE: i32 = SCRATCH + 10;
/// `READY_MARK` once the slots hold their first ids.
const READY: i32 = SCRATCH + 9;
const READY_MARK: i32 = 0x5a;
/// A line: sequence letter, placeholder letter, status digit, the id sent or received.
const LINE: i32 = SCRATCH + 16;
const LINE_LEN: i32 = 3 + ID_LEN;
/// `SLOTS` slots of 64 bytes, each an encoded id.
const SLOT0: i32 = SCRATCH + 64;
pub(super) const REQUEST: i32 = SCRATCH + 512;
/// Where responses are read to (those that fit), so that handles do not pile up.
const JUNK: i32 = SCRATCH + 2048;
const JUNK_LEN: i32 = 0x10000 - JUNK;

pub(super) fn slot_address(slot: u8) -> i32 {
    SLOT0 + 64 * i32::from(slot)
}

/// Marks a shim's line where a wrapper's has its placeholder letter.
pub(super) const SHIM_LETTER: u8 = b'!';

/// One placeholder's wrapper, as the input picked it.
#[derive(Clone, Debug)]
pub(super) struct Wrapper {
    pub(super) op: Op,
    /// The id slot it sends (get, patch, replace, delete) or fills (insert).
    pub(super) slot: u8,
    /// The request, its id `ID_MARKER`; for an output, the value output.
    pub(super) request: Value,
    /// For an output: its kind.
    pub(super) kind: i32,
}

impl Wrapper {
    pub(super) fn field(&self, name: &str) -> Option<&Value> {
        self.request.as_object()?.get(name)
    }

    pub(super) fn object(&self, name: &str) -> Object {
        match self.field(name) {
            Some(Value::Object(o)) => o.clone(),
            _ => Object::new(),
        }
    }
}

fn fields_template(choice: u8) -> Object {
    match choice % 5 {
        0 => Object::new(),
        1 => ferrovex_model::obj! { "n" => 1i64 },
        2 => ferrovex_model::obj! { "s" => "x", "f" => 0.5 },
        3 => ferrovex_model::obj! { "b" => vec![1u8, 2, 3], "n" => Value::Null },
        _ => ferrovex_model::obj! {
            "o" => ferrovex_model::obj! { "a" => vec![Value::Int64(1), Value::from("y")] },
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

pub(super) fn wrapper(op: Op, slot: u8, choice: u8, returns: Option<&Type>) -> Wrapper {
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
                        ferrovex_runtime::store::BY_CREATION_TIME
                    } else {
                        ferrovex_runtime::store::BY_ID
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
pub(super) struct StorePlan {
    /// One per placeholder, in `PLACEHOLDERS` order.
    pub(super) wrappers: Vec<Wrapper>,
    /// Per slot, an index into the ids `reset` returns.
    pub(super) slots: [u8; SLOTS],
    /// Whether the call exports go through an entry function that calls the generated
    /// body and then, unless an output wrapper ran, outputs `output_0`'s value: most
    /// generated bodies never output, and a mutation without an output commits nothing.
    pub(super) entry: bool,
}

pub(super) fn store_plan(
    u: &mut Unstructured,
    returns: Option<&Type>,
) -> arbitrary::Result<StorePlan> {
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

/// The wrappers' bodies in the rewritten module, and the line they log (shims log theirs the
/// same way).
impl Rewriter<'_> {
    /// `() -> ()`: unless the ready mark is set, writes each slot's first id and the mark.
    pub(super) fn init_slots_body(&self) -> wasm_encoder::Function {
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
    pub(super) fn log_line(
        &self,
        f: &mut wasm_encoder::Function,
        letter: u8,
        status: u32,
        id: i32,
    ) {
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
    pub(super) fn wrapper_body(&self, placeholder: usize) -> wasm_encoder::Function {
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
