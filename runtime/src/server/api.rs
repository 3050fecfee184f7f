//! The function-calling API (docs/PROTOCOL.md section 4), as Convex serves it: `POST
//! /api/query`, `/api/mutation`, `/api/action`, `/api/function`, `/api/run/{module}/{function}`,
//! `/api/query_ts`, `/api/query_at_ts`, `/api/query_batch`, `GET /api/query`; and our
//! `GET /api/functions`.
//!
//! A call that reached the function (or was refused by it: bad arguments, an unknown function,
//! the wrong kind) is answered with status 200 and `{"status": "success" | "error", ...}`; a
//! request refused before that gets a 4xx or 5xx with `{"code", "message"}`.

// A failed call carries its error and log lines by value, as the wasm host returns it.
#![allow(clippy::result_large_err)]

use super::call_request::{read_body, BadRequest, CallRequest};
use super::response::{json, request_error, with_body, HttpResponse, ValueFormat};
use super::Served;
use crate::caller::Caller;
use crate::store::{Snapshot, StoreError};
use crate::sync::protocol::wire_log_lines;
use crate::wasm::{
    ActionOutcome, CallError, CallFailure, CallOptions, DeployedModule, MutationOutcome,
    QueryOutcome,
};
use ferrovex_model::abi::FunctionKind;
use ferrovex_model::json::{encode_u64, to_json};
use ferrovex_model::Value;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use parking_lot::Mutex;
use serde_json::{json, Map, Value as Json};
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a timestamp handed out by `/api/query_ts` stays readable by `/api/query_at_ts`.
pub const QUERY_TS_PIN: Duration = Duration::from_secs(30);
/// Snapshots `/api/query_ts` keeps pinned at once; past this the oldest is let go, so
/// callers cannot hold back version garbage collection without bound.
pub const MAX_PINNED_QUERY_TS: usize = 256;
/// Queries one `/api/query_batch` request may carry.
pub const MAX_QUERY_BATCH: usize = 256;
/// Bytes the answers of one `/api/query_batch` may take in all.
pub const MAX_QUERY_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// Which functions an endpoint runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Query,
    Mutation,
    /// `/api/action`: actions.
    Action,
    /// `/api/function` and `/api/run/...`: whatever kind the function is.
    Any,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Query => "query",
            Endpoint::Mutation => "mutation",
            Endpoint::Action => "action",
            Endpoint::Any => "function",
        }
    }
}

/// What a successful call returns, whichever its kind.
struct Success {
    value: Value,
    log_lines: Vec<String>,
}

/// Every kind's outcome answers with its value and log lines.
macro_rules! success_from {
    ($($outcome:ty),*) => {$(
        impl From<$outcome> for Success {
            fn from(o: $outcome) -> Self {
                Success { value: o.value, log_lines: o.log_lines }
            }
        }
    )*};
}
success_from!(QueryOutcome, MutationOutcome, ActionOutcome);

/// Snapshots handed out by `/api/query_ts`, newest last.
#[derive(Default)]
pub struct PinnedSnapshots(Mutex<VecDeque<(Instant, Snapshot)>>);

impl PinnedSnapshots {
    fn pin(&self, snapshot: Snapshot) {
        let mut pinned = self.0.lock();
        pinned.retain(|(at, _)| at.elapsed() < QUERY_TS_PIN);
        if pinned.len() >= MAX_PINNED_QUERY_TS {
            pinned.pop_front();
        }
        pinned.push_back((Instant::now(), snapshot));
    }

    fn find(&self, ts: u64) -> Option<crate::store::Transaction> {
        let pinned = self.0.lock();
        pinned
            .iter()
            .find(|(at, snapshot)| snapshot.ts() == ts && at.elapsed() < QUERY_TS_PIN)
            .map(|(_, snapshot)| snapshot.begin_read_only())
    }
}

