//! The sync engine: which subscriptions a commit invalidates.
//!
//! - [`invalidation`]: subscriptions' read sets indexed so that matching a commit costs time
//!   in the keys it wrote and the subscriptions it touches, not in the ones it does not.

pub mod invalidation;
