use ferrovex_sdk::prelude::*;

/// Sends a message as the signed-in user: the author is the token's identity, and a caller
/// who is not signed in is refused.
#[mutation]
fn send(ctx: &mut MutationCtx, body: String) -> Result<()> {
    let Some(user) = ctx.auth.get_user_identity() else {
        bail!("chat:send: sign in to send messages");
    };
    let name = user
        .name()
        .or(user.email())
        .unwrap_or(user.subject())
        .to_owned();
    ctx.db.insert(
        "messages",
        doc! { "author": user.token_identifier(), "name": name, "body": body },
    )?;
    Ok(())
}

/// The 50 most recent messages, oldest first; anyone may read them.
#[query]
fn list(ctx: &QueryCtx) -> Result<Vec<Document>> {
    let mut messages = ctx.db.query("messages").order(Desc).take(50)?;
    messages.reverse();
    Ok(messages)
}

/// Deletes every message: for the operator (with the admin key, e.g.
/// `runtime run chat:clear`), never for clients.
#[internal_mutation]
fn clear(ctx: &mut MutationCtx) -> Result<i64> {
    let messages = ctx.db.query("messages").collect()?;
    for message in &messages {
        ctx.db.delete(&message.id)?;
    }
    Ok(messages.len() as i64)
}
