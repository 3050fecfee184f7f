use ferrovex_sdk::prelude::*;

/// The signed-in caller as the app sees them, or null: `{tokenIdentifier, subject, issuer,
/// name?, email?, ...}`.
#[query]
fn whoami(ctx: &QueryCtx) -> Result<Option<UserIdentity>> {
    Ok(ctx.auth.get_user_identity())
}
