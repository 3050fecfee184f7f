//! `bank-transfer`: 100,000 accounts in `runtime serve examples/bank`, 64 WebSocket
//! connections each sending `bank:transfer` (read two balances, write both) after the
//! previous answer, with accounts chosen uniformly and with Zipf skew 1.5 (hot accounts).
//! Conflict retries come from the server's counters (`GET /api/metrics`).
//!
//! Beside it: the same transfer on the store alone, in process, with no server and no wasm
//! (what the server and sandbox add), RocksDB alone, PostgreSQL's stored procedure (see
//! `postgres`), and the server again on the PostgreSQL engine (`runtime serve --store`).

use super::{postgres, rocks, Context, ACCOUNTS, CLIENTS};
use crate::http::{int, Http, Metrics};
use crate::report::Row;
use crate::server::{CpuMeter, RuntimeServer};
use crate::ws::closed_loop;
use crate::{pick_pair, run_for, Skew};
use ferrovex_model::{obj, DocumentId, Value};
use ferrovex_runtime::store::{Store, StoreError};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub const SKEWS: [Skew; 2] = [Skew::Uniform, Skew::Zipf(1.5)];
/// Accounts created by one `bank:seed` call.
pub const SEED_BATCH: usize = 10_000;

fn metrics(server: &RuntimeServer) -> Result<Metrics, String> {
    Http::connect(server.addr)
        .map_err(|e| e.to_string())?
        .metrics(&server.admin_key)
}

/// Creates `count` accounts with `bank:seed`; their ids.
pub fn seed(addr: SocketAddr, count: usize) -> Result<Vec<String>, String> {
    let mut http = Http::connect(addr).map_err(|e| e.to_string())?;
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let n = SEED_BATCH.min(count - ids.len());
        let value = http.call(
            "mutation",
            "bank:seed",
            json!({"count": int(n as i64), "balance": int(1_000)}),
        )?;
        let created = value.as_array().ok_or("bank:seed returned no array")?;
        if created.len() != n {
            return Err(format!(
                "bank:seed created {} accounts, {n} asked",
                created.len()
            ));
        }
        for id in created {
            ids.push(
                id.as_str()
                    .ok_or("bank:seed returned a non-string id")?
                    .to_owned(),
            );
        }
    }
    Ok(ids)
}

pub fn run(ctx: &mut Context) -> Result<(), String> {
    match postgres::run(ctx, &SKEWS) {
        Ok(rows) => rows.into_iter().for_each(|r| ctx.push(r)),
        Err(e) => ctx.skipped.push(format!("PostgreSQL baseline: {e}")),
    }
    store_alone(ctx)?;

    let server = ctx.serve("examples/bank", "bank-transfer")?;
    let rocks_rows = transfers(ctx, server, "")?;

    // The same on the PostgreSQL engine, each against its RocksDB-engine row.
    let database = match postgres::EngineDatabase::start("bank-engine") {
        Ok(database) => database,
        Err(e) => {
            ctx.skipped
                .push(format!("bank-transfer on the PostgreSQL engine: {e}"));
            return Ok(());
        }
    };
    let server = ctx.serve_with(
        "examples/bank",
        "bank-transfer-postgres",
        &["--store", &database.url],
    )?;
    let version = database.version();
    let rows = transfers(ctx, server, ", PostgreSQL engine")?;
    for (row, on_rocks) in rows.into_iter().zip(&rocks_rows) {
        let note = format!("{}; {version}, synchronous_commit=on", row.note);
        ctx.push(row.throughput_ratio(on_rocks).note(note));
    }
    Ok(())
}

