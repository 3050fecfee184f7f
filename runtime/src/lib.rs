//! The runtime host. See ARCHITECTURE.md for the map.

pub mod actions;
pub mod auth;
pub mod caller;
pub mod cluster;
pub mod crons;
pub mod env_vars;
pub mod fetch;
pub mod jobs;
pub mod metrics;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod sync;
pub mod transfer;
pub mod wasm;

/// What a caught panic carried, when it is text: for the error that answers the call it
/// interrupted (a panic that reaches the host's edge is a bug in the host itself).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}