/// `POST` to a call endpoint: reads the body, runs the function, answers its outcome.
/// `path_from_url` is the function of `/api/run/{module}/{function}`.
pub async fn call(
    app: Arc<Served>,
    module: Arc<DeployedModule>,
    endpoint: Endpoint,
    request: Request<Incoming>,
    path_from_url: Option<String>,
    caller: Caller,
) -> HttpResponse {
    let extra: &[&str] = match endpoint {
        Endpoint::Any => &["componentPath"],
        _ => &[],
    };
    let call = match read_call(request, path_from_url.as_deref(), extra).await {
        Ok(call) => call,
        Err(response) => return response,
    };
    let kind = kind_of(&module, &call, &caller);
    if kind == Some(FunctionKind::Action) && matches!(endpoint, Endpoint::Action | Endpoint::Any) {
        return run_action(&app, module, call, caller).await;
    }
    if let Some(answered) = query_inline(&app, &module, endpoint, kind, &call, &caller) {
        return answered;
    }
    // Boxed: the mutation's future is kilobytes, which every call's future would carry.
    let mutation = mutation_async(&app, &module, endpoint, kind, &call, &caller);
    if let Some(answered) = Box::pin(mutation).await {
        return answered;
    }
    blocking(move || answer(&app, &module, endpoint, call, None, &caller)).await
}

/// A mutation's answer, its first attempt run on this async worker and its commit awaited
/// (`WasmHost::run_mutation_async`), as a WebSocket session runs one; `None` for anything
/// but a mutation with readable arguments, which `blocking` answers.
async fn mutation_async(
    app: &Served,
    module: &Arc<DeployedModule>,
    endpoint: Endpoint,
    kind: Option<FunctionKind>,
    call: &CallRequest,
    caller: &Caller,
) -> Option<HttpResponse> {
    let args = args_for(endpoint, kind, call, FunctionKind::Mutation)?.clone();
    let running = app.host.run_mutation_async(
        &app.store,
        module.clone(),
        call.path.clone(),
        args,
        options_for(caller),
        None,
    );
    let ran = AssertUnwindSafe(running).catch_unwind().await;
    Some(respond_ran(ran, call.format))
}

/// A query's answer when it ran on this async worker within a tick or so
/// (`WasmHost::try_run_query_inline`); `None` for anything else, and for a query stopped for
/// running longer, which then runs in `blocking`. There, the hand-off of the worker's core
/// to a thread of the blocking pool (the spawn, the pool's threads and the worker parking)
/// was 14% of the server's samples per empty query (`perf record` of `bench --only calls`).
fn query_inline(
    app: &Served,
    module: &DeployedModule,
    endpoint: Endpoint,
    kind: Option<FunctionKind>,
    call: &CallRequest,
    caller: &Caller,
) -> Option<HttpResponse> {
    let args = args_for(endpoint, kind, call, FunctionKind::Query)?;
    let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
        app.host
            .try_run_query_inline(&app.store, module, &call.path, args, options_for(caller))
    }));
    Some(respond_ran(ran.transpose()?, call.format))
}

/// The answer to a call run on the async worker: its outcome, or the host's error if the
/// host panicked running it (the worker goes on serving).
fn respond_ran<O: Into<Success>>(
    ran: std::thread::Result<Result<O, CallFailure>>,
    format: ValueFormat,
) -> HttpResponse {
    match ran {
        Ok(outcome) => respond(outcome.map(Into::into), format),
        Err(panic) => host_error(crate::panic_message(&*panic).to_owned()),
    }
}

/// The kind of the function `call` names, if `caller` may call it.
fn kind_of(module: &DeployedModule, call: &CallRequest, caller: &Caller) -> Option<FunctionKind> {
    module
        .callable(&call.path, caller)
        .map(|f| f.description.kind)
}

/// The arguments of `call` when the function it names (of `kind`, `None` when the caller may
/// not call it) is a `wanted` one, at an endpoint that runs that kind, and they could be
/// read; `None` otherwise (`answer` answers it).
fn args_for(
    endpoint: Endpoint,
    kind: Option<FunctionKind>,
    call: &CallRequest,
    wanted: FunctionKind,
) -> Option<&Value> {
    let endpoint_runs_it = match wanted {
        FunctionKind::Query => matches!(endpoint, Endpoint::Query | Endpoint::Any),
        FunctionKind::Mutation => matches!(endpoint, Endpoint::Mutation | Endpoint::Any),
        FunctionKind::Action | FunctionKind::HttpAction => false,
    };
    (endpoint_runs_it && kind == Some(wanted))
        .then(|| call.args.as_ref().ok())
        .flatten()
}

/// The options a call of `caller` runs with.
fn options_for(caller: &Caller) -> CallOptions {
    CallOptions {
        caller: caller.clone(),
        ..CallOptions::default()
    }
}