/// Seeds the accounts on `server`, runs the transfer with each skew, and stops it. The rows
/// of the RocksDB engine (`engine` empty) are pushed with their baselines; others are
/// returned for the caller to compare.
fn transfers(ctx: &mut Context, server: RuntimeServer, engine: &str) -> Result<Vec<Row>, String> {
    let duration = ctx.duration();
    let seeding = Instant::now();
    let ids = Arc::new(seed(server.addr, ACCOUNTS)?);
    println!(
        "  bank-transfer{engine}: {} accounts created in {:.1} s",
        ids.len(),
        seeding.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    for skew in SKEWS {
        let before = metrics(&server)?;
        let (ids, zipf) = (ids.clone(), skew.sampler(ACCOUNTS));
        let cpu = CpuMeter::start(&server);
        let result = ctx.clients.block_on(closed_loop(
            server.addr,
            CLIENTS,
            duration,
            move |_, rng| {
                let (from, to) = pick_pair(rng, ids.len(), zipf.as_ref());
                (
                    "bank:transfer",
                    json!({"from": ids[from], "to": ids[to], "amount": int(1)}),
                )
            },
        ));
        let spent = cpu.spent();
        let after = metrics(&server)?;
        let retries = after.conflict_retries - before.conflict_retries;
        let serial = after.serial_runs - before.serial_runs;
        let overruns = after.inline_overruns - before.inline_overruns;
        let network_reads = after.inline_network_reads - before.inline_network_reads;
        let mut row = Row::new(
            "bank-transfer",
            format!("{CLIENTS} clients, bank:transfer, {}{engine}", skew.name()),
        )
        .throughput(result.per_second())
        .latency(result.latency.clone())
        .note(format!(
            "{} transfers, {retries} conflict retries ({:.3}/transfer), {serial} serial-lane runs, {overruns} inline attempts run long, {network_reads} stopped at a read over the network, {}",
            result.answered,
            retries as f64 / result.answered.max(1) as f64,
            result.failed()
        ));
        row = row.cpu_spent(&spent, result.answered);
        if engine.is_empty() {
            for baseline in [
                ctx.find("baseline", &postgres::case(skew)),
                ctx.find("bank-transfer", &store_case(skew)),
                ctx.find("baseline", rocks::BANK),
            ]
            .into_iter()
            .flatten()
            {
                row = row.throughput_ratio(&baseline);
            }
            ctx.push(row.clone());
        } else if let Some(baseline) = ctx.find("baseline", &postgres::case(skew)) {
            row = row.throughput_ratio(&baseline);
        }
        rows.push(row);
    }
    server.stop()?;
    Ok(rows)
}

fn store_case(skew: Skew) -> String {
    format!("store alone, {CLIENTS} threads, {}", skew.name())
}

/// The transfer as native Rust on the store, in this process: no server, no wasm.
fn store_alone(ctx: &mut Context) -> Result<(), String> {
    let dir = ctx.store_dir("bank-store-alone");
    let store = Store::open(&dir).map_err(|e| e.to_string())?;
    let accounts: Vec<DocumentId> = (0..ACCOUNTS / SEED_BATCH)
        .map(|_| {
            store.run_mutation(|tx| -> Result<Vec<DocumentId>, StoreError> {
                (0..SEED_BATCH)
                    .map(|_| tx.insert("accounts", obj! { "balance" => 1_000i64 }))
                    .collect()
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?
        .into_iter()
        .flat_map(|c| c.value)
        .collect();
    let transfer = |from: DocumentId, to: DocumentId| {
        store.run_mutation(|tx| -> Result<(), StoreError> {
            let balance =
                |tx: &mut ferrovex_runtime::store::Transaction, id| -> Result<i64, StoreError> {
                    Ok(tx
                        .get(id)?
                        .and_then(|d| d.fields["balance"].as_i64())
                        .unwrap_or(0))
                };
            let (a, b) = (balance(tx, from)?, balance(tx, to)?);
            tx.patch(
                from,
                [("balance".to_string(), Some(Value::from(a - 1)))].into(),
            )?;
            tx.patch(
                to,
                [("balance".to_string(), Some(Value::from(b + 1)))].into(),
            )?;
            Ok(())
        })
    };
    for skew in SKEWS {
        let zipf = skew.sampler(ACCOUNTS);
        let stats = store.stats();
        let retries0 = stats.conflict_retries.load(Ordering::Relaxed);
        let failures = std::sync::atomic::AtomicU64::new(0);
        let (n, took) = run_for(CLIENTS, ctx.duration(), |_, rng| {
            let (from, to) = pick_pair(rng, ACCOUNTS, zipf.as_ref());
            if transfer(accounts[from], accounts[to]).is_err() {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        });
        let retries = stats.conflict_retries.load(Ordering::Relaxed) - retries0;
        ctx.push(
            Row::new("bank-transfer", store_case(skew))
                .throughput(n as f64 / took.as_secs_f64())
                .note(format!(
                    "Store::run_mutation, no server or wasm; {retries} conflict retries, {} failed",
                    failures.into_inner()
                )),
        );
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
