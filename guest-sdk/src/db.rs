//! `ctx.db`: documents, reads and writes. Every call goes to the host, which runs it inside
//! the call's transaction.

use crate::error::{DbError, Error, Result};
use crate::host::{self, import_fn};
use crate::value::{from_value, to_value, ValueRef};
use ferrovex_model::{Object, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// A document id: an opaque string that names its table (PROTOCOL.md section 1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub String);

impl Id {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id(s.to_owned())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id(s)
    }
}

impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(Id)
    }
}

/// A stored document: its id, creation time and user fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub id: Id,
    /// Milliseconds since the Unix epoch.
    pub creation_time: f64,
    pub fields: Object,
}

impl Document {
    fn from_value(value: Value) -> std::result::Result<Document, String> {
        let Value::Object(mut fields) = value else {
            return Err("a document is an object".into());
        };
        let id = match fields.remove("_id") {
            Some(Value::String(id)) => Id(id),
            _ => return Err("a document has a string _id".into()),
        };
        let creation_time = match fields.remove("_creationTime") {
            Some(Value::Float64(t)) => t,
            _ => return Err("a document has a float64 _creationTime".into()),
        };
        Ok(Document {
            id,
            creation_time,
            fields,
        })
    }

    /// A user field.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field)
    }

    /// A user field converted to a Rust type; a missing field reads as null.
    ///
    /// ```no_run
    /// # use ferrovex_sdk::prelude::*;
    /// # fn f(doc: &Document) -> Result<()> {
    /// let body: String = doc.field("body")?;
    /// let likes: Option<i64> = doc.field("likes")?;
    /// # Ok(()) }
    /// ```
    pub fn field<T: DeserializeOwned>(&self, field: &str) -> Result<T> {
        from_value(self.fields.get(field).cloned().unwrap_or(Value::Null))
            .map_err(|e| Error::new(format!("field {field:?} of document {}: {e}", self.id)))
    }

    /// The whole document (system fields included) as a Rust type.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(from_value(self.to_value())?)
    }

    /// The whole document as a value, with `_id` and `_creationTime`.
    pub fn to_value(&self) -> Value {
        let mut fields = self.fields.clone();
        fields.insert("_id".into(), Value::String(self.id.0.clone()));
        fields.insert("_creationTime".into(), Value::Float64(self.creation_time));
        Value::Object(fields)
    }
}

impl Serialize for Document {
    /// As an object with `_id` and `_creationTime`, without copying the fields first.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.fields.len() + 2))?;
        map.serialize_entry("_creationTime", &self.creation_time)?;
        map.serialize_entry("_id", &self.id)?;
        for (k, v) in &self.fields {
            map.serialize_entry(k, &ValueRef(v))?;
        }
        map.end()
    }
}

/// User fields built by [`doc!`](crate::doc): serializes as an object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields(pub Object);

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, &ValueRef(v))?;
        }
        map.end()
    }
}

/// Builds document fields: `doc! { "user": user, "body": body }`. Values are anything
/// serializable.
#[macro_export]
macro_rules! doc {
    ($($key:literal : $value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut fields = $crate::Object::new();
        $( fields.insert(::std::string::String::from($key), $crate::__private::field_value($key, &$value)); )*
        $crate::Fields(fields)
    }};
}

/// Scan order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

pub use Order::{Asc, Desc};

fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn fields_of<T: Serialize>(operation: &str, doc: &T) -> Result<Object> {
    match to_value(doc)? {
        Value::Object(fields) => Ok(fields),
        other => Err(Error::new(format!(
            "{operation}: a document must be an object, got {}",
            other.type_name()
        ))),
    }
}

fn decode_document(value: Value) -> Result<Document> {
    Document::from_value(value)
        .map_err(|e| Error::new(format!("malformed document from the host: {e}")))
}

/// Reads: what queries and mutations both may do.
pub struct DatabaseReader {
    pub(crate) _private: (),
}

impl DatabaseReader {
    /// The document with this id, or `None`.
    pub fn get(&self, id: &Id) -> Result<Option<Document>, DbError> {
        let response = host::db_call(
            "get",
            import_fn!(db_get),
            &object(vec![("id", id.0.as_str().into())]),
        )?;
        match response {
            Value::Null => Ok(None),
            value => Document::from_value(value)
                .map(Some)
                .map_err(|message| DbError {
                    operation: "get",
                    kind: crate::error::DbErrorKind::Invalid,
                    message,
                }),
        }
    }

