//! Rust client for the runtime's WebSocket sync protocol (`PROTOCOL.md`, section 3).
//!
//! A [`Client`] keeps one WebSocket open to `/api/sync` from a background tokio task. Over
//! it you
//!
//! - [`subscribe`](Client::subscribe) to a query: a [`Subscription`] is a [`Stream`] of the
//!   query's results, new each time a commit changes them;
//! - run a [`mutation`](Client::mutation): it returns once this client's subscriptions show
//!   its write (read your writes);
//! - run a [`query`](Client::query) once.
//!
//! Values are [`ferrovex_model::Value`]; arguments are anything [`IntoArgs`] accepts: an [`Object`]
//! (see [`obj!`]), a [`Value`] object, `()`, or a reference to a serde-serializable struct.
//! Results convert to Rust types with [`from_value`].
//!
//! The client checks that transitions chain (each starts where the previous one ended) and
//! treats any frame it cannot make sense of as a reason to reconnect, never a panic.
//! Reconnects keep the session id, re-send the query set and every unanswered mutation
//! under its original request id, so the server applies each mutation exactly once.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use ferrovex_client::{from_value, Client};
//!
//! #[derive(serde::Serialize)]
//! struct SendMessage<'a> {
//!     user: &'a str,
//!     body: &'a str,
//! }
//!
//! #[derive(serde::Deserialize, Debug)]
//! struct Message {
//!     user: String,
//!     body: String,
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = Client::connect("ws://127.0.0.1:3210/api/sync").await?;
//!     let mut messages = client.subscribe("chat:get_messages", ())?;
//!     client
//!         .mutation("chat:send_message", &SendMessage { user: "ada", body: "hello" })
//!         .await?;
//!     while let Some(result) = messages.next().await {
//!         let messages: Vec<Message> = from_value(result?)?;
//!         println!("{messages:?}");
//!     }
//!     Ok(())
//! }
//! ```

mod args;
mod client;
mod error;
mod util;
mod wire;
mod worker;

pub use args::IntoArgs;
pub use client::{Client, ClientBuilder, ConnectionStatus, Subscription};
pub use error::{Error, FunctionError};
pub use ferrovex_model::{obj, Object, Value};
pub use ferrovex_sdk::{from_value, to_value, Bytes, ValueError};
pub use futures_util::Stream;
