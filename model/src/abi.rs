//! The host ABI between the runtime's wasm host and guest modules built with `ferrovex-sdk`
//! (ARCHITECTURE.md, "Invariants"). Both sides compile this file, so the names, codes and
//! formats cannot drift apart.
//!
//! # Shape
//!
//! A guest is a core wasm module for `wasm32-unknown-unknown`, without WASI. It imports only
//! functions of the module [`IMPORT_MODULE`] (versioned: a later ABI adds `runtime_v2` beside
//! it, and modules built against v1 keep working) and exports:
//!
//! - `memory`, its linear memory;
//! - per function, [`CALL_PREFIX`]`<rust path>` `(i32, i32) -> ()` and
//!   [`DESCRIBE_PREFIX`]`<rust path>` `() -> ()`; `<rust path>` is `module_path!()::name`, e.g.
//!   `chat::chat::send_message`, from which the host derives the function path `chat:send_message`
//!   (docs/PROTOCOL.md section 2, see [`function_path`]);
//! - optionally [`SCHEMA_EXPORT`] `() -> ()`, which outputs the app's [`AppSchema`];
//! - optionally [`AUTH_CONFIG_EXPORT`] `() -> ()`, which outputs the app's [`AuthConfig`]: the
//!   sign-in providers whose tokens the deployment accepts;
//! - the linker's `__data_end` and `__heap_base` globals, which the host ignores.
//!
//! Anything else in the import or export lists is rejected at deploy time, with its name.
//!
//! # Versions
//!
//! A module built with `ferrovex-sdk` carries the custom section [`VERSION_SECTION`]: the
//! [`ABI_VERSION`] it speaks and the SDK version it was built with. The host reads it from the
//! module's bytes before compiling or calling anything, and refuses a module of another ABI
//! version with both versions and what to run. [`ABI_VERSION`] changes only with a
//! semver-incompatible SDK release, so `ferrovex-sdk = "0.1"` in an app picks an SDK of this
//! ABI. A module without the section (written by hand, or by an SDK older than the section) is
//! held to the import and export rules above alone.
//!
//! # How bytes cross
//!
//! Guest to host: the guest passes a pointer and a length into its own memory. The host checks
//! `ptr + len` against the memory's size (no wrap-around, no allocation before the check).
//!
//! Host to guest: the host keeps the bytes in a per-call handle table and writes
//! `[handle: u32 LE, len: u32 LE]` at the guest's `out_ptr`; the guest allocates `len` bytes
//! itself and calls [`import::READ_HANDLE`], which copies them in and frees the handle. The guest
//! never exports an allocator the host would have to trust, and a handle lives only as long as
//! the call that created it.
//!
//! Values travel in the compact binary form of [`crate::binary`]; requests and responses are
//! objects whose fields are documented per import.
//!
//! # Errors and traps
//!
//! An expected failure (a malformed id, a document that breaks the schema, patching a document
//! that does not exist) returns a nonzero [`status`] code and a handle to the error message (a
//! binary string), so the guest can turn it into an `Err`. A violation traps: a pointer or length
//! out of bounds, an unknown or already-read handle, a write from a query, any limit exceeded,
//! a malformed request. The host records why and reports it as the call's error, naming the
//! function path.

use crate::binary;
use crate::value::{Object, Value};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

/// The version of this ABI: what [`IMPORT_MODULE`] and the export prefixes name (`v1`), and
/// what a module declares in [`VERSION_SECTION`]. A change that a module built against the
/// previous version could not survive (an import's meaning, a format, an export convention)
/// takes a new version and a semver-incompatible SDK release.
pub const ABI_VERSION: u32 = 1;

/// The version of the crates released with this file. `ferrovex-model`, `ferrovex-sdk-macros`
/// and `ferrovex-sdk` share one version and the SDK depends on exactly this model (it checks
/// that when it compiles), so this is the version of the SDK that speaks [`ABI_VERSION`].
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The custom section in which a module built with `ferrovex-sdk` declares what it was built
/// against. Its payload is one or more records, one per SDK linked into the module, each
/// [`VERSION_RECORD`]'s layout: `abi_version: u32 LE`, `sdk_version_len: u8`, then that many
/// bytes of UTF-8 (the SDK's crate version). The layout is the same in every ABI version, so
/// any host can read any module's versions and say what is wrong.
pub const VERSION_SECTION: &str = "ferrovex_abi";

/// Length of [`VERSION_RECORD`].
pub const VERSION_RECORD_LEN: usize = 5 + SDK_VERSION.len();

/// This release's record for [`VERSION_SECTION`]: [`ABI_VERSION`] and [`SDK_VERSION`].
pub const VERSION_RECORD: [u8; VERSION_RECORD_LEN] = {
    assert!(
        SDK_VERSION.len() <= u8::MAX as usize,
        "the SDK version fits a one-byte length"
    );
    let mut record = [0u8; VERSION_RECORD_LEN];
    let abi = ABI_VERSION.to_le_bytes();
    let mut i = 0;
    while i < 4 {
        record[i] = abi[i];
        i += 1;
    }
    record[4] = SDK_VERSION.len() as u8;
    let sdk = SDK_VERSION.as_bytes();
    let mut i = 0;
    while i < sdk.len() {
        record[5 + i] = sdk[i];
        i += 1;
    }
    record
};

/// One record of a module's [`VERSION_SECTION`]: what an SDK linked into it speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltWith {
    /// The ABI version the module speaks.
    pub abi: u32,
    /// The version of the `ferrovex-sdk` crate it was built with.
    pub sdk: String,
}

