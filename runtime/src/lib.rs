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
