//! The chat example app. Its functions live in `src/chat.rs`, so their paths are
//! `chat:send_message` and `chat:get_messages`.

mod chat;