/// The records of a [`VERSION_SECTION`] payload, in order; an error says what is malformed.
pub fn parse_version_section(payload: &[u8]) -> Result<Vec<BuiltWith>, String> {
    let mut records = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let at = payload.len() - rest.len();
        let truncated = || {
            format!(
                "a record at byte {at} is cut short ({} bytes left)",
                rest.len()
            )
        };
        let (head, tail) = rest.split_at_checked(5).ok_or_else(truncated)?;
        let abi = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let (sdk, tail) = tail
            .split_at_checked(usize::from(head[4]))
            .ok_or_else(truncated)?;
        let sdk = std::str::from_utf8(sdk)
            .map_err(|_| format!("the SDK version of the record at byte {at} is not UTF-8"))?;
        records.push(BuiltWith {
            abi,
            sdk: sdk.to_owned(),
        });
        rest = tail;
    }
    if records.is_empty() {
        return Err("the section is empty".into());
    }
    Ok(records)
}

/// The dependency requirement that selects an SDK of this release's ABI, as an app's
/// `Cargo.toml` writes it (`"0.1"` for 0.1.x, `"1"` for 1.x).
pub fn sdk_requirement() -> String {
    let mut parts = SDK_VERSION.split('.');
    match (parts.next(), parts.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}"),
        (Some(major), _) => major.to_owned(),
        (None, _) => SDK_VERSION.to_owned(),
    }
}

/// The import module of this ABI version.
pub const IMPORT_MODULE: &str = "runtime_v1";
/// Export prefix of a function's entry point: `(args_handle: i32, args_len: i32) -> ()`.
/// The arguments (a binary object) wait behind the handle; the function outputs its result
/// or its error with [`import::OUTPUT`] before returning.
pub const CALL_PREFIX: &str = "__runtime_v1_call:";
/// Export prefix of a function's description: `() -> ()`, outputs a [`FunctionDescription`]
/// with [`output::DESCRIPTION`].
pub const DESCRIBE_PREFIX: &str = "__runtime_v1_describe:";
/// Optional export `() -> ()` that outputs the app's [`AppSchema`] with [`output::SCHEMA`].
pub const SCHEMA_EXPORT: &str = "__runtime_v1_schema";
/// Optional export `() -> ()` that outputs the app's [`AuthConfig`] with
/// [`output::AUTH_CONFIG`].
pub const AUTH_CONFIG_EXPORT: &str = "__runtime_v1_auth_config";
/// Optional export `() -> ()` that outputs the app's [`Crons`] with [`output::CRONS`].
pub const CRONS_EXPORT: &str = "__runtime_v1_crons";
/// The guest's linear memory.
pub const MEMORY_EXPORT: &str = "memory";
/// Exports the Rust toolchain adds to every module, which the host ignores.
pub const IGNORED_EXPORTS: &[&str] = &["__data_end", "__heap_base"];

/// Log lines one call may write; one more traps.
pub const MAX_LOG_LINES: usize = 256;
/// Bytes of one log line or panic message kept; the rest is cut with a marker.
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;
/// Handles one call may hold unread at once; one more traps.
pub const MAX_LIVE_HANDLES: usize = 1024;

