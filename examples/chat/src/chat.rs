use ferrovex_sdk::prelude::*;
use std::time::Duration;

/// Args `{"user": string, "body": string}`. A message `/wiki TOPIC` also asks for the topic's
/// summary: the action `wiki:summary` runs once this mutation commits (and never if it fails),
/// and posts the summary as a message of its own.
#[mutation]
fn send_message(ctx: &mut MutationCtx, user: String, body: String) -> Result<()> {
    log!("This Rust function is running on the server.");
    if let Some(topic) = body.strip_prefix("/wiki ").map(str::trim) {
        if !topic.is_empty() {
            ctx.scheduler
                .run_after(Duration::ZERO, "wiki:summary", &doc! { "topic": topic })?;
        }
    }
    ctx.db
        .insert("messages", doc! { "user": user, "body": body })?;
    Ok(())
}

/// The 50 most recent messages, oldest first.
#[query]
fn get_messages(ctx: &QueryCtx) -> Result<Vec<Document>> {
    let mut messages = ctx.db.query("messages").order(Desc).take(50)?;
    messages.reverse();
    Ok(messages)
}

/// Messages newest first, a page at a time, as `usePaginatedQuery` asks for them
/// (`{"paginationOpts": {"numItems", "cursor"}}`).
#[query]
fn list_messages(ctx: &QueryCtx, pagination_opts: PaginationOptions) -> Result<PaginationResult> {
    ctx.db
        .query("messages")
        .order(Desc)
        .paginate(pagination_opts)
}

/// Args `{"id": string}`.
#[mutation]
fn delete_message(ctx: &mut MutationCtx, id: Id) -> Result<()> {
    ctx.db.delete(&id)?;
    Ok(())
}
