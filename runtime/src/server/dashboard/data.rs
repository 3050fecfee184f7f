//! The Data page's endpoints: tables with their counts, indexes and declared types; pages of
//! a table's documents in any index's order, filtered by field values; and writes, each one
//! transaction checked like a function's write (field names, sizes, the app's schema).

use super::{bad, internal};
use crate::server::call_request::read_body;
use crate::server::response::{json, request_error, HttpResponse};
use crate::server::Served;
use crate::store::catalog::is_system_table;
use crate::store::{IndexRange, Order, StoreError, Transaction};
use crate::wasm::DeployedModule;
use base64::Engine as _;
use ferrovex_model::json::{encode_u64, from_json, to_json};
use ferrovex_model::limits::{MAX_DASHBOARD_PAGE, MAX_DASHBOARD_PAGE_BYTES, MAX_DASHBOARD_SCAN};
use ferrovex_model::{DocumentId, Object, Value};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value as Json};
use std::sync::Arc;

/// Documents per page when the request does not say.
const DEFAULT_PAGE: usize = 50;

/// `GET /api/dashboard/tables`.
pub async fn tables(app: Arc<Served>, module: Arc<DeployedModule>) -> HttpResponse {
    const ENDPOINT: &str = "GET /api/dashboard/tables";
    let listed = tokio::task::spawn_blocking(move || {
        let snapshot = app.store.snapshot();
        let stored = snapshot.tables();
        let mut tables: Vec<Json> = Vec::new();
        for info in &stored {
            let count = app.dashboard.counts.count(&app.store, &info.name)?;
            let indexes: Vec<Json> = info
                .indexes
                .iter()
                .map(|i| json!({"name": i.name, "fields": i.fields}))
                .collect();
            tables.push(json!({
                "name": info.name,
                "system": is_system_table(&info.name),
                "documents": count,
                "indexes": indexes,
                "schema": schema_of(&module, &info.name),
            }));
        }
        // Declared tables nothing has written yet: the schema says what they will hold.
        for declared in &module.schema.tables {
            if stored.iter().all(|t| t.name != declared.name) {
                let mut indexes = vec![
                    json!({"name": crate::store::BY_ID, "fields": []}),
                    json!({"name": crate::store::BY_CREATION_TIME, "fields": ["_creationTime"]}),
                ];
                indexes.extend(
                    declared
                        .indexes
                        .iter()
                        .map(|(name, fields)| json!({"name": name, "fields": fields})),
                );
                tables.push(json!({
                    "name": declared.name,
                    "system": false,
                    "documents": 0,
                    "indexes": indexes,
                    "schema": schema_of(&module, &declared.name),
                }));
            }
        }
        // The app's tables by name, the host's after them.
        tables.sort_by_key(|t| {
            (
                t["system"].as_bool().unwrap_or(false),
                t["name"].as_str().unwrap_or_default().to_owned(),
            )
        });
        Ok::<_, StoreError>(json!({"ts": encode_u64(snapshot.ts()), "tables": tables}))
    })
    .await
    .expect("listing tables does not panic");
    match listed {
        Ok(body) => json(StatusCode::OK, &body),
        Err(e) => internal(ENDPOINT, e),
    }
}

fn schema_of(module: &DeployedModule, table: &str) -> Json {
    module
        .schema
        .table(table)
        .map_or(Json::Null, |t| to_json(&t.document.to_value()))
}

/// What a page request asks for.
#[derive(Debug, PartialEq)]
struct PageRequest {
    table: String,
    index: String,
    order: Order,
    limit: usize,
    cursor: Option<Vec<u8>>,
    /// `(field path, value)`: a document matches when each path holds its value.
    filter: Vec<(String, Value)>,
}

