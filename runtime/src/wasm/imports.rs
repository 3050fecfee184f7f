//! The host side of every import of `ferrovex_model::abi`. Each checks every pointer and length
//! before touching guest memory, answers expected failures with a status code, and traps
//! (returns an error carrying a [`Violation`]) on everything else.

use super::error::Violation;
use super::state::{CallState, Entry};
use crate::store::{Document, IndexRange, Order, StoreError};
use ferrovex_model::abi::{
    import, output, status, IMPORT_MODULE, MAX_LOG_LINES, MAX_LOG_LINE_BYTES,
};
use ferrovex_model::abi::{AppSchema, FunctionKind};
use ferrovex_model::json::bad_field_name;
use ferrovex_model::limits::{
    MAX_ARGS_OR_RESULT_BYTES, MAX_DOCUMENTS_READ, MAX_IMPORT_REQUEST_BYTES,
    MAX_JOBS_SCHEDULED_PER_CALL, MAX_SCHEDULED_ARGS_BYTES,
};
use ferrovex_model::{binary, DocumentId, Object, Value};
use std::ops::Range;
use wasmtime::{Caller, Engine, Linker};

type Ctx<'a> = Caller<'a, CallState>;

fn trap(v: Violation) -> wasmtime::Error {
    wasmtime::Error::new(v)
}

fn guest_range(
    import: &'static str,
    ptr: u32,
    len: u32,
    memory_size: usize,
) -> Result<Range<usize>, Violation> {
    let start = ptr as usize;
    match start.checked_add(len as usize) {
        Some(end) if end <= memory_size => Ok(start..end),
        _ => Err(Violation::OutOfBounds {
            import,
            ptr,
            len,
            memory_size,
        }),
    }
}

/// Copies `len` bytes (at most `keep`) from guest memory after checking the whole range.
fn read_guest(
    caller: &Ctx,
    import: &'static str,
    ptr: u32,
    len: u32,
    keep: usize,
) -> Result<Vec<u8>, Violation> {
    let memory = caller.data().memory.ok_or(Violation::NoMemory { import })?;
    let data = memory.data(caller);
    let range = guest_range(import, ptr, len, data.len())?;
    let end = range.end.min(range.start.saturating_add(keep));
    Ok(data[range.start..end].to_vec())
}

fn write_guest(
    caller: &mut Ctx,
    import: &'static str,
    ptr: u32,
    bytes: &[u8],
) -> Result<(), Violation> {
    let memory = caller.data().memory.ok_or(Violation::NoMemory { import })?;
    let data = memory.data_mut(&mut *caller);
    let range = guest_range(import, ptr, bytes.len() as u32, data.len())?;
    data[range].copy_from_slice(bytes);
    Ok(())
}

