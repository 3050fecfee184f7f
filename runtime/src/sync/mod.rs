//! The sync engine: the pieces that serve live queries over WebSocket.
//!
//! - [`engine`]: the state every connection shares (subscriptions, query sets) behind one
//!   lock, and the task that refreshes results after commits.
//! - [`connection`]: one connection's query set and what it was sent; builds transitions.
//! - [`session_core`]: one connection's protocol state without a socket: frames in, messages
//!   out, mutations one at a time in order. Driven by `session` and by the simulation.
//! - [`session`]: one WebSocket connection's task around its `SessionCore`: the socket,
//!   mutations on the blocking pool, pings, back-pressure and shutdown.
//! - [`mutation_log`]: outcomes by (sessionId, requestId), so a re-sent mutation runs once.
//! - [`upgrade`]: the `GET /api/sync` handshake.
//! - [`invalidation`]: subscriptions' read sets indexed so that matching a commit costs time
//!   in the keys it wrote and the subscriptions it touches, not in the ones it does not.
//! - [`protocol`]: the WebSocket messages of docs/PROTOCOL.md section 3 and their parsing.
//! - [`subscriptions`]: distinct live queries, computed once each, invalidated by commits
//!   through `invalidation` and re-run together at one snapshot.

pub mod connection;
pub mod engine;
pub mod invalidation;
pub mod mutation_log;
pub mod protocol;
pub mod session;
pub mod session_core;
pub mod subscriptions;
pub mod upgrade;
