//! `chat-send`: 64 official Convex clients of `runtime serve examples/chat`, each sending
//! `chat:send_message` after the previous one resolved. Each resolution means a durable
//! commit that the client already sees.

use super::{rocks, Context, BODY_BYTES, CLIENTS};
use crate::report::Row;
use crate::ws::closed_loop;
use serde_json::json;

pub fn run(ctx: &mut Context) -> Result<(), String> {
    let server = ctx.serve("examples/chat", "chat-send")?;
    let duration = ctx.duration();
    let cpu_before = server.cpu_seconds();
    let result = ctx.clients.block_on(closed_loop(
        server.addr,
        CLIENTS,
        duration,
        |client, rng| {
            let body = format!("{:-<BODY_BYTES$}", format!("m{client}-{}", rng.next_u64()));
            (
                "chat:send_message",
                json!({"user": format!("user{client}"), "body": body}),
            )
        },
    ));
    let cpu = server
        .cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    server.stop()?;
    let mut row = Row::new("chat-send", format!("{CLIENTS} clients, chat:send_message"))
        .throughput(result.per_second())
        .latency(result.latency.clone())
        .note(format!(
            "{} durable commits, {} failed{}",
            result.answered,
            result.failures,
            result
                .first_failure
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    if let Some(cpu) = cpu {
        row = row.cpu_per_call(cpu, result.answered);
    }
    if let Some(baseline) = ctx.find("baseline", rocks::CHAT) {
        row = row.throughput_ratio(&baseline);
    }
    ctx.push(row);
    Ok(())
}
