//! The function-calling API: `POST /api/query`, `POST /api/mutation`, `GET /api/functions`.

// A failed call carries its error and log lines by value, as the wasm host returns it.
#![allow(clippy::result_large_err)]

use super::call_request::{read_body, CallRequest};
use super::response::{api_error, json, HttpResponse};
use super::Served;
use crate::store::Timestamp;
use crate::wasm::{CallError, CallFailure, CallOptions, DeployedModule};
use ferrovex_model::abi::FunctionKind;
use ferrovex_model::json::to_json;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// What a successful call returns, whichever its kind.
struct Success {
    value: ferrovex_model::Value,
    ts: Timestamp,
    log_lines: Vec<String>,
}

/// Runs the function named in the body as a `kind` of `module`, and answers with its outcome.
pub async fn call(
    app: Arc<Served>,
    module: Arc<DeployedModule>,
    kind: FunctionKind,
    request: Request<Incoming>,
) -> HttpResponse {
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let call = match CallRequest::parse(&body) {
        Ok(call) => call,
        Err(message) => return api_error(StatusCode::BAD_REQUEST, message, None, &[]),
    };
    // A call blocks its thread for up to the call time limit: keep it off the reactor.
    let outcome = tokio::task::spawn_blocking(move || run(&app, &module, kind, &call)).await;
    match outcome {
        Ok(Ok(success)) => json(
            StatusCode::OK,
            &json!({
                "status": "success",
                "value": to_json(&success.value),
                "ts": success.ts.to_string(),
                "logLines": success.log_lines,
            }),
        ),
        Ok(Err(failure)) => failure_response(&failure),
        // The host turns guest panics into errors; this is a bug in the host itself.
        Err(join_error) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the host failed while running the call: {join_error}"),
            None,
            &[],
        ),
    }
}

fn run(
    app: &Served,
    module: &DeployedModule,
    kind: FunctionKind,
    call: &CallRequest,
) -> Result<Success, CallFailure> {
    let options = CallOptions::default();
    match kind {
        FunctionKind::Query => app
            .host
            .run_query(&app.store, module, &call.path, &call.args, options)
            .map(|o| Success {
                value: o.value,
                ts: o.ts,
                log_lines: o.log_lines,
            }),
        FunctionKind::Mutation => app
            .host
            .run_mutation(&app.store, module, &call.path, &call.args, options)
            .map(|o| Success {
                value: o.value,
                ts: o.ts,
                log_lines: o.log_lines,
            }),
    }
}

/// The status of a failed call: see the table in the module docs.
fn failure_response(failure: &CallFailure) -> HttpResponse {
    let (status, data) = match &failure.error {
        CallError::UnknownFunction { .. } => (StatusCode::NOT_FOUND, None),
        CallError::User { data, .. } => (StatusCode::BAD_REQUEST, data.as_ref()),
        CallError::Host(_) => (StatusCode::SERVICE_UNAVAILABLE, None),
        CallError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        _ => (StatusCode::BAD_REQUEST, None),
    };
    let mut message = failure.to_string();
    if let CallError::WrongKind { actual, .. } = &failure.error {
        // Point at the endpoint that would have worked.
        message.push_str(&format!("; call it with POST /api/{actual}"));
    }
    api_error(status, message, data, &failure.log_lines)
}

/// `{"moduleHash": "...", "functions": [{"path", "kind", "args", "returns"}, ...]}`, sorted by
/// path; `args` and `returns` are schemas in the form of `ferrovex_model::abi::Type::to_value`.
pub fn functions(module: &DeployedModule) -> HttpResponse {
    let functions: Vec<_> = module
        .functions()
        .map(|f| {
            json!({
                "path": f.path,
                "kind": f.description.kind.as_str(),
                "args": to_json(&f.description.args.to_value()),
                "returns": to_json(&f.description.returns.to_value()),
            })
        })
        .collect();
    json(
        StatusCode::OK,
        &json!({ "moduleHash": module.hash, "functions": functions }),
    )
}
