use ferrovex_sdk::prelude::*;

/// Creates `count` accounts holding `balance` each, in one commit; returns their ids in
/// creation order.
#[mutation]
fn seed(ctx: &mut MutationCtx, count: i64, balance: i64) -> Result<Vec<Id>> {
    (0..count)
        .map(|_| ctx.db.insert("accounts", doc! { "balance": balance }))
        .collect()
}

/// Moves `amount` from one account to another. Both balances are read and written, so two
/// concurrent transfers that share an account conflict, and one of them is retried.
#[mutation]
fn transfer(ctx: &mut MutationCtx, from: Id, to: Id, amount: i64) -> Result<()> {
    let balance = |id: &Id| -> Result<i64> {
        ctx.db
            .get(id)?
            .ok_or_else(|| Error::new(format!("no account {id}")))?
            .field("balance")
    };
    let (a, b) = (balance(&from)?, balance(&to)?);
    ctx.db.patch(&from, doc! { "balance": a - amount })?;
    ctx.db.patch(&to, doc! { "balance": b + amount })?;
    Ok(())
}

/// One account's balance.
#[query]
fn balance(ctx: &QueryCtx, id: Id) -> Result<i64> {
    ctx.db
        .get(&id)?
        .ok_or_else(|| Error::new(format!("no account {id}")))?
        .field("balance")
}

/// The 50 newest accounts, newest first.
#[query]
fn recent(ctx: &QueryCtx) -> Result<Vec<Document>> {
    ctx.db.query("accounts").order(Desc).take(50)
}

/// Does nothing: the cost of a call itself.
#[query]
fn ping(_ctx: &QueryCtx) -> Result<()> {
    Ok(())
}
