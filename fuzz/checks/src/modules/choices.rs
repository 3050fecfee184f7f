//! What an input picks before its module: the wasm-smith config (which imports generated
//! modules may use, which exports they must have), the module's description and the call's
//! arguments.
//!
//! A description wasm-smith writes is never a valid one, so most inputs pick a valid one
//! (kind, argument and result types) that the rewrite has the describe export output. Some
//! keep the generated describe export (the describe path itself), some get a well-formed
//! but invalid description (which deploy must refuse).

use super::wrappers::{Op, PLACEHOLDERS, PLACEHOLDER_MODULE};
use super::F;
use arbitrary::Unstructured;
use ferrovex_model::abi::{
    import, FunctionDescription, FunctionKind, Type, WasmType, CALL_PREFIX, DESCRIBE_PREFIX,
    IMPORT_SIGNATURES,
};
use ferrovex_model::Value;
use std::sync::OnceLock;

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
    // The imports of queries and mutations: the scheduler's and actions' ones are left out,
    // so the seed corpus keeps the modules it was made for (what they add is tested by
    // runtime/tests/http_api/jobs.rs).
    let later = [
        import::SCHEDULE,
        import::CANCEL_JOB,
        import::RUN_FUNCTION,
        import::FETCH,
        import::ENV_VAR,
    ];
    for (name, params, results) in IMPORT_SIGNATURES
        .iter()
        .filter(|(name, ..)| !later.contains(name))
    {
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

pub(super) fn config(u: &mut Unstructured) -> arbitrary::Result<wasm_smith::Config> {
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
pub(super) enum Describe {
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
        visibility: ferrovex_model::abi::Visibility::Public,
        kind: FunctionKind::Query,
        args: Type::object([]),
        returns: Type::Any,
        route: None,
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
pub(super) fn plan(u: &mut Unstructured) -> arbitrary::Result<(Describe, Value)> {
    // Out of input, every choice is 0: a valid description.
    let declared: u8 = u.arbitrary()?;
    let describe = match u.int_in_range(0u8..=15)? {
        15 => Describe::Generated,
        14 => Describe::Invalid(invalid_description(u.arbitrary()?)),
        _ => Describe::Valid(FunctionDescription {
            visibility: ferrovex_model::abi::Visibility::Public,
            kind: if u.arbitrary()? {
                FunctionKind::Mutation
            } else {
                FunctionKind::Query
            },
            args: args_type(declared),
            returns: returns_type(u.arbitrary()?),
            route: None,
        }),
    };
    Ok((describe, call_args(declared, u.arbitrary()?)))
}

pub(super) fn other_kind(kind: FunctionKind) -> FunctionKind {
    match kind {
        FunctionKind::Query => FunctionKind::Mutation,
        FunctionKind::Mutation | FunctionKind::Action | FunctionKind::HttpAction => {
            FunctionKind::Query
        }
    }
}
