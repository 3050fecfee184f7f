//! `scale`: query latency and restart-to-ready time as the bank grows to 10^4, 10^5 and 10^6
//! accounts (`--quick` stops at 10^5), and the server's memory per idle subscribed
//! connection with 10,000 connections (1,000 with `--quick`), each on a query of its own.
//!
//! - *point read*: `bank:balance` of a random account, over HTTP, one call after another.
//! - *newest 50*: `bank:recent`, the 50 newest accounts through the creation-time index.
//! - *restart to ready after kill -9*: SIGKILL right after the reads, then `runtime serve`
//!   again on the same data, until the first query is answered: RocksDB replays what its
//!   write-ahead log holds beyond the last flush (includes cargo's check that the app is
//!   built, and deploying from the compiled-module cache).
//! - *restart to ready*: then SIGTERM (a clean close flushes), and the same.

use super::bank::{seed, SEED_BATCH};
use super::fanout::{add_subscribers, close_all};
use super::Context;
use crate::http::Http;
use crate::report::Row;
use crate::server::RuntimeServer;
use crate::stats::{ms, Latency};
use crate::Rng;
use serde_json::json;
use std::time::{Duration, Instant};

/// Starts `runtime serve` on the scenario's data: the server, the time until it listened,
/// and the time until its first query was answered.
fn restart(ctx: &Context, name: &str) -> Result<(RuntimeServer, Duration, Duration), String> {
    let started = Instant::now();
    let server = ctx.serve("examples/bank", name)?;
    let listening = started.elapsed();
    Http::connect(server.addr)
        .map_err(|e| e.to_string())?
        .call("query", "bank:ping", json!({}))?;
    Ok((server, listening, started.elapsed()))
}

pub fn run(ctx: &mut Context) -> Result<(), String> {
    let sizes: &[usize] = if ctx.quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    let calls = if ctx.quick { 300 } else { 1_000 };
    let name = "scale";
    let mut server = ctx.serve("examples/bank", name)?;
    // Every tenth account, for reads of random accounts.
    let mut sample: Vec<String> = Vec::new();
    let mut total = 0;
    let mut first: Option<(f64, f64, f64)> = None;
    for &size in sizes {
        let seeding = Instant::now();
        while total < size {
            let ids = seed(server.addr, SEED_BATCH.min(size - total))?;
            total += ids.len();
            sample.extend(ids.into_iter().step_by(10));
        }
        let seeded_in = seeding.elapsed();
        let mut http = Http::connect(server.addr).map_err(|e| e.to_string())?;
        let mut rng = Rng::new(size as u64);
        let mut failure = None;
        let mut timed = |f: &mut dyn FnMut() -> Result<serde_json::Value, String>| {
            for _ in 0..calls / 10 {
                let _ = f();
            }
            let mut samples = Vec::with_capacity(calls);
            for _ in 0..calls {
                let t0 = Instant::now();
                if let Err(e) = f() {
                    failure.get_or_insert(e);
                }
                samples.push(t0.elapsed());
            }
            Latency::of(samples)
        };
        let point = timed(&mut || {
            let id = &sample[rng.below(sample.len())];
            http.call("query", "bank:balance", json!({"id": id}))
        });
        let recent = timed(&mut || http.call("query", "bank:recent", json!({})));
        drop(http);
        if let Some(e) = failure {
            return Err(e);
        }

        // A crash first, while the log still holds the seeding, then a clean close.
        server.kill();
        let (crashed, crash_listening, crash_ready) = restart(ctx, name)?;
        crashed.stop()?;
        let (restarted, listening, ready) = restart(ctx, name)?;
        server = restarted;

        let (p0, r0, s0) = *first.get_or_insert((point.p50_ms, recent.p50_ms, ms(ready)));
        let base = format!("scale {} docs", sizes[0]);
        ctx.push(
            Row::new("scale", format!("{size} docs, point read bank:balance"))
                .latency(point)
                .latency_ratio(base.clone(), p0)
                .at_load("point read", size as f64)
                .note(format!(
                    "HTTP, one call after another; {size} accounts seeded (this step {:.1} s)",
                    seeded_in.as_secs_f64()
                )),
        );
        ctx.push(
            Row::new("scale", format!("{size} docs, newest 50 bank:recent"))
                .latency(recent)
                .latency_ratio(base.clone(), r0)
                .at_load("newest 50", size as f64),
        );
        ctx.push(
            Row::new("scale", format!("{size} docs, restart to ready after kill -9"))
                .value(ms(crash_ready), "ms")
                .at_load("restart after kill -9", size as f64)
                .note(format!(
                    "SIGKILL after the reads, runtime serve on the same data: listening after {:.0} ms, first query answered after {:.0} ms",
                    ms(crash_listening),
                    ms(crash_ready)
                )),
        );
        ctx.push(
            Row::new("scale", format!("{size} docs, restart to ready"))
                .value(ms(ready), "ms")
                .value_ratio(base, s0)
                .at_load("restart to ready", size as f64)
                .note(format!(
                    "SIGTERM, runtime serve on the same data: listening after {:.0} ms, first query answered after {:.0} ms",
                    ms(listening),
                    ms(ready)
                )),
        );
    }

    // Memory per idle subscribed connection.
    let connections = if ctx.quick { 1_000 } else { 10_000 };
    let before = server.rss_bytes().unwrap_or(0);
    let mut subscribers = Vec::new();
    let addr = server.addr;
    let setup = Instant::now();
    let sample_len = sample.len();
    ctx.clients.block_on(add_subscribers(
        addr,
        &mut subscribers,
        connections,
        |i| vec![("bank:balance", json!({"id": sample[i % sample_len]}))],
        None,
    ));
    let setup_took = setup.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let after = server.rss_bytes().unwrap_or(0);
    ctx.clients.block_on(close_all(subscribers));
    server.stop()?;
    let per_connection = after.saturating_sub(before) as f64 / connections as f64;
    ctx.push(
        Row::new(
            "scale",
            format!("{connections} idle subscribed connections, memory"),
        )
        .value(per_connection / 1024.0, "KiB/conn")
        .note(format!(
            "server RSS {:.0} MiB -> {:.0} MiB; each connection on a bank:balance query of its own; connected in {:.1} s",
            before as f64 / (1 << 20) as f64,
            after as f64 / (1 << 20) as f64,
            setup_took.as_secs_f64()
        )),
    );
    Ok(())
}