fn check_writable(caller: &Ctx, import: &'static str, ptr: u32, len: u32) -> Result<(), Violation> {
    let memory = caller.data().memory.ok_or(Violation::NoMemory { import })?;
    guest_range(import, ptr, len, memory.data_size(caller)).map(|_| ())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn cut(import: &'static str, caller: &Ctx, ptr: u32, len: u32) -> Result<String, Violation> {
    let line = text(&read_guest(caller, import, ptr, len, MAX_LOG_LINE_BYTES)?);
    if len as usize > MAX_LOG_LINE_BYTES {
        return Ok(format!(
            "{line} [cut: {} of {len} bytes left out, MAX_LOG_LINE_BYTES]",
            len as usize - MAX_LOG_LINE_BYTES
        ));
    }
    Ok(line)
}

/// Every import, once per engine.
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(
        IMPORT_MODULE,
        import::READ_HANDLE,
        |mut caller: Ctx, handle: u32, ptr: u32, len: u32| {
            check_writable(&caller, import::READ_HANDLE, ptr, len).map_err(trap)?;
            let bytes = caller.data_mut().handles.take(handle, len).map_err(trap)?;
            write_guest(&mut caller, import::READ_HANDLE, ptr, &bytes).map_err(trap)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::OUTPUT,
        |mut caller: Ctx, kind: i32, ptr: u32, len: u32| {
            set_output(&mut caller, kind, ptr, len).map_err(trap)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::LOG,
        |mut caller: Ctx, ptr: u32, len: u32| {
            if caller.data().logs.len() >= MAX_LOG_LINES {
                return Err(trap(Violation::TooManyLogLines {
                    limit: "MAX_LOG_LINES",
                    max: MAX_LOG_LINES,
                }));
            }
            let line = cut(import::LOG, &caller, ptr, len).map_err(trap)?;
            caller.data_mut().logs.push(line);
            Ok(())
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::PANIC,
        |mut caller: Ctx, ptr: u32, len: u32| {
            let message = cut(import::PANIC, &caller, ptr, len).map_err(trap)?;
            caller.data_mut().panic_message = Some(message);
            Ok(())
        },
    )?;
    linker.func_wrap(IMPORT_MODULE, import::NOW_MS, |caller: Ctx| {
        match caller.data().entry {
            // An action is not deterministic: its clock is the real one.
            Entry::Action => wall_clock_ms(),
            _ => caller.data().now_ms,
        }
    })?;
    linker.func_wrap(IMPORT_MODULE, import::RANDOM_SEED, |caller: Ctx| {
        match caller.data().entry {
            // An action's randomness is the operating system's, fresh at each read.
            Entry::Action => getrandom::u64().unwrap_or(caller.data().seed) as i64,
            _ => caller.data().seed as i64,
        }
    })?;
    linker.func_wrap(
        IMPORT_MODULE,
        import::AUTH_IDENTITY,
        |mut caller: Ctx, out: u32| {
            check_writable(&caller, import::AUTH_IDENTITY, out, 8).map_err(trap)?;
            let state = caller.data_mut();
            let bytes = match &state.identity {
                Some(identity) => identity.encoded().to_vec(),
                None => binary::encode(&Value::Null),
            };
            let (handle, len) = state
                .handles
                .insert(import::AUTH_IDENTITY, bytes)
                .map_err(trap)?;
            write_handle(&mut caller, import::AUTH_IDENTITY, out, handle, len).map_err(trap)
        },
    )?;
    db_import(&mut linker, import::DB_GET, db_get)?;
    db_import(&mut linker, import::DB_INSERT, db_insert)?;
    db_import(&mut linker, import::DB_PATCH, db_patch)?;
    db_import(&mut linker, import::DB_REPLACE, db_replace)?;
    db_import(&mut linker, import::DB_DELETE, db_delete)?;
    db_import(&mut linker, import::DB_SCAN, db_scan)?;
    request_import(&mut linker, import::SCHEDULE, false, schedule)?;
    request_import(&mut linker, import::CANCEL_JOB, false, cancel_job)?;
    request_import(&mut linker, import::RUN_FUNCTION, false, run_function)?;
    request_import(&mut linker, import::FETCH, false, fetch)?;
    request_import(&mut linker, import::ENV_VAR, false, env_var)?;
    Ok(linker)
}

fn wall_clock_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Writes `[handle: u32 LE, len: u32 LE]` at the guest's `out`.
fn write_handle(
    caller: &mut Ctx,
    import: &'static str,
    out: u32,
    handle: u32,
    len: u32,
) -> Result<(), Violation> {
    let mut out_bytes = [0u8; 8];
    out_bytes[..4].copy_from_slice(&handle.to_le_bytes());
    out_bytes[4..].copy_from_slice(&len.to_le_bytes());
    write_guest(caller, import, out, &out_bytes)
}

fn set_output(caller: &mut Ctx, kind: i32, ptr: u32, len: u32) -> Result<(), Violation> {
    let state = caller.data();
    if state.output.is_some() {
        return Err(Violation::SecondOutput);
    }
    let expected = match state.entry {
        Entry::Describe => kind == output::DESCRIPTION,
        Entry::Schema => kind == output::SCHEMA,
        Entry::AuthConfig => kind == output::AUTH_CONFIG,
        Entry::Crons => kind == output::CRONS,
        Entry::Query | Entry::Mutation | Entry::Action => {
            kind == output::RESULT || kind == output::ERROR
        }
    };
    if !expected {
        return Err(Violation::UnexpectedOutput {
            kind,
            entry: state.entry.name(),
        });
    }
    if len as usize > MAX_ARGS_OR_RESULT_BYTES {
        return Err(Violation::OutputTooLarge {
            limit: "MAX_ARGS_OR_RESULT_BYTES",
            max: MAX_ARGS_OR_RESULT_BYTES,
            given: len,
        });
    }
    let bytes = read_guest(caller, import::OUTPUT, ptr, len, usize::MAX)?;
    let value = binary::decode(&bytes).map_err(|e| Violation::MalformedRequest {
        import: import::OUTPUT,
        reason: e.to_string(),
    })?;
    // What reaches a client must decode there as it is: no field name the protocol forbids.
    if kind == output::RESULT || kind == output::ERROR {
        if let Some((path, reason)) = bad_field_name(&value) {
            return Err(Violation::InvalidOutput { path, reason });
        }
    }
    caller.data_mut().output = Some((kind, value));
    Ok(())
}

/// A `db_*` failure: an expected one becomes a status code and message, a violation traps.
enum DbFailure {
    Expected(i32, String),
    /// `FAILED`, with the value the guest receives (a message, or `{message, data?}`).
    Failed(Value),
    Violation(Violation),
}

impl From<StoreError> for DbFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => DbFailure::Expected(status::NOT_FOUND, e.to_string()),
            StoreError::InvalidDocument { .. }
            | StoreError::InvalidName { .. }
            | StoreError::UnknownTableOfId { .. }
            | StoreError::UnknownTable { .. }
            | StoreError::UnknownIndex { .. }
            | StoreError::InvalidId(_)
            | StoreError::InvalidRange { .. }
            | StoreError::InvalidCursor { .. } => {
                DbFailure::Expected(status::INVALID, e.to_string())
            }
            StoreError::ReadOnly { operation, .. } => {
                DbFailure::Violation(Violation::WriteFromQuery {
                    import: match operation {
                        "insert" => import::DB_INSERT,
                        "patch" => import::DB_PATCH,
                        "replace" => import::DB_REPLACE,
                        _ => import::DB_DELETE,
                    },
                })
            }
            other => DbFailure::Violation(Violation::Store(other)),
        }
    }
}

