//! `/wiki TOPIC` in the chat: an action fetches the topic's summary from a page-summary
//! service (Wikipedia's by default; the environment variable `WIKI_SUMMARY_URL` names
//! another, `runtime env set WIKI_SUMMARY_URL https://...`) and posts it as a message.

use ferrovex_sdk::prelude::*;
use serde::Deserialize;

const DEFAULT_SUMMARY_URL: &str = "https://en.wikipedia.org/api/rest_v1/page/summary";

/// What a page summary holds (Wikipedia's REST API answers much more).
#[derive(Deserialize)]
struct Summary {
    extract: String,
}

/// Scheduled by `chat:send_message`; internal, so no client can call it directly.
#[internal_action]
fn summary(ctx: &mut ActionCtx, topic: String) -> Result<()> {
    let base = ctx
        .env("WIKI_SUMMARY_URL")
        .unwrap_or_else(|| DEFAULT_SUMMARY_URL.to_owned());
    let url = format!("{}/{}", base.trim_end_matches('/'), encode(&topic));
    let body = match ctx.fetch(Fetch::get(url).header("accept", "application/json")) {
        Ok(response) if response.ok() => response.json::<Summary>()?.extract,
        Ok(response) => format!(
            "No summary of {topic:?} (the service answered {}).",
            response.status
        ),
        // The network, a timeout, a refused address: the chat says so.
        Err(e) => format!("No summary of {topic:?}: {}", e.message()),
    };
    ctx.run_mutation("wiki:post", &doc! { "body": body })
}

/// The summary as a message from "Wikipedia".
#[internal_mutation]
fn post(ctx: &mut MutationCtx, body: String) -> Result<()> {
    ctx.db
        .insert("messages", doc! { "user": "Wikipedia", "body": body })?;
    Ok(())
}

/// A topic as one path segment: spaces as underscores (Wikipedia's titles), everything but
/// unreserved characters percent-encoded.
fn encode(topic: &str) -> String {
    let mut out = String::new();
    for byte in topic.replace(' ', "_").bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
