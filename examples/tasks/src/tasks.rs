use ferrovex_sdk::prelude::*;

/// Adds an open task and returns its id.
#[mutation]
fn add(ctx: &mut MutationCtx, title: String, priority: Option<i64>) -> Result<Id> {
    if title.trim().is_empty() {
        return Err(Error::new("a task needs a title").with_data(doc! { "field": "title" }));
    }
    let id = ctx.db.insert(
        "tasks",
        doc! { "title": title, "done": false, "priority": priority },
    )?;
    log!("added task {id}");
    Ok(id)
}

/// Marks a task done (a patch: the other fields stay).
#[mutation]
fn complete(ctx: &mut MutationCtx, id: Id) -> Result<()> {
    ctx.db.patch(&id, doc! { "done": true })?;
    Ok(())
}

#[mutation]
fn remove(ctx: &mut MutationCtx, id: Id) -> Result<()> {
    ctx.db.delete(&id)?;
    Ok(())
}

/// Open tasks, highest priority first, through the declared index.
#[query]
fn list_open(ctx: &QueryCtx) -> Result<Vec<Document>> {
    ctx.db
        .query("tasks")
        .with_index("by_done", |r| r.eq("done", false))
        .order(Desc)
        .collect()
}

/// One page of all tasks, newest first.
#[query]
fn page(ctx: &QueryCtx, cursor: Option<String>, size: i64) -> Result<PaginationResult> {
    let num_items = usize::try_from(size).map_err(|_| Error::new("size must not be negative"))?;
    ctx.db
        .query("tasks")
        .order(Desc)
        .paginate(PaginationOptions::after(cursor, num_items))
}
