use ferrovex_sdk::prelude::*;

/// Args `{"user": string, "body": string}`, as in the original.
#[mutation]
fn send_message(ctx: &mut MutationCtx, user: String, body: String) -> Result<()> {
    ctx.db
        .insert("messages", doc! { "user": user, "body": body })?;
    Ok(())
}

/// Changed: the bodies of the 50 most recent messages, oldest first.
#[query]
fn get_messages(ctx: &QueryCtx) -> Result<Vec<String>> {
    let mut messages = ctx.db.query("messages").order(Desc).take(50)?;
    messages.reverse();
    messages
        .iter()
        .map(|message| match message.get("body") {
            Some(Value::String(body)) => Ok(body.clone()),
            other => Err(Error::new(format!(
                "a message without a string body: {other:?}"
            ))),
        })
        .collect()
}