impl From<Violation> for DbFailure {
    fn from(v: Violation) -> Self {
        DbFailure::Violation(v)
    }
}

type DbOp = fn(&mut CallState, &'static str, Object) -> Result<Value, DbFailure>;

fn db_import(linker: &mut Linker<CallState>, name: &'static str, op: DbOp) -> wasmtime::Result<()> {
    request_import(linker, name, true, op)
}

/// An import that takes a request object and answers with a status code and a value behind a
/// handle; `needs_database` ones trap when the entry point has no transaction.
fn request_import(
    linker: &mut Linker<CallState>,
    name: &'static str,
    needs_database: bool,
    op: DbOp,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        name,
        move |mut caller: Ctx, ptr: u32, len: u32, out: u32| {
            // Checked before anything is copied: a request's size bounds the host's work on it.
            if len as usize > MAX_IMPORT_REQUEST_BYTES {
                return Err(trap(Violation::RequestTooLarge {
                    import: name,
                    given: len,
                }));
            }
            let bytes = read_guest(&caller, name, ptr, len, usize::MAX).map_err(trap)?;
            check_writable(&caller, name, out, 8).map_err(trap)?;
            let request = match binary::decode(&bytes) {
                Ok(Value::Object(fields)) => fields,
                Ok(other) => {
                    return Err(trap(malformed(
                        name,
                        format!("the request is {}, not an object", other.type_name()),
                    )))
                }
                Err(e) => return Err(trap(malformed(name, e.to_string()))),
            };
            let state = caller.data_mut();
            if needs_database && state.tx.is_none() {
                return Err(trap(match state.entry {
                    Entry::Action => Violation::WrongEntry {
                        import: name,
                        entry: state.entry.name(),
                        remedy: "an action reaches the database through ctx.run_query and ctx.run_mutation",
                    },
                    _ => malformed(name, format!("{} has no database", state.entry.name())),
                }));
            }
            let (code, response) = match op(state, name, request) {
                Ok(value) => (status::OK, value),
                Err(DbFailure::Expected(code, message)) => (code, Value::String(message)),
                Err(DbFailure::Failed(value)) => (status::FAILED, value),
                Err(DbFailure::Violation(v)) => return Err(trap(v)),
            };
            let (handle, len) = state
                .handles
                .insert(name, binary::encode(&response))
                .map_err(trap)?;
            write_handle(&mut caller, name, out, handle, len).map_err(trap)?;
            Ok(code)
        },
    )?;
    Ok(())
}