    /// Starts a read of `table`, by default over its `by_creation_time` index, ascending.
    ///
    /// ```no_run
    /// # use ferrovex_sdk::prelude::*;
    /// # fn f(ctx: &QueryCtx) -> Result<()> {
    /// let latest = ctx.db.query("messages").order(Desc).take(50)?;
    /// let open = ctx.db.query("tasks").with_index("by_done", |r| r.eq("done", false)).collect()?;
    /// # Ok(()) }
    /// ```
    pub fn query(&self, table: &str) -> Query {
        Query {
            table: table.to_owned(),
            index: "by_creation_time".to_owned(),
            range: IndexRange::default(),
            order: Order::Asc,
        }
    }
}

/// Reads and writes: what mutations may do. Derefs to [`DatabaseReader`].
pub struct DatabaseWriter {
    pub(crate) reader: DatabaseReader,
}

impl std::ops::Deref for DatabaseWriter {
    type Target = DatabaseReader;
    fn deref(&self) -> &DatabaseReader {
        &self.reader
    }
}

impl DatabaseWriter {
    /// Inserts a document (a `doc!` or any serializable struct) and returns its id. The
    /// table is created on first insert; if the app declares it, the document must match.
    pub fn insert<T: Serialize>(&self, table: &str, doc: T) -> Result<Id> {
        let fields = fields_of("insert", &doc)?;
        let request = object(vec![
            ("table", table.into()),
            ("fields", Value::Object(fields)),
        ]);
        match host::db_call("insert", import_fn!(db_insert), &request)? {
            Value::String(id) => Ok(Id(id)),
            other => Err(Error::new(format!(
                "insert: the host returned {} for an id",
                other.type_name()
            ))),
        }
    }

    /// Sets the given top-level fields, keeping the others.
    pub fn patch<T: Serialize>(&self, id: &Id, fields: T) -> Result<()> {
        self.patch_and_remove(id, fields, &[])
    }

    /// Sets the given fields and removes the named ones.
    pub fn patch_and_remove<T: Serialize>(&self, id: &Id, set: T, remove: &[&str]) -> Result<()> {
        let set = fields_of("patch", &set)?;
        let remove = Value::Array(remove.iter().map(|f| Value::from(*f)).collect());
        let request = object(vec![
            ("id", id.0.as_str().into()),
            ("set", Value::Object(set)),
            ("remove", remove),
        ]);
        host::db_call("patch", import_fn!(db_patch), &request)?;
        Ok(())
    }

    /// Replaces every user field.
    pub fn replace<T: Serialize>(&self, id: &Id, doc: T) -> Result<()> {
        let fields = fields_of("replace", &doc)?;
        let request = object(vec![
            ("id", id.0.as_str().into()),
            ("fields", Value::Object(fields)),
        ]);
        host::db_call("replace", import_fn!(db_replace), &request)?;
        Ok(())
    }

    pub fn delete(&self, id: &Id) -> Result<(), DbError> {
        host::db_call(
            "delete",
            import_fn!(db_delete),
            &object(vec![("id", id.0.as_str().into())]),
        )?;
        Ok(())
    }
}

/// An index range: equalities on a prefix of the index's fields, then bounds on the next.
#[derive(Clone, Debug, Default)]
pub struct IndexRange {
    eq: Vec<(String, Value)>,
    lower: Option<(String, Value, bool)>,
    upper: Option<(String, Value, bool)>,
}

impl IndexRange {
    fn bound(field: &str, value: impl Serialize, inclusive: bool) -> (String, Value, bool) {
        (
            field.to_owned(),
            crate::__private::field_value(field, &value),
            inclusive,
        )
    }

    pub fn eq(mut self, field: &str, value: impl Serialize) -> Self {
        self.eq.push((
            field.to_owned(),
            crate::__private::field_value(field, &value),
        ));
        self
    }
    pub fn gt(mut self, field: &str, value: impl Serialize) -> Self {
        self.lower = Some(Self::bound(field, value, false));
        self
    }
    pub fn gte(mut self, field: &str, value: impl Serialize) -> Self {
        self.lower = Some(Self::bound(field, value, true));
        self
    }
    pub fn lt(mut self, field: &str, value: impl Serialize) -> Self {
        self.upper = Some(Self::bound(field, value, false));
        self
    }
    pub fn lte(mut self, field: &str, value: impl Serialize) -> Self {
        self.upper = Some(Self::bound(field, value, true));
        self
    }

    fn to_value(&self) -> (Value, Value, Value) {
        let eq = Value::Array(
            self.eq
                .iter()
                .map(|(f, v)| Value::Array(vec![f.as_str().into(), v.clone()]))
                .collect(),
        );
        let bound = |b: &Option<(String, Value, bool)>| match b {
            None => Value::Null,
            Some((f, v, inclusive)) => {
                Value::Array(vec![f.as_str().into(), v.clone(), (*inclusive).into()])
            }
        };
        (eq, bound(&self.lower), bound(&self.upper))
    }
}

