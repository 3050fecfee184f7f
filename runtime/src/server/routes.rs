//! Which handler answers which request, and the CORS headers every API answer carries.

use super::access::{caller as caller_of, require_admin};
use super::api::{self, Endpoint};
use super::response::{method_not_allowed, request_error, HttpResponse};
use super::{
    browser_client, cluster, dashboard, env, http_actions, static_files, transfer, Served,
};
use crate::sync::engine::SyncEngine;
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ORIGIN, VARY,
};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

/// How long a browser may cache a CORS preflight's answer (Convex's figure).
const CORS_MAX_AGE_SECONDS: &str = "86400";

const ENDPOINTS: &str = "POST /api/query, /api/mutation, /api/action, /api/function, /api/run/{module}/{function}, /api/query_ts, /api/query_at_ts, /api/query_batch; GET /api/query, /api/functions, /api/metrics, /api/export, /api/env, /api/client.js, /api/cluster/nodes; POST /api/import/tables, /api/import/documents, /api/env, /api/cluster/commit; the dashboard's under /api/dashboard/; WebSocket GET /api/sync, /api/{version}/sync, /api/logs; the app's HTTP actions under /http/";

pub async fn handle(
    app: Arc<Served>,
    sync: &Arc<SyncEngine>,
    request: Request<Incoming>,
) -> HttpResponse {
    // An HTTP action answers for itself, preflights and CORS headers included: the app
    // decides which origins may read its routes.
    if is_http_action_path(routed_path(request.uri().path())) {
        return route(app, sync, request).await;
    }
    let origin = request.headers().get(ORIGIN).cloned();
    if request.method() == Method::OPTIONS && origin.is_some() {
        return preflight(request.headers());
    }
    let mut response = route(app, sync, request).await;
    if let Some(origin) = origin {
        allow_origin(response.headers_mut(), origin);
    }
    response
}

/// Cross-origin calls are allowed from any page (a frontend on its own dev server calls the
/// API), as Convex allows them: the origin is mirrored, with credentials.
fn allow_origin(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.append(VARY, HeaderValue::from_static("Origin"));
}

/// The answer to a CORS preflight: the methods the API takes and the headers the page asked
/// to send (`Content-Type`, `Convex-Client`, `Authorization`), cached for a day.
fn preflight(request: &HeaderMap) -> HttpResponse {
    let mut response = Response::new(super::response::full(Vec::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
    );
    let asked = request
        .get(ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("content-type, convex-client, authorization"));
    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked);
    headers.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(CORS_MAX_AGE_SECONDS),
    );
    if let Some(origin) = request.get(ORIGIN) {
        allow_origin(headers, origin.clone());
    }
    response
}

fn is_http_action_path(path: &str) -> bool {
    path == http_actions::PREFIX || path.starts_with("/http/")
}

/// The path as routed: a deployment URL written with a trailing `/` makes clients request
/// `//api/...`, so leading slashes fold into one.
fn routed_path(path: &str) -> &str {
    let trimmed = path.trim_start_matches('/');
    &path[path.len() - trimmed.len() - usize::from(path.starts_with('/'))..]
}