/// An action's call: it waits for a running slot, then runs off the query/mutation path.
async fn run_action(
    app: &Served,
    module: Arc<DeployedModule>,
    call: CallRequest,
    caller: Caller,
) -> HttpResponse {
    let args = match &call.args {
        Ok(args) => args.clone(),
        Err(reason) => {
            let failure = CallFailure {
                path: call.path.clone(),
                error: CallError::InvalidArguments(reason.clone()),
                log_lines: Vec::new(),
            };
            return json(StatusCode::OK, &failure_body(&failure, call.format));
        }
    };
    let outcome = app
        .actions
        .run(module, FunctionKind::Action, &call.path, args, caller)
        .await
        .map(Success::from);
    respond(outcome, call.format)
}

/// Reads and parses a call's body; the response to send when it is refused.
async fn read_call(
    request: Request<Incoming>,
    path_from_url: Option<&str>,
    extra: &[&str],
) -> Result<CallRequest, HttpResponse> {
    let body = read_body(request).await?;
    CallRequest::parse(&body, path_from_url, extra).map_err(|bad| bad.response())
}

/// `GET /api/query?path=...&args=<JSON>&format=...`.
pub async fn query_by_get(
    app: Arc<Served>,
    module: Arc<DeployedModule>,
    query: Option<&str>,
    caller: Caller,
) -> HttpResponse {
    let mut fields = Map::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let value = if name == "args" {
            match serde_json::from_str(&value) {
                Ok(args) => args,
                Err(e) => {
                    return BadRequest {
                        status: StatusCode::BAD_REQUEST,
                        code: "BadJsonBody",
                        message: format!("the args parameter is not valid JSON ({e})"),
                    }
                    .response()
                }
            }
        } else {
            Json::String(value.into_owned())
        };
        fields.insert(name.into_owned(), value);
    }
    let call = match CallRequest::from_fields(&fields, None, &[]) {
        Ok(call) => call,
        Err(bad) => return bad.response(),
    };
    let kind = kind_of(&module, &call, &caller);
    if let Some(answered) = query_inline(&app, &module, Endpoint::Query, kind, &call, &caller) {
        return answered;
    }
    blocking(move || answer(&app, &module, Endpoint::Query, call, None, &caller)).await
}

/// `POST /api/query_ts`: the latest commit timestamp, pinned for [`QUERY_TS_PIN`] so that
/// `/api/query_at_ts` can read several queries at it.
pub fn query_ts(app: &Served) -> HttpResponse {
    let snapshot = app.store.snapshot();
    let ts = snapshot.ts();
    app.pinned.pin(snapshot);
    json(StatusCode::OK, &json!({ "ts": encode_u64(ts) }))
}

/// `POST /api/query_at_ts`: a query read at a timestamp `/api/query_ts` handed out (or the
/// latest one).
pub async fn query_at_ts(
    app: Arc<Served>,
    module: Arc<DeployedModule>,
    request: Request<Incoming>,
    caller: Caller,
) -> HttpResponse {
    let call = match read_call(request, None, &["ts"]).await {
        Ok(call) => call,
        Err(response) => return response,
    };
    let Some(ts) = call.ts else {
        return request_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "missing field \"ts\": /api/query_at_ts reads at a timestamp from /api/query_ts",
        );
    };
    let tx = match app.pinned.find(ts) {
        Some(tx) => tx,
        None if ts == app.store.latest_ts() => app.store.begin_read_only(),
        None => {
            return request_error(
                StatusCode::BAD_REQUEST,
                "QueryTsNotAvailable",
                format!(
                    "ts {} is neither the latest commit nor one /api/query_ts handed out in the last {} s (at most {MAX_PINNED_QUERY_TS} are kept): ask /api/query_ts again",
                    encode_u64(ts),
                    QUERY_TS_PIN.as_secs()
                ),
            )
        }
    };
    blocking(move || answer(&app, &module, Endpoint::Query, call, Some(tx), &caller)).await
}

