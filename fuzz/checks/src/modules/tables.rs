//! The model of the tables that a call's store requests are checked against. Every input
//! starts from the same contents ([`reset`]); the lines the wrappers and shims log during a
//! call are replayed on the tables the call began on ([`replay`]). Every status must be the
//! one the model expects (reads and inserts succeed, changing an existing document
//! succeeds, changing a missing one fails), and after a successful mutation the tables must
//! be exactly the model with its writes.

use super::wrappers::{Op, Wrapper, PLACEHOLDERS, SHIM_LETTER};
use ferrovex_model::abi::FunctionKind;
use ferrovex_model::{Object, Value};
use ferrovex_runtime::store::Store;
use std::collections::BTreeMap;

/// The tables wrappers use: `t` holds the documents every input starts with, `u` starts
/// empty (and missing, until an insert creates it).
const TABLES: [&str; 2] = ["t", "u"];

/// Documents `t` holds at the start of every input.
pub(super) const RESET_DOCUMENTS: usize = 3;

/// Empties the tables and inserts `RESET_DOCUMENTS` documents in `t`, so that every input
/// starts from the same contents (up to ids) and the tables stay small. Returns their ids
/// and the id of a deleted document.
pub(super) fn reset(store: &Store) -> Vec<String> {
    let snapshot = store.snapshot();
    let mut tx = store.begin();
    for table in TABLES {
        for document in snapshot.documents(table).expect("reading a table") {
            tx.delete(document.expect("reading a document").id)
                .expect("deleting a document");
        }
    }
    drop(snapshot);
    let mut ids = Vec::new();
    for n in 0..RESET_DOCUMENTS {
        let id = tx
            .insert("t", ferrovex_model::obj! { "n" => n as i64 })
            .expect("inserting a document");
        ids.push(id.to_string());
    }
    let gone = tx.insert("t", Object::new()).expect("inserting a document");
    tx.delete(gone).expect("deleting a document");
    ids.push(gone.to_string());
    store.commit(tx).expect("resetting the tables");
    ids
}

/// The documents of the tables, by id: their table and fields.
pub(super) type Docs = BTreeMap<String, (String, Object)>;

pub(super) fn contents(store: &Store) -> Docs {
    let snapshot = store.snapshot();
    let mut docs = Docs::new();
    for table in TABLES {
        for document in snapshot.documents(table).expect("reading a table") {
            let document = document.expect("reading a document");
            docs.insert(document.id.to_string(), (table.to_owned(), document.fields));
        }
    }
    docs
}

/// A line a wrapper or shim logged.
#[derive(Debug)]
pub(super) struct Line {
    /// The placeholder; `None` for a shim's line.
    pub(super) placeholder: Option<usize>,
    pub(super) status: i32,
    /// The id sent, or received from an insert.
    pub(super) id: String,
}

/// The wrappers' and shims' lines among a call's log lines. `None` if a line of their form
/// is out of sequence: generated code logged the scratch area itself.
pub(super) fn wrapper_lines(log_lines: &[String]) -> Option<Vec<Line>> {
    let mut lines = Vec::new();
    for text in log_lines {
        let bytes = text.as_bytes();
        if bytes.len() < 3
            || !(b'A'..b'A' + 16).contains(&bytes[0])
            || !(bytes[1] == SHIM_LETTER
                || (b'a'..b'a' + PLACEHOLDERS.len() as u8).contains(&bytes[1]))
            || !bytes[2].is_ascii_digit()
        {
            continue;
        }
        if bytes[0] != b'A' + (lines.len() % 16) as u8 {
            return None;
        }
        lines.push(Line {
            placeholder: (bytes[1] != SHIM_LETTER).then(|| usize::from(bytes[1] - b'a')),
            status: i32::from(bytes[2] - b'0'),
            id: text[3..].to_owned(),
        });
    }
    Some(lines)
}

/// Replays a call's lines on `docs`, the tables the call began on, checking every status.
/// Returns whether a write succeeded, or `None` if one the model does not know of did (a
/// generated call of a real write import).
pub(super) fn replay(
    path: &str,
    kind: FunctionKind,
    lines: &[Line],
    wrappers: &[Wrapper],
    docs: &mut Docs,
) -> Option<bool> {
    use ferrovex_model::abi::status::{INVALID, NOT_FOUND, OK};
    let mut wrote = false;
    for line in lines {
        let Some(placeholder) = line.placeholder else {
            assert!(
                kind == FunctionKind::Mutation || line.status != OK,
                "{path}: a query's write succeeded: {line:?}"
            );
            if line.status == OK {
                return None;
            }
            continue;
        };
        let w = &wrappers[placeholder];
        let status = line.status;
        assert!(
            !w.op.writes() || kind == FunctionKind::Mutation,
            "{path}: a query's {:?} returned instead of trapping: {line:?}",
            w.op
        );
        let exists = docs.contains_key(&line.id);
        let expected: &[i32] = match (w.op, exists) {
            (Op::Get, true) | (Op::Scan | Op::Insert, _) => &[OK],
            (Op::Get, false) => &[OK, INVALID],
            (_, true) => &[OK],
            (_, false) => &[INVALID, NOT_FOUND],
        };
        assert!(
            expected.contains(&status),
            "{path}: {:?} (placeholder {placeholder}) of {} returned {status}, expected {expected:?}; request {:?}",
            w.op,
            if exists { "an existing document" } else { "no existing document" },
            w.request
        );
        if status != OK {
            continue;
        }
        wrote |= w.op.writes();
        match w.op {
            Op::Get | Op::Scan | Op::Output => {}
            Op::Insert => {
                assert!(
                    !exists,
                    "{path}: an insert returned the id of a document: {line:?}"
                );
                let table = w.field("table").and_then(Value::as_str).unwrap_or_default();
                docs.insert(line.id.clone(), (table.to_owned(), w.object("fields")));
            }
            Op::Replace => {
                docs.get_mut(&line.id).expect("exists").1 = w.object("fields");
            }
            Op::Patch => {
                let fields = &mut docs.get_mut(&line.id).expect("exists").1;
                fields.extend(w.object("set"));
                if let Some(Value::Array(remove)) = w.field("remove") {
                    for name in remove.iter().filter_map(Value::as_str) {
                        fields.remove(name);
                    }
                }
            }
            Op::Delete => {
                docs.remove(&line.id);
            }
        }
    }
    Some(wrote)
}