/// Import names, all in [`IMPORT_MODULE`]. `ptr`/`len` pairs are guest memory; `out_ptr`
/// points at 8 writable bytes that receive `[handle: u32 LE, len: u32 LE]`.
pub mod import {
    /// `read_handle(handle: i32, ptr: i32, len: i32) -> ()`: copies the handle's bytes to
    /// `ptr` and frees the handle.
    /// Traps: unknown or already-read handle; `len` differs from the handle's length;
    /// `ptr + len` outside memory.
    pub const READ_HANDLE: &str = "read_handle";
    /// `output(kind: i32, ptr: i32, len: i32) -> ()`: the call's outcome, once, as a binary
    /// value of the [`super::output`] kind.
    /// Traps: a second output; a kind the current entry point does not produce; out of bounds;
    /// over `MAX_ARGS_OR_RESULT_BYTES`; not a valid binary value.
    pub const OUTPUT: &str = "output";
    /// `log(ptr: i32, len: i32) -> ()`: one log line (UTF-8; invalid bytes are replaced),
    /// returned to the caller with the outcome, also on failure.
    /// Traps: out of bounds; more than [`super::MAX_LOG_LINES`] lines.
    pub const LOG: &str = "log";
    /// `panic(ptr: i32, len: i32) -> ()`: the panic hook's message, reported as the call's
    /// error when the guest traps next. Does not itself trap except out of bounds.
    pub const PANIC: &str = "panic";
    /// `now_ms() -> f64`: the call's frozen time, milliseconds since the Unix epoch.
    pub const NOW_MS: &str = "now_ms";
    /// `random_seed() -> i64`: the seed of the call's random generator, derived by the host.
    pub const RANDOM_SEED: &str = "random_seed";
    /// `auth_identity(out_ptr: i32) -> ()`: the caller's identity, a
    /// [`crate::identity::UserIdentity`] object, or null when the call runs for no signed-in
    /// user (and in describe, schema and auth-config exports).
    /// Traps: `out_ptr` out of bounds; too many live handles.
    pub const AUTH_IDENTITY: &str = "auth_identity";
    /// `db_get(ptr: i32, len: i32, out_ptr: i32) -> i32`: request `{id: string}`;
    /// response: the document (with `_id`, `_creationTime`) or null.
    /// Errors: `INVALID` for a malformed id or an id of no table.
    /// Traps: as every import; a read limit exceeded.
    pub const DB_GET: &str = "db_get";
    /// `db_insert(ptr, len, out_ptr) -> i32`: request `{table: string, fields: object}`;
    /// response: the new id (string).
    /// Errors: `INVALID` for an invalid table name or document, or a schema violation.
    /// Traps: called from a query; a write limit exceeded.
    pub const DB_INSERT: &str = "db_insert";
    /// `db_patch(ptr, len, out_ptr) -> i32`: request
    /// `{id: string, set: object, remove: [string]}` (shallow merge); response: null.
    /// Errors: `INVALID` as insert; `NOT_FOUND`. Traps: as insert.
    pub const DB_PATCH: &str = "db_patch";
    /// `db_replace(ptr, len, out_ptr) -> i32`: request `{id: string, fields: object}`;
    /// response: null. Errors and traps: as patch.
    pub const DB_REPLACE: &str = "db_replace";
    /// `db_delete(ptr, len, out_ptr) -> i32`: request `{id: string}`; response: null.
    /// Errors: `INVALID` for a malformed id; `NOT_FOUND`. Traps: as insert.
    pub const DB_DELETE: &str = "db_delete";
    /// `db_scan(ptr, len, out_ptr) -> i32`: request `{table: string, index: string,
    /// eq: [value], lower: null | [value, inclusive: bool], upper: null | [value, bool],
    /// order: "asc" | "desc", limit: int64, cursor: null | bytes}`, and optionally
    /// `endCursor: null | bytes` (the page ends there, included, whatever `limit` says; the
    /// empty cursor is the range's end) and `paginate: bool`; response
    /// `{documents: [document], cursor: null | bytes, isDone: bool}`. With `paginate`, the
    /// k-th such scan of a call without an `endCursor` ends where the same query's k-th page
    /// ended last time, if the caller passed that back (the query's journal), and the response
    /// always has a cursor (the empty one once the range is read to its end) and a
    /// `splitCursor: null | bytes` near the middle of the page. A missing table reads as
    /// empty. Errors: `INVALID` for an unknown index, a range the index cannot serve, or a
    /// cursor that does not belong to the range. Traps: a read limit exceeded.
    pub const DB_SCAN: &str = "db_scan";
    /// `schedule(ptr, len, out_ptr) -> i32` (mutations and actions): request
    /// `{path: string, args: object, at: float64}` (milliseconds since the Unix epoch; a time
    /// in the past means now); response: the job's id (string), a document of
    /// `_scheduled_functions`. From a mutation the job is part of its transaction: it exists
    /// only if the mutation commits. Errors: `INVALID` for an unknown function, one that is
    /// not a mutation or action, arguments over `MAX_SCHEDULED_ARGS_BYTES`, or more than
    /// `MAX_JOBS_SCHEDULED_PER_CALL` jobs. Traps: called from a query.
    pub const SCHEDULE: &str = "schedule";
    /// `cancel_job(ptr, len, out_ptr) -> i32` (mutations and actions): request `{id: string}`;
    /// a pending job becomes canceled, a job already running or done is left as it is;
    /// response: null. Errors: `INVALID` for an id that is not a job's. Traps: from a query.
    pub const CANCEL_JOB: &str = "cancel_job";
    /// `run_function(ptr, len, out_ptr) -> i32` (actions only): request
    /// `{kind: "query" | "mutation" | "action", path: string, args: object}`; runs it as its
    /// own call (a mutation in its own transaction), for the same caller; response: its
    /// result. Errors: `INVALID` for an unknown path or the wrong kind; `FAILED` with
    /// `{message, data?}` when the function failed. Traps: called from a query or mutation.
    pub const RUN_FUNCTION: &str = "run_function";
    /// `fetch(ptr, len, out_ptr) -> i32` (actions only): request `{method: string,
    /// url: string, headers: [[name, value]], body: null | bytes, timeoutMs: null | int64}`;
    /// response `{status: int64, headers: [[name, value]], body: bytes, url: string}` (the
    /// final URL, after redirects). Errors: `INVALID` for a malformed request or a refused
    /// address; `FAILED` for the network, a timeout, too many redirects or a body over the
    /// limit, each naming the limit. Traps: called from a query or mutation.
    pub const FETCH: &str = "fetch";
    /// `env_var(ptr, len, out_ptr) -> i32` (actions only): request `{name: string}`;
    /// response: the deployment's environment variable (string) or null.
    /// Traps: called from a query or mutation.
    pub const ENV_VAR: &str = "env_var";
}

/// Return codes of the `db_*` imports. On any nonzero code the handle holds the message.
pub mod status {
    pub const OK: i32 = 0;
    /// The request is well-formed but not acceptable (bad id, invalid document, schema...).
    pub const INVALID: i32 = 1;
    /// The document to change does not exist.
    pub const NOT_FOUND: i32 = 2;
    /// What the request asked for was tried and failed: a function an action called
    /// (`{message, data?}`), or an outbound request (a message).
    pub const FAILED: i32 = 3;
}

/// Kinds of [`import::OUTPUT`].
pub mod output {
    /// The function's result value.
    pub const RESULT: i32 = 0;
    /// The function's error: `{message: string, data?: value}`.
    pub const ERROR: i32 = 1;
    /// A [`super::FunctionDescription`].
    pub const DESCRIPTION: i32 = 2;
    /// An [`super::AppSchema`].
    pub const SCHEMA: i32 = 3;
    /// An [`super::AuthConfig`].
    pub const AUTH_CONFIG: i32 = 4;
    /// The app's [`super::Crons`].
    pub const CRONS: i32 = 5;
}

/// A wasm value type of an import signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmType {
    I32,
    I64,
    F64,
}

/// The exact signature of each import, for the deploy-time check.
pub const IMPORT_SIGNATURES: &[(&str, &[WasmType], &[WasmType])] = {
    use WasmType::*;
    &[
        (import::READ_HANDLE, &[I32, I32, I32], &[]),
        (import::OUTPUT, &[I32, I32, I32], &[]),
        (import::LOG, &[I32, I32], &[]),
        (import::PANIC, &[I32, I32], &[]),
        (import::NOW_MS, &[], &[F64]),
        (import::RANDOM_SEED, &[], &[I64]),
        (import::AUTH_IDENTITY, &[I32], &[]),
        (import::DB_GET, &[I32, I32, I32], &[I32]),
        (import::DB_INSERT, &[I32, I32, I32], &[I32]),
        (import::DB_PATCH, &[I32, I32, I32], &[I32]),
        (import::DB_REPLACE, &[I32, I32, I32], &[I32]),
        (import::DB_DELETE, &[I32, I32, I32], &[I32]),
        (import::DB_SCAN, &[I32, I32, I32], &[I32]),
        (import::SCHEDULE, &[I32, I32, I32], &[I32]),
        (import::CANCEL_JOB, &[I32, I32, I32], &[I32]),
        (import::RUN_FUNCTION, &[I32, I32, I32], &[I32]),
        (import::FETCH, &[I32, I32, I32], &[I32]),
        (import::ENV_VAR, &[I32, I32, I32], &[I32]),
    ]
};

