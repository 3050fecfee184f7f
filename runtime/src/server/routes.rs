//! Which handler answers which request.

use super::response::{api_error, method_not_allowed, HttpResponse};
use super::{api, static_files, App};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use model::abi::FunctionKind;
use std::sync::Arc;

pub async fn handle(app: Arc<App>, request: Request<Incoming>) -> HttpResponse {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match (&method, path.as_str()) {
        (&Method::POST, "/api/query") => api::call(app, FunctionKind::Query, request).await,
        (&Method::POST, "/api/mutation") => api::call(app, FunctionKind::Mutation, request).await,
        (&Method::GET, "/api/functions") => api::functions(&app),
        // The WebSocket sync endpoint (PROTOCOL.md section 3) plugs in here.
        (_, "/api/sync") => api_error(
            StatusCode::NOT_IMPLEMENTED,
            "/api/sync: the WebSocket sync endpoint is not available in this version of the server",
            None,
            &[],
        ),
        (_, "/api/query" | "/api/mutation") => method_not_allowed(&path, &method, "POST"),
        (_, "/api/functions") => method_not_allowed(&path, &method, "GET"),
        // The API's namespace never falls through to web files, so a typo gets a JSON answer.
        (_, p) if p == "/api" || p.starts_with("/api/") => api_error(
            StatusCode::NOT_FOUND,
            format!(
                "{method} {p}: no such API endpoint; there are POST /api/query, POST /api/mutation, GET /api/functions"
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