/// `POST /api/query_batch` with `{"queries": [{path, args, format}, ...]}`: each query's
/// answer, in order, as `{"results": [...]}`.
pub async fn query_batch(
    app: Arc<Served>,
    module: Arc<DeployedModule>,
    request: Request<Incoming>,
    caller: Caller,
) -> HttpResponse {
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let bad = |message: String| request_error(StatusCode::BAD_REQUEST, "BadJsonBody", message);
    let queries = match serde_json::from_slice::<Json>(&body) {
        Ok(Json::Object(mut fields)) => match fields.remove("queries") {
            Some(Json::Array(queries)) => queries,
            _ => {
                return bad(
                    "expected {\"queries\": [{\"path\", \"args\", \"format\"}, ...]}".into(),
                )
            }
        },
        Ok(_) => return bad("the request body must be a JSON object".into()),
        Err(e) => return bad(format!("the request body is not valid JSON ({e})")),
    };
    if queries.len() > MAX_QUERY_BATCH {
        return request_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "{} queries exceed the limit MAX_QUERY_BATCH ({MAX_QUERY_BATCH})",
                queries.len()
            ),
        );
    }
    let mut calls = Vec::with_capacity(queries.len());
    for (i, query) in queries.iter().enumerate() {
        let Json::Object(fields) = query else {
            return bad(format!("queries[{i}] must be an object"));
        };
        match CallRequest::from_fields(fields, None, &[]) {
            Ok(call) => calls.push(call),
            Err(mut e) => {
                e.message = format!("queries[{i}]: {}", e.message);
                return e.response();
            }
        }
    }
    blocking(move || {
        // One snapshot for the whole batch.
        let snapshot = app.store.snapshot();
        // Each answer goes straight into the one body, which may not pass
        // MAX_QUERY_BATCH_BYTES: 256 results of 16 MiB would otherwise be 4 GiB.
        let mut body = br#"{"results":["#.to_vec();
        for (i, call) in calls.into_iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            let format = call.format;
            let tx = snapshot.begin_read_only();
            match run(&app, &module, Endpoint::Query, &call, Some(tx), &caller) {
                Ok(success) => body.extend_from_slice(&success_body(&success, format)),
                Err(failure) => body
                    .extend_from_slice(failure_body(&failure, format).to_string().as_bytes()),
            }
            if body.len() > MAX_QUERY_BATCH_BYTES {
                return request_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "BatchTooLarge",
                    format!(
                        "the answers to queries[0..={i}] already take {} bytes, over the limit MAX_QUERY_BATCH_BYTES ({MAX_QUERY_BATCH_BYTES} bytes): ask for fewer queries at once",
                        body.len()
                    ),
                );
            }
        }
        body.extend_from_slice(b"]}");
        with_body(StatusCode::OK, "application/json", body)
    })
    .await
}

/// Runs `work`, which blocks its thread for up to the call time limit: on this thread, after
/// tokio hands the reactor's other tasks to another thread (`block_in_place`), so the call
/// starts without waiting for a blocking-pool thread to wake and the answer is written
/// without waking this task again. An empty query over HTTP answered at p50 in 89 µs
/// instead of 101 µs through `spawn_blocking` (`bench --only calls`).
async fn blocking(work: impl FnOnce() -> HttpResponse + Send + 'static) -> HttpResponse {
    let ran = tokio::task::block_in_place(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
    });
    ran.unwrap_or_else(|panic| host_error(crate::panic_message(&*panic).to_owned()))
}

/// The host turns guest panics into errors; a panic that reaches here is a bug in the host
/// itself.
fn host_error(reason: String) -> HttpResponse {
    request_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        format!("the host failed while running the call: {reason}"),
    )
}

/// One call's HTTP answer.
fn answer(
    app: &Served,
    module: &DeployedModule,
    endpoint: Endpoint,
    call: CallRequest,
    tx: Option<crate::store::Transaction>,
    caller: &Caller,
) -> HttpResponse {
    respond(run(app, module, endpoint, &call, tx, caller), call.format)
}

fn respond(outcome: Result<Success, CallFailure>, format: ValueFormat) -> HttpResponse {
    match outcome {
        Ok(success) => with_body(
            StatusCode::OK,
            "application/json",
            success_body(&success, format),
        ),
        Err(failure) => match &failure.error {
            CallError::Host(_) => request_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Overloaded",
                failure.to_string(),
            ),
            CallError::Store(StoreError::Engine(_) | StoreError::Corrupt(_)) => request_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                format!("{failure} (the call may or may not have committed)"),
            ),
            _ => json(StatusCode::OK, &failure_body(&failure, format)),
        },
    }
}