/// The function path (`module:function`, docs/PROTOCOL.md section 2) of a Rust path
/// `crate::module::...::function`: the crate name is dropped and module segments are joined
/// with '/'. `None` for a function at the crate root, which has no module.
pub fn function_path(rust_path: &str) -> Option<String> {
    let segments: Vec<&str> = rust_path.split("::").collect();
    if segments.len() < 3 || segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    let (function, modules) = segments[1..].split_last()?;
    Some(format!("{}:{function}", modules.join("/")))
}

/// What a function is: deterministic reads (query), a transaction (mutation), or outside work
/// that is not deterministic (action, and the HTTP action a route of the app serves).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FunctionKind {
    Query,
    Mutation,
    Action,
    HttpAction,
}

impl FunctionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Query => "query",
            FunctionKind::Mutation => "mutation",
            FunctionKind::Action => "action",
            FunctionKind::HttpAction => "httpAction",
        }
    }

    pub fn parse(text: &str) -> Option<FunctionKind> {
        [
            FunctionKind::Query,
            FunctionKind::Mutation,
            FunctionKind::Action,
            FunctionKind::HttpAction,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// The requests an HTTP action serves: a method (or `ANY`) and an exact path or a path
/// prefix (ending in `/`), both as the app writes them, under the server's `/http` prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpRoute {
    pub method: String,
    pub path: String,
    pub prefix: bool,
}

impl HttpRoute {
    /// Checks the route's own form: an upper-case method, a path that starts with `/`, and a
    /// prefix that ends with one.
    pub fn check(&self) -> Result<(), String> {
        const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "ANY"];
        if !METHODS.contains(&self.method.as_str()) {
            return Err(format!(
                "route method must be one of {METHODS:?}, got {:?}",
                self.method
            ));
        }
        if !self.path.starts_with('/') || self.path.contains("//") || self.path.contains('?') {
            return Err(format!(
                "route path must start with '/' and hold no '//' or '?', got {:?}",
                self.path
            ));
        }
        if self.prefix && !self.path.ends_with('/') {
            return Err(format!(
                "a route prefix must end with '/', got {:?}",
                self.path
            ));
        }
        Ok(())
    }
}

impl fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may call a function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Any client.
    #[default]
    Public,
    /// Other functions, the scheduler and admin-key callers only (`#[internal_query]`,
    /// `#[internal_mutation]`): to a client's call it does not exist.
    Internal,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Internal => "internal",
        }
    }
}

/// What a guest says about one of its functions.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionDescription {
    pub kind: FunctionKind,
    /// Absent from a description reads as public.
    pub visibility: Visibility,
    /// Always an object type: one field per parameter.
    pub args: Type,
    pub returns: Type,
    /// An HTTP action's route (and only an HTTP action has one).
    pub route: Option<HttpRoute>,
}

impl FunctionDescription {
    pub fn to_value(&self) -> Value {
        let mut o = Object::new();
        o.insert("kind".into(), self.kind.as_str().into());
        o.insert("visibility".into(), self.visibility.as_str().into());
        o.insert("args".into(), self.args.to_value());
        o.insert("returns".into(), self.returns.to_value());
        if let Some(route) = &self.route {
            let mut r = Object::new();
            r.insert("method".into(), route.method.as_str().into());
            r.insert(
                if route.prefix { "pathPrefix" } else { "path" }.into(),
                route.path.as_str().into(),
            );
            o.insert("route".into(), Value::Object(r));
        }
        Value::Object(o)
    }

    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = value
            .as_object()
            .ok_or("a function description is an object")?;
        let kind = match o.get("kind").and_then(Value::as_str).and_then(FunctionKind::parse) {
            Some(kind) => kind,
            None => {
                return Err(format!(
                    "function kind must be \"query\", \"mutation\", \"action\" or \"httpAction\", got {:?}",
                    o.get("kind")
                ))
            }
        };
        let visibility = match o.get("visibility").map(|v| v.as_str()) {
            None | Some(Some("public")) => Visibility::Public,
            Some(Some("internal")) => Visibility::Internal,
            Some(other) => {
                return Err(format!(
                    "function visibility must be \"public\" or \"internal\", got {other:?}"
                ))
            }
        };
        let args = Type::from_value(o.get("args").ok_or("missing args schema")?)?;
        if !matches!(args, Type::Object(_)) {
            return Err("the args schema must be an object type".into());
        }
        let returns = Type::from_value(o.get("returns").ok_or("missing returns schema")?)?;
        let route = match (kind, o.get("route")) {
            (FunctionKind::HttpAction, Some(Value::Object(r))) => {
                let method = r.get("method").and_then(Value::as_str);
                let (path, prefix) = match (r.get("path"), r.get("pathPrefix")) {
                    (Some(Value::String(p)), None) => (p, false),
                    (None, Some(Value::String(p))) => (p, true),
                    _ => return Err("a route has a \"path\" or a \"pathPrefix\" string".into()),
                };
                let route = HttpRoute {
                    method: method.ok_or("a route has a \"method\" string")?.to_owned(),
                    path: path.clone(),
                    prefix,
                };
                route.check()?;
                Some(route)
            }
            (FunctionKind::HttpAction, _) => return Err("an HTTP action needs a route".into()),
            (_, None) => None,
            (kind, Some(_)) => return Err(format!("a {kind} has no route")),
        };
        Ok(FunctionDescription {
            kind,
            visibility,
            args,
            returns,
            route,
        })
    }
}

/// A value type, as schemas declare it. Checked by the host on arguments before a call and on
/// documents of declared tables before every write.
#[derive(Clone, Debug, PartialEq)]
pub enum Type {
    Any,
    Null,
    Int64,
    Float64,
    Boolean,
    String,
    Bytes,
    Array(Box<Type>),
    /// Exactly these fields; a field of type [`Type::Optional`] may be absent.
    Object(BTreeMap<String, Type>),
    /// Any field names, every value of one type.
    Record(Box<Type>),
    /// The inner type or null; as an object field, also absent.
    Optional(Box<Type>),
    Union(Vec<Type>),
}

