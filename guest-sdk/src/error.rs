//! Errors a function returns to its caller.

use ferrovex_model::{Object, Value};
use std::fmt;

/// The error of a query or mutation: a message, and optionally structured data that reaches
/// the client as `errorData` (docs/PROTOCOL.md section 3).
///
/// ```
/// use ferrovex_sdk::prelude::*;
///
/// let e = Error::new("not enough credit").with_data(doc! { "needed": 3i64 });
/// assert_eq!(e.message(), "not enough credit");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    message: String,
    data: Option<Value>,
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this message and no data.
    pub fn new(message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
            data: None,
        }
    }

    /// Attaches structured data (anything serializable, or a `doc!`).
    pub fn with_data(mut self, data: impl serde::Serialize) -> Self {
        self.data =
            Some(crate::value::to_value(&data).unwrap_or_else(|e| Value::String(e.to_string())));
        self
    }

    /// The message, as the client reads it (`errorMessage`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The structured data, if any (`errorData`).
    pub fn data(&self) -> Option<&Value> {
        self.data.as_ref()
    }

    /// The form `ferrovex_model::abi::output::ERROR` carries.
    pub(crate) fn to_value(&self) -> Value {
        let mut o = Object::new();
        o.insert("message".into(), Value::String(self.message.clone()));
        if let Some(data) = &self.data {
            o.insert("data".into(), data.clone());
        }
        Value::Object(o)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Builds an [`Error`] with a formatted message: `bail!("no such user {name}")` returns it.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Error::new(::std::format!($($arg)*)).into())
    };
}

/// Why a database call failed in a way the function may handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The request was not acceptable: a malformed id, an invalid document, a schema
    /// violation, an unknown index.
    Invalid,
    /// The document to change does not exist.
    NotFound,
}

/// A failed database call. Violations (writes from a query, limits) never come back as a
/// `DbError`: they end the call.
#[derive(Clone, Debug, PartialEq)]
pub struct DbError {
    /// The call that failed: `"get"`, `"insert"`, `"patch"`, `"replace"`, `"delete"` or
    /// `"query"`.
    pub operation: &'static str,
    /// Why, as a kind to match on.
    pub kind: DbErrorKind,
    /// Why, in words: the rule broken and the value given.
    pub message: String,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.operation, self.message)
    }
}

impl std::error::Error for DbError {}

impl From<DbError> for Error {
    fn from(e: DbError) -> Self {
        Error::new(e)
    }
}

impl From<crate::value::ValueError> for Error {
    fn from(e: crate::value::ValueError) -> Self {
        Error::new(e)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}
