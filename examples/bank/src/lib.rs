//! The bank app of the benchmark (`target/release/bench`): accounts with
//! a balance, and transfers between them, the workload of SpacetimeDB's "keynote-2"
//! comparison. Its functions live in `src/bank.rs`, so their paths are `bank:seed`,
//! `bank:transfer`, `bank:balance`, `bank:recent` and `bank:ping`.

use ferrovex_sdk::prelude::*;

mod bank;

#[schema]
fn schema() -> Schema {
    Schema::new().table(Table::new("accounts").field("balance", v::int64()))
}