/// Where a value breaks its type: `path` is like `$.messages[3].body`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Type {
    pub fn object<'a>(fields: impl IntoIterator<Item = (&'a str, Type)>) -> Type {
        Type::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// How errors and `GET /api/functions` spell the type.
    pub fn describe(&self) -> String {
        match self {
            Type::Any => "any".into(),
            Type::Null => "null".into(),
            Type::Int64 => "int64".into(),
            Type::Float64 => "float64".into(),
            Type::Boolean => "boolean".into(),
            Type::String => "string".into(),
            Type::Bytes => "bytes".into(),
            Type::Array(t) => format!("array<{}>", t.describe()),
            Type::Object(fields) => {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(k, t)| match t {
                        Type::Optional(t) => format!("{k}?: {}", t.describe()),
                        t => format!("{k}: {}", t.describe()),
                    })
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
            Type::Record(t) => format!("record<{}>", t.describe()),
            Type::Optional(t) => format!("{} | null", t.describe()),
            Type::Union(ts) => ts
                .iter()
                .map(Type::describe)
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }

    /// Checks `value` against this type.
    pub fn check(&self, value: &Value) -> Result<(), TypeError> {
        let mut path = String::from("$");
        self.check_at(value, &mut path)
    }

    /// [`Type::check`] of an object given by its fields, where they lie: a document's fields
    /// are checked without being copied into a `Value` first.
    pub fn check_object(&self, fields: &Object) -> Result<(), TypeError> {
        let mut path = String::from("$");
        self.check_object_at(fields, &mut path)
    }

    fn check_object_at(&self, fields: &Object, path: &mut String) -> Result<(), TypeError> {
        match self {
            Type::Any => Ok(()),
            Type::Optional(inner) => inner.check_object_at(fields, path),
            // Every value of `any` passes: a large record skips the walk.
            Type::Record(item) if matches!(**item, Type::Any) => Ok(()),
            Type::Record(item) => {
                for (k, v) in fields {
                    let len = path.len();
                    path.push('.');
                    path.push_str(k);
                    item.check_at(v, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Type::Object(declared) => {
                if let Some(extra) = fields.keys().find(|k| !declared.contains_key(*k)) {
                    return Err(TypeError {
                        path: path.clone(),
                        message: format!(
                            "unexpected field {extra:?}; the declared fields are {}",
                            self.describe()
                        ),
                    });
                }
                for (k, t) in declared {
                    let len = path.len();
                    path.push('.');
                    path.push_str(k);
                    match (fields.get(k), t) {
                        (None, Type::Optional(_) | Type::Any) => {}
                        (None, t) => {
                            return Err(TypeError {
                                path: path.clone(),
                                message: format!("missing required field of type {}", t.describe()),
                            })
                        }
                        (Some(v), t) => t.check_at(v, path)?,
                    }
                    path.truncate(len);
                }
                Ok(())
            }
            Type::Union(options) if options.iter().any(|t| t.check_object(fields).is_ok()) => {
                Ok(())
            }
            _ => Err(TypeError {
                path: path.clone(),
                message: format!("expected {}, got object", self.describe()),
            }),
        }
    }

    fn check_at(&self, value: &Value, path: &mut String) -> Result<(), TypeError> {
        let mismatch = |path: &String| TypeError {
            path: path.clone(),
            message: format!("expected {}, got {}", self.describe(), value.type_name()),
        };
        match (self, value) {
            (Type::Any, _)
            | (Type::Null, Value::Null)
            | (Type::Int64, Value::Int64(_))
            | (Type::Float64, Value::Float64(_))
            | (Type::Boolean, Value::Boolean(_))
            | (Type::String, Value::String(_))
            | (Type::Bytes, Value::Bytes(_)) => Ok(()),
            (Type::Optional(_), Value::Null) => Ok(()),
            (Type::Optional(inner), _) => inner.check_at(value, path),
            // Every element of `any` passes: a large result (`Vec<Document>`) skips the walk
            // (a record of `any` likewise, in `check_object_at`).
            (Type::Array(item), Value::Array(_)) if matches!(**item, Type::Any) => Ok(()),
            (Type::Array(item), Value::Array(items)) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    write!(path, "[{i}]").expect("writing to a String");
                    item.check_at(v, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            (Type::Record(_) | Type::Object(_), Value::Object(fields)) => {
                self.check_object_at(fields, path)
            }
            (Type::Union(options), _) => {
                if options.iter().any(|t| t.check(value).is_ok()) {
                    Ok(())
                } else {
                    Err(mismatch(path))
                }
            }
            _ => Err(mismatch(path)),
        }
    }

    pub fn to_value(&self) -> Value {
        let tagged = |name: &str, extra: Option<(&str, Value)>| {
            let mut o = Object::new();
            o.insert("type".into(), name.into());
            if let Some((k, v)) = extra {
                o.insert(k.into(), v);
            }
            Value::Object(o)
        };
        match self {
            Type::Any => tagged("any", None),
            Type::Null => tagged("null", None),
            Type::Int64 => tagged("int64", None),
            Type::Float64 => tagged("float64", None),
            Type::Boolean => tagged("boolean", None),
            Type::String => tagged("string", None),
            Type::Bytes => tagged("bytes", None),
            Type::Array(t) => tagged("array", Some(("items", t.to_value()))),
            Type::Record(t) => tagged("record", Some(("values", t.to_value()))),
            Type::Optional(t) => tagged("optional", Some(("inner", t.to_value()))),
            Type::Union(ts) => tagged(
                "union",
                Some((
                    "options",
                    Value::Array(ts.iter().map(Type::to_value).collect()),
                )),
            ),
            Type::Object(fields) => tagged(
                "object",
                Some((
                    "fields",
                    Value::Object(
                        fields
                            .iter()
                            .map(|(k, t)| (k.clone(), t.to_value()))
                            .collect(),
                    ),
                )),
            ),
        }
    }

    pub fn from_value(value: &Value) -> Result<Type, String> {
        Self::from_value_at(value, 0)
    }

    fn from_value_at(value: &Value, depth: usize) -> Result<Type, String> {
        if depth > crate::binary::MAX_DECODE_DEPTH {
            return Err("type nested too deeply".into());
        }
        let o = value
            .as_object()
            .ok_or("a type is an object with a \"type\" field")?;
        let inner = |key: &str| -> Result<Box<Type>, String> {
            Ok(Box::new(Self::from_value_at(
                o.get(key).ok_or(format!("missing {key:?}"))?,
                depth + 1,
            )?))
        };
        Ok(match o.get("type").and_then(Value::as_str) {
            Some("any") => Type::Any,
            Some("null") => Type::Null,
            Some("int64") => Type::Int64,
            Some("float64") => Type::Float64,
            Some("boolean") => Type::Boolean,
            Some("string") => Type::String,
            Some("bytes") => Type::Bytes,
            Some("array") => Type::Array(inner("items")?),
            Some("record") => Type::Record(inner("values")?),
            Some("optional") => Type::Optional(inner("inner")?),
            Some("union") => match o.get("options") {
                Some(Value::Array(items)) => Type::Union(
                    items
                        .iter()
                        .map(|t| Self::from_value_at(t, depth + 1))
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err("a union needs an \"options\" array".into()),
            },
            Some("object") => match o.get("fields") {
                Some(Value::Object(fields)) => Type::Object(
                    fields
                        .iter()
                        .map(|(k, t)| Ok((k.clone(), Self::from_value_at(t, depth + 1)?)))
                        .collect::<Result<_, String>>()?,
                ),
                _ => return Err("an object type needs a \"fields\" object".into()),
            },
            other => return Err(format!("unknown type {other:?}")),
        })
    }
}

/// One declared table: the type of its documents' user fields and its extra indexes.
#[derive(Clone, Debug, PartialEq)]
pub struct TableSchema {
    pub name: String,
    /// An object type (system fields `_id`, `_creationTime` are not part of it).
    pub document: Type,
    /// `(index name, dot-separated field paths)`.
    pub indexes: Vec<(String, Vec<String>)>,
}

/// An app's declared tables. Tables it does not declare stay schemaless.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppSchema {
    pub tables: Vec<TableSchema>,
}

impl AppSchema {
    pub fn table(&self, name: &str) -> Option<&TableSchema> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Whether a document with these user fields may be written to `table`: the one check
    /// of every write, from a function or from the dashboard. A table the schema does not
    /// declare takes any document.
    pub fn check_document(&self, table: &str, fields: &Object) -> Result<(), String> {
        let Some(declared) = self.table(table) else {
            return Ok(());
        };
        declared
            .document
            .check_object(fields)
            .map_err(|e| format!("document for table {table:?} does not match its schema: {e}"))
    }

    pub fn to_value(&self) -> Value {
        let tables = self
            .tables
            .iter()
            .map(|t| {
                let mut o = Object::new();
                o.insert("name".into(), t.name.as_str().into());
                o.insert("document".into(), t.document.to_value());
                let indexes = t
                    .indexes
                    .iter()
                    .map(|(name, fields)| {
                        Value::Array(vec![
                            name.as_str().into(),
                            Value::Array(fields.iter().map(|f| f.as_str().into()).collect()),
                        ])
                    })
                    .collect();
                o.insert("indexes".into(), Value::Array(indexes));
                Value::Object(o)
            })
            .collect();
        Value::Object(
            [("tables".to_owned(), Value::Array(tables))]
                .into_iter()
                .collect(),
        )
    }

    pub fn from_value(value: &Value) -> Result<Self, String> {
        let Some(Value::Array(tables)) = value.as_object().and_then(|o| o.get("tables")) else {
            return Err("a schema is an object with a \"tables\" array".into());
        };
        let mut out = AppSchema::default();
        for t in tables {
            let o = t.as_object().ok_or("a table schema is an object")?;
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .ok_or("a table schema needs a name")?;
            let document = Type::from_value(
                o.get("document")
                    .ok_or("a table schema needs a document type")?,
            )?;
            if !matches!(document, Type::Object(_)) {
                return Err(format!(
                    "the document type of table {name:?} must be an object type"
                ));
            }
            let mut indexes = Vec::new();
            if let Some(Value::Array(items)) = o.get("indexes") {
                for item in items {
                    match item {
                        Value::Array(pair) if pair.len() == 2 => {
                            let index = pair[0].as_str().ok_or("an index name is a string")?;
                            let Value::Array(fields) = &pair[1] else {
                                return Err(format!("index {index:?} needs a field list"));
                            };
                            let fields = fields
                                .iter()
                                .map(|f| {
                                    f.as_str()
                                        .map(str::to_owned)
                                        .ok_or("index fields are strings")
                                })
                                .collect::<Result<Vec<_>, _>>()?;
                            indexes.push((index.to_owned(), fields));
                        }
                        _ => return Err("an index is [name, [fields]]".into()),
                    }
                }
            }
            if out.table(name).is_some() {
                return Err(format!("table {name:?} is declared twice"));
            }
            out.tables.push(TableSchema {
                name: name.to_owned(),
                document,
                indexes,
            });
        }
        Ok(out)
    }
}

/// A setting of the auth configuration: written in the app, or read at deploy from the
/// deployment's environment variable of that name, so one build serves several issuers (a
/// development and a production tenant, a test's own issuer).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Setting {
    Literal(String),
    Env(String),
}

impl Setting {
    fn to_value(&self) -> Value {
        match self {
            Setting::Literal(text) => text.as_str().into(),
            Setting::Env(name) => Value::Object(
                [("env".to_owned(), name.as_str().into())]
                    .into_iter()
                    .collect(),
            ),
        }
    }

    fn from_value(value: &Value, what: &str) -> Result<Self, String> {
        match value {
            Value::String(text) => Ok(Setting::Literal(text.clone())),
            Value::Object(o) if o.len() == 1 => match o.get("env") {
                Some(Value::String(name)) => Ok(Setting::Env(name.clone())),
                _ => Err(format!("{what}: a setting is a string or {{env: string}}")),
            },
            _ => Err(format!("{what}: a setting is a string or {{env: string}}")),
        }
    }

    /// The value, reading `Env` settings with `env`; an error names the variable.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
        match self {
            Setting::Literal(text) => Ok(text.clone()),
            Setting::Env(name) => {
                env(name).ok_or_else(|| format!("the environment variable {name} is not set"))
            }
        }
    }
}

impl From<&str> for Setting {
    fn from(text: &str) -> Self {
        Setting::Literal(text.to_owned())
    }
}

impl From<String> for Setting {
    fn from(text: String) -> Self {
        Setting::Literal(text)
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Literal(text) => write!(f, "{text:?}"),
            Setting::Env(name) => write!(f, "${name}"),
        }
    }
}

/// The signature algorithm a custom-JWT provider signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    RS256,
    ES256,
}

impl JwtAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::ES256 => "ES256",
        }
    }
}

