//! Store errors. Each names what failed, the rule or limit, and the value given.

use super::engine::EngineError;
use ferrovex_model::id::IdError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid document for table {table:?}: {reason}")]
    InvalidDocument { table: String, reason: String },

    #[error("{what} exceeds the limit {limit} ({max}): got {given}")]
    LimitExceeded {
        limit: &'static str,
        what: String,
        max: usize,
        given: usize,
    },

    #[error("invalid {kind} name {given:?}: names start with a letter and use only letters, digits and '_', at most 64 bytes")]
    InvalidName { kind: String, given: String },

    #[error("document id {id} belongs to no table (table number {table_number} does not exist)")]
    UnknownTableOfId { id: String, table_number: u32 },

    #[error("table {table:?} does not exist")]
    UnknownTable { table: String },

    #[error("table {table:?} has no index {index:?} (it has: {available})")]
    UnknownIndex {
        table: String,
        index: String,
        available: String,
    },

    #[error(transparent)]
    InvalidId(#[from] IdError),

    #[error("document {id} does not exist in table {table:?}")]
    NotFound { table: String, id: String },

    #[error("invalid range on index {table}.{index}: {reason}")]
    InvalidRange {
        table: String,
        index: String,
        reason: String,
    },

    #[error("InvalidCursor: the cursor is not a position in this query's range of {table}.{index}; pass back a cursor of the same query")]
    InvalidCursor { table: String, index: String },

    #[error("a query cannot write: {operation} on table {table:?} was attempted from a read-only transaction")]
    ReadOnly {
        operation: &'static str,
        table: String,
    },

    #[error("write conflict on table {table:?}: another transaction changed what this one read, and it still conflicted after {attempts} attempts")]
    Conflict { table: String, attempts: u32 },

    #[error("this node follows the deployment's leader and cannot {what}: only the node holding the writer lease does (run it there, or wait for this node to lead)")]
    Follower { what: String },

    #[error("index {table}.{index} already exists with different fields")]
    IndexExists { table: String, index: String },

    #[error("table {table:?} already has documents: an import fills only new or empty tables; import into a fresh data folder, or delete the table's documents first")]
    TableNotEmpty { table: String },

    #[error("document {id} already exists in table {table:?}: an imported id must be new")]
    DuplicateId { table: String, id: String },

    #[error("document id {id} belongs to table number {id_table}, not to table {table:?} (number {table_number})")]
    IdOfAnotherTable {
        table: String,
        table_number: u32,
        id: String,
        id_table: u32,
    },

    #[error("invalid _creationTime for table {table:?}: it must be a finite number of milliseconds, got {given}")]
    InvalidCreationTime { table: String, given: f64 },

    #[error("an attempt run on an async worker came to a read that waits on the network; it is made again on the blocking pool")]
    InlineNetworkRead,

    #[error("stored data is corrupt: {0}")]
    Corrupt(String),

    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}
