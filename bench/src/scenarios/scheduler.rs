//! `scheduler`: 1,000 scheduled mutations per second coming due (one every millisecond) for
//! 3 s (`--quick`) or 10 s, on `runtime serve bench/apps/jobs`. The figure is each job's lag:
//! from its due time to the moment its mutation starts running, which is the `ctx.now()` of
//! its transaction (taken when the transaction begins) minus the due time it was scheduled
//! for. The jobs are scheduled one second's worth (1,000 jobs, one mutation call, the most a
//! call may schedule) at a time, two seconds before that second is due, so scheduling goes on
//! while earlier jobs run, as in an app that keeps adding work.

use super::{Context, JOBS_APP};
use crate::http::Http;
use crate::report::Row;
use crate::server::CpuMeter;
use crate::stats::{ms, percentile, Latency};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Jobs coming due per second, one every `1000 / RATE` ms.
const RATE: usize = 1_000;
/// How long before its first job is due each second's batch is scheduled.
const AHEAD_MS: f64 = 2_000.0;
/// Runs read back per query: well under the per-query read limit (32,000 documents).
const PAGE: usize = 8_000;

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn sleep_until_ms(at_ms: f64) {
    let left = at_ms - now_ms();
    if left > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(left / 1e3));
    }
}

pub fn run(ctx: &mut Context) -> Result<(), String> {
    let seconds = if ctx.quick { 3 } else { 10 };
    let jobs = seconds * RATE;
    let spacing_ms = 1e3 / RATE as f64;
    let server = ctx.serve(JOBS_APP, "scheduler")?;
    let mut http = Http::connect(server.addr).map_err(|e| e.to_string())?;
    let cpu = CpuMeter::start(&server);
    // Half a second for the first call to land before the first batch must be in.
    let start_ms = now_ms() + AHEAD_MS + 500.0;
    let mut late_batches = 0;
    for second in 0..seconds {
        let due = start_ms + second as f64 * 1e3;
        sleep_until_ms(due - AHEAD_MS);
        http.call(
            "mutation",
            "scheduler:schedule",
            json!({"count": RATE as f64, "start_ms": due, "spacing_ms": spacing_ms}),
        )?;
        // A batch committed after its first job was due would make that job's lag the
        // bench's, not the scheduler's.
        if now_ms() > due {
            late_batches += 1;
        }
    }

    // Jobs run in due order, one at a time: once the last one has run, all have.
    let last_due = start_ms + (jobs - 1) as f64 * spacing_ms;
    sleep_until_ms(last_due);
    let deadline = Instant::now() + Duration::from_secs(60 + 5 * seconds as u64);
    loop {
        let newest = http.call("query", "scheduler:last_due", json!({}))?;
        if newest
            .as_f64()
            .is_some_and(|d| d >= last_due - spacing_ms / 2.0)
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the last job (due {last_due}) had not run {:.0} s after it was due; the newest run was due {newest}",
                (now_ms() - last_due) / 1e3
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let cpu = cpu.spent().server;

    // In commit order, which is due order (the jobs run one at a time, earliest first): the
    // `i`-th lag is that of the job due at `start_ms + i * spacing_ms`.
    let mut lags_ms = Vec::with_capacity(jobs);
    let mut cursor = serde_json::Value::Null;
    loop {
        let page = http.call(
            "query",
            "scheduler:lags",
            json!({"cursor": cursor, "page": PAGE as f64}),
        )?;
        let lags = page["lags"]
            .as_array()
            .ok_or_else(|| format!("scheduler:lags answered {page}"))?;
        lags_ms.extend(lags.iter().filter_map(|l| l.as_f64()));
        if page["done"] == true || lags.is_empty() {
            break;
        }
        cursor = page["cursor"].clone();
    }
    drop(http);
    server.stop()?;
    if lags_ms.len() != jobs {
        return Err(format!(
            "{} runs recorded for {jobs} jobs scheduled",
            lags_ms.len()
        ));
    }

    // started - due < 0 would be a job run before it was due; counted, and kept out of the
    // durations (which cannot be negative).
    let early = lags_ms.iter().filter(|l| **l < 0.0).count();
    let last_started = lags_ms
        .iter()
        .enumerate()
        .map(|(i, lag)| start_ms + i as f64 * spacing_ms + lag)
        .fold(f64::MIN, f64::max);
    let samples: Vec<Duration> = lags_ms
        .iter()
        .map(|l| Duration::from_secs_f64(l.max(0.0) / 1e3))
        .collect();
    let mut sorted = samples.clone();
    sorted.sort_unstable();
    let p999_ms = ms(percentile(&sorted, 0.999));
    // The lag of each second's jobs: whether the scheduler keeps its pace as finished jobs
    // accumulate, which one distribution over the whole run would hide.
    let by_second: Vec<String> = samples
        .chunks(RATE)
        .map(|second| {
            let mut second = second.to_vec();
            second.sort_unstable();
            format!("{:.1}", ms(percentile(&second, 0.5)))
        })
        .collect();
    let mut row = Row::new(
        "scheduler",
        format!("{RATE} jobs/s due for {seconds} s, due to start"),
    )
    // The rate the jobs ran at, from the first one's due time to the last one's start.
    .throughput(jobs as f64 * 1e3 / (last_started - start_ms))
    .latency(Latency::of(samples))
    .value(p999_ms, "ms p99.9")
    .note(format!(
        "{jobs} jobs, one mutation each, run one at a time; p50 by second {} ms; {late_batches} batches scheduled late, {early} started before due",
        by_second.join("/")
    ));
    if let Some(cpu) = cpu {
        row = row.cpu_per_call(cpu, jobs);
    }
    ctx.push(row);
    Ok(())
}