fn malformed(import: &'static str, reason: String) -> Violation {
    Violation::MalformedRequest { import, reason }
}

fn field<'a>(
    request: &'a Object,
    import: &'static str,
    name: &str,
) -> Result<&'a Value, Violation> {
    request
        .get(name)
        .ok_or_else(|| malformed(import, format!("missing field {name:?}")))
}

fn string_field<'a>(
    request: &'a Object,
    import: &'static str,
    name: &str,
) -> Result<&'a str, Violation> {
    field(request, import, name)?
        .as_str()
        .ok_or_else(|| malformed(import, format!("field {name:?} must be a string")))
}

fn object_field(
    request: &mut Object,
    import: &'static str,
    name: &str,
) -> Result<Object, Violation> {
    match request.remove(name) {
        Some(Value::Object(o)) => Ok(o),
        _ => Err(malformed(
            import,
            format!("field {name:?} must be an object"),
        )),
    }
}

fn id_field(request: &Object, import: &'static str) -> Result<DocumentId, DbFailure> {
    let text = string_field(request, import, "id")?;
    DocumentId::parse(text).map_err(|e| DbFailure::Expected(status::INVALID, e.to_string()))
}

fn tx(state: &mut CallState) -> &mut crate::store::Transaction {
    state.tx.as_mut().expect("checked by db_import")
}

fn writable(state: &CallState, import: &'static str) -> Result<(), Violation> {
    if state.entry == Entry::Mutation {
        Ok(())
    } else {
        Err(Violation::WriteFromQuery { import })
    }
}

/// System tables are the host's to write: a function reads them, and changes them only
/// through what they stand for (`ctx.scheduler`).
fn not_system(table: &str) -> Result<(), DbFailure> {
    if crate::store::catalog::is_system_table(table) {
        return Err(DbFailure::Expected(
            status::INVALID,
            format!("{table} is a system table: functions read it, the host writes it (schedule and cancel jobs with ctx.scheduler)"),
        ));
    }
    Ok(())
}

/// The table an id belongs to, by name, when the schema needs it.
fn table_of(state: &CallState, id: &DocumentId) -> Option<String> {
    // The transaction knows its own new tables too.
    state.tx.as_ref()?.table_of_id(id).map(|t| t.name.clone())
}

/// Checks user fields against the table's declared type, if the schema declares the table.
fn check_schema(schema: &AppSchema, table: &str, fields: &Object) -> Result<(), DbFailure> {
    schema
        .check_document(table, fields)
        .map_err(|message| DbFailure::Expected(status::INVALID, message))
}

fn db_get(
    state: &mut CallState,
    import: &'static str,
    request: Object,
) -> Result<Value, DbFailure> {
    let id = id_field(&request, import)?;
    Ok(tx(state)
        .get(id)?
        .map(document_value)
        .unwrap_or(Value::Null))
}

fn db_insert(
    state: &mut CallState,
    import: &'static str,
    mut request: Object,
) -> Result<Value, DbFailure> {
    writable(state, import)?;
    let table = string_field(&request, import, "table")?.to_owned();
    not_system(&table)?;
    let fields = object_field(&mut request, import, "fields")?;
    check_schema(&state.schema, &table, &fields)?;
    let id = tx(state).insert(&table, fields)?;
    Ok(Value::String(id.to_string()))
}

fn db_patch(
    state: &mut CallState,
    import: &'static str,
    mut request: Object,
) -> Result<Value, DbFailure> {
    writable(state, import)?;
    let id = id_field(&request, import)?;
    if let Some(table) = table_of(state, &id) {
        not_system(&table)?;
    }
    let set = object_field(&mut request, import, "set")?;
    let remove = match request.get("remove") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| malformed(import, "\"remove\" holds field names".into()))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None | Some(Value::Null) => vec![],
        Some(_) => return Err(malformed(import, "\"remove\" must be an array".into()).into()),
    };
    let mut patch: crate::store::Patch = set.into_iter().map(|(k, v)| (k, Some(v))).collect();
    patch.extend(remove.into_iter().map(|k| (k, None)));
    // The schema sees the merged document inside the patch, which reads it once.
    let schema = state.schema.clone();
    tx(state).patch_checked(id, patch, |table, merged| {
        check_schema(&schema, table, merged)
    })?;
    Ok(Value::Null)
}

