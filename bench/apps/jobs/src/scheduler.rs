//! Scheduled mutations, timed: `runs` holds one row per job, `{due, started}`.

use ferrovex_sdk::prelude::*;
use serde::Serialize;

/// Schedules `count` jobs of `record`, the `i`-th due at `start_ms + i * spacing_ms`.
#[mutation]
fn schedule(ctx: &mut MutationCtx, count: f64, start_ms: f64, spacing_ms: f64) -> Result<f64> {
    for i in 0..count as u64 {
        let due = start_ms + i as f64 * spacing_ms;
        ctx.scheduler
            .run_at(due, "scheduler:record", &doc! { "due": due })?;
    }
    Ok(count)
}

/// A job's run: `ctx.now()` is the time its transaction began, so `started - due` is how late
/// the scheduler started it.
#[internal_mutation]
fn record(ctx: &mut MutationCtx, due: f64) -> Result<()> {
    ctx.db
        .insert("runs", doc! { "due": due, "started": ctx.now() })?;
    Ok(())
}

/// The due time of the newest run (runs commit in due order, one at a time), or `None`.
#[query]
fn last_due(ctx: &QueryCtx) -> Result<Option<f64>> {
    match ctx.db.query("runs").order(Desc).first()? {
        Some(run) => Ok(Some(run.field("due")?)),
        None => Ok(None),
    }
}

#[derive(Serialize)]
pub struct Lags {
    /// `started - due` of each run of the page, in milliseconds.
    lags: Vec<f64>,
    cursor: String,
    done: bool,
}

/// One page of lags, in commit order: pages keep each read under the per-query limit.
#[query]
fn lags(ctx: &QueryCtx, cursor: Option<String>, page: f64) -> Result<Lags> {
    let result = ctx
        .db
        .query("runs")
        .paginate(PaginationOptions::after(cursor, page as usize))?;
    let mut lags = Vec::with_capacity(result.page.len());
    for run in &result.page {
        let due: f64 = run.field("due")?;
        let started: f64 = run.field("started")?;
        lags.push(started - due);
    }
    Ok(Lags {
        lags,
        cursor: result.continue_cursor,
        done: result.is_done,
    })
}