/// One issuer of sign-in tokens the deployment trusts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AuthProvider {
    /// An OpenID Connect issuer: its keys come from the `jwks_uri` of its discovery document
    /// (`{issuer}/.well-known/openid-configuration`); tokens must name `application_id` in
    /// `aud`. Clerk, Auth0, Google, Okta, Keycloak... are such issuers.
    Oidc {
        issuer: Setting,
        application_id: Setting,
    },
    /// Any issuer of signed JWTs: its keys are a JWKS at a URL or in a file (a path relative
    /// to the app folder).
    CustomJwt {
        issuer: Setting,
        audience: Setting,
        algorithm: JwtAlgorithm,
        jwks: Setting,
    },
}

/// The app's sign-in providers (`#[auth_config]`). With none, every user token is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AuthConfig {
    pub providers: Vec<AuthProvider>,
}

impl AuthConfig {
    pub fn to_value(&self) -> Value {
        let providers = self
            .providers
            .iter()
            .map(|provider| {
                let mut o = Object::new();
                match provider {
                    AuthProvider::Oidc {
                        issuer,
                        application_id,
                    } => {
                        o.insert("type".into(), "oidc".into());
                        o.insert("issuer".into(), issuer.to_value());
                        o.insert("applicationId".into(), application_id.to_value());
                    }
                    AuthProvider::CustomJwt {
                        issuer,
                        audience,
                        algorithm,
                        jwks,
                    } => {
                        o.insert("type".into(), "customJwt".into());
                        o.insert("issuer".into(), issuer.to_value());
                        o.insert("audience".into(), audience.to_value());
                        o.insert("algorithm".into(), algorithm.as_str().into());
                        o.insert("jwks".into(), jwks.to_value());
                    }
                }
                Value::Object(o)
            })
            .collect();
        Value::Object(
            [("providers".to_owned(), Value::Array(providers))]
                .into_iter()
                .collect(),
        )
    }

