//! Actions: outbound HTTP, calls to other functions, environment variables, failures.

use ferrovex_sdk::prelude::*;
use serde::Serialize;
use std::time::Duration;

#[derive(Serialize)]
pub struct Fetched {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    url: String,
}

/// One request: `headers` as `[name, value]` pairs; `timeout_ms` 0 for the host's limit.
#[action]
fn fetch(
    ctx: &mut ActionCtx,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    timeout_ms: f64,
) -> Result<Fetched> {
    let mut request = Fetch::new(&method, url);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    if timeout_ms > 0.0 {
        request = request.timeout(Duration::from_millis(timeout_ms as u64));
    }
    let response = ctx.fetch(request)?;
    Ok(Fetched {
        status: response.status,
        headers: response.headers.clone(),
        body: String::from_utf8_lossy(&response.body.0).into_owned(),
        url: response.url.clone(),
    })
}

/// Calls a mutation that fails and returns what it got back.
#[action]
fn call_failing(ctx: &mut ActionCtx) -> Result<(String, Option<ferrovex_sdk::AnyValue>)> {
    match ctx.run_mutation::<()>("outside:fail", &doc! {}) {
        Ok(()) => bail!("the failing mutation succeeded"),
        Err(e) => Ok((
            e.message().to_owned(),
            e.data().cloned().map(ferrovex_sdk::AnyValue),
        )),
    }
}

#[internal_mutation]
fn fail(ctx: &mut MutationCtx) -> Result<()> {
    ctx.db.insert("runs", doc! { "tag": "never" })?;
    Err(Error::new("fail: refused on purpose").with_data(doc! { "code": 42i64 }))
}

#[action]
fn panics(_ctx: &mut ActionCtx) -> Result<()> {
    panic!("an action panicked on purpose");
}

/// Writes through a mutation, reads through a query, and schedules: an action's way in.
#[action]
fn write_and_read(ctx: &mut ActionCtx, tag: String) -> Result<Vec<String>> {
    ctx.run_mutation::<()>("jobs:record", &doc! { "tag": tag })?;
    ctx.run_query("jobs:runs", &())
}

#[action]
fn env(ctx: &mut ActionCtx, name: String) -> Result<Option<String>> {
    Ok(ctx.env(&name))
}

/// Real time and randomness: two reads differ.
#[action]
fn entropy(ctx: &mut ActionCtx) -> Result<(f64, String, String)> {
    Ok((
        ctx.now(),
        ctx.random_u64().to_string(),
        ctx.random_u64().to_string(),
    ))
}

/// Calls itself `depth` more times, through `run_action`.
#[action]
fn nest(ctx: &mut ActionCtx, depth: f64) -> Result<f64> {
    if depth <= 0.0 {
        return Ok(0.0);
    }
    Ok(1.0 + ctx.run_action::<f64>("outside:nest", &doc! { "depth": depth - 1.0 })?)
}

/// A scheduled action's run: recorded through a mutation.
#[internal_action]
fn record_via_action(ctx: &mut ActionCtx, tag: String) -> Result<()> {
    ctx.run_mutation::<()>("jobs:record", &doc! { "tag": tag })
}

/// Schedules from an action (a commit of its own).
#[action]
fn schedule_from_action(ctx: &mut ActionCtx, tag: String) -> Result<Id> {
    ctx.scheduler
        .run_after(Duration::ZERO, "jobs:record", &doc! { "tag": tag })
}
