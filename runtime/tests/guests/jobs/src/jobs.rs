//! The scheduler from mutations: `runs` holds one row per run of `record`, in commit order.

use ferrovex_sdk::prelude::*;
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
pub struct Entry {
    tag: String,
    delay_ms: f64,
}

/// Schedules `record(tag)` for each entry, after its delay; returns the jobs' ids in order.
#[mutation]
fn schedule_many(ctx: &mut MutationCtx, entries: Vec<Entry>) -> Result<Vec<Id>> {
    let mut ids = Vec::new();
    for entry in entries {
        let delay = Duration::from_secs_f64(entry.delay_ms / 1000.0);
        ids.push(
            ctx.scheduler
                .run_after(delay, "jobs:record", &doc! { "tag": entry.tag })?,
        );
    }
    Ok(ids)
}

/// Schedules `record(tag)` at a time, plus the action `outside:record_via_action(tag)` when
/// asked; writes a marker so the caller sees the mutation itself committed.
#[mutation]
fn schedule_at(ctx: &mut MutationCtx, tag: String, at: f64, action: bool) -> Result<Id> {
    ctx.db.insert("scheduled", doc! { "tag": tag.clone() })?;
    if action {
        ctx.scheduler.run_at(
            at,
            "outside:record_via_action",
            &doc! { "tag": format!("{tag}-action") },
        )?;
    }
    ctx.scheduler
        .run_at(at, "jobs:record", &doc! { "tag": tag })
}

/// Schedules, then fails: nothing it scheduled may run.
#[mutation]
fn schedule_then_fail(ctx: &mut MutationCtx, tag: String) -> Result<()> {
    ctx.scheduler
        .run_after(Duration::ZERO, "jobs:record", &doc! { "tag": tag })?;
    bail!("schedule_then_fail: failing on purpose after scheduling");
}

/// Schedules more jobs than one call may.
#[mutation]
fn schedule_too_many(ctx: &mut MutationCtx, count: f64) -> Result<()> {
    for i in 0..count as u64 {
        ctx.scheduler.run_after(
            Duration::from_secs(3600),
            "jobs:record",
            &doc! { "tag": format!("x{i}") },
        )?;
    }
    Ok(())
}

/// Schedules a function that does not exist, or a query.
#[mutation]
fn schedule_path(ctx: &mut MutationCtx, path: String) -> Result<Id> {
    ctx.scheduler
        .run_after(Duration::ZERO, &path, &doc! { "tag": "x" })
}

#[mutation]
fn cancel(ctx: &mut MutationCtx, id: Id) -> Result<()> {
    ctx.scheduler.cancel(&id)
}

/// A function cannot write the jobs table itself.
#[mutation]
fn forge_job(ctx: &mut MutationCtx) -> Result<Id> {
    Ok(ctx
        .db
        .insert("_scheduled_functions", doc! { "name": "jobs:record" })?)
}

#[internal_mutation]
fn record(ctx: &mut MutationCtx, tag: String) -> Result<()> {
    ctx.db.insert("runs", doc! { "tag": tag })?;
    Ok(())
}

#[internal_mutation]
fn cron_tick(ctx: &mut MutationCtx) -> Result<()> {
    ctx.db.insert("cron_ticks", doc! { "at": ctx.now() })?;
    Ok(())
}

/// The tags of every run, in commit order.
#[query]
fn runs(ctx: &QueryCtx) -> Result<Vec<String>> {
    Ok(ctx
        .db
        .query("runs")
        .collect()?
        .into_iter()
        .filter_map(|d| d.get("tag").and_then(|t| t.as_str()).map(str::to_owned))
        .collect())
}

#[query]
fn cron_ticks(ctx: &QueryCtx) -> Result<f64> {
    Ok(ctx.db.query("cron_ticks").collect()?.len() as f64)
}

/// A job's state (`pending`, `inProgress`, `success`, `failed`, `canceled`) and error, read
/// from the system table like any document.
#[query]
fn job(ctx: &QueryCtx, id: Id) -> Result<ferrovex_sdk::AnyValue> {
    let Some(job) = ctx.db.get(&id)? else {
        bail!("no job {}", id.as_str());
    };
    Ok(ferrovex_sdk::AnyValue(
        job.get("state").cloned().unwrap_or(Value::Null),
    ))
}

/// The tags `schedule_at` committed (its marker rows).
#[query]
fn scheduled_tags(ctx: &QueryCtx) -> Result<Vec<String>> {
    Ok(ctx
        .db
        .query("scheduled")
        .collect()?
        .into_iter()
        .filter_map(|d| d.get("tag").and_then(|t| t.as_str()).map(str::to_owned))
        .collect())
}

/// Jobs not made by a cron that are still pending or running.
#[query]
fn unfinished(ctx: &QueryCtx) -> Result<f64> {
    Ok(ctx
        .db
        .query("_scheduled_functions")
        .collect()?
        .into_iter()
        .filter(|job| job.get("cron").is_none())
        .filter(|job| {
            let kind = job
                .get("state")
                .and_then(|s| s.as_object())
                .and_then(|s| s.get("kind"))
                .and_then(|k| k.as_str());
            matches!(kind, Some("pending") | Some("inProgress"))
        })
        .count() as f64)
}
