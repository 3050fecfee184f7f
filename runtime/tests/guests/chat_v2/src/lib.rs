//! The chat example with a changed query, deployed over the original in redeploy tests.

mod chat;