/// `{"status": "success", "value", "logLines"?}`, the value written as it is walked: a result
/// of up to the result limit reaches the response without a JSON tree of it.
fn success_body(success: &Success, format: ValueFormat) -> Vec<u8> {
    let mut body = br#"{"status":"success","value":"#.to_vec();
    format.write(&success.value, &mut body);
    if !success.log_lines.is_empty() {
        body.extend_from_slice(br#","logLines":"#);
        body.extend_from_slice(
            json!(wire_log_lines(&success.log_lines))
                .to_string()
                .as_bytes(),
        );
    }
    body.push(b'}');
    body
}

/// A failed call's answer (status 200, as the official clients expect): `{"status": "error",
/// "errorMessage", "errorData"?, "logLines"?}`, `errorData` in the caller's `format`.
fn failure_body(failure: &CallFailure, format: ValueFormat) -> Json {
    let mut body = json!({ "status": "error", "errorMessage": message(failure) });
    if let CallError::User {
        data: Some(data), ..
    } = &failure.error
    {
        body["errorData"] = format.encode(data);
    }
    if !failure.log_lines.is_empty() {
        body["logLines"] = json!(wire_log_lines(&failure.log_lines));
    }
    body
}

/// The failure's message; a call of the wrong kind also names the endpoint that would work.
fn message(failure: &CallFailure) -> String {
    let mut message = failure.to_string();
    if let CallError::WrongKind { actual, .. } = &failure.error {
        message.push_str(&format!("; call it with POST /api/{actual}"));
    }
    message
}

fn run(
    app: &Served,
    module: &DeployedModule,
    endpoint: Endpoint,
    call: &CallRequest,
    tx: Option<crate::store::Transaction>,
    caller: &Caller,
) -> Result<Success, CallFailure> {
    let failure = |error| CallFailure {
        path: call.path.clone(),
        error,
        log_lines: Vec::new(),
    };
    let args = call
        .args
        .as_ref()
        .map_err(|reason| failure(CallError::InvalidArguments(reason.clone())))?;
    // An internal function is, to a caller without the admin key, as absent as one that does
    // not exist: the host answers both alike.
    let kind = match (endpoint, module.callable(&call.path, caller)) {
        (Endpoint::Query, _) => FunctionKind::Query,
        (Endpoint::Mutation, _) => FunctionKind::Mutation,
        (Endpoint::Any, Some(function)) => match function.description.kind {
            // An HTTP action answers its route, not a call.
            FunctionKind::HttpAction => {
                return Err(failure(CallError::UnknownFunction {
                    available: module.callable_paths(caller),
                }))
            }
            kind => kind,
        },
        // Unknown: the host names the functions there are.
        (Endpoint::Any, None) => FunctionKind::Query,
        (Endpoint::Action, Some(function)) => {
            return Err(failure(CallError::WrongKind {
                expected: endpoint.name(),
                actual: function.description.kind.as_str(),
            }))
        }
        (Endpoint::Action, None) => {
            return Err(failure(CallError::UnknownFunction {
                available: module.callable_paths(caller),
            }))
        }
    };
    let options = options_for(caller);
    match kind {
        FunctionKind::Query => {
            let tx = tx.unwrap_or_else(|| app.store.begin_read_only());
            app.host
                .run_query_in(&app.store, module, &call.path, args, tx, options)
                .outcome
                .map(Success::from)
        }
        FunctionKind::Mutation => app
            .host
            .run_mutation(&app.store, module, &call.path, args, options)
            .map(Success::from),
        // `call` sends actions to `run_action`; what is left here is of another kind.
        FunctionKind::Action | FunctionKind::HttpAction => Err(failure(CallError::WrongKind {
            expected: endpoint.name(),
            actual: kind.as_str(),
        })),
    }
}

/// `{"moduleHash": "...", "functions": [{"path", "kind", "visibility", "args", "returns"},
/// ...]}`, sorted by path; `args` and `returns` are schemas in the form of
/// `ferrovex_model::abi::Type::to_value`. Internal functions are listed to `caller` only if
/// it holds the admin key.
pub fn functions(module: &DeployedModule, caller: &Caller) -> HttpResponse {
    let functions: Vec<_> = module
        .functions()
        .filter(|f| module.callable(&f.path, caller).is_some())
        .map(|f| {
            json!({
                "path": f.path,
                "kind": f.description.kind.as_str(),
                "visibility": f.description.visibility.as_str(),
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
