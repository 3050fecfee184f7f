//! The value model shared by the runtime and guest modules (docs/PROTOCOL.md section 1).
//!
//! - [`value`]: the value type and its total order.
//! - [`json`]: the wire JSON form.
//! - [`binary`]: the compact binary form for storage and the host ABI.
//! - [`key`]: the order-preserving form for index keys.
//! - [`id`]: document ids.
//! - [`limits`]: named resource limits.
//! - [`abi`]: the host ABI between the wasm host and guest modules.
//! - [`identity`]: a signed-in caller's identity, as functions see it.

pub mod abi;
pub mod binary;
pub mod id;
pub mod identity;
pub mod json;
pub mod key;
pub mod limits;
pub mod value;

pub use id::DocumentId;
pub use value::{Object, Value};
