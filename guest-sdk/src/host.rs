//! Safe wrappers over the raw imports: every unsafe call of the SDK is here.

use crate::error::{DbError, DbErrorKind};
use crate::sys;
use ferrovex_model::abi::status;
use ferrovex_model::{binary, Value};

/// Reads the bytes behind a host handle into a buffer the guest owns.
pub(crate) fn read_handle(handle: u32, len: u32) -> Vec<u8> {
    let mut buffer = vec![0u8; len as usize];
    // SAFETY: `buffer` is `len` writable bytes; the host writes exactly `len` bytes or traps.
    unsafe { sys::read_handle(handle, buffer.as_mut_ptr(), len) };
    buffer
}

pub(crate) fn output_value(kind: i32, value: &Value) {
    output_bytes(kind, &binary::encode(value))
}

/// Outputs a value already in binary form.
pub(crate) fn output_bytes(kind: i32, bytes: &[u8]) {
    // SAFETY: the host only reads `bytes.len()` bytes from a live buffer.
    unsafe { sys::output(kind, bytes.as_ptr(), bytes.len() as u32) };
}

pub(crate) fn log_line(line: &str) {
    // SAFETY: the host only reads `line.len()` bytes from a live string.
    unsafe { sys::log(line.as_ptr(), line.len() as u32) };
}

pub(crate) fn now_ms() -> f64 {
    // SAFETY: no memory is shared.
    unsafe { sys::now_ms() }
}

pub(crate) fn random_seed() -> u64 {
    // SAFETY: no memory is shared.
    unsafe { sys::random_seed() as u64 }
}

/// The caller's identity, or `None` for a call without a signed-in user.
pub(crate) fn auth_identity() -> Option<ferrovex_model::identity::UserIdentity> {
    let mut out = [0u32; 2];
    // SAFETY: the host writes 8 bytes to `out` and reads nothing of the guest's memory.
    unsafe { sys::auth_identity(out.as_mut_ptr()) };
    let bytes = read_handle(out[0], out[1]);
    match binary::decode(&bytes) {
        Ok(Value::Null) => None,
        Ok(value) => Some(
            ferrovex_model::identity::UserIdentity::from_value(value)
                .unwrap_or_else(|e| panic!("the host sent a malformed identity: {e}")),
        ),
        Err(e) => panic!("the host sent a malformed identity: {e}"),
    }
}

/// Hands panic messages to the host before the panic aborts (wasm32 panics abort, which traps).
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info.to_string();
        // SAFETY: the host only reads `message.len()` bytes from a live string.
        unsafe { sys::panic(message.as_ptr(), message.len() as u32) };
    }));
}

pub(crate) type DbImport = unsafe extern "C" fn(*const u8, u32, *mut u32) -> i32;

/// Calls a `db_*` import with a request value and decodes its response.
pub(crate) fn db_call(
    operation: &'static str,
    import: DbImport,
    request: &Value,
) -> Result<Value, DbError> {
    let bytes = binary::encode(request);
    let mut out = [0u32; 2];
    // SAFETY: the host reads `bytes.len()` bytes of a live buffer and writes 8 bytes to `out`.
    let code = unsafe { import(bytes.as_ptr(), bytes.len() as u32, out.as_mut_ptr()) };
    let response = read_handle(out[0], out[1]);
    let value = binary::decode(&response).map_err(|e| DbError {
        operation,
        kind: DbErrorKind::Invalid,
        message: format!("the host sent a malformed response: {e}"),
    })?;
    match code {
        status::OK => Ok(value),
        code => Err(DbError {
            operation,
            kind: if code == status::NOT_FOUND {
                DbErrorKind::NotFound
            } else {
                DbErrorKind::Invalid
            },
            message: value.as_str().unwrap_or("(no message)").to_owned(),
        }),
    }
}

/// Calls a request import (`schedule`, `run_function`, `fetch`...): its value, or the
/// nonzero status and what came with it (a message, or `{message, data?}`).
pub(crate) fn request(
    name: &'static str,
    import: DbImport,
    request: ferrovex_model::Object,
) -> Result<Value, (i32, Value)> {
    let bytes = binary::encode(&Value::Object(request));
    let mut out = [0u32; 2];
    // SAFETY: the host reads `bytes.len()` bytes of a live buffer and writes 8 bytes to `out`.
    let code = unsafe { import(bytes.as_ptr(), bytes.len() as u32, out.as_mut_ptr()) };
    let response = read_handle(out[0], out[1]);
    let value = binary::decode(&response)
        .unwrap_or_else(|e| panic!("{name}: the host sent a malformed response: {e}"));
    match code {
        status::OK => Ok(value),
        code => Err((code, value)),
    }
}

macro_rules! import_fn {
    ($name:ident) => {{
        // Stubs outside wasm32 are plain `unsafe fn`s; the cast unifies both.
        $crate::sys::$name as $crate::host::DbImport
    }};
}
pub(crate) use import_fn;