fn db_replace(
    state: &mut CallState,
    import: &'static str,
    mut request: Object,
) -> Result<Value, DbFailure> {
    writable(state, import)?;
    let id = id_field(&request, import)?;
    if let Some(table) = table_of(state, &id) {
        not_system(&table)?;
    }
    let fields = object_field(&mut request, import, "fields")?;
    if let Some(table) = (!state.schema.tables.is_empty())
        .then(|| table_of(state, &id))
        .flatten()
    {
        check_schema(&state.schema, &table, &fields)?;
    }
    tx(state).replace(id, fields)?;
    Ok(Value::Null)
}

fn db_delete(
    state: &mut CallState,
    import: &'static str,
    request: Object,
) -> Result<Value, DbFailure> {
    writable(state, import)?;
    let id = id_field(&request, import)?;
    if let Some(table) = table_of(state, &id) {
        not_system(&table)?;
    }
    tx(state).delete(id)?;
    Ok(Value::Null)
}

/// `[field, value]` or `[field, value, inclusive]`.
fn range_part(
    import: &'static str,
    value: &Value,
    with_flag: bool,
) -> Result<(String, Value, bool), Violation> {
    let bad = || {
        malformed(
            import,
            format!(
                "range parts are [field, value{}]",
                if with_flag { ", inclusive" } else { "" }
            ),
        )
    };
    let Value::Array(items) = value else {
        return Err(bad());
    };
    match (items.as_slice(), with_flag) {
        ([Value::String(f), v], false) => Ok((f.clone(), v.clone(), true)),
        ([Value::String(f), v, Value::Boolean(inclusive)], true) => {
            Ok((f.clone(), v.clone(), *inclusive))
        }
        _ => Err(bad()),
    }
}

/// The fields of an index the host knows: the system indexes and the schema's.
fn known_index_fields(state: &CallState, table: &str, index: &str) -> Option<Vec<String>> {
    match index {
        crate::store::BY_CREATION_TIME => Some(vec!["_creationTime".into()]),
        crate::store::BY_ID => Some(vec![]),
        _ => state
            .schema
            .table(table)?
            .indexes
            .iter()
            .find(|(name, _)| name == index)
            .map(|(_, f)| f.clone()),
    }
}

