use ferrovex_sdk::prelude::*;

/// Called as `messages:send` with `{"author": "...", "body": "..."}`.
#[mutation]
fn send(ctx: &mut MutationCtx, author: String, body: String) -> Result<()> {
    if body.trim().is_empty() {
        bail!("a message needs a body");
    }
    ctx.db.insert("messages", doc! { "author": author, "body": body })?;
    Ok(())
}

/// Called as `messages:list`: the 20 most recent messages, oldest first. Clients that
/// subscribe get a new result whenever a message is sent.
#[query]
fn list(ctx: &QueryCtx) -> Result<Vec<Document>> {
    let mut messages = ctx.db.query("messages").order(Desc).take(20)?;
    messages.reverse();
    Ok(messages)
}
