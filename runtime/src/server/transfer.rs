//! `GET /api/export`, `POST /api/import/tables` and `POST /api/import/documents`: every
//! table out as JSON Lines (the format of `crate::transfer`), and back in, for
//! `runtime export` and `runtime import`.
//!
//! An export reads one pinned snapshot, so it is consistent however long it streams, and
//! streams through a small bounded channel, so a slow reader holds back the reading instead
//! of filling memory. An import is driven by its client: first the tables (created with
//! their exported numbers where free, refused where they already hold documents), then the
//! documents in batches, each batch one transaction, checked against the deployed schema like
//! any write. Subscribers see each batch as it commits.

// An import failure carries the store's error by value.
#![allow(clippy::result_large_err)]

use super::call_request::read_body;
use super::response::{json, request_error, HttpResponse};
use super::Served;
use crate::store::{Store, StoreError};
use crate::transfer::{document_line, end_line, header_line, ImportedDocument, TableHeader};
use crate::wasm::DeployedModule;
use ferrovex_model::{Object, Value};
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value as Json};
use std::io;
use std::sync::Arc;
use tokio::sync::mpsc;

/// An export is sent in chunks of about this size.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;

/// Chunks read ahead of a slow client.
const EXPORT_CHUNKS_AHEAD: usize = 4;

/// Streams every table at one snapshot. The server shutting down ends the stream early (the
/// client sees no `end` line), so a client that stops reading cannot hold up shutdown.
pub fn export(app: &Arc<Served>) -> HttpResponse {
    let (sender, receiver) = mpsc::channel(EXPORT_CHUNKS_AHEAD);
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = write_export(&store, &sender) {
            tracing::warn!("export failed: {e}");
            let _ = sender.blocking_send(Err(io::Error::other(format!("export failed: {e}"))));
        }
    });
    let chunks = stream::unfold(Some((receiver, app.stopping.clone())), |state| async move {
        let (mut receiver, mut stopping) = state?;
        let next = tokio::select! {
            chunk = receiver.recv() => chunk,
            _ = stopping.wait_for(|stopping| *stopping) => {
                Some(Err(io::Error::other("the server is shutting down")))
            }
        };
        // After an error the stream ends: hyper then cuts the response short.
        let chunk = next?;
        let go_on = chunk.is_ok();
        Some((
            chunk.map(Frame::data),
            go_on.then_some((receiver, stopping)),
        ))
    });
    let mut response = Response::new(StreamBody::new(chunks).boxed_unsync());
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// Writes the export of `store` into `sender`; returns early, without error, once the
/// client has gone.
fn write_export(store: &Store, sender: &mpsc::Sender<io::Result<Bytes>>) -> Result<(), StoreError> {
    let snapshot = store.snapshot();
    // The host's own tables (the scheduler's jobs and crons) belong to this deployment.
    let tables: Vec<_> = snapshot
        .tables()
        .into_iter()
        .filter(|t| !crate::store::catalog::is_system_table(&t.name))
        .collect();
    let mut headers = Vec::with_capacity(tables.len());
    for table in &tables {
        headers.push(TableHeader::of(
            table,
            snapshot.count_documents(&table.name)?,
        ));
    }
    let mut chunk = header_line(snapshot.ts(), &headers);
    chunk.push('\n');
    let mut total = 0u64;
    for table in &tables {
        for document in snapshot.documents(&table.name)? {
            chunk.push_str(&document_line(&table.name, &document?));
            chunk.push('\n');
            total += 1;
            if chunk.len() >= EXPORT_CHUNK_BYTES {
                let full = std::mem::take(&mut chunk);
                if sender.blocking_send(Ok(Bytes::from(full))).is_err() {
                    return Ok(());
                }
            }
        }
    }
    chunk.push_str(&end_line(total));
    chunk.push('\n');
    let _ = sender.blocking_send(Ok(Bytes::from(chunk)));
    Ok(())
}

