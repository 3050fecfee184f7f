//! What can go wrong deploying a module or calling a function. Every message names the
//! function path (or the module), the rule or limit, and what was given.

use crate::store::StoreError;
use std::fmt;
use std::time::Duration;

/// `text` cut to at most `max` bytes (at a character boundary), with a marker that says how
/// much was cut and by which limit; unchanged if it fits.
pub fn cut_text(mut text: String, max: usize, limit: &str) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!(
        " [cut: {} of {total} bytes left out, {limit}]",
        total - end
    ));
    text
}

/// A guest broke the host ABI or hit a limit inside an import. The import traps with this as
/// its error, and the call fails with it.
#[derive(Debug)]
pub enum Violation {
    /// `ptr + len` is outside the guest's memory (or overflows).
    OutOfBounds {
        import: &'static str,
        ptr: u32,
        len: u32,
        memory_size: usize,
    },
    /// The guest exported no memory, or called an import before it existed.
    NoMemory {
        import: &'static str,
    },
    UnknownHandle {
        handle: u32,
    },
    HandleLength {
        handle: u32,
        expected: u32,
        given: u32,
    },
    TooManyHandles {
        max: usize,
    },
    /// The answers the guest has not read would hold more than `MAX_UNREAD_HANDLE_BYTES`.
    UnreadHandleBytes {
        import: &'static str,
        held: usize,
        adding: usize,
    },
    /// A request larger than `MAX_IMPORT_REQUEST_BYTES`, refused before it is copied.
    RequestTooLarge {
        import: &'static str,
        given: u32,
    },
    /// A result or error value a client could not decode as it is (a field name the protocol
    /// forbids).
    InvalidOutput {
        path: String,
        reason: String,
    },
    SecondOutput,
    UnexpectedOutput {
        kind: i32,
        entry: &'static str,
    },
    OutputTooLarge {
        limit: &'static str,
        max: usize,
        given: u32,
    },
    TooManyLogLines {
        limit: &'static str,
        max: usize,
    },
    /// A request the SDK would never send: not a valid binary value or missing fields.
    MalformedRequest {
        import: &'static str,
        reason: String,
    },
    WriteFromQuery {
        import: &'static str,
    },
    /// An import the running entry point has no use for (a query that schedules, a mutation
    /// that fetches, an action that reads the database directly).
    WrongEntry {
        import: &'static str,
        entry: &'static str,
        remedy: &'static str,
    },
    MemoryLimit {
        max: usize,
        requested: usize,
    },
    /// A store error that is a violation, not an expected failure: a read or write limit,
    /// or a storage failure.
    Store(StoreError),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::OutOfBounds { import, ptr, len, memory_size } => write!(
                f,
                "{import}: pointer {ptr} with length {len} is outside guest memory of {memory_size} bytes"
            ),
            Violation::NoMemory { import } => write!(f, "{import}: the module exports no memory \"memory\""),
            Violation::UnknownHandle { handle } => {
                write!(f, "read_handle: handle {handle} was never issued in this call or was already read")
            }
            Violation::HandleLength { handle, expected, given } => {
                write!(f, "read_handle: handle {handle} holds {expected} bytes, the guest asked for {given}")
            }
            Violation::TooManyHandles { max } => {
                write!(f, "more than {max} unread handles (MAX_LIVE_HANDLES); read responses before making more calls")
            }
            Violation::UnreadHandleBytes { import, held, adding } => write!(
                f,
                "{import}: its answer of {adding} bytes would make the unread answers hold {} bytes, over the limit MAX_UNREAD_HANDLE_BYTES ({} bytes); read answers before asking for more",
                held + adding,
                ferrovex_model::limits::MAX_UNREAD_HANDLE_BYTES
            ),
            Violation::RequestTooLarge { import, given } => write!(
                f,
                "{import}: a request of {given} bytes exceeds the limit MAX_IMPORT_REQUEST_BYTES ({} bytes)",
                ferrovex_model::limits::MAX_IMPORT_REQUEST_BYTES
            ),
            Violation::InvalidOutput { path, reason } => {
                write!(f, "the result is not a value clients can read: at {path}, {reason}")
            }
            Violation::SecondOutput => write!(f, "output: called a second time; a call has exactly one outcome"),
            Violation::UnexpectedOutput { kind, entry } => write!(f, "output: kind {kind} is not what {entry} produces"),
            Violation::OutputTooLarge { limit, max, given } => {
                write!(f, "the result exceeds the limit {limit} ({max} bytes): got {given} bytes")
            }
            Violation::TooManyLogLines { limit, max } => write!(f, "log: more than {max} log lines ({limit})"),
            Violation::MalformedRequest { import, reason } => write!(f, "{import}: malformed request: {reason}"),
            Violation::WriteFromQuery { import } => {
                write!(f, "{import}: a query cannot write; use a mutation to change data")
            }
            Violation::WrongEntry { import, entry, remedy } => {
                write!(f, "{import}: not available in {entry}; {remedy}")
            }
            Violation::MemoryLimit { max, requested } => write!(
                f,
                "guest memory exceeds the limit of {} MiB: it asked for {requested} bytes",
                max / (1024 * 1024)
            ),
            Violation::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Violation {}

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    UnknownFunction {
        available: Vec<String>,
    },
    WrongKind {
        expected: &'static str,
        actual: &'static str,
    },
    InvalidArguments(String),
    /// The function returned `Err`: its message and data reach the client.
    User {
        message: String,
        data: Option<ferrovex_model::Value>,
    },
    Panic {
        message: String,
    },
    Timeout {
        limit: Duration,
    },
    StackOverflow {
        max_wasm_stack: usize,
    },
    /// Any other trap (an `unreachable`, an out-of-bounds access inside the guest...).
    Trap {
        message: String,
    },
    Violation(Violation),
    /// A store failure outside the guest, e.g. a write conflict at commit.
    Store(StoreError),
    NoOutput,
    InvalidResult(String),
    /// The host could not run the call (e.g. every instance slot is busy).
    Host(String),
    /// A scheduled job's mutation found the job no longer pending (canceled, or run
    /// already): it ran nothing.
    JobNotPending,
}

