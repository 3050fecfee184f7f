//! The Schedules page's endpoints: scheduled jobs with their arguments decoded, cancelling a
//! pending one, and the app's crons with their next and last runs.

use super::{bad, internal};
use crate::jobs::{self, CancelError, TABLE as JOBS};
use crate::server::call_request::read_body;
use crate::server::response::{json, request_error, HttpResponse};
use crate::server::Served;
use crate::store::{Document, IndexRange, Order, StoreError};
use crate::wasm::DeployedModule;
use base64::Engine as _;
use ferrovex_model::abi::CronSchedule;
use ferrovex_model::json::to_json;
use ferrovex_model::limits::MAX_DASHBOARD_PAGE;
use ferrovex_model::{DocumentId, Value};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value as Json};
use std::sync::Arc;

/// A job's document as the page shows it: its arguments decoded from their stored bytes.
fn job_json(document: &Document) -> Json {
    let mut value = document.to_value();
    if let Value::Object(fields) = &mut value {
        if let Some(Value::Bytes(bytes)) = fields.get("args") {
            // Stored by the scheduler from a checked value; undecodable would be a bug, and
            // the page then shows the bytes as they are.
            if let Ok(args) = ferrovex_model::binary::decode(bytes) {
                fields.insert("args".into(), args);
            }
        }
        if let Some(id) = fields.remove("_id") {
            fields.insert("id".into(), id);
        }
    }
    to_json(&value)
}

/// `GET /api/dashboard/jobs?state=&limit=&cursor=`: newest first.
pub async fn jobs(app: Arc<Served>, query: &str) -> HttpResponse {
    const ENDPOINT: &str = "GET /api/dashboard/jobs";
    let mut state = None;
    let mut limit = 50;
    let mut cursor = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "state" if value == "all" || value.is_empty() => state = None,
            "state" => match jobs::JobState::KINDS.iter().find(|s| **s == value) {
                Some(s) => state = Some(*s),
                None => {
                    return bad("BadRequest", format!(
                        "{ENDPOINT}: state is all, {}; got {value:?}",
                        jobs::JobState::KINDS.join(", ")
                    ))
                }
            },
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_DASHBOARD_PAGE).contains(&n) => limit = n,
                _ => {
                    return bad("BadRequest", format!(
                        "{ENDPOINT}: limit is from 1 to MAX_DASHBOARD_PAGE ({MAX_DASHBOARD_PAGE}), got {value:?}"
                    ))
                }
            },
            "cursor" if value.is_empty() => {}
            "cursor" => match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value.as_bytes()) {
                Ok(bytes) => cursor = Some(bytes),
                Err(_) => {
                    return request_error(
                        StatusCode::BAD_REQUEST,
                        "BadCursor",
                        format!("{ENDPOINT}: the cursor is not one this endpoint gave"),
                    )
                }
            },
            other => {
                return bad("BadRequest", format!(
                    "{ENDPOINT}: unknown parameter {other:?}; it takes state, limit and cursor"
                ))
            }
        }
    }
    let page = tokio::task::spawn_blocking(move || {
        let mut tx = app.store.begin_read_only();
        if tx.table_info(JOBS).is_none() {
            return Ok(json!({"jobs": [], "cursor": null, "isDone": true}));
        }
        let (index, range) = match state {
            Some(kind) => (jobs::BY_NEXT, IndexRange::all().eq(kind)),
            None => (crate::store::BY_CREATION_TIME, IndexRange::all()),
        };
        let page = tx.scan(JOBS, index, &range, Order::Desc, limit, cursor.as_deref())?;
        Ok::<_, StoreError>(json!({
            "jobs": page.documents.iter().map(job_json).collect::<Vec<_>>(),
            "cursor": page.cursor.map(|c| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c)),
            "isDone": page.is_done,
        }))
    })
    .await
    .expect("listing jobs does not panic");
    match page {
        Ok(body) => json(StatusCode::OK, &body),
        Err(StoreError::InvalidCursor { .. }) => request_error(
            StatusCode::BAD_REQUEST,
            "BadCursor",
            format!("{ENDPOINT}: the cursor is not a position in this list; pass back a page's cursor with the same state"),
        ),
        Err(e) => internal(ENDPOINT, e),
    }
}

