//! End-to-end tests: real processes, real files.

mod auth_browser;
mod browser;
mod chat_react;
mod convex_clients;
mod dashboard;
#[path = "../../runtime/tests/common/guests.rs"]
mod guests;
/// Headless Chromium over WebDriver, shared by the browser tests (and by the `runtime`
/// command's, through `#[path]`).
#[path = "browser/harness.rs"]
mod harness;
#[path = "../../runtime/tests/common/http_target.rs"]
mod http_target;
#[path = "../../runtime/tests/common/issuer.rs"]
mod issuer;
mod store_crash;
#[path = "../../runtime/tests/common/test_server.rs"]
mod test_server;