fn page_request(query: &str) -> Result<PageRequest, HttpResponse> {
    const ENDPOINT: &str = "GET /api/dashboard/documents";
    let mut request = PageRequest {
        table: String::new(),
        index: crate::store::BY_CREATION_TIME.to_owned(),
        order: Order::Desc,
        limit: DEFAULT_PAGE,
        cursor: None,
        filter: Vec::new(),
    };
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "table" => request.table = value.into_owned(),
            "index" if !value.is_empty() => request.index = value.into_owned(),
            "order" => {
                request.order = match &*value {
                    "asc" => Order::Asc,
                    "desc" | "" => Order::Desc,
                    other => {
                        return Err(bad(
                            "BadRequest",
                            format!("{ENDPOINT}: order is \"asc\" or \"desc\", got {other:?}"),
                        ))
                    }
                }
            }
            "limit" => {
                request.limit = match value.parse::<usize>() {
                    Ok(n) if (1..=MAX_DASHBOARD_PAGE).contains(&n) => n,
                    _ => {
                        return Err(bad(
                            "BadRequest",
                            format!(
                                "{ENDPOINT}: limit is a number of documents from 1 to \
                                 MAX_DASHBOARD_PAGE ({MAX_DASHBOARD_PAGE}), got {value:?}"
                            ),
                        ))
                    }
                }
            }
            "cursor" if !value.is_empty() => {
                request.cursor = Some(
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(value.as_bytes())
                        .map_err(|_| {
                            bad(
                                "BadCursor",
                                format!("{ENDPOINT}: the cursor is not one this endpoint gave; pass back a page's \"cursor\" as it is"),
                            )
                        })?,
                )
            }
            "filter" if !value.is_empty() => request.filter = parse_filter(&value)?,
            "cursor" | "filter" | "index" => {}
            other => {
                return Err(bad(
                    "BadRequest",
                    format!("{ENDPOINT}: unknown parameter {other:?}; it takes table, index, order, limit, cursor and filter"),
                ))
            }
        }
    }
    if request.table.is_empty() {
        return Err(bad(
            "BadRequest",
            format!("{ENDPOINT}: the table parameter is missing (?table=NAME)"),
        ));
    }
    Ok(request)
}

/// `{"user": "ann", "address.city": "Oslo"}`: field paths and the values (wire form) they
/// must hold.
fn parse_filter(text: &str) -> Result<Vec<(String, Value)>, HttpResponse> {
    let refuse = |reason: String| {
        bad(
            "BadFilter",
            format!("GET /api/dashboard/documents: the filter {reason}; write a JSON object of field paths and values, like {{\"user\": \"ann\"}}"),
        )
    };
    let json: Json =
        serde_json::from_str(text).map_err(|e| refuse(format!("is not JSON ({e})")))?;
    let Json::Object(fields) = json else {
        return Err(refuse(format!(
            "is {}, not an object",
            ferrovex_model::json::json_kind(&json)
        )));
    };
    fields
        .into_iter()
        .map(|(path, value)| {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(refuse(format!("has the field path {path:?}")));
            }
            let value = from_json(&value)
                .map_err(|e| refuse(format!("holds a value that is not valid at {path:?}: {e}")))?;
            Ok((path, value))
        })
        .collect()
}

/// The value at a dotted path of a document (`_id` and `_creationTime` included).
fn field_at<'a>(document: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(document, |value, name| value.as_object()?.get(name))
}

/// `GET /api/dashboard/documents`.
pub async fn documents(app: Arc<Served>, query: &str) -> HttpResponse {
    const ENDPOINT: &str = "GET /api/dashboard/documents";
    let request = match page_request(query) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let page = tokio::task::spawn_blocking(move || read_page(&app, &request))
        .await
        .expect("reading a page does not panic");
    match page {
        Ok(body) => json(StatusCode::OK, &body),
        Err(e @ StoreError::UnknownTable { .. }) => request_error(
            StatusCode::NOT_FOUND,
            "NoSuchTable",
            format!("{ENDPOINT}: {e}"),
        ),
        Err(e @ StoreError::UnknownIndex { .. }) => {
            bad("UnknownIndex", format!("{ENDPOINT}: {e}"))
        }
        Err(StoreError::InvalidCursor { .. }) => bad(
            "BadCursor",
            format!("{ENDPOINT}: the cursor is not a position in this table's index; pass back a page's \"cursor\" with the same table, index and order"),
        ),
        Err(e) => internal(ENDPOINT, e),
    }
}

