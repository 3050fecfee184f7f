use ferrovex_sdk::prelude::*;

/// The caller's identity (every field), or null.
#[query]
fn whoami(ctx: &QueryCtx) -> Result<Option<UserIdentity>> {
    Ok(ctx.auth.get_user_identity())
}

/// Writes a note authored by the caller's token identifier; refused when signed out.
#[mutation]
fn note(ctx: &mut MutationCtx, body: String) -> Result<String> {
    let Some(user) = ctx.auth.get_user_identity() else {
        bail!("users:note: sign in first");
    };
    let author = user.token_identifier().to_owned();
    ctx.db
        .insert("notes", doc! { "author": author.clone(), "body": body })?;
    Ok(author)
}

/// Every note.
#[query]
fn notes(ctx: &QueryCtx) -> Result<Vec<Document>> {
    Ok(ctx.db.query("notes").collect()?)
}

/// Only other functions and admin-key callers may read this.
#[internal_query]
fn secret(ctx: &QueryCtx) -> Result<String> {
    Ok(format!(
        "internal, called as {}",
        ctx.auth
            .get_user_identity()
            .map(|u| u.token_identifier().to_owned())
            .unwrap_or_else(|| "nobody".into())
    ))
}

/// Only other functions and admin-key callers may run this.
#[internal_mutation]
fn wipe(ctx: &mut MutationCtx) -> Result<i64> {
    let notes = ctx.db.query("notes").collect()?;
    for note in &notes {
        ctx.db.delete(&note.id)?;
    }
    Ok(notes.len() as i64)
}
