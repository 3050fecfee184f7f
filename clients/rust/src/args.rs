//! Function arguments: always an object of values on the wire.

use ferrovex_model::{Object, Value};
use serde::Serialize;

/// What a function can be called with: an [`Object`], a [`Value`] that is an object, `()`
/// for no arguments, or a reference to anything serde can serialize into an object (a
/// struct, a map, `serde_json::json!({...})`).
///
/// Serde conversions follow the guest SDK's rules ([`to_value`](crate::to_value)): Rust
/// integers become int64 and floats float64, so a field declared `i64` in a function gets
/// an int64.
///
/// ```
/// use ferrovex_client::{IntoArgs, Value};
/// use ferrovex_model::obj;
///
/// #[derive(serde::Serialize)]
/// struct SendMessage<'a> { user: &'a str, body: &'a str }
///
/// let from_struct = (&SendMessage { user: "ada", body: "hi" }).into_args().unwrap();
/// let from_object = obj! { "user" => "ada", "body" => "hi" }.into_args().unwrap();
/// assert_eq!(from_struct, from_object);
/// assert!(().into_args().unwrap().is_empty());
/// assert!(Value::Int64(1).into_args().is_err());
/// ```
pub trait IntoArgs {
    /// The arguments as an object, or why they cannot be one.
    fn into_args(self) -> Result<Object, String>;
}

impl IntoArgs for Object {
    fn into_args(self) -> Result<Object, String> {
        Ok(self)
    }
}

impl IntoArgs for Value {
    fn into_args(self) -> Result<Object, String> {
        match self {
            Value::Object(fields) => Ok(fields),
            other => Err(format!(
                "arguments must be an object, got {}",
                other.type_name()
            )),
        }
    }
}

impl IntoArgs for () {
    fn into_args(self) -> Result<Object, String> {
        Ok(Object::new())
    }
}

impl<T: Serialize + ?Sized> IntoArgs for &T {
    fn into_args(self) -> Result<Object, String> {
        ferrovex_sdk::to_value(self)
            .map_err(|e| e.to_string())?
            .into_args()
    }
}