/// `{"tables": [{"name", "number", "indexes"}, ...]}` (the export header's tables) →
/// `{"status": "success", "tables": [{"name", "number"}, ...]}`, the number each table has
/// here, which the client needs to rewrite ids when it differs.
pub async fn import_tables(app: Arc<Served>, request: Request<Incoming>) -> HttpResponse {
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let tables = match parse_field(
        &body,
        "tables",
        "{\"tables\": [{\"name\", \"number\", \"indexes\"}, ...]}",
    )
    .and_then(|tables| {
        tables
            .iter()
            .enumerate()
            .map(|(i, t)| TableHeader::from_json(t).map_err(|e| format!("tables[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()
    }) {
        Ok(tables) => tables,
        Err(message) => return bad_request(format!("POST /api/import/tables: {message}")),
    };
    let store = app.store.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        tables
            .iter()
            .map(|t| store.prepare_import_table(&t.name, t.number, &t.indexes))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .expect("preparing tables does not panic");
    match prepared {
        Ok(tables) => json(
            StatusCode::OK,
            &json!({
                "status": "success",
                "tables": tables.iter()
                    .map(|t| json!({"name": t.name, "number": t.number}))
                    .collect::<Vec<_>>(),
            }),
        ),
        Err(e) => store_error("POST /api/import/tables", &e),
    }
}

/// `{"documents": [{"table", "value"}, ...]}` → `{"status": "success", "imported": n, "ts":
/// "<ts>"}`. A value with `_id` and `_creationTime` (its id already in this store's table
/// numbers) keeps them; a value with neither is inserted as a new document, its table made
/// on first insert like any other. All of the batch or none of it is written.
pub async fn import_documents(
    app: Arc<Served>,
    module: Arc<DeployedModule>,
    request: Request<Incoming>,
) -> HttpResponse {
    const WHAT: &str = "POST /api/import/documents";
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let documents = match parse_field(
        &body,
        "documents",
        "{\"documents\": [{\"table\", \"value\"}, ...]}",
    )
    .and_then(|documents| {
        documents
            .iter()
            .enumerate()
            .map(|(i, d)| parse_document(d, &module).map_err(|e| format!("documents[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()
    }) {
        Ok(documents) => documents,
        Err(message) => return bad_request(format!("{WHAT}: {message}")),
    };
    let store = app.store.clone();
    let count = documents.len();
    let committed = tokio::task::spawn_blocking(move || {
        store.run_mutation(|tx| {
            for (i, document) in documents.iter().enumerate() {
                match document {
                    Batched::Kept(d) => {
                        tx.insert_imported(&d.table, d.id, d.creation_time, d.fields.clone())
                    }
                    Batched::New { table, fields } => tx.insert(table, fields.clone()).map(|_| ()),
                }
                .map_err(|e| ImportFailure::At(i, e))?;
            }
            Ok::<_, ImportFailure>(())
        })
    })
    .await
    .expect("importing does not panic");
    match committed {
        Ok(committed) => json(
            StatusCode::OK,
            &json!({"status": "success", "imported": count, "ts": ferrovex_model::json::encode_u64(committed.ts)}),
        ),
        Err(ImportFailure::At(i, e)) => store_error(&format!("{WHAT}: documents[{i}]"), &e),
        Err(ImportFailure::Store(e)) => store_error(WHAT, &e),
    }
}

enum ImportFailure {
    At(usize, StoreError),
    Store(StoreError),
}

impl From<StoreError> for ImportFailure {
    fn from(e: StoreError) -> Self {
        ImportFailure::Store(e)
    }
}

/// A document of an import batch.
enum Batched {
    /// With the id and creation time it was exported with.
    Kept(ImportedDocument),
    /// Without system fields: it gets new ones, as an insert does.
    New { table: String, fields: Object },
}

fn parse_document(json: &Json, module: &DeployedModule) -> Result<Batched, String> {
    let table = json
        .get("table")
        .and_then(Json::as_str)
        .ok_or("\"table\" must be a string")?;
    if crate::store::catalog::is_system_table(table) {
        return Err(format!(
            "{table} is a system table: only the host writes it"
        ));
    }
    let value = json.get("value").ok_or("a document needs \"value\"")?;
    let Value::Object(value) =
        ferrovex_model::json::from_json(value).map_err(|e| format!("\"value\": {e}"))?
    else {
        return Err("\"value\" must be an object".into());
    };
    let (document, fields, named) = if value.contains_key("_id") {
        let document = ImportedDocument::from_value(table, value)?;
        let named = format!("document {}", document.id);
        let fields = document.fields.clone();
        (Batched::Kept(document), fields, named)
    } else if value.contains_key("_creationTime") {
        return Err(
            "a document without _id is inserted as a new one, and takes no _creationTime".into(),
        );
    } else {
        let document = Batched::New {
            table: table.to_owned(),
            fields: value.clone(),
        };
        (document, value, "the document".to_owned())
    };
    // Declared schemas hold for every write, imports included.
    if let Some(declared) = module.schema.table(table) {
        declared
            .document
            .check(&Value::Object(fields))
            .map_err(|e| format!("{named} for table {table:?} does not match its schema: {e}"))?;
    }
    Ok(document)
}

/// The array under `field` of a JSON object body.
fn parse_field(body: &[u8], field: &str, shape: &str) -> Result<Vec<Json>, String> {
    let json: Json = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not valid JSON ({e}); expected {shape}"))?;
    match json {
        Json::Object(mut object) => match object.remove(field) {
            Some(Json::Array(items)) => Ok(items),
            _ => Err(format!("expected {shape}")),
        },
        other => Err(format!(
            "the body must be a JSON object, got {}; expected {shape}",
            ferrovex_model::json::json_kind(&other)
        )),
    }
}

fn bad_request(message: String) -> HttpResponse {
    request_error(StatusCode::BAD_REQUEST, "BadImport", message)
}

/// 400 for what the request got wrong, 500 for a failure of the store itself.
fn store_error(what: &str, error: &StoreError) -> HttpResponse {
    let (status, code) = match error {
        StoreError::Engine(_) | StoreError::Corrupt(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError")
        }
        _ => (StatusCode::BAD_REQUEST, "BadImport"),
    };
    request_error(status, code, format!("{what}: {error}"))
}
