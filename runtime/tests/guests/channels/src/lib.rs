//! Chat messages by channel, for the fanout benchmark (`bench/src/scenarios/fanout.rs`) and
//! the sync simulation (`fuzz/checks`): `channels:list` reads one channel through a declared
//! index, so a write to one channel invalidates only that channel's query.

use ferrovex_sdk::prelude::*;

mod channels;

#[schema]
fn schema() -> Schema {
    Schema::new().table(
        Table::new("messages")
            .field("channel", v::string())
            .field("body", v::string())
            .index("by_channel", &["channel", "_creationTime"]),
    )
}
