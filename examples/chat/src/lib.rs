//! The chat example app. Its functions live in `src/chat.rs`, so their paths are
//! `chat:send_message` and `chat:get_messages`; `src/wiki.rs` is the tutorial's second
//! chapter, calling an outside service from an action. The schema declares what a message
//! holds: every write is checked against it, the dashboard's editor too.

use ferrovex_sdk::prelude::*;

mod chat;
mod wiki;

#[schema]
fn schema() -> Schema {
    Schema::new().table(
        Table::new("messages")
            .field("user", v::string())
            .field("body", v::string())
            .index("by_user", &["user"]),
    )
}