    pub fn from_value(value: &Value) -> Result<Self, String> {
        let Some(Value::Array(items)) = value.as_object().and_then(|o| o.get("providers")) else {
            return Err("an auth config is an object with a \"providers\" array".into());
        };
        let mut providers = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let what = format!("provider {i}");
            let o = item
                .as_object()
                .ok_or_else(|| format!("{what}: a provider is an object"))?;
            let setting = |field: &str| {
                let value = o
                    .get(field)
                    .ok_or_else(|| format!("{what}: missing {field:?}"))?;
                Setting::from_value(value, &format!("{what}, {field:?}"))
            };
            let provider = match o.get("type").and_then(Value::as_str) {
                Some("oidc") => AuthProvider::Oidc {
                    issuer: setting("issuer")?,
                    application_id: setting("applicationId")?,
                },
                Some("customJwt") => AuthProvider::CustomJwt {
                    issuer: setting("issuer")?,
                    audience: setting("audience")?,
                    algorithm: match o.get("algorithm").and_then(Value::as_str) {
                        Some("RS256") => JwtAlgorithm::RS256,
                        Some("ES256") => JwtAlgorithm::ES256,
                        other => {
                            return Err(format!(
                                "{what}: algorithm must be \"RS256\" or \"ES256\", got {other:?}"
                            ))
                        }
                    },
                    jwks: setting("jwks")?,
                },
                other => {
                    return Err(format!(
                        "{what}: type must be \"oidc\" or \"customJwt\", got {other:?}"
                    ))
                }
            };
            providers.push(provider);
        }
        Ok(AuthConfig { providers })
    }
}

/// When a cron runs: every fixed interval, or on a cron expression's times (UTC).
#[derive(Clone, Debug, PartialEq)]
pub enum CronSchedule {
    /// Milliseconds between runs; the first run is one interval after the cron is deployed.
    IntervalMs(u64),
    /// A cron expression of five fields (minute hour day-of-month month day-of-week) or six
    /// (seconds first), parsed by the host.
    Expression(String),
}

/// One cron job of the app (`#[crons]`): a name unique in the app, its schedule, and the
/// mutation or action it runs, with the arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct CronSpec {
    pub name: String,
    pub schedule: CronSchedule,
    pub function: String,
    pub args: Value,
}

/// The app's cron jobs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Crons {
    pub jobs: Vec<CronSpec>,
}

impl Crons {
    pub fn to_value(&self) -> Value {
        let jobs = self
            .jobs
            .iter()
            .map(|job| {
                let mut o = Object::new();
                o.insert("name".into(), job.name.as_str().into());
                match &job.schedule {
                    CronSchedule::IntervalMs(ms) => {
                        o.insert("intervalMs".into(), Value::Int64(*ms as i64))
                    }
                    CronSchedule::Expression(e) => o.insert("cron".into(), e.as_str().into()),
                };
                o.insert("function".into(), job.function.as_str().into());
                o.insert("args".into(), job.args.clone());
                Value::Object(o)
            })
            .collect();
        Value::Object(
            [("jobs".to_owned(), Value::Array(jobs))]
                .into_iter()
                .collect(),
        )
    }