impl CallError {
    /// True for the guest's own `Err`, whose message is meant for the client as is.
    pub fn is_user_error(&self) -> bool {
        matches!(self, CallError::User { .. })
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::UnknownFunction { available } => {
                write!(
                    f,
                    "no such function; the deployed functions are: {}",
                    available.join(", ")
                )
            }
            CallError::WrongKind { expected, actual } => {
                write!(
                    f,
                    "is {} {actual}, not {} {expected}",
                    article(actual),
                    article(expected)
                )
            }
            CallError::InvalidArguments(reason) => write!(f, "invalid arguments: {reason}"),
            CallError::User { message, .. } => write!(f, "{message}"),
            // The SDK's hook already says "panicked at <file:line>:".
            CallError::Panic { message } if message.starts_with("panicked") => {
                write!(f, "{message}")
            }
            CallError::Panic { message } => write!(f, "panicked: {message}"),
            CallError::Timeout { limit } => {
                write!(
                    f,
                    "exceeded the execution time limit of {} ms and was stopped",
                    limit.as_millis()
                )
            }
            CallError::StackOverflow { max_wasm_stack } => {
                write!(
                    f,
                    "overflowed its call stack (max_wasm_stack {} KiB)",
                    max_wasm_stack / 1024
                )
            }
            CallError::Trap { message } => write!(f, "trapped: {message}"),
            CallError::Violation(v) => write!(f, "{v}"),
            CallError::Store(e) => write!(f, "{e}"),
            CallError::NoOutput => write!(
                f,
                "returned without a result (was it built with ferrovex-sdk?)"
            ),
            CallError::InvalidResult(reason) => write!(
                f,
                "returned a value that does not match its return schema: {reason}"
            ),
            CallError::Host(reason) => write!(f, "could not run: {reason}"),
            CallError::JobNotPending => write!(
                f,
                "did not run: its scheduled job is no longer pending (canceled, or run already)"
            ),
        }
    }
}

/// "a" or "an", for a function kind.
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// A failed call: which function, why, and the log lines it wrote before failing.
#[derive(Debug)]
pub struct CallFailure {
    pub path: String,
    pub error: CallError,
    pub log_lines: Vec<String>,
}

impl fmt::Display for CallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.error)
    }
}

impl std::error::Error for CallFailure {}

/// Why a module was not deployed.
#[derive(Debug)]
pub enum DeployError {
    /// Not valid wasm, or wasm this engine does not accept (e.g. a disabled proposal).
    Compile(String),
    /// Imports or exports that do not match the ABI, each listed.
    Abi(Vec<String>),
    /// The module declares that it speaks another ABI version than this host: it was built
    /// with an SDK of another release (`ferrovex_model::abi::VERSION_SECTION`).
    AbiVersion(ferrovex_model::abi::BuiltWith),
    /// A function's description or the schema could not be obtained or is malformed.
    Describe {
        export: String,
        reason: String,
    },
    Store(StoreError),
    Cache(String),
    /// The app's auth config cannot be used (an environment variable it names is unset).
    AuthConfig(String),
}

impl fmt::Display for DeployError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployError::Compile(e) => write!(f, "the module does not compile: {e}"),
            DeployError::Abi(problems) => write!(
                f,
                "the module does not match the host ABI {}:\n  - {}",
                ferrovex_model::abi::IMPORT_MODULE,
                problems.join("\n  - ")
            ),
            DeployError::AbiVersion(module) => {
                use ferrovex_model::abi::{sdk_requirement, ABI_VERSION, SDK_VERSION};
                write!(
                    f,
                    "the module was built with ferrovex-sdk {}, which speaks ABI version {}, but this runtime speaks ABI version {ABI_VERSION} (ferrovex-sdk {SDK_VERSION}). Either build the app against this runtime's SDK: set `ferrovex-sdk = \"{}\"` under [dependencies] in the app's Cargo.toml and build it again; or serve it with a runtime that speaks ABI version {}, the one released with ferrovex-sdk {} (`cargo install --locked --path cli` in a checkout of that release; `runtime --version` says what a runtime speaks)",
                    module.sdk,
                    module.abi,
                    sdk_requirement(),
                    module.abi,
                    module.sdk,
                )
            }
            DeployError::Describe { export, reason } => write!(f, "{export}: {reason}"),
            DeployError::AuthConfig(reason) => f.write_str(reason),
            DeployError::Store(e) => write!(f, "declaring the schema's indexes failed: {e}"),
            DeployError::Cache(e) => write!(f, "compiled-module cache: {e}"),
        }
    }
}

impl std::error::Error for DeployError {}

#[cfg(test)]
mod tests {
    use super::cut_text;

    #[test]
    fn cut_text_keeps_what_fits_and_says_how_much_went() {
        assert_eq!(cut_text("short".into(), 10, "LIMIT"), "short");
        assert_eq!(
            cut_text("abcdefghij".into(), 4, "LIMIT"),
            "abcd [cut: 6 of 10 bytes left out, LIMIT]"
        );
        // Never inside a character: "é" is two bytes.
        assert_eq!(
            cut_text("aé".into(), 2, "LIMIT"),
            "a [cut: 2 of 3 bytes left out, LIMIT]"
        );
    }
}