fn db_scan(
    state: &mut CallState,
    import: &'static str,
    request: Object,
) -> Result<Value, DbFailure> {
    let table = string_field(&request, import, "table")?.to_owned();
    let index = string_field(&request, import, "index")?.to_owned();
    let mut eq_fields = Vec::new();
    let mut range = IndexRange::all();
    match field(&request, import, "eq")? {
        Value::Array(parts) => {
            for part in parts {
                let (f, v, _) = range_part(import, part, false)?;
                eq_fields.push(f);
                range.eq.push(v);
            }
        }
        _ => return Err(malformed(import, "\"eq\" must be an array".into()).into()),
    }
    let mut bound_fields = Vec::new();
    for (name, slot) in [("lower", &mut range.lower), ("upper", &mut range.upper)] {
        match request.get(name) {
            None | Some(Value::Null) => {}
            Some(part) => {
                let (f, v, inclusive) = range_part(import, part, true)?;
                bound_fields.push(f);
                *slot = Some((v, inclusive));
            }
        }
    }
    if let Some(fields) = known_index_fields(state, &table, &index) {
        let invalid = |reason: String| {
            DbFailure::Expected(
                status::INVALID,
                format!("invalid range on index {table}.{index}: {reason}"),
            )
        };
        for (i, f) in eq_fields.iter().enumerate() {
            if fields.get(i) != Some(f) {
                return Err(invalid(format!(
                    "equality #{} names field {f:?}, but the index's fields are {fields:?} in that order",
                    i + 1
                )));
            }
        }
        if bound_fields
            .iter()
            .any(|f| fields.get(eq_fields.len()) != Some(f))
        {
            return Err(invalid(format!(
                "bounds must name the field after the equalities ({:?}), got {bound_fields:?}",
                fields.get(eq_fields.len())
            )));
        }
    }
    let order = match string_field(&request, import, "order")? {
        "asc" => Order::Asc,
        "desc" => Order::Desc,
        other => {
            return Err(malformed(
                import,
                format!("order must be \"asc\" or \"desc\", got {other:?}"),
            )
            .into())
        }
    };
    let limit = match field(&request, import, "limit")? {
        Value::Int64(n) if *n >= 0 => (*n as u64).min(MAX_DOCUMENTS_READ as u64 + 1) as usize,
        _ => return Err(malformed(import, "\"limit\" must be a non-negative int64".into()).into()),
    };
    let bytes_field = |name: &str| match request.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bytes(c)) => Ok(Some(c.clone())),
        Some(_) => Err(malformed(import, format!("{name:?} must be bytes or null"))),
    };
    let cursor = bytes_field("cursor")?;
    let paginate = matches!(request.get("paginate"), Some(Value::Boolean(true)));
    // Where a page ends: an explicit end cursor, else (for the k-th page of the call) the
    // end the same query's page had last time, which the caller passed back in its journal.
    // The empty cursor is the end of the range.
    let end = match bytes_field("endCursor")? {
        Some(end) => Some(end),
        None if paginate => state.page_ends_in.get(state.page_ends_out.len()).cloned(),
        None => None,
    };
    let page = match &end {
        // After the end of the range (the last page's continue cursor): nothing, ever.
        _ if cursor.as_deref() == Some(&[]) => crate::store::Page {
            documents: Vec::new(),
            cursor: None,
            is_done: true,
            split_cursor: None,
        },
        Some(end) if end.is_empty() => {
            tx(state).scan(&table, &index, &range, order, usize::MAX, cursor.as_deref())?
        }
        Some(end) => tx(state).scan_until(
            &table,
            &index,
            &range,
            order,
            usize::MAX,
            cursor.as_deref(),
            Some(end),
        )?,
        None => tx(state).scan(&table, &index, &range, order, limit, cursor.as_deref())?,
    };
    let mut response = Object::new();
    response.insert(
        "documents".into(),
        Value::Array(page.documents.into_iter().map(document_value).collect()),
    );
    if paginate {
        // A page always has a continue cursor: its end, or the empty cursor once the range is
        // read to its end.
        let (continue_cursor, is_done) = match end {
            Some(end) => {
                let done = end.is_empty();
                (end, done)
            }
            None => match page.cursor {
                Some(last) => (last, false),
                None => (Vec::new(), true),
            },
        };
        state.page_ends_out.push(continue_cursor.clone());
        response.insert("cursor".into(), Value::Bytes(continue_cursor));
        response.insert("isDone".into(), Value::Boolean(is_done));
        response.insert(
            "splitCursor".into(),
            page.split_cursor.map(Value::Bytes).unwrap_or(Value::Null),
        );
    } else {
        response.insert(
            "cursor".into(),
            page.cursor.map(Value::Bytes).unwrap_or(Value::Null),
        );
        response.insert("isDone".into(), Value::Boolean(page.is_done));
    }
    Ok(Value::Object(response))
}

/// A document as the guest receives it, system fields included; moves rather than copies.
fn document_value(document: Document) -> Value {
    let mut fields = document.fields;
    fields.insert("_id".into(), Value::String(document.id.to_string()));
    fields.insert(
        "_creationTime".into(),
        Value::Float64(document.creation_time),
    );
    Value::Object(fields)
}

/// The entry points that may call `import`, else the violation that says what to use.
fn only_in(
    state: &CallState,
    import: &'static str,
    allowed: &[Entry],
    remedy: &'static str,
) -> Result<(), Violation> {
    if allowed.contains(&state.entry) {
        Ok(())
    } else if state.entry == Entry::Query && allowed.contains(&Entry::Mutation) {
        Err(Violation::WriteFromQuery { import })
    } else {
        Err(Violation::WrongEntry {
            import,
            entry: state.entry.name(),
            remedy,
        })
    }
}

fn invalid(message: String) -> DbFailure {
    DbFailure::Expected(status::INVALID, message)
}