fn read_page(app: &Served, request: &PageRequest) -> Result<Json, StoreError> {
    let snapshot = app.store.snapshot();
    if snapshot.tables().iter().all(|t| t.name != request.table) {
        return Err(StoreError::UnknownTable {
            table: request.table.clone(),
        });
    }
    let mut documents = Vec::new();
    let mut cursor = request.cursor.clone();
    let mut scanned = 0;
    let mut is_done = false;
    // Each step is a read-only transaction of its own at one snapshot: its read limits hold
    // per step, and every step reads the same state. A step reads no more documents than
    // the page still lacks, so the page ends on a step's end and that step's cursor is the
    // page's. A step whose documents are too large for one transaction's read limit is
    // taken again at half the size (one document always fits).
    let mut bytes = 0;
    while documents.len() < request.limit
        && scanned < MAX_DASHBOARD_SCAN
        && bytes < MAX_DASHBOARD_PAGE_BYTES
    {
        let mut wanted = (request.limit - documents.len()).min(MAX_DASHBOARD_SCAN - scanned);
        let page = loop {
            let mut tx: Transaction = snapshot.begin_read_only();
            match tx.scan(
                &request.table,
                &request.index,
                &IndexRange::all(),
                request.order,
                wanted,
                cursor.as_deref(),
            ) {
                Ok(page) => break page,
                Err(StoreError::LimitExceeded { .. }) if wanted > 1 => wanted /= 2,
                Err(e) => return Err(e),
            }
        };
        scanned += page.documents.len();
        is_done = page.is_done;
        for document in page.documents {
            let value = document.to_value();
            bytes += ferrovex_model::binary::encoded_len(&value);
            let matches = request
                .filter
                .iter()
                .all(|(path, wanted)| field_at(&value, path) == Some(wanted));
            if matches {
                documents.push(to_json(&value));
            }
        }
        if page.cursor.is_some() {
            cursor = page.cursor;
        }
        if is_done {
            break;
        }
    }
    Ok(json!({
        "ts": encode_u64(snapshot.ts()),
        "documents": documents,
        "cursor": cursor.map(|c| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c)),
        "isDone": is_done,
        "scanned": scanned,
    }))
}

/// Which write a request makes.
#[derive(Clone, Copy, Debug)]
pub enum Write {
    Insert,
    Replace,
    Patch,
    Delete,
}

impl Write {
    fn endpoint(self) -> &'static str {
        match self {
            Write::Insert => "POST /api/dashboard/documents/insert",
            Write::Replace => "POST /api/dashboard/documents/replace",
            Write::Patch => "POST /api/dashboard/documents/patch",
            Write::Delete => "POST /api/dashboard/documents/delete",
        }
    }

    fn shape(self) -> &'static str {
        match self {
            Write::Insert => "{\"table\", \"fields\": {...}}",
            Write::Replace => "{\"id\", \"fields\": {...}}",
            Write::Patch => "{\"id\", \"set\"?: {...}, \"remove\"?: [names]}",
            Write::Delete => "{\"ids\": [...]}",
        }
    }
}

/// Why a write was refused, before or inside its transaction.
enum Refused {
    Schema(String),
    System(String),
    Store(StoreError),
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Refused {
        Refused::Store(e)
    }
}

/// One write, parsed.
enum Change {
    Insert {
        table: String,
        fields: Object,
    },
    Replace {
        id: DocumentId,
        fields: Object,
    },
    Patch {
        id: DocumentId,
        set: Object,
        remove: Vec<String>,
    },
    Delete {
        ids: Vec<DocumentId>,
    },
}

fn parse_change(kind: Write, body: &[u8]) -> Result<Change, String> {
    let shape = kind.shape();
    let json: Json = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not JSON ({e}); send {shape}"))?;
    let Json::Object(mut body) = json else {
        return Err(format!("the body must be a JSON object {shape}"));
    };
    let mut take = |name: &str| body.remove(name);
    let object = |value: Option<Json>, name: &str| -> Result<Object, String> {
        match value.map(|v| from_json(&v)) {
            Some(Ok(Value::Object(o))) => Ok(o),
            Some(Ok(other)) => Err(format!(
                "\"{name}\" must be an object, got {}",
                other.type_name()
            )),
            Some(Err(e)) => Err(format!("\"{name}\" is not a valid value: {e}")),
            None => Err(format!("\"{name}\" is missing; send {shape}")),
        }
    };
    let id = |value: Option<Json>| -> Result<DocumentId, String> {
        let text = value
            .as_ref()
            .and_then(Json::as_str)
            .ok_or_else(|| format!("\"id\" must be a document id string; send {shape}"))?;
        DocumentId::parse(text).map_err(|e| format!("\"id\" {text:?}: {e}"))
    };
    let change = match kind {
        Write::Insert => {
            let table = match take("table") {
                Some(Json::String(t)) => t,
                _ => return Err(format!("\"table\" must be a table name; send {shape}")),
            };
            Change::Insert {
                table,
                fields: object(take("fields"), "fields")?,
            }
        }
        Write::Replace => Change::Replace {
            id: id(take("id"))?,
            fields: object(take("fields"), "fields")?,
        },
        Write::Patch => {
            let id = id(take("id"))?;
            let set = match take("set") {
                None | Some(Json::Null) => Object::new(),
                set => object(set, "set")?,
            };
            let remove = match take("remove") {
                None | Some(Json::Null) => Vec::new(),
                Some(remove) => serde_json::from_value(remove)
                    .map_err(|_| "\"remove\" must be an array of field names".to_owned())?,
            };
            Change::Patch { id, set, remove }
        }
        Write::Delete => {
            let ids: Vec<String> = take("ids")
                .and_then(|ids| serde_json::from_value(ids).ok())
                .ok_or_else(|| format!("\"ids\" must be an array of document ids; send {shape}"))?;
            if ids.is_empty() {
                return Err("\"ids\" is empty: name at least one document".into());
            }
            Change::Delete {
                ids: ids
                    .iter()
                    .map(|text| {
                        DocumentId::parse(text).map_err(|e| format!("\"ids\": {text:?}: {e}"))
                    })
                    .collect::<Result<_, _>>()?,
            }
        }
    };
    if let Some(extra) = body.keys().next() {
        return Err(format!("unexpected field {extra:?}; send {shape}"));
    }
    Ok(change)
}

