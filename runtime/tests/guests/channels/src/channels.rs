use ferrovex_sdk::prelude::*;

#[mutation]
fn send(ctx: &mut MutationCtx, channel: String, body: String) -> Result<()> {
    ctx.db
        .insert("messages", doc! { "channel": channel, "body": body })?;
    Ok(())
}

/// The 10 newest messages of `channel`, newest first.
#[query]
fn list(ctx: &QueryCtx, channel: String) -> Result<Vec<Document>> {
    ctx.db
        .query("messages")
        .with_index("by_channel", move |r| r.eq("channel", channel))
        .order(Desc)
        .take(10)
}
