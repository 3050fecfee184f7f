//! The app's functions: each module under `src/` is a namespace, so the functions in
//! `src/messages.rs` are called `messages:send` and `messages:list`.

mod messages;
