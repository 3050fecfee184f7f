//! What the macros expand to. Not a public API.

use crate::action::ActionCtx;
use crate::ctx::{MutationCtx, QueryCtx};
use crate::encode::to_binary;
use crate::error::Error;
use crate::host;
use crate::schema::HasSchema;
use crate::value::{from_value, to_value};
use ferrovex_model::abi::{output, FunctionDescription, FunctionKind, Type};
use ferrovex_model::{binary, Object, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;

pub use ferrovex_model::abi::FunctionKind as Kind;
pub use ferrovex_model::abi::Visibility;
pub use serde;

/// The call's arguments, taken one parameter at a time.
pub struct Args(Object);

impl Args {
    /// The parameter `name`; absent reads as null (so `Option` parameters may be left out).
    pub fn take<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, Error> {
        let value = self.0.remove(name).unwrap_or(Value::Null);
        from_value(value).map_err(|e| Error::new(format!("invalid argument {name:?}: {e}")))
    }
}

fn read_args(handle: u32, len: u32) -> Result<Args, Error> {
    let bytes = host::read_handle(handle, len);
    match binary::decode(&bytes) {
        Ok(Value::Object(fields)) => Ok(Args(fields)),
        Ok(other) => Err(Error::new(format!(
            "arguments must be an object, got {}",
            other.type_name()
        ))),
        Err(e) => Err(Error::new(format!("arguments: {e}"))),
    }
}

fn finish(outcome: Result<Vec<u8>, Error>) {
    match outcome {
        Ok(bytes) => host::output_bytes(output::RESULT, &bytes),
        Err(error) => host::output_value(output::ERROR, &error.to_value()),
    }
}

/// Turns a function's `Result<T, E>` into the binary form of its value, or an error. The
/// value is encoded straight from `T`, without a `Value` copy in between.
pub trait IntoOutcome {
    fn into_outcome(self) -> Result<Vec<u8>, Error>;
}

impl<T: Serialize, E: Into<Error>> IntoOutcome for Result<T, E> {
    fn into_outcome(self) -> Result<Vec<u8>, Error> {
        let value = self.map_err(Into::into)?;
        to_binary(&value)
            .map_err(|e| Error::new(format!("the result cannot be converted to a value: {e}")))
    }
}

pub fn run_query(
    handle: u32,
    len: u32,
    body: impl FnOnce(&mut QueryCtx, &mut Args) -> Result<Vec<u8>, Error>,
) {
    host::install_panic_hook();
    finish(read_args(handle, len).and_then(|mut args| body(&mut QueryCtx::new(), &mut args)));
}

pub fn run_mutation(
    handle: u32,
    len: u32,
    body: impl FnOnce(&mut MutationCtx, &mut Args) -> Result<Vec<u8>, Error>,
) {
    host::install_panic_hook();
    finish(read_args(handle, len).and_then(|mut args| body(&mut MutationCtx::new(), &mut args)));
}

pub fn run_action(
    handle: u32,
    len: u32,
    body: impl FnOnce(&mut ActionCtx, &mut Args) -> Result<Vec<u8>, Error>,
) {
    host::install_panic_hook();
    finish(read_args(handle, len).and_then(|mut args| body(&mut ActionCtx::new(), &mut args)));
}

/// An HTTP action's route: `(method, path, is a prefix)`.
pub type Route = Option<(&'static str, &'static str, bool)>;

pub fn describe(
    kind: FunctionKind,
    visibility: Visibility,
    params: &[(&str, Type)],
    returns: Type,
    route: Route,
) {
    let args = Type::Object(
        params
            .iter()
            .map(|(name, ty)| {
                // `any` parameters may be absent too: they deserialize from null.
                (name.to_string(), ty.clone())
            })
            .collect(),
    );
    let description = FunctionDescription {
        visibility,
        kind,
        args,
        returns,
        route: route.map(|(method, path, prefix)| ferrovex_model::abi::HttpRoute {
            method: method.to_owned(),
            path: path.to_owned(),
            prefix,
        }),
    };
    host::output_value(output::DESCRIPTION, &description.to_value());
}

pub fn output_auth_config(config: crate::AuthConfig) {
    host::output_value(output::AUTH_CONFIG, &config.into_abi().to_value());
}

pub fn output_crons(crons: crate::Crons) {
    host::output_value(output::CRONS, &crons.into_abi().to_value());
}

pub fn output_schema(schema: crate::schema::Schema) {
    host::output_value(output::SCHEMA, &schema.into_abi().to_value());
}

/// Converts a `doc!` or range value, panicking (which fails the call with this message) on a
/// value the document model cannot hold, such as a `u64` above `i64::MAX`.
pub fn field_value<T: Serialize + ?Sized>(field: &str, value: &T) -> Value {
    match to_value(value) {
        Ok(v) => v,
        Err(e) => panic!("field {field:?}: {e}"),
    }
}

/// Autoref specialization: `(&&Probe::<T>::new()).schema()` is `T::schema()` when `T:
/// HasSchema` and `any` otherwise, so any serde type may be a parameter.
pub struct Probe<T: ?Sized>(PhantomData<T>);

impl<T: ?Sized> Probe<T> {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Probe(PhantomData)
    }
}

pub trait ViaHasSchema {
    fn schema(&self) -> Type;
}
impl<T: HasSchema + ?Sized> ViaHasSchema for &Probe<T> {
    fn schema(&self) -> Type {
        T::schema()
    }
}

pub trait ViaAny {
    fn schema(&self) -> Type;
}
impl<T: ?Sized> ViaAny for Probe<T> {
    fn schema(&self) -> Type {
        Type::Any
    }
}
pub fn log_line(line: &str) {
    host::log_line(line)
}

/// Encodes a value in the ABI's binary form (for tests of the raw ABI).
pub fn encode(value: &Value) -> Vec<u8> {
    binary::encode(value)
}