    pub fn from_value(value: &Value) -> Result<Self, String> {
        let Some(Value::Array(items)) = value.as_object().and_then(|o| o.get("jobs")) else {
            return Err("crons are an object with a \"jobs\" array".into());
        };
        let mut jobs: Vec<CronSpec> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let o = item
                .as_object()
                .ok_or_else(|| format!("cron {i}: a cron is an object"))?;
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("cron {i}: missing \"name\""))?;
            let schedule = match (o.get("intervalMs"), o.get("cron")) {
                (Some(Value::Int64(ms)), None) if *ms > 0 => CronSchedule::IntervalMs(*ms as u64),
                (None, Some(Value::String(e))) => CronSchedule::Expression(e.clone()),
                _ => {
                    return Err(format!(
                        "cron {name:?}: a schedule is a positive \"intervalMs\" or a \"cron\" expression"
                    ))
                }
            };
            let function = o
                .get("function")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("cron {name:?}: missing \"function\""))?;
            let args = match o.get("args") {
                Some(args @ Value::Object(_)) => args.clone(),
                _ => return Err(format!("cron {name:?}: \"args\" must be an object")),
            };
            if jobs.iter().any(|j| j.name == name) {
                return Err(format!("cron {name:?} is declared twice"));
            }
            jobs.push(CronSpec {
                name: name.to_owned(),
                schedule,
                function: function.to_owned(),
                args,
            });
        }
        Ok(Crons { jobs })
    }
}

/// Encodes a value for the ABI.
pub fn encode(value: &Value) -> Vec<u8> {
    binary::encode(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_paths_follow_the_protocol() {
        assert_eq!(
            function_path("chat::chat::send_message").as_deref(),
            Some("chat:send_message")
        );
        assert_eq!(
            function_path("app::admin::users::list").as_deref(),
            Some("admin/users:list")
        );
        assert_eq!(function_path("app::at_root"), None);
    }

    #[test]
    fn version_records_round_trip_and_malformed_ones_are_named() {
        let this = BuiltWith {
            abi: ABI_VERSION,
            sdk: SDK_VERSION.to_owned(),
        };
        assert_eq!(
            parse_version_section(&VERSION_RECORD),
            Ok(vec![this.clone()])
        );
        // Two SDKs linked into one module: one record each.
        let other = [2, 0, 0, 0, 5, b'0', b'.', b'2', b'.', b'0'];
        let both: Vec<u8> = VERSION_RECORD.iter().chain(&other).copied().collect();
        let two = BuiltWith {
            abi: 2,
            sdk: "0.2.0".into(),
        };
        assert_eq!(parse_version_section(&both), Ok(vec![this, two]));
        assert_eq!(
            parse_version_section(&[]),
            Err("the section is empty".into())
        );
        assert_eq!(
            parse_version_section(&other[..7]),
            Err("a record at byte 0 is cut short (7 bytes left)".into())
        );
        assert_eq!(
            parse_version_section(&[1, 0, 0, 0, 1, 0xff]),
            Err("the SDK version of the record at byte 0 is not UTF-8".into())
        );
    }

    #[test]
    fn the_sdk_requirement_is_the_semver_compatible_range() {
        let mut parts = SDK_VERSION.split('.');
        let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
        let expected = if major == "0" {
            format!("0.{minor}")
        } else {
            major.to_owned()
        };
        assert_eq!(sdk_requirement(), expected);
        assert_eq!(IMPORT_MODULE, format!("runtime_v{ABI_VERSION}"));
        assert!(CALL_PREFIX.starts_with(&format!("__runtime_v{ABI_VERSION}_")));
    }

    #[test]
    fn types_round_trip_and_check() {
        let t = Type::object([
            ("user", Type::String),
            ("n", Type::Optional(Box::new(Type::Int64))),
            ("tags", Type::Array(Box::new(Type::String))),
        ]);
        assert_eq!(Type::from_value(&t.to_value()).unwrap(), t);
        let ok = Value::Object(crate::obj! { "user" => "ada", "tags" => Value::Array(vec![]) });
        t.check(&ok).unwrap();
        let bad = Value::Object(crate::obj! { "user" => 1i64, "tags" => Value::Array(vec![]) });
        assert_eq!(t.check(&bad).unwrap_err().path, "$.user");
        let extra = Value::Object(
            crate::obj! { "user" => "a", "tags" => Value::Array(vec![]), "x" => 1i64 },
        );
        assert!(t
            .check(&extra)
            .unwrap_err()
            .message
            .contains("unexpected field \"x\""));
    }

    /// A document's fields are checked where they lie (`check_object`): every answer, error
    /// path and message included, is the one `check` gives the same object as a value.
    #[test]
    fn checking_fields_in_place_answers_as_checking_the_object() {
        let doc = Type::object([
            ("user", Type::String),
            ("n", Type::Optional(Box::new(Type::Int64))),
        ]);
        let types = [
            doc.clone(),
            Type::Any,
            Type::Optional(Box::new(doc.clone())),
            Type::Record(Box::new(Type::Any)),
            Type::Record(Box::new(Type::Int64)),
            Type::Union(vec![Type::String, doc.clone()]),
            Type::Union(vec![Type::String, Type::Int64]),
            Type::String,
        ];
        let objects = [
            crate::obj! { "user" => "ada" },
            crate::obj! { "user" => "ada", "n" => 2i64 },
            crate::obj! { "user" => 1i64 },
            crate::obj! { "n" => 2i64 },
            crate::obj! { "user" => "ada", "extra" => true },
            crate::Object::new(),
        ];
        let mut failures = 0;
        for t in &types {
            for fields in &objects {
                let whole = t.check(&Value::Object(fields.clone()));
                assert_eq!(t.check_object(fields), whole, "{t:?} on {fields:?}");
                failures += whole.is_err() as usize;
            }
        }
        assert!(failures > 10, "the table checks failures too: {failures}");
    }
}
