//! Declared schemas: table document types and indexes, and the types of function arguments
//! and results.
//!
//! ```
//! use ferrovex_sdk::prelude::*;
//!
//! #[schema]
//! fn schema() -> Schema {
//!     Schema::new().table(
//!         Table::new("tasks")
//!             .field("title", v::string())
//!             .field("done", v::boolean())
//!             .field("owner", v::optional(v::string()))
//!             .index("by_done", &["done"]),
//!     )
//! }
//! ```
//!
//! The host checks every write to a declared table against its type; tables the schema does
//! not declare stay schemaless.

use crate::db::{Document, Id};
use crate::value::{AnyValue, Bytes};
pub use ferrovex_model::abi::Type;
use ferrovex_model::abi::{AppSchema, TableSchema};
use std::collections::{BTreeMap, HashMap};

/// Type constructors for schemas.
pub mod v {
    use super::{HasSchema, Type};

    /// Any value.
    pub fn any() -> Type {
        Type::Any
    }
    /// Null only.
    pub fn null() -> Type {
        Type::Null
    }
    /// A 64-bit integer (a JavaScript `bigint` on the wire).
    pub fn int64() -> Type {
        Type::Int64
    }
    /// A 64-bit float (a JavaScript `number`).
    pub fn float64() -> Type {
        Type::Float64
    }
    /// A boolean.
    pub fn boolean() -> Type {
        Type::Boolean
    }
    /// A string.
    pub fn string() -> Type {
        Type::String
    }
    /// Bytes (an `ArrayBuffer` in JavaScript; [`Bytes`](crate::Bytes) in Rust).
    pub fn bytes() -> Type {
        Type::Bytes
    }
    /// A document id (a string).
    pub fn id() -> Type {
        Type::String
    }
    /// An array whose every element is of type `items`.
    pub fn array(items: Type) -> Type {
        Type::Array(Box::new(items))
    }
    /// An object with any field names, every value of type `values`.
    pub fn record(values: Type) -> Type {
        Type::Record(Box::new(values))
    }
    /// The type or null; as an object field, also absent.
    pub fn optional(inner: Type) -> Type {
        Type::Optional(Box::new(inner))
    }
    /// An object with exactly these fields (`optional` ones may be absent).
    pub fn object<'a>(fields: impl IntoIterator<Item = (&'a str, Type)>) -> Type {
        Type::object(fields)
    }
    /// A value of any one of these types.
    pub fn union(options: impl IntoIterator<Item = Type>) -> Type {
        Type::Union(options.into_iter().collect())
    }
    /// The type of a Rust type that knows its schema.
    pub fn of<T: HasSchema>() -> Type {
        T::schema()
    }
}

/// An app's schema: the tables it declares.
#[derive(Clone, Debug, Default)]
pub struct Schema(pub(crate) AppSchema);

impl Schema {
    /// A schema that declares no table yet.
    pub fn new() -> Self {
        Schema::default()
    }

    /// Declares a table.
    pub fn table(mut self, table: Table) -> Self {
        self.0.tables.push(table.0);
        self
    }

    #[doc(hidden)]
    pub fn into_abi(self) -> AppSchema {
        self.0
    }
}

/// One declared table.
#[derive(Clone, Debug)]
pub struct Table(TableSchema);

impl Table {
    /// A table named `name`, with no user fields yet: add them with [`Table::field`].
    pub fn new(name: &str) -> Self {
        Table(TableSchema {
            name: name.to_owned(),
            document: Type::Object(BTreeMap::new()),
            indexes: vec![],
        })
    }

    /// Declares a user field; `v::optional(..)` fields may be absent.
    pub fn field(mut self, name: &str, ty: Type) -> Self {
        if let Type::Object(fields) = &mut self.0.document {
            fields.insert(name.to_owned(), ty);
        }
        self
    }

    /// Declares an index over dot-separated field paths, in order.
    pub fn index(mut self, name: &str, fields: &[&str]) -> Self {
        self.0.indexes.push((
            name.to_owned(),
            fields.iter().map(|f| f.to_string()).collect(),
        ));
        self
    }
}

/// A Rust type whose value type is known, for argument and result schemas. Types without it
/// get `any` and are checked only when they are deserialized.
pub trait HasSchema {
    /// The type values of `Self` have.
    fn schema() -> Type;
}

macro_rules! has_schema {
    ($ty:expr => $($t:ty),*) => {$(
        impl HasSchema for $t {
            fn schema() -> Type { $ty }
        }
    )*};
}

has_schema!(Type::String => String, &str, Id, char);
has_schema!(Type::Boolean => bool);
has_schema!(Type::Int64 => i8, i16, i32, i64, u8, u16, u32, isize, usize);
has_schema!(Type::Float64 => f32, f64);
has_schema!(Type::Null => ());
has_schema!(Type::Bytes => Bytes);
has_schema!(Type::Any => Document, AnyValue, ferrovex_model::Value);

impl<T: HasSchema> HasSchema for Option<T> {
    fn schema() -> Type {
        Type::Optional(Box::new(T::schema()))
    }
}
impl<T: HasSchema> HasSchema for Vec<T> {
    fn schema() -> Type {
        Type::Array(Box::new(T::schema()))
    }
}
impl<T: HasSchema> HasSchema for BTreeMap<String, T> {
    fn schema() -> Type {
        Type::Record(Box::new(T::schema()))
    }
}
impl<T: HasSchema, S> HasSchema for HashMap<String, T, S> {
    fn schema() -> Type {
        Type::Record(Box::new(T::schema()))
    }
}
impl HasSchema for crate::db::PaginationResult {
    fn schema() -> Type {
        let optional_string = || Type::Optional(Box::new(Type::String));
        Type::object([
            ("page", Type::Array(Box::new(Type::Any))),
            ("isDone", Type::Boolean),
            ("continueCursor", Type::String),
            ("splitCursor", optional_string()),
            ("pageStatus", optional_string()),
        ])
    }
}
impl HasSchema for crate::db::PaginationOptions {
    fn schema() -> Type {
        let optional = |t: Type| Type::Optional(Box::new(t));
        Type::object([
            ("numItems", Type::Float64),
            ("cursor", optional(Type::String)),
            ("endCursor", optional(Type::String)),
            ("id", optional(Type::Float64)),
            ("maximumRowsRead", optional(Type::Float64)),
            ("maximumBytesRead", optional(Type::Float64)),
        ])
    }
}
