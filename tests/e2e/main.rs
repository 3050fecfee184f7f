//! End-to-end tests: real processes, real files.

mod browser;
mod chat_react;
mod convex_clients;
#[path = "../../runtime/tests/common/guests.rs"]
mod guests;
mod store_crash;
#[path = "../../runtime/tests/common/test_server.rs"]
mod test_server;
