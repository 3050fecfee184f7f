//! `ctx.db`: documents, reads and writes. Every call goes to the host, which runs it inside
//! the call's transaction.

use crate::error::{DbError, Error, Result};
use crate::host::{self, import_fn};
use crate::value::{from_value, to_value, ValueRef};
use ferrovex_model::{Object, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// A document id: an opaque string that names its table (docs/PROTOCOL.md section 1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub String);

impl Id {
    /// The id's text, as clients see it.
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
    /// `_id`: names the document and its table.
    pub id: Id,
    /// `_creationTime`: milliseconds since the Unix epoch, strictly increasing within a table.
    pub creation_time: f64,
    /// The user fields (every field but `_id` and `_creationTime`).
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
    /// Ascending: oldest first over `by_creation_time`.
    #[default]
    Asc,
    /// Descending: newest first over `by_creation_time`.
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

    /// Deletes the document; a [`DbError`] of kind `NotFound` if there is none.
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

    /// `field` equals `value`: one per index field, in the index's order, before any bound.
    pub fn eq(mut self, field: &str, value: impl Serialize) -> Self {
        self.eq.push((
            field.to_owned(),
            crate::__private::field_value(field, &value),
        ));
        self
    }
    /// `field` is greater than `value` (the lower bound, on the field after the equalities).
    pub fn gt(mut self, field: &str, value: impl Serialize) -> Self {
        self.lower = Some(Self::bound(field, value, false));
        self
    }
    /// `field` is greater than or equal to `value`.
    pub fn gte(mut self, field: &str, value: impl Serialize) -> Self {
        self.lower = Some(Self::bound(field, value, true));
        self
    }
    /// `field` is less than `value` (the upper bound, on the same field as the lower).
    pub fn lt(mut self, field: &str, value: impl Serialize) -> Self {
        self.upper = Some(Self::bound(field, value, false));
        self
    }
    /// `field` is less than or equal to `value`.
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

/// Where [`Query::paginate`] starts and how much it reads: Convex's `paginationOpts`, which
/// `usePaginatedQuery` sends. A function parameter named `pagination_opts` is the argument
/// `paginationOpts` on the wire.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PaginationOptions {
    /// How many documents a new page reads (a page with a fixed end may hold more or fewer).
    #[serde(rename = "numItems", deserialize_with = "count")]
    pub num_items: usize,
    /// The `continue_cursor` of the previous page, or `None` for the first.
    pub cursor: Option<String>,
    /// Where the page ends (included): set when a client splits a page in two.
    #[serde(rename = "endCursor", default, skip_serializing_if = "Option::is_none")]
    pub end_cursor: Option<String>,
    /// The client's own tag for the page; the server ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<f64>,
    /// Accepted for compatibility; the transaction's read limits bound a page.
    #[serde(
        rename = "maximumRowsRead",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub maximum_rows_read: Option<f64>,
    /// Accepted for compatibility; the transaction's read limits bound a page.
    #[serde(
        rename = "maximumBytesRead",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub maximum_bytes_read: Option<f64>,
}

impl PaginationOptions {
    /// The first page of `num_items` documents.
    pub fn first(num_items: usize) -> Self {
        PaginationOptions {
            num_items,
            ..PaginationOptions::default()
        }
    }

    /// The page of `num_items` documents after `cursor` (a `continue_cursor`).
    pub fn after(cursor: Option<String>, num_items: usize) -> Self {
        PaginationOptions {
            num_items,
            cursor,
            ..PaginationOptions::default()
        }
    }
}

/// A count sent as a JavaScript number (a float64) or an int64.
fn count<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<usize, D::Error> {
    struct Count;
    impl serde::de::Visitor<'_> for Count {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a whole number of items from 1 to 32000")
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<usize, E> {
            if v.fract() == 0.0 && (1.0..=MAX_PAGE_ITEMS as f64).contains(&v) {
                Ok(v as usize)
            } else {
                Err(E::custom(format!(
                    "numItems must be a whole number from 1 to {MAX_PAGE_ITEMS}, got {v}"
                )))
            }
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<usize, E> {
            self.visit_f64(v as f64)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<usize, E> {
            self.visit_f64(v as f64)
        }
    }
    deserializer.deserialize_any(Count)
}

/// The most documents a new page may ask for (Convex's bound).
pub const MAX_PAGE_ITEMS: usize = 32_000;

/// One page, as `usePaginatedQuery` reads it: pass `continue_cursor` back for the next page.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PaginationResult {
    /// The page's documents, in the query's order.
    pub page: Vec<Document>,
    /// Whether this page reaches the end of the range.
    #[serde(rename = "isDone")]
    pub is_done: bool,
    /// Where the next page starts; a string even on the last page.
    #[serde(rename = "continueCursor")]
    pub continue_cursor: String,
    /// Where this page could be split in two (near its middle), when it has two or more
    /// documents.
    #[serde(rename = "splitCursor")]
    pub split_cursor: Option<String>,
    /// `"SplitRecommended"` when the page grew past twice what it asked for; else `None`.
    #[serde(rename = "pageStatus")]
    pub page_status: Option<String>,
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

    /// Reads in `order` ([`Asc`] unless set).
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    fn request(&self, limit: usize, cursor: Option<Vec<u8>>) -> Vec<(&'static str, Value)> {
        let (eq, lower, upper) = self.range.to_value();
        vec![
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
        ]
    }

    fn scan(
        &self,
        limit: usize,
        cursor: Option<Vec<u8>>,
    ) -> Result<(Vec<Document>, Option<Vec<u8>>, bool)> {
        let (documents, mut response) = self.send(object(self.request(limit, cursor)))?;
        let cursor = match response.remove("cursor") {
            Some(Value::Bytes(c)) => Some(c),
            _ => None,
        };
        let is_done = matches!(response.get("isDone"), Some(Value::Boolean(true)));
        Ok((documents, cursor, is_done))
    }

    /// Sends a scan request: the documents, and the rest of the response.
    fn send(&self, request: Value) -> Result<(Vec<Document>, Object)> {
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
        Ok((documents, response))
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

    /// One page of the range, as `usePaginatedQuery` drives it. A page keeps its end when the
    /// query runs again (the server remembers it in the query's journal), so while documents
    /// are added and deleted pages grow and shrink in place: the client's pages together stay
    /// gapless and without duplicates. Several paginated reads may share one function.
    ///
    /// ```no_run
    /// # use ferrovex_sdk::prelude::*;
    /// # fn f(ctx: &QueryCtx, pagination_opts: PaginationOptions) -> Result<PaginationResult> {
    /// ctx.db.query("messages").order(Desc).paginate(pagination_opts)
    /// # }
    /// ```
    pub fn paginate(self, options: PaginationOptions) -> Result<PaginationResult> {
        let cursor = options.cursor.as_deref().map(decode_cursor).transpose()?;
        let end = options
            .end_cursor
            .as_deref()
            .map(decode_cursor)
            .transpose()?;
        let mut request = self.request(options.num_items, cursor);
        request.push(("paginate", Value::Boolean(true)));
        request.push(("endCursor", end.map(Value::Bytes).unwrap_or(Value::Null)));
        let (page, mut response) = self.send(object(request))?;
        let continue_cursor = match response.remove("cursor") {
            Some(Value::Bytes(c)) => encode_cursor(&c),
            _ => return Err(Error::new("malformed scan response from the host")),
        };
        let split_cursor = match response.remove("splitCursor") {
            Some(Value::Bytes(c)) => Some(encode_cursor(&c)),
            _ => None,
        };
        let page_status = (page.len() > 2 * options.num_items).then(|| "SplitRecommended".into());
        Ok(PaginationResult {
            page,
            is_done: matches!(response.get("isDone"), Some(Value::Boolean(true))),
            continue_cursor,
            split_cursor,
            page_status,
        })
    }
}

/// The cursor of the end of a range: the last page's `continue_cursor`.
const END_CURSOR: &str = "end";

/// Cursors travel as lowercase hex of an index key (opaque to clients, safe in JSON and
/// URLs), and the end of the range as `"end"` (odd-length, so never hex).
fn encode_cursor(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return END_CURSOR.into();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(text: &str) -> Result<Vec<u8>> {
    let invalid = || {
        Error::new(format!(
            "InvalidCursor: {text:?} is not a cursor this server issued; start from the first page"
        ))
    };
    if text == END_CURSOR {
        return Ok(Vec::new());
    }
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return Err(invalid());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(invalid)
        })
        .collect()
}
