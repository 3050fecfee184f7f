//! Hostile guest functions, all in `src/hostile.rs`: paths `hostile:<name>`.

mod hostile;

use ferrovex_sdk::prelude::*;

/// One declared table, to check the host enforces schemas on every write.
#[schema]
fn schema() -> Schema {
    Schema::new().table(
        Table::new("strict")
            .field("n", v::int64())
            .field("note", v::optional(v::string())),
    )
}
