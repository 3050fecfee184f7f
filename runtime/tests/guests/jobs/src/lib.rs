//! Scheduled work, actions and HTTP actions for the tests (`runtime/tests/*/jobs.rs` and the
//! CLI's kill -9 test).

use ferrovex_sdk::prelude::*;
use std::time::Duration;

pub mod jobs;
pub mod outside;
pub mod routes;

#[crons]
fn crons() -> Crons {
    Crons::new().interval(
        "tick",
        Duration::from_millis(200),
        "jobs:cron_tick",
        &doc! {},
    )
}