/// The table an existing document belongs to, refused when it is the host's.
fn writable_table_of(tx: &Transaction, id: &DocumentId) -> Result<String, Refused> {
    let table =
        tx.table_of_id(id)
            .map(|t| t.name.clone())
            .ok_or_else(|| StoreError::UnknownTableOfId {
                id: id.to_string(),
                table_number: id.table_number(),
            })?;
    not_system(&table)?;
    Ok(table)
}

fn not_system(table: &str) -> Result<(), Refused> {
    if is_system_table(table) {
        return Err(Refused::System(format!(
            "{table} is a system table: the server writes it (cancel a scheduled job on the Schedules page)"
        )));
    }
    Ok(())
}

fn apply(tx: &mut Transaction, module: &DeployedModule, change: &Change) -> Result<Json, Refused> {
    let schema = |table: &str, fields: &Object| {
        module
            .schema
            .check_document(table, fields)
            .map_err(Refused::Schema)
    };
    match change {
        Change::Insert { table, fields } => {
            not_system(table)?;
            schema(table, fields)?;
            let id = tx.insert(table, fields.clone())?;
            Ok(json!({"id": id.to_string()}))
        }
        Change::Replace { id, fields } => {
            let table = writable_table_of(tx, id)?;
            schema(&table, fields)?;
            tx.replace(*id, fields.clone())?;
            Ok(json!({"id": id.to_string()}))
        }
        Change::Patch { id, set, remove } => {
            let table = writable_table_of(tx, id)?;
            let current = tx.get(*id)?.ok_or_else(|| StoreError::NotFound {
                table: table.clone(),
                id: id.to_string(),
            })?;
            let mut merged = current.fields;
            merged.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
            for name in remove {
                merged.remove(name);
            }
            schema(&table, &merged)?;
            tx.replace(*id, merged)?;
            Ok(json!({"id": id.to_string()}))
        }
        Change::Delete { ids } => {
            for id in ids {
                writable_table_of(tx, id)?;
                tx.delete(*id)?;
            }
            Ok(json!({"deleted": ids.len()}))
        }
    }
}

