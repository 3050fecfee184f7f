//! Which handler answers which request.

use super::response::{api_error, method_not_allowed, HttpResponse};
use super::{api, browser_client, static_files, transfer, Served};
use crate::sync::engine::SyncEngine;
use ferrovex_model::abi::FunctionKind;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use std::sync::Arc;

pub async fn handle(
    app: Arc<Served>,
    sync: &Arc<SyncEngine>,
    request: Request<Incoming>,
) -> HttpResponse {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match (&method, path.as_str()) {
        (&Method::POST, "/api/query") => {
            api::call(app, sync.module(), FunctionKind::Query, request).await
        }
        (&Method::POST, "/api/mutation") => {
            api::call(app, sync.module(), FunctionKind::Mutation, request).await
        }
        (&Method::GET, "/api/functions") => api::functions(&sync.module()),
        (&Method::GET, "/api/export") => transfer::export(&app),
        (&Method::POST, "/api/import/tables") => transfer::import_tables(app, request).await,
        (&Method::POST, "/api/import/documents") => {
            transfer::import_documents(app, sync.module(), request).await
        }
        // How mutations committed since the store opened (for benchmarks and diagnostics).
        (&Method::GET, "/api/metrics") => {
            let stats = app.store.stats();
            let count = |c: &std::sync::atomic::AtomicU64| {
                c.load(std::sync::atomic::Ordering::Relaxed).to_string()
            };
            super::response::json(
                StatusCode::OK,
                &serde_json::json!({
                    "committed": count(&stats.committed),
                    "conflictRetries": count(&stats.conflict_retries),
                    "serialRuns": count(&stats.serial_runs),
                }),
            )
        }
        // The WebSocket sync endpoint (PROTOCOL.md section 3).
        (_, "/api/sync") => match crate::sync::upgrade::upgrade(sync, request) {
            Ok(switching_protocols) => switching_protocols,
            Err((status, message)) => {
                let mut response = api_error(status, message, None, &[]);
                if status == StatusCode::UPGRADE_REQUIRED || status == StatusCode::METHOD_NOT_ALLOWED {
                    // RFC 6455 section 4.4: say which version and protocol to upgrade to.
                    let headers = response.headers_mut();
                    headers.insert("upgrade", HeaderValue::from_static("websocket"));
                    headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
                    if status == StatusCode::METHOD_NOT_ALLOWED {
                        headers.insert("allow", HeaderValue::from_static("GET"));
                    }
                }
                response
            }
        },
        // Function executions as they happen, for `runtime logs` (see `logs`).
        (_, "/api/logs") => {
            let (engine, host) = (sync.clone(), app.host.clone());
            let upgraded = crate::sync::upgrade::upgrade_to(sync, "/api/logs", request, |socket| {
                super::logs::stream(engine, host, socket)
            });
            upgraded.unwrap_or_else(|(status, message)| api_error(status, message, None, &[]))
        }
        (_, "/api/query" | "/api/mutation") => method_not_allowed(&path, &method, "POST"),
        (_, "/api/functions" | "/api/metrics" | "/api/export") => {
            method_not_allowed(&path, &method, "GET")
        }
        (_, "/api/import/tables" | "/api/import/documents") => {
            method_not_allowed(&path, &method, "POST")
        }
        (_, browser_client::PATH) => browser_client::serve(&method),
        // The API's namespace never falls through to web files, so a typo gets a JSON answer.
        (_, p) if p == "/api" || p.starts_with("/api/") => api_error(
            StatusCode::NOT_FOUND,
            format!(
                "{method} {p}: no such API endpoint; there are POST /api/query, POST /api/mutation, GET /api/functions, GET /api/metrics, GET /api/sync (WebSocket), GET /api/logs (WebSocket), GET /api/export, POST /api/import/tables, POST /api/import/documents, GET /api/client.js"
            ),
            None,
            &[],
        ),
        (&Method::GET, _) => static_files::serve(app.web_dir.as_deref(), &path).await,
        // hyper leaves out the body of a response to HEAD.
        (&Method::HEAD, _) => static_files::serve(app.web_dir.as_deref(), &path).await,
        _ => method_not_allowed(&path, &method, "GET, HEAD"),
    }
}
