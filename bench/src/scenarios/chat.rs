//! `chat-send`: 64 official Convex clients of `runtime serve examples/chat`, each sending
//! `chat:send_message` after the previous one resolved. Each resolution means a durable
//! commit that the client already sees. Once on the RocksDB engine, once on the PostgreSQL
//! engine (`runtime serve --store`, a throwaway cluster on loopback).

use super::{postgres, rocks, Context, BODY_BYTES, CLIENTS};
use crate::report::Row;
use crate::server::{CpuMeter, RuntimeServer};
use crate::ws::closed_loop;
use crate::Rng;
use serde_json::{json, Value as Json};

pub fn run(ctx: &mut Context) -> Result<(), String> {
    let server = ctx.serve("examples/chat", "chat-send")?;
    let mut row = measure(ctx, server, format!("{CLIENTS} clients, chat:send_message"))?;
    if let Some(baseline) = ctx.find("baseline", rocks::CHAT) {
        row = row.throughput_ratio(&baseline);
    }
    ctx.push(row.clone());

    // The same on the PostgreSQL engine: every commit group is a PostgreSQL transaction.
    let database = match postgres::EngineDatabase::start("chat-engine") {
        Ok(database) => database,
        Err(e) => {
            ctx.skipped
                .push(format!("chat-send on the PostgreSQL engine: {e}"));
            return Ok(());
        }
    };
    let server = ctx.serve_with(
        "examples/chat",
        "chat-send-postgres",
        &["--store", &database.url],
    )?;
    let mut on_postgres = measure(
        ctx,
        server,
        format!("{CLIENTS} clients, chat:send_message, PostgreSQL engine"),
    )?;
    let note = format!(
        "{}; {}, synchronous_commit=on",
        on_postgres.note,
        database.version()
    );
    on_postgres = on_postgres.throughput_ratio(&row).note(note);
    ctx.push(on_postgres);
    Ok(())
}

/// Client `client`'s next call: a chat message of [`BODY_BYTES`] from its own user.
pub fn message(client: usize, rng: &mut Rng) -> (&'static str, Json) {
    let body = format!("{:-<BODY_BYTES$}", format!("m{client}-{}", rng.next_u64()));
    (
        "chat:send_message",
        json!({"user": format!("user{client}"), "body": body}),
    )
}

/// The closed loop against `server`, then stops it: the row, without baselines.
fn measure(ctx: &Context, server: RuntimeServer, case: String) -> Result<Row, String> {
    let duration = ctx.duration();
    let cpu = CpuMeter::start(&server);
    let result = ctx
        .clients
        .block_on(closed_loop(server.addr, CLIENTS, duration, message));
    let spent = cpu.spent();
    server.stop()?;
    let row = Row::new("chat-send", case)
        .throughput(result.per_second())
        .latency(result.latency.clone())
        .note(format!(
            "{} durable commits, {}",
            result.answered,
            result.failed()
        ));
    Ok(row.cpu_spent(&spent, result.answered))
}
