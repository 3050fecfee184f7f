//! Named resource limits (starting values taken from Convex).
//! Every check against one of these produces an error that names the limit and the value.

/// Documents one transaction may read.
pub const MAX_DOCUMENTS_READ: usize = 32_000;
/// Bytes of documents one transaction may read.
pub const MAX_BYTES_READ: usize = 16 * 1024 * 1024;
/// Index ranges (scans and point reads) one transaction may record.
pub const MAX_INDEX_RANGES_READ: usize = 4_096;
/// Documents one transaction may write.
pub const MAX_DOCUMENTS_WRITTEN: usize = 16_000;
/// Bytes of documents one transaction may write.
pub const MAX_BYTES_WRITTEN: usize = 16 * 1024 * 1024;
/// Encoded size of one document.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Nesting depth of a document: the document object itself is depth 1.
pub const MAX_NESTING_DEPTH: usize = 16;
/// Encoded size of a function's arguments or of its result.
pub const MAX_ARGS_OR_RESULT_BYTES: usize = 16 * 1024 * 1024;
/// Bytes of one field name.
pub const MAX_FIELD_NAME_BYTES: usize = 1024;
/// Bytes of a table or index name.
pub const MAX_NAME_BYTES: usize = 64;
