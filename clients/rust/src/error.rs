//! The client's errors.

use ferrovex_model::Value;
use std::fmt;

/// A function's own failure, as the server reports it: its `Err`, a panic, a trap, a
/// limit, or arguments it does not accept. The connection stays open.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionError {
    /// Names the function and the cause.
    pub message: String,
    /// The data the function attached to its error, if any.
    pub data: Option<Value>,
    /// What the function logged before it failed.
    pub log_lines: Vec<String>,
}

impl fmt::Display for FunctionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FunctionError {}

/// Everything a [`Client`](crate::Client) call can fail with.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// The function ran on the server and failed.
    Function(FunctionError),
    /// The arguments are not a valid object of values (they never left the client).
    InvalidArgs(String),
    /// The URL given to [`Client::connect`](crate::Client::connect) is not one the client
    /// can use.
    InvalidUrl(String),
    /// The first connection could not be made (later ones are retried automatically).
    Connect(String),
    /// The client has shut down (every [`Client`](crate::Client) handle was dropped), so the
    /// call has no answer.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Function(e) => write!(f, "{e}"),
            Error::InvalidArgs(e) => write!(f, "invalid arguments: {e}"),
            Error::InvalidUrl(e) => write!(f, "invalid URL: {e}"),
            Error::Connect(e) => write!(f, "connecting failed: {e}"),
            Error::Closed => f.write_str("the client has shut down"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Function(e) => Some(e),
            _ => None,
        }
    }
}

impl From<FunctionError> for Error {
    fn from(e: FunctionError) -> Self {
        Error::Function(e)
    }
}
