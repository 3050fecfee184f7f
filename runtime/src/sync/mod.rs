//! The sync engine (in progress): the pieces that serve live queries over WebSocket.
//!
//! - [`invalidation`]: subscriptions' read sets indexed so that matching a commit costs time
//!   in the keys it wrote and the subscriptions it touches, not in the ones it does not.
//! - [`protocol`]: the WebSocket messages of PROTOCOL.md section 3 and their parsing.
//! - [`subscriptions`]: distinct live queries, computed once each, invalidated by commits
//!   through `invalidation` and re-run together at one snapshot.

pub mod invalidation;
pub mod protocol;
pub mod subscriptions;
