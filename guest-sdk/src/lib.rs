//! The guest SDK: write backend functions in plain Rust, compile them to
//! `wasm32-unknown-unknown`, and the runtime runs each call in a sandbox.
//!
//! ```no_run
//! // src/chat.rs of an app crate: functions `chat:send_message` and `chat:get_messages`.
//! use ferrovex_sdk::prelude::*;
//!
//! #[mutation]
//! fn send_message(ctx: &mut MutationCtx, user: String, body: String) -> Result<()> {
//!     log!("{user} says {body}");
//!     ctx.db.insert("messages", doc! { "user": user, "body": body })?;
//!     Ok(())
//! }
//!
//! #[query]
//! fn get_messages(ctx: &QueryCtx) -> Result<Vec<Document>> {
//!     let mut messages = ctx.db.query("messages").order(Desc).take(50)?;
//!     messages.reverse();
//!     Ok(messages)
//! }
//! ```
//!
//! - A function's path is its module path inside the app crate with `/` between segments,
//!   a colon, and its name (docs/PROTOCOL.md section 2). Functions live in modules, not at the
//!   crate root.
//! - Parameters after the context are the call's arguments, by name, through serde; the host
//!   checks them against the schema the function exports before the call.
//! - A query gets [`QueryCtx`], whose `db` can only read; a mutation gets [`MutationCtx`].
//!   A mutation is all-or-nothing: an `Err`, a panic or a trap discards every write.
//! - [`log!`] lines reach the caller, also when the function fails.
//! - `ctx.now()` is frozen for the call; `ctx.random_u64()` comes from a seed the host gives.
//!   There is no other way out of the sandbox: calls are deterministic.
//! - [`Error`] carries a message and structured data to the client.
//! - [`schema`] declares tables, field types and indexes, enforced on every write.
//!
//! The app crate is a `cdylib` built with `cargo build --target wasm32-unknown-unknown
//! --release`.

mod ctx;
mod db;
mod encode;
mod error;
mod host;
pub mod schema;
mod sys;
mod value;

#[doc(hidden)]
pub mod __private;

/// Uses the heap the linker leaves in the initial memory before growing memory. `runtime`'s
/// build gives modules 2 MiB of initial memory, about 1 MiB of it heap, for this.
#[cfg(all(target_arch = "wasm32", feature = "allocator"))]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

pub use ctx::{MutationCtx, QueryCtx};
pub use db::{
    Asc, DatabaseReader, DatabaseWriter, Desc, Document, Fields, Id, IndexRange, Order,
    PaginationOptions, PaginationResult, Query,
};
pub use error::{DbError, DbErrorKind, Error, Result};
pub use ferrovex_model::{Object, Value};
pub use ferrovex_sdk_macros::{mutation, query, schema};
pub use schema::{v, HasSchema, Schema, Table, Type};
pub use value::{from_value, to_value, AnyValue, Bytes, ValueError};

/// Everything an app module needs: `use ferrovex_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        bail, doc, log, mutation, query, schema, v, Asc, Bytes, Desc, Document, Error, Id,
        MutationCtx, Order, PaginationOptions, PaginationResult, QueryCtx, Result, Schema, Table,
        Value,
    };
}

/// Writes a log line (`format!` syntax) that returns to the caller with the outcome.
///
/// ```no_run
/// # use ferrovex_sdk::prelude::*;
/// log!("sending {} bytes", 42);
/// ```
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::__private::log_line(&::std::format!($($arg)*))
    };
}