/// Where [`Query::paginate`] starts and how much it reads.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PaginationOptions {
    /// The `continue_cursor` of the previous page, or `None` for the first.
    pub cursor: Option<String>,
    pub num_items: usize,
}

/// One page: pass `continue_cursor` back to read the next.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PaginationResult {
    pub page: Vec<Document>,
    pub continue_cursor: Option<String>,
    pub is_done: bool,
}

/// A read being built: `ctx.db.query(table)`, then an index range, an order and a terminal
/// (`take`, `first`, `unique`, `collect`, `paginate`).
#[derive(Clone, Debug)]
pub struct Query {
    table: String,
    index: String,
    range: IndexRange,
    order: Order,
}

impl Query {
    /// Reads over `index` (declared in the schema, or `by_creation_time` / `by_id`),
    /// restricted by `range`.
    pub fn with_index(mut self, index: &str, range: impl FnOnce(IndexRange) -> IndexRange) -> Self {
        self.index = index.to_owned();
        self.range = range(IndexRange::default());
        self
    }

    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    fn scan(
        &self,
        limit: usize,
        cursor: Option<Vec<u8>>,
    ) -> Result<(Vec<Document>, Option<Vec<u8>>, bool)> {
        let (eq, lower, upper) = self.range.to_value();
        let request = object(vec![
            ("table", self.table.as_str().into()),
            ("index", self.index.as_str().into()),
            ("eq", eq),
            ("lower", lower),
            ("upper", upper),
            (
                "order",
                if self.order == Order::Asc {
                    "asc"
                } else {
                    "desc"
                }
                .into(),
            ),
            ("limit", Value::Int64(limit.min(i64::MAX as usize) as i64)),
            ("cursor", cursor.map(Value::Bytes).unwrap_or(Value::Null)),
        ]);
        let Value::Object(mut response) = host::db_call("query", import_fn!(db_scan), &request)?
        else {
            return Err(Error::new("malformed scan response from the host"));
        };
        let documents = match response.remove("documents") {
            Some(Value::Array(items)) => items
                .into_iter()
                .map(decode_document)
                .collect::<Result<Vec<_>>>()?,
            _ => return Err(Error::new("malformed scan response from the host")),
        };
        let cursor = match response.remove("cursor") {
            Some(Value::Bytes(c)) => Some(c),
            _ => None,
        };
        let is_done = matches!(response.get("isDone"), Some(Value::Boolean(true)));
        Ok((documents, cursor, is_done))
    }

    /// At most `n` documents, in order.
    pub fn take(self, n: usize) -> Result<Vec<Document>> {
        Ok(self.scan(n, None)?.0)
    }

    /// The first document, if any.
    pub fn first(self) -> Result<Option<Document>> {
        Ok(self.scan(1, None)?.0.into_iter().next())
    }

    /// The only document, if any; an error if there are several.
    pub fn unique(self) -> Result<Option<Document>> {
        let mut documents = self.scan(2, None)?.0;
        if documents.len() > 1 {
            return Err(Error::new(format!(
                "unique() found more than one document in table {:?} (index {:?})",
                self.table, self.index
            )));
        }
        Ok(documents.pop())
    }

    /// Every document of the range (bounded by the transaction's read limits).
    pub fn collect(self) -> Result<Vec<Document>> {
        Ok(self.scan(usize::MAX, None)?.0)
    }

    /// One page of the range. Several paginated reads may share one function.
    ///
    /// ```no_run
    /// # use ferrovex_sdk::prelude::*;
    /// # fn f(ctx: &QueryCtx, cursor: Option<String>) -> Result<PaginationResult> {
    /// ctx.db.query("tasks").order(Desc).paginate(PaginationOptions { cursor, num_items: 10 })
    /// # }
    /// ```
    pub fn paginate(self, options: PaginationOptions) -> Result<PaginationResult> {
        let cursor = match &options.cursor {
            None => None,
            Some(text) => Some(
                decode_cursor(text)
                    .ok_or_else(|| Error::new(format!("malformed cursor {text:?}")))?,
            ),
        };
        let (page, cursor, is_done) = self.scan(options.num_items, cursor)?;
        Ok(PaginationResult {
            page,
            continue_cursor: cursor.map(|c| encode_cursor(&c)),
            is_done,
        })
    }
}

/// Cursors travel as lowercase hex: opaque to clients, and safe in JSON and URLs.
fn encode_cursor(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
