//! The guest SDK: write backend functions in plain Rust, compile them to
//! `wasm32-unknown-unknown`, and the `runtime` command serves them: each call runs in a
//! sandbox over a transactional document database, and clients subscribed to a query get its
//! new result whenever a commit changes it.
//!
//! An app is a library crate of kind `cdylib` (`runtime new NAME` writes one):
//!
//! ```toml
//! [package]
//! name = "my-app"
//! version = "0.1.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! ferrovex-sdk = "0.1"
//! ```
//!
//! Its functions live in modules; this is a whole app, `src/lib.rs` with its module `chat`
//! inline (in a real app, `src/chat.rs`):
//!
//! ```no_run
//! use ferrovex_sdk::prelude::*;
//!
//! /// Declared tables are checked on every write; others stay schemaless.
//! #[schema]
//! fn schema() -> Schema {
//!     Schema::new().table(
//!         Table::new("messages")
//!             .field("user", v::string())
//!             .field("body", v::string())
//!             .index("by_user", &["user"]),
//!     )
//! }
//!
//! mod chat {
//!     use ferrovex_sdk::prelude::*;
//!
//!     /// `chat:send_message`, called with `{"user": "ada", "body": "hi"}`.
//!     #[mutation]
//!     fn send_message(ctx: &mut MutationCtx, user: String, body: String) -> Result<()> {
//!         if body.trim().is_empty() {
//!             // The client gets the message and the data; nothing is written.
//!             return Err(Error::new("a message needs a body").with_data(doc! { "user": user }));
//!         }
//!         log!("{user} says {body}");
//!         ctx.db.insert("messages", doc! { "user": user, "body": body })?;
//!         Ok(())
//!     }
//!
//!     /// `chat:get_messages`: the 50 newest messages, oldest first.
//!     #[query]
//!     fn get_messages(ctx: &QueryCtx) -> Result<Vec<Document>> {
//!         let mut messages = ctx.db.query("messages").order(Desc).take(50)?;
//!         messages.reverse();
//!         Ok(messages)
//!     }
//!
//!     /// `chat:by_user`: one user's messages, through the declared index.
//!     #[query]
//!     fn by_user(ctx: &QueryCtx, user: String) -> Result<Vec<Document>> {
//!         ctx.db
//!             .query("messages")
//!             .with_index("by_user", |r| r.eq("user", user))
//!             .collect()
//!     }
//! }
//! ```
//!
//! - A function's path is its module path inside the app crate with `/` between segments,
//!   a colon, and its name (`src/admin/users.rs` gives `admin/users:list`). Functions live in
//!   modules, not at the crate root.
//! - Parameters after the context are the call's arguments, by name, through serde; the host
//!   checks them against the schema the function exports before the call.
//! - A query gets [`QueryCtx`], whose `db` can only read; a mutation gets [`MutationCtx`].
//!   A mutation is all-or-nothing: an `Err`, a panic or a trap discards every write.
//! - [`log!`] lines reach the caller, also when the function fails.
//! - `ctx.now()` is frozen for the call; `ctx.random_u64()` comes from a seed the host gives.
//! - `ctx.auth.get_user_identity()` is the signed-in caller ([`UserIdentity`]) or `None`; the
//!   providers whose tokens the server accepts are declared once with [`auth_config`] (see
//!   [`AuthConfig`]). `#[internal_query]` and `#[internal_mutation]` make functions that
//!   clients cannot call (to them they do not exist); the operator's admin key can.
//!   Queries and mutations have no other way out of the sandbox: they are deterministic.
//! - `ctx.scheduler` (in mutations and actions) runs a mutation or action later, as part of
//!   the mutation's transaction; `#[crons]` declares jobs that run on a schedule.
//! - [`#[action]`](macro@action) functions get [`ActionCtx`]: the real time, real
//!   randomness, other functions by path (`ctx.run_query`, `ctx.run_mutation`,
//!   `ctx.run_action`), outbound HTTP ([`Fetch`]) and environment variables (`ctx.env`).
//!   [`#[http_action]`](macro@http_action) serves a route of the app under `/http/`.
//! - [`Error`] carries a message and structured data to the client.
//! - [`#[schema]`](macro@schema) declares tables, field types and indexes, enforced on every
//!   write (see the [`schema`](mod@schema) module).
//!
//! `runtime serve` and `runtime dev` build the app with `cargo build --target
//! wasm32-unknown-unknown --release`. The module records the SDK version and the ABI version
//! it speaks; a runtime that speaks another ABI version refuses it at deploy and says which
//! SDK to depend on (`runtime --version` names the SDK a runtime speaks).
//!
//! Built for any other target (by rustdoc, `cargo check` or `cargo test`), the crate compiles
//! but the database, log, time and randomness calls panic: functions run only inside the
//! runtime. Code that does not touch `ctx` (conversions, [`Error`], [`doc!`]) runs anywhere.

#![warn(missing_docs)]

mod action;
mod auth;
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

/// What this module is built against, for the host to read before it compiles or calls
/// anything (`ferrovex_model::abi::VERSION_SECTION`, whose name the attribute repeats).
#[cfg(target_arch = "wasm32")]
#[link_section = "ferrovex_abi"]
#[used]
static VERSION_RECORD: [u8; ferrovex_model::abi::VERSION_RECORD_LEN] =
    ferrovex_model::abi::VERSION_RECORD;

// The record names this crate's version through the model's: they must be one release.
const _: () = {
    let (sdk, model) = (
        env!("CARGO_PKG_VERSION").as_bytes(),
        ferrovex_model::abi::SDK_VERSION.as_bytes(),
    );
    let mut same = sdk.len() == model.len();
    let mut i = 0;
    while same && i < sdk.len() {
        same = sdk[i] == model[i];
        i += 1;
    }
    assert!(
        same,
        "ferrovex-sdk and ferrovex-model are of different releases: depend on both at one version"
    );
};

pub use action::{ActionCtx, Crons, Fetch, FetchResponse, HttpRequest, HttpResponse, Scheduler};
pub use auth::{env, AuthConfig, JwtAlgorithm, Setting, UserIdentity};
pub use ctx::{Auth, MutationCtx, QueryCtx};
pub use db::{
    Asc, DatabaseReader, DatabaseWriter, Desc, Document, Fields, Id, IndexRange, Order,
    PaginationOptions, PaginationResult, Query,
};
pub use error::{DbError, DbErrorKind, Error, Result};
pub use ferrovex_model::{Object, Value};
pub use ferrovex_sdk_macros::{
    action, auth_config, crons, http_action, internal_action, internal_mutation, internal_query,
    mutation, query, schema,
};
pub use schema::{v, HasSchema, Schema, Table, Type};
pub use value::{from_value, to_value, AnyValue, Bytes, ValueError};

/// Everything an app module needs: `use ferrovex_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        action, auth_config, bail, crons, doc, http_action, internal_action, internal_mutation,
        internal_query, log, mutation, query, schema, v, ActionCtx, Asc, AuthConfig, Bytes, Crons,
        Desc, Document, Error, Fetch, FetchResponse, HttpRequest, HttpResponse, Id, MutationCtx,
        Order, PaginationOptions, PaginationResult, QueryCtx, Result, Schema, Table, UserIdentity,
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