/// `POST /api/dashboard/documents/{insert,replace,patch,delete}`: one transaction.
pub async fn write(
    app: Arc<Served>,
    module: Arc<DeployedModule>,
    kind: Write,
    request: Request<Incoming>,
) -> HttpResponse {
    let endpoint = kind.endpoint();
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let change = match parse_change(kind, &body) {
        Ok(change) => change,
        Err(reason) => return bad("BadRequest", format!("{endpoint}: {reason}")),
    };
    let outcome = tokio::task::spawn_blocking(move || {
        app.store
            .run_mutation(|tx| apply(tx, &module, &change))
            .map(|committed| committed.value)
    })
    .await
    .expect("a dashboard write does not panic");
    match outcome {
        Ok(answer) => json(StatusCode::OK, &answer),
        Err(Refused::Schema(reason)) => bad("SchemaMismatch", format!("{endpoint}: {reason}")),
        Err(Refused::System(reason)) => bad("SystemTable", format!("{endpoint}: {reason}")),
        Err(Refused::Store(
            e @ (StoreError::NotFound { .. } | StoreError::UnknownTableOfId { .. }),
        )) => request_error(
            StatusCode::NOT_FOUND,
            "DocumentNotFound",
            format!("{endpoint}: {e}"),
        ),
        Err(Refused::Store(
            e @ (StoreError::InvalidDocument { .. }
            | StoreError::InvalidName { .. }
            | StoreError::LimitExceeded { .. }
            | StoreError::InvalidId(_)),
        )) => bad("BadDocument", format!("{endpoint}: {e}")),
        Err(Refused::Store(e)) => internal(endpoint, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(response: HttpResponse) -> (StatusCode, String) {
        let status = response.status();
        let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(
            response.into_body(),
        ))
        .expect("a full body")
        .expect("readable")
        .to_bytes();
        let json: Json = serde_json::from_slice(&body).unwrap();
        (
            status,
            format!(
                "{} {}",
                json["code"].as_str().unwrap(),
                json["message"].as_str().unwrap()
            ),
        )
    }

    #[test]
    fn page_requests_and_their_errors() {
        let request = page_request(
            "table=messages&index=by_user&order=asc&limit=20&filter=%7B%22user%22%3A%22ann%22%7D",
        )
        .unwrap();
        assert_eq!(request.table, "messages");
        assert_eq!(request.index, "by_user");
        assert_eq!(request.order, Order::Asc);
        assert_eq!(request.limit, 20);
        assert_eq!(
            request.filter,
            vec![("user".to_owned(), Value::from("ann"))]
        );
        let defaults = page_request("table=t").unwrap();
        assert_eq!(
            (defaults.index.as_str(), defaults.order, defaults.limit),
            ("by_creation_time", Order::Desc, 50)
        );
        // Each refusal names the rule and what was given.
        let cases = [
            (
                "",
                "BadRequest GET /api/dashboard/documents: the table parameter is missing",
            ),
            (
                "table=t&limit=0",
                "limit is a number of documents from 1 to MAX_DASHBOARD_PAGE (500), got \"0\"",
            ),
            ("table=t&limit=501", "got \"501\""),
            (
                "table=t&order=up",
                "order is \"asc\" or \"desc\", got \"up\"",
            ),
            ("table=t&cursor=%%%", "BadCursor"),
            (
                "table=t&filter=%5B1%5D",
                "BadFilter GET /api/dashboard/documents: the filter is an array, not an object",
            ),
            ("table=t&filter=%7B", "the filter is not JSON"),
            (
                "table=t&filter=%7B%22a..b%22%3A1%7D",
                "has the field path \"a..b\"",
            ),
            (
                "table=t&filter=%7B%22a%22%3A%7B%22%24integer%22%3A1%7D%7D",
                "holds a value that is not valid at \"a\"",
            ),
            ("table=t&colour=red", "unknown parameter \"colour\""),
        ];
        for (query, expected) in cases {
            let (status, text) = message(page_request(query).unwrap_err());
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert!(text.contains(expected), "{query}: {text}");
        }
    }

    #[test]
    fn write_bodies_and_their_errors() {
        assert!(matches!(
            parse_change(Write::Insert, br#"{"table": "t", "fields": {"n": {"$integer": "AQAAAAAAAAA="}}}"#),
            Ok(Change::Insert { table, fields }) if table == "t" && fields["n"] == Value::Int64(1)
        ));
        let cases: [(Write, &[u8], &str); 8] = [
            (Write::Insert, b"{", "the body is not JSON"),
            (Write::Insert, b"[]", "the body must be a JSON object"),
            (
                Write::Insert,
                br#"{"fields": {}}"#,
                "\"table\" must be a table name",
            ),
            (
                Write::Insert,
                br#"{"table": "t", "fields": 3}"#,
                "\"fields\" must be an object, got float64",
            ),
            (
                Write::Insert,
                br#"{"table": "t", "fields": {}, "x": 1}"#,
                "unexpected field \"x\"",
            ),
            (
                Write::Replace,
                br#"{"id": "nope", "fields": {}}"#,
                "\"id\" \"nope\"",
            ),
            (Write::Delete, br#"{"ids": []}"#, "\"ids\" is empty"),
            (
                Write::Patch,
                br#"{"id": 7}"#,
                "\"id\" must be a document id string",
            ),
        ];
        for (kind, body, expected) in cases {
            match parse_change(kind, body) {
                Err(reason) => assert!(reason.contains(expected), "{reason}"),
                Ok(_) => panic!("{} accepted", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn field_paths_reach_into_objects() {
        let document = from_json(&json!({"_id": "x", "a": {"b": {"c": 3}}, "s": "t"})).unwrap();
        assert_eq!(field_at(&document, "a.b.c"), Some(&Value::Float64(3.0)));
        assert_eq!(field_at(&document, "s"), Some(&Value::from("t")));
        assert_eq!(field_at(&document, "s.t"), None);
        assert_eq!(field_at(&document, "missing"), None);
    }
}