fn schedule(
    state: &mut CallState,
    import: &'static str,
    mut request: Object,
) -> Result<Value, DbFailure> {
    only_in(
        state,
        import,
        &[Entry::Mutation, Entry::Action],
        "schedule from a mutation or an action",
    )?;
    let path = string_field(&request, import, "path")?.to_owned();
    let args = match request.remove("args") {
        Some(args @ Value::Object(_)) => args,
        _ => return Err(malformed(import, "\"args\" must be an object".into()).into()),
    };
    let at = match field(&request, import, "at")? {
        Value::Float64(at) if at.is_finite() => *at,
        _ => return Err(malformed(import, "\"at\" must be a finite float64".into()).into()),
    };
    if state.jobs_scheduled >= MAX_JOBS_SCHEDULED_PER_CALL {
        return Err(invalid(format!(
            "schedule {path}: more than MAX_JOBS_SCHEDULED_PER_CALL ({MAX_JOBS_SCHEDULED_PER_CALL}) jobs scheduled by one call"
        )));
    }
    let Some(function) = state.functions.get(&path) else {
        return Err(invalid(format!(
            "schedule {path}: no such function; the deployed functions are: {}",
            state
                .functions
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let kind = function.description.kind;
    if !matches!(kind, FunctionKind::Mutation | FunctionKind::Action) {
        return Err(invalid(format!(
            "schedule {path}: it is a {kind}; only mutations and actions can be scheduled"
        )));
    }
    function.description.args.check(&args).map_err(|e| {
        invalid(format!(
            "schedule {path}: invalid arguments: {e} (expected {})",
            function.description.args.describe()
        ))
    })?;
    let bytes = binary::encode(&args);
    if bytes.len() > MAX_SCHEDULED_ARGS_BYTES {
        return Err(invalid(format!(
            "schedule {path}: the arguments exceed MAX_SCHEDULED_ARGS_BYTES ({MAX_SCHEDULED_ARGS_BYTES} bytes): got {} bytes",
            bytes.len()
        )));
    }
    state.jobs_scheduled += 1;
    let id = match state.tx.as_mut() {
        // Part of the mutation's transaction: the job exists only if the mutation commits.
        Some(tx) => crate::jobs::schedule(tx, &path, bytes, at, None)?,
        // An action's schedule is a commit of its own.
        None => {
            let store = state.store.as_ref().expect("an action has its store");
            store
                .run_mutation(|tx| crate::jobs::schedule(tx, &path, bytes.clone(), at, None))?
                .value
        }
    };
    Ok(Value::String(id.to_string()))
}

fn cancel_job(
    state: &mut CallState,
    import: &'static str,
    request: Object,
) -> Result<Value, DbFailure> {
    only_in(
        state,
        import,
        &[Entry::Mutation, Entry::Action],
        "cancel from a mutation or an action",
    )?;
    let id = string_field(&request, import, "id")?.to_owned();
    let outcome = match state.tx.as_mut() {
        Some(tx) => {
            let now = tx.now_ms();
            crate::jobs::cancel(tx, &id, now)
        }
        None => {
            let store = state.store.as_ref().expect("an action has its store");
            let now = wall_clock_ms();
            store
                .run_mutation(|tx| crate::jobs::cancel(tx, &id, now).map_err(CancelAbort))
                .map(|_| ())
                .map_err(|CancelAbort(e)| e)
        }
    };
    match outcome {
        Ok(()) => Ok(Value::Null),
        Err(crate::jobs::CancelError::NotAJob(message)) => Err(invalid(message)),
        Err(crate::jobs::CancelError::Store(e)) => Err(e.into()),
    }
}

/// A cancel's error carried through `Store::run_mutation`.
struct CancelAbort(crate::jobs::CancelError);

impl From<crate::store::StoreError> for CancelAbort {
    fn from(e: crate::store::StoreError) -> Self {
        CancelAbort(crate::jobs::CancelError::Store(e))
    }
}

const ACTION_ONLY: &str = "only actions (#[action]) reach outside; schedule one with ctx.scheduler";

fn services(state: &CallState) -> std::sync::Arc<dyn super::ActionServices> {
    state
        .services
        .clone()
        .expect("an action runs with its services")
}

fn run_function(
    state: &mut CallState,
    import: &'static str,
    mut request: Object,
) -> Result<Value, DbFailure> {
    only_in(state, import, &[Entry::Action], ACTION_ONLY)?;
    let kind = match string_field(&request, import, "kind")? {
        "query" => FunctionKind::Query,
        "mutation" => FunctionKind::Mutation,
        "action" => FunctionKind::Action,
        other => {
            return Err(malformed(
                import,
                format!("kind must be \"query\", \"mutation\" or \"action\", got {other:?}"),
            )
            .into())
        }
    };
    let path = string_field(&request, import, "path")?.to_owned();
    let args = request.remove("args").unwrap_or(Value::Null);
    match services(state).run_function(kind, &path, &args) {
        Ok(value) => Ok(value),
        Err(failure) => {
            use super::CallError;
            match failure.error {
                CallError::UnknownFunction { .. }
                | CallError::WrongKind { .. }
                | CallError::InvalidArguments(_) => Err(invalid(failure.to_string())),
                CallError::User { message, data } => {
                    let mut error = Object::new();
                    error.insert("message".into(), Value::String(message));
                    if let Some(data) = data {
                        error.insert("data".into(), data);
                    }
                    Err(DbFailure::Failed(Value::Object(error)))
                }
                _ => {
                    let mut error = Object::new();
                    error.insert("message".into(), Value::String(failure.to_string()));
                    Err(DbFailure::Failed(Value::Object(error)))
                }
            }
        }
    }
}

fn fetch(
    state: &mut CallState,
    import: &'static str,
    mut request: Object,
) -> Result<Value, DbFailure> {
    only_in(state, import, &[Entry::Action], ACTION_ONLY)?;
    let method = string_field(&request, import, "method")?.to_owned();
    let url = string_field(&request, import, "url")?.to_owned();
    let headers = match request.remove("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(pairs)) => pairs
            .into_iter()
            .map(|pair| match pair {
                Value::Array(mut kv) if kv.len() == 2 => match (kv.pop(), kv.pop()) {
                    (Some(Value::String(v)), Some(Value::String(k))) => Ok((k, v)),
                    _ => Err(malformed(
                        import,
                        "headers are [name, value] strings".into(),
                    )),
                },
                _ => Err(malformed(
                    import,
                    "headers are [name, value] strings".into(),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(malformed(import, "\"headers\" must be an array".into()).into()),
    };
    let body = match request.remove("body") {
        None | Some(Value::Null) => None,
        Some(Value::Bytes(b)) => Some(b),
        Some(Value::String(s)) => Some(s.into_bytes()),
        Some(_) => return Err(malformed(import, "\"body\" must be bytes or null".into()).into()),
    };
    let timeout = match request.get("timeoutMs") {
        None | Some(Value::Null) => None,
        Some(Value::Int64(ms)) if *ms > 0 => Some(std::time::Duration::from_millis(*ms as u64)),
        Some(_) => {
            return Err(malformed(import, "\"timeoutMs\" must be a positive int64".into()).into())
        }
    };
    let request = crate::fetch::FetchRequest {
        method,
        url,
        headers,
        body,
        timeout,
    };
    match services(state).fetch(request) {
        Ok(response) => {
            let mut o = Object::new();
            o.insert("status".into(), Value::Int64(response.status as i64));
            o.insert(
                "headers".into(),
                Value::Array(
                    response
                        .headers
                        .into_iter()
                        .map(|(k, v)| Value::Array(vec![Value::String(k), Value::String(v)]))
                        .collect(),
                ),
            );
            o.insert("body".into(), Value::Bytes(response.body));
            o.insert("url".into(), Value::String(response.url));
            Ok(Value::Object(o))
        }
        Err(e) if e.is_invalid() => Err(invalid(e.to_string())),
        Err(e) => Err(DbFailure::Failed(Value::String(e.to_string()))),
    }
}

fn env_var(
    state: &mut CallState,
    import: &'static str,
    request: Object,
) -> Result<Value, DbFailure> {
    only_in(state, import, &[Entry::Action], ACTION_ONLY)?;
    let name = string_field(&request, import, "name")?;
    Ok(services(state)
        .env_var(name)
        .map(Value::String)
        .unwrap_or(Value::Null))
}
