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

// What a call may make the host spend on its behalf, beyond the guest's own memory and time
// (`runtime::wasm::HostConfig`): each checked where the host would spend it, before it does.

/// Encoded size of one request a guest makes of a `db_*` import: one document and its
/// envelope. Checked before the request is copied out of guest memory.
pub const MAX_IMPORT_REQUEST_BYTES: usize = MAX_DOCUMENT_BYTES + 64 * 1024;
/// Bytes the host holds for one call in answers the guest has not read yet, counted when a
/// new answer joins answers already held (a single answer is bounded by the read limits).
/// The SDK reads every answer at once, so only a guest that hoards them meets this.
pub const MAX_UNREAD_HANDLE_BYTES: usize = 8 * 1024 * 1024;
/// Memory one value may take once decoded from its binary form, estimated as 32 bytes per
/// value, 24 more per object field, plus its strings and bytes: a 16 MiB result of one-byte
/// nulls would take 512 MiB.
pub const MAX_DECODED_VALUE_BYTES: usize = 64 * 1024 * 1024;
/// Nesting depth of any value the binary decoder accepts (results, arguments, requests);
/// stored documents are held far below it by `MAX_NESTING_DEPTH`.
pub const MAX_DECODE_DEPTH: usize = 64;
/// Bytes of a function's error message kept; the rest is cut, with a marker that says how
/// much was cut.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 64 * 1024;
/// Bytes of executions (`runtime logs`) the server keeps in all; the oldest go first.
pub const MAX_EXECUTION_LOG_BYTES: usize = 64 * 1024 * 1024;
/// Tables one transaction may create (each new table is a catalog change every later commit
/// carries).
pub const MAX_NEW_TABLES_PER_TRANSACTION: usize = 64;
/// Tables a deployment may hold.
pub const MAX_TABLES: usize = 10_000;

// Background and outside work: the scheduler, actions and their outbound requests.

/// Jobs one mutation or action call may schedule.
pub const MAX_JOBS_SCHEDULED_PER_CALL: usize = 1_000;
/// Encoded size of a scheduled job's arguments (they are stored with the job).
pub const MAX_SCHEDULED_ARGS_BYTES: usize = 256 * 1024;
/// Actions running at once (client calls, scheduled runs and HTTP actions together); each
/// holds an instance slot while it waits on the network. A client's action beyond it waits.
/// A host with fewer than 128 instance slots runs fewer (`runtime::actions::action_slots`).
pub const MAX_CONCURRENT_ACTIONS: usize = 16;
/// Client actions waiting for a running slot; one more is refused at once.
pub const MAX_WAITING_ACTIONS: usize = 1_024;
/// Wall-clock time one action may run, its outbound requests and the functions it calls
/// included (Convex's action limit).
pub const MAX_ACTION_SECONDS: u64 = 600;
/// How deep actions may call actions (`ctx.run_action` from an action run by an action...):
/// each level holds one more instance slot.
pub const MAX_ACTION_DEPTH: usize = 2;
/// Time one outbound request may take, from connecting to the last byte of the body; a
/// request may ask for less with `timeout_ms`.
pub const MAX_FETCH_MILLIS: u64 = 30_000;
/// Bytes of an outbound response's body.
pub const MAX_FETCH_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Bytes of an outbound request's body (it crosses the import like any request).
pub const MAX_FETCH_REQUEST_BYTES: usize = MAX_IMPORT_REQUEST_BYTES;
/// Redirects one outbound request follows; each hop is checked like the first address.
pub const MAX_FETCH_REDIRECTS: usize = 10;
/// Bytes of a request's body an HTTP action receives; a larger one is answered 413.
pub const MAX_HTTP_ACTION_BODY_BYTES: usize = 4 * 1024 * 1024;

// The dashboard.

/// Documents one page of the dashboard's document grid may hold.
pub const MAX_DASHBOARD_PAGE: usize = 500;
/// Documents the server reads for one page of the dashboard's grid: a filter that matches
/// few documents answers a short page with a cursor rather than read a large table whole.
pub const MAX_DASHBOARD_SCAN: usize = 10_000;
/// Function paths the Health page keeps figures for (each up to `LATENCY_WINDOW` durations):
/// calls of further paths, which only made-up names can reach in practice, count under one
/// entry, so callers cannot grow the server's memory by inventing names.
pub const MAX_MEASURED_FUNCTIONS: usize = 1_024;
/// Bytes of documents (in the binary form) one page of the dashboard's grid reads: a page of
/// large documents ends sooner, with a cursor, rather than answer tens of megabytes.
pub const MAX_DASHBOARD_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Commits the committer keeps the written keys of, to validate transactions against: one
/// that began before the oldest of them cannot be checked and is treated as conflicting
/// (and retried).
pub const MAX_RECENT_COMMITS: usize = 50_000;
/// Transactions folded into one synced write.
pub const MAX_COMMIT_GROUP: usize = 1024;
/// Mutations in one group of the serial lane, so that a steady stream of arrivals cannot
/// postpone its commit.
pub const MAX_SERIAL_GROUP: usize = 256;
/// Bytes of documents the store keeps in memory as the newest versions of what it wrote lately
/// (`runtime/src/store/newest.rs`), so that reads by id skip the engine; past it, entries are
/// dropped and those reads go to the engine again.
pub const NEWEST_VERSIONS_BYTES: usize = 32 * 1024 * 1024;
/// Bytes of each idle wasm memory slot kept mapped for the next call and reset in place; a
/// call's pages past it go back to the kernel (`runtime/src/wasm/engine.rs` says why 256 KiB).
pub const SLOT_KEEP_RESIDENT_BYTES: usize = 256 * 1024;
/// Calls of the wasm host from one to the next whose memory is given back to the kernel whole
/// when it ends, which empties its slot of the pages it kept for earlier calls: how long the
/// pages one large call left in a slot can make every later call there clear them.
pub const SLOT_RELEASE_EVERY_CALLS: u64 = 64;
/// Bytes of one commit a follower sends the leader (`/api/cluster/commit`): a transaction's
/// writes, the documents they replace (read first), its read set (at most one point per
/// document read and one interval per range) and its receipt's outcome, with room for keys.
pub const MAX_FORWARDED_COMMIT_BYTES: usize =
    MAX_BYTES_WRITTEN + MAX_BYTES_READ + MAX_ARGS_OR_RESULT_BYTES + 8 * 1024 * 1024;