async fn route(
    app: Arc<Served>,
    sync: &Arc<SyncEngine>,
    request: Request<Incoming>,
) -> HttpResponse {
    let path = routed_path(request.uri().path()).to_owned();
    let method = request.method().clone();
    let module = sync.module();
    let endpoint = format!("{method} {path}");
    // The caller of a call endpoint, from its `Authorization` header (a refused token or key
    // answers 401 before the body is read).
    macro_rules! caller {
        () => {
            match caller_of(&app.access, &endpoint, request.headers()).await {
                Ok(caller) => caller,
                Err(refused) => return refused,
            }
        };
    }
    // Admin endpoints answer 401 without the admin key.
    macro_rules! admin_only {
        () => {
            if let Err(refused) = require_admin(&app.access, &endpoint, request.headers()) {
                return refused;
            }
        };
    }
    match (&method, path.as_str()) {
        (&Method::POST, "/api/query") => {
            let caller = caller!();
            api::call(app, module, Endpoint::Query, request, None, caller).await
        }
        (&Method::GET, "/api/query") => {
            let caller = caller!();
            let query = request.uri().query().map(str::to_owned);
            api::query_by_get(app, module, query.as_deref(), caller).await
        }
        (&Method::POST, "/api/mutation") => {
            let caller = caller!();
            api::call(app, module, Endpoint::Mutation, request, None, caller).await
        }
        (&Method::POST, "/api/action") => {
            let caller = caller!();
            api::call(app, module, Endpoint::Action, request, None, caller).await
        }
        (&Method::POST, "/api/function") => {
            let caller = caller!();
            api::call(app, module, Endpoint::Any, request, None, caller).await
        }
        (&Method::POST, p) if p.starts_with("/api/run/") => {
            let caller = caller!();
            // `/api/run/admin/users/list` runs `admin/users:list`.
            let function = match p["/api/run/".len()..].rsplit_once('/') {
                Some((module_path, name)) => format!("{module_path}:{name}"),
                None => p["/api/run/".len()..].to_owned(),
            };
            api::call(app, module, Endpoint::Any, request, Some(function), caller).await
        }
        (_, p) if is_http_action_path(p) => http_actions::serve(app, module, request, &path).await,
        (&Method::POST, "/api/query_ts") => api::query_ts(&app),
        (&Method::POST, "/api/query_at_ts") => {
            let caller = caller!();
            api::query_at_ts(app, module, request, caller).await
        }
        (&Method::POST, "/api/query_batch") => {
            let caller = caller!();
            api::query_batch(app, module, request, caller).await
        }
        (&Method::GET, "/api/functions") => {
            let caller = caller!();
            api::functions(&module, &caller)
        }
        (&Method::GET, "/api/export") => {
            admin_only!();
            transfer::export(&app)
        }
        // The dashboard's endpoints (docs/PROTOCOL.md section 4.5), and its files.
        (_, p) if p.starts_with("/api/dashboard/") => {
            admin_only!();
            dashboard::api(app, sync, request, &path).await
        }
        (_, p) if p == dashboard::ASSETS_PREFIX || p.starts_with("/_dashboard/") => {
            dashboard::asset(&method, p)
        }
        // The nodes of a deployment (docs/PROTOCOL.md section 4.6).
        (&Method::POST, "/api/cluster/commit") => {
            admin_only!();
            cluster::commit(app, request).await
        }
        (&Method::GET, "/api/cluster/nodes") => {
            admin_only!();
            cluster::nodes(&app)
        }
        (_, "/api/cluster/commit") => method_not_allowed(&path, &method, "POST"),
        (_, "/api/cluster/nodes") => method_not_allowed(&path, &method, "GET"),
        (&Method::GET, "/api/env") => {
            admin_only!();
            env::list(&app)
        }
        (&Method::POST, "/api/env") => {
            admin_only!();
            env::change(app, sync, request).await
        }
        (_, "/api/env") => method_not_allowed(&path, &method, "GET, POST"),
        (&Method::POST, "/api/import/tables") => {
            admin_only!();
            transfer::import_tables(app, request).await
        }
        (&Method::POST, "/api/import/documents") => {
            admin_only!();
            transfer::import_documents(app, module, request).await
        }
        // How mutations committed since the store opened (for benchmarks and diagnostics).
        (&Method::GET, "/api/metrics") => {
            admin_only!();
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
                    "inlineOverruns": count(&stats.inline_overruns),
                    "inlineNetworkReads": count(&stats.inline_network_reads),
                }),
            )
        }
        // The WebSocket sync endpoint (docs/PROTOCOL.md section 3): `/api/sync` (Rust and
        // Python clients) and `/api/{client version}/sync` (npm clients).
        (_, p) if is_sync_path(p) => match crate::sync::upgrade::upgrade(sync, request) {
            Ok(switching_protocols) => switching_protocols,
            Err((status, message)) => {
                let mut response = request_error(status, "BadWebSocketUpgrade", message);
                if status == StatusCode::UPGRADE_REQUIRED
                    || status == StatusCode::METHOD_NOT_ALLOWED
                {
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
            admin_only!();
            let (engine, host) = (sync.clone(), app.host.clone());
            let upgraded = crate::sync::upgrade::upgrade_to(sync, "/api/logs", request, |socket| {
                super::logs::stream(engine, host, socket)
            });
            upgraded.unwrap_or_else(|(status, message)| {
                request_error(status, "BadWebSocketUpgrade", message)
            })
        }
        (
            _,
            "/api/mutation" | "/api/action" | "/api/function" | "/api/query_ts"
            | "/api/query_at_ts" | "/api/query_batch",
        ) => method_not_allowed(&path, &method, "POST"),
        (_, p) if p.starts_with("/api/run/") => method_not_allowed(&path, &method, "POST"),
        (_, "/api/query") => method_not_allowed(&path, &method, "GET, POST"),
        (_, "/api/functions" | "/api/metrics" | "/api/export") => {
            method_not_allowed(&path, &method, "GET")
        }
        (_, "/api/import/tables" | "/api/import/documents") => {
            method_not_allowed(&path, &method, "POST")
        }
        (_, browser_client::PATH) => browser_client::serve(&method),
        // The API's namespace never falls through to web files, so a typo gets a JSON answer.
        (_, p) if p == "/api" || p.starts_with("/api/") => request_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{method} {p}: no such API endpoint; there are {ENDPOINTS}"),
        ),
        (&Method::GET, _) => static_files::serve(app.web_dir.as_deref(), &path).await,
        // hyper leaves out the body of a response to HEAD.
        (&Method::HEAD, _) => static_files::serve(app.web_dir.as_deref(), &path).await,
        _ => method_not_allowed(&path, &method, "GET, HEAD"),
    }
}

/// `/api/sync`, or `/api/{version}/sync` with one path segment for the client's version.
fn is_sync_path(path: &str) -> bool {
    path == "/api/sync"
        || path
            .strip_prefix("/api/")
            .and_then(|rest| rest.strip_suffix("/sync"))
            .is_some_and(|version| !version.is_empty() && !version.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_as_the_clients_send_them() {
        for (given, routed) in [
            ("/api/query", "/api/query"),
            ("//api/1.48.0/sync", "/api/1.48.0/sync"),
            ("///x", "/x"),
            ("/", "/"),
        ] {
            assert_eq!(routed_path(given), routed, "{given}");
        }
        for (path, sync) in [
            ("/api/sync", true),
            ("/api/1.48.0/sync", true),
            ("/api/a/b/sync", false),
            ("/api//sync", false),
            ("/api/syncs", false),
        ] {
            assert_eq!(is_sync_path(path), sync, "{path}");
        }
    }
}
