//! The chat example app. Its functions live in `src/chat.rs`, so their paths are
//! `chat:send_message` and `chat:get_messages`; `src/wiki.rs` is the tutorial's second
//! chapter, calling an outside service from an action.

mod chat;
mod wiki;