/// `POST /api/dashboard/jobs/cancel` `{"id"}`.
pub async fn cancel(app: Arc<Served>, request: Request<Incoming>) -> HttpResponse {
    const ENDPOINT: &str = "POST /api/dashboard/jobs/cancel";
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let id = match serde_json::from_slice::<Json>(&body) {
        Ok(Json::Object(mut o)) => match o.remove("id") {
            Some(Json::String(id)) if o.is_empty() => id,
            _ => {
                return bad(
                    "BadRequest",
                    format!("{ENDPOINT}: send {{\"id\": JOB_ID}} and nothing else"),
                )
            }
        },
        _ => {
            return bad(
                "BadRequest",
                format!("{ENDPOINT}: the body must be the JSON object {{\"id\": JOB_ID}}"),
            )
        }
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let now_ms = crate::metrics::now_ms();
        app.store
            .run_mutation(|tx| {
                jobs::cancel(tx, &id, now_ms)?;
                let id = DocumentId::parse(&id).expect("cancel checked it");
                let job = jobs::get(tx, id)
                    .map_err(CancelError::Store)?
                    .expect("cancel found it");
                Ok::<_, CancelError>(job.state)
            })
            .map(|committed| committed.value)
    })
    .await
    .expect("cancelling does not panic");
    match outcome {
        Ok(state) => json(
            StatusCode::OK,
            &json!({"state": to_json(&state.to_value())}),
        ),
        Err(CancelError::NotAJob(message)) => request_error(
            StatusCode::NOT_FOUND,
            "NoSuchJob",
            format!("{ENDPOINT}: {message}"),
        ),
        Err(CancelError::Store(e)) => internal(ENDPOINT, e),
    }
}

/// `GET /api/dashboard/crons`: the app's crons, with the next time the scheduler keeps for
/// each and the last job it made.
pub async fn crons(app: Arc<Served>, module: Arc<DeployedModule>) -> HttpResponse {
    let listed = tokio::task::spawn_blocking(move || {
        let mut tx = app.store.begin_read_only();
        let stored = crate::scheduler::read_crons(&mut tx)?;
        let mut crons = Vec::new();
        for spec in &module.crons.jobs {
            let kept = stored
                .iter()
                .find(|(_, c)| c.name == spec.name)
                .map(|(_, c)| c);
            let last_job = match kept.and_then(|c| c.last_job) {
                Some(id) => tx.get(id)?.as_ref().map(job_json),
                None => None,
            };
            crons.push(json!({
                "name": spec.name,
                "schedule": match &spec.schedule {
                    CronSchedule::IntervalMs(ms) => format!("every {}", describe_interval(*ms)),
                    CronSchedule::Expression(expression) => expression.clone(),
                },
                "function": spec.function,
                "args": to_json(&spec.args),
                "nextRunMs": kept.map(|c| c.next_run),
                "lastJob": last_job,
            }));
        }
        Ok::<_, StoreError>(json!({"crons": crons}))
    })
    .await
    .expect("listing crons does not panic");
    match listed {
        Ok(body) => json(StatusCode::OK, &body),
        Err(e) => internal("GET /api/dashboard/crons", e),
    }
}

/// `90000` → `1m 30s`, `2000` → `2s`, `1500` → `1500ms`.
fn describe_interval(ms: u64) -> String {
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut seconds = ms / 1000;
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            parts.push(format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::describe_interval;

    #[test]
    fn intervals_read_as_people_write_them() {
        for (ms, text) in [
            (1_500, "1500ms"),
            (2_000, "2s"),
            (90_000, "1m 30s"),
            (3_600_000, "1h"),
            (90_061_000, "1d 1h 1m 1s"),
        ] {
            assert_eq!(describe_interval(ms), text);
        }
    }
}
