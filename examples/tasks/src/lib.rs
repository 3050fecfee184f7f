//! The tasks example app: a declared schema with an index (`by_done`), and functions in
//! `src/tasks.rs` (`tasks:add`, `tasks:complete`, `tasks:remove`, `tasks:list_open`,
//! `tasks:page`).

use ferrovex_sdk::prelude::*;

mod tasks;

#[schema]
fn schema() -> Schema {
    Schema::new().table(
        Table::new("tasks")
            .field("title", v::string())
            .field("done", v::boolean())
            .field("priority", v::optional(v::int64()))
            .index("by_done", &["done", "priority"]),
    )
}
