//! The one definition of what nodes of a deployment send each other to commit: a follower
//! runs a mutation against its own snapshot and sends the leader the transaction's commit
//! request (its begin timestamp, read set, writes, new tables and receipt); the leader
//! validates and commits it like one of its own and answers with the outcome.
//!
//! Binary, length-prefixed with varints. Both sides are the same build (nodes of one
//! deployment run one version), so there is no negotiation; a message that does not decode
//! is refused with what was wrong, never half applied.

use super::catalog::{TableInfo, TableNumber};
use super::committer::CommitRequest;
use super::document::StoredDocument;
use super::engine::{EngineError, EngineResult, Space, Timestamp, Write};
use super::read_set::NormalizedReadSet;
use super::transaction::{DocumentWrite, Receipt};
use ferrovex_model::binary::write_varint;
use ferrovex_model::DocumentId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The first byte of every request: a message of another build is refused, not misread.
const REQUEST_VERSION: u8 = 1;

/// The leader's answer to a forwarded commit.
#[derive(Clone, Debug, PartialEq)]
pub enum CommitReply {
    /// Committed, durable and visible on the leader at this timestamp.
    Committed(Timestamp),
    /// A commit after the request's begin timestamp wrote what it read. `leader_ts` is the
    /// leader's newest commit when it refused: a retry that reads at or after it sees what
    /// conflicted.
    Conflict { table: String, leader_ts: Timestamp },
    /// Not committed, for the reason given (the request did not decode, the store failed).
    Refused(String),
    /// Not committed: the node asked does not hold the writer lease (any more). Another node
    /// may, or soon will: the follower sends the request again.
    NotLeader(String),
}

pub(crate) fn encode_request(request: &CommitRequest) -> Vec<u8> {
    let mut out = vec![REQUEST_VERSION];
    out.extend_from_slice(&request.begin_ts.to_be_bytes());
    let intervals: Vec<_> = request.reads.intervals().collect();
    write_varint(&mut out, intervals.len() as u64);
    for (space, start, end) in intervals {
        out.push(space.code());
        put_bytes(&mut out, start);
        put_option(&mut out, end);
    }
    write_varint(&mut out, request.writes.len() as u64);
    for (id, write) in &request.writes {
        out.extend_from_slice(id.as_bytes());
        write_varint(&mut out, u64::from(write.table));
        put_option(
            &mut out,
            write.old.as_ref().map(StoredDocument::encode).as_deref(),
        );
        put_option(
            &mut out,
            write.new.as_ref().map(StoredDocument::encode).as_deref(),
        );
    }
    write_varint(&mut out, request.new_tables.len() as u64);
    for table in &request.new_tables {
        put_bytes(&mut out, &table.encode());
    }
    match &request.receipt {
        Some(receipt) => {
            out.push(1);
            put_bytes(&mut out, &receipt.key);
            put_bytes(&mut out, &receipt.outcome);
        }
        None => out.push(0),
    }
    out
}

pub(crate) fn decode_request(bytes: &[u8]) -> Result<CommitRequest, String> {
    let mut r = Reader::new(bytes);
    let version = r.byte("the version")?;
    if version != REQUEST_VERSION {
        return Err(format!(
            "a forwarded commit of version {version}, this node reads version {REQUEST_VERSION}: run one version on every node"
        ));
    }
    let begin_ts = u64::from_be_bytes(r.take(8, "the begin timestamp")?.try_into().expect("8"));
    let count = r.count("read intervals")?;
    let mut intervals = Vec::with_capacity(count);
    for _ in 0..count {
        let space = Space::from_code(r.byte("a space")?).ok_or("an unknown key space")?;
        let start = r.bytes("an interval's start")?.to_vec();
        let end = r.option("an interval's end")?.map(<[u8]>::to_vec);
        intervals.push((space, start, end));
    }
    let reads = NormalizedReadSet::from_normalized(intervals)?;
    let count = r.count("writes")?;
    let mut writes = BTreeMap::new();
    for _ in 0..count {
        let id = DocumentId::from_bytes(r.take(ferrovex_model::id::ID_BYTES, "a document id")?)
            .ok_or("a malformed document id")?;
        let table = TableNumber::try_from(r.varint("a table number")?)
            .map_err(|_| "a table number over 32 bits")?;
        if id.table_number() != table {
            return Err(format!("document {id} written as table number {table}"));
        }
        let document = |r: &mut Reader, what: &str| -> Result<Option<StoredDocument>, String> {
            r.option(what)?
                .map(|b| StoredDocument::decode(b).map_err(|e| format!("{what}: {e}")))
                .transpose()
        };
        let old = document(&mut r, "an old document")?;
        let new = document(&mut r, "a new document")?;
        if writes
            .insert(id, DocumentWrite { table, old, new })
            .is_some()
        {
            return Err(format!("document {id} written twice"));
        }
    }
    let count = r.count("new tables")?;
    let mut new_tables = Vec::with_capacity(count);
    for _ in 0..count {
        let table = TableInfo::decode(r.bytes("a new table")?)?;
        new_tables.push(Arc::new(table));
    }
    let receipt = match r.byte("the receipt marker")? {
        0 => None,
        1 => Some(Receipt {
            key: r.bytes("a receipt key")?.to_vec(),
            outcome: r.bytes("a receipt's outcome")?.to_vec(),
        }),
        other => return Err(format!("a receipt marker {other}, expected 0 or 1")),
    };
    if r.pos != bytes.len() {
        return Err(format!(
            "{} bytes after the end of the request",
            bytes.len() - r.pos
        ));
    }
    Ok(CommitRequest {
        begin_ts,
        reads,
        writes,
        new_tables,
        receipt,
    })
}

pub(crate) fn encode_reply(reply: &CommitReply) -> Vec<u8> {
    let mut out = Vec::new();
    match reply {
        CommitReply::Committed(ts) => {
            out.push(0);
            out.extend_from_slice(&ts.to_be_bytes());
        }
        CommitReply::Conflict { table, leader_ts } => {
            out.push(1);
            out.extend_from_slice(&leader_ts.to_be_bytes());
            put_bytes(&mut out, table.as_bytes());
        }
        CommitReply::Refused(reason) => {
            out.push(2);
            put_bytes(&mut out, reason.as_bytes());
        }
        CommitReply::NotLeader(reason) => {
            out.push(3);
            put_bytes(&mut out, reason.as_bytes());
        }
    }
    out
}

pub(crate) fn decode_reply(bytes: &[u8]) -> Result<CommitReply, String> {
    let mut r = Reader::new(bytes);
    let ts = |r: &mut Reader| -> Result<Timestamp, String> {
        Ok(u64::from_be_bytes(
            r.take(8, "a timestamp")?.try_into().expect("8"),
        ))
    };
    let text = |r: &mut Reader, what: &str| -> Result<String, String> {
        String::from_utf8(r.bytes(what)?.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    };
    let reply = match r.byte("the reply's kind")? {
        0 => CommitReply::Committed(ts(&mut r)?),
        1 => {
            let leader_ts = ts(&mut r)?;
            CommitReply::Conflict {
                table: text(&mut r, "a table name")?,
                leader_ts,
            }
        }
        2 => CommitReply::Refused(text(&mut r, "a reason")?),
        3 => CommitReply::NotLeader(text(&mut r, "a reason")?),
        other => return Err(format!("a reply of kind {other}, expected 0 to 3")),
    };
    if r.pos != bytes.len() {
        return Err("bytes after the end of the reply".into());
    }
    Ok(reply)
}

/// A commit log entry: the writes of one commit (the PostgreSQL engine's log).
pub(super) fn encode_log_entry(writes: &[Write]) -> Vec<u8> {
    let mut out = Vec::new();
    write_varint(&mut out, writes.len() as u64);
    for w in writes {
        out.push(w.space.code());
        put_bytes(&mut out, &w.key);
        put_option(&mut out, w.value.as_deref());
    }
    out
}

/// An entry [`encode_log_entry`] made.
pub(super) fn decode_log_entry(bytes: &[u8]) -> EngineResult<Vec<Write>> {
    let bad = |e: String| EngineError(format!("malformed commit log entry: {e}"));
    let mut r = Reader::new(bytes);
    let count = r.count("writes").map_err(bad)?;
    let mut writes = Vec::with_capacity(count);
    for _ in 0..count {
        let space = Space::from_code(r.byte("a space").map_err(bad)?)
            .ok_or_else(|| bad("an unknown key space".into()))?;
        let key = r.bytes("a key").map_err(bad)?.to_vec();
        let value = r.option("a value").map_err(bad)?.map(<[u8]>::to_vec);
        writes.push(Write { space, key, value });
    }
    Ok(writes)
}

// The framing both forwarded commits and the commit log's entries (`encode_log_entry`)
// use: varint lengths and counts, a presence byte before what may be absent.

pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(super) fn put_option(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            out.push(1);
            put_bytes(out, bytes);
        }
        None => out.push(0),
    }
}

pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(super) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "the message ends inside {what} (at byte {} of {})",
                self.pos,
                self.bytes.len()
            ));
        };
        let taken = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(taken)
    }

    pub(super) fn byte(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    pub(super) fn varint(&mut self, what: &str) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("{what}: a varint longer than 64 bits"))
    }

    /// A count of items, each at least one byte: more than the bytes left is malformed (and
    /// must not size an allocation).
    pub(super) fn count(&mut self, what: &str) -> Result<usize, String> {
        let n = self.varint(what)?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return Err(format!("{n} {what} in {left} bytes"));
        }
        Ok(n as usize)
    }

    pub(super) fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.varint(what)?;
        let len =
            usize::try_from(len).map_err(|_| format!("{what}: a length over the address space"))?;
        self.take(len, what)
    }

    pub(super) fn option(&mut self, what: &str) -> Result<Option<&'a [u8]>, String> {
        match self.byte(what)? {
            0 => Ok(None),
            1 => self.bytes(what).map(Some),
            other => Err(format!(
                "{what}: a presence marker {other}, expected 0 or 1"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::KeyRange;
    use crate::store::read_set::ReadSet;
    use ferrovex_model::Object;
    use std::ops::Bound;

    fn request() -> CommitRequest {
        let mut reads = ReadSet::default();
        reads.add(Space::Indexes, KeyRange::point(b"k".to_vec()));
        reads.add(
            Space::Indexes,
            KeyRange {
                start: Bound::Included(b"a".to_vec()),
                end: Bound::Unbounded,
            },
        );
        reads.add(Space::Receipts, KeyRange::point(b"r".to_vec()));
        let table = TableInfo::new(7, "messages", {
            let mut next = 40;
            move || {
                next += 1;
                next
            }
        });
        let mut fields = Object::new();
        fields.insert("body".into(), ferrovex_model::Value::String("hi".into()));
        let doc = StoredDocument {
            creation_time: 12.5,
            fields,
        };
        let id = DocumentId::new(7, [3; 16]);
        CommitRequest {
            begin_ts: 99,
            reads: reads.normalize(),
            writes: BTreeMap::from([(
                id,
                DocumentWrite {
                    table: 7,
                    old: None,
                    new: Some(doc),
                },
            )]),
            new_tables: vec![Arc::new(table)],
            receipt: Some(Receipt {
                key: b"r".to_vec(),
                outcome: b"done".to_vec(),
            }),
        }
    }

    #[test]
    fn a_request_survives_the_trip() {
        let sent = request();
        let got = decode_request(&encode_request(&sent)).expect("decodes");
        assert_eq!(got.begin_ts, sent.begin_ts);
        let mut a: Vec<_> = got.reads.intervals().collect();
        let mut b: Vec<_> = sent.reads.intervals().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(got.writes, sent.writes);
        assert_eq!(got.new_tables, sent.new_tables);
        assert_eq!(got.receipt, sent.receipt);
        for (key, read) in [(&b"k"[..], true), (b"b", true), (b"0", false)] {
            assert_eq!(got.reads.contains(Space::Indexes, key), read, "{key:?}");
        }
    }

    #[test]
    fn every_cut_of_a_request_is_refused() {
        let bytes = encode_request(&request());
        for end in 0..bytes.len() {
            let error = decode_request(&bytes[..end]).err();
            assert!(error.is_some(), "a request cut at {end} bytes decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let error = decode_request(&longer).err().expect("refused");
        assert!(error.contains("after the end"), "{error}");
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let good = encode_request(&request());
        let mut other_version = good.clone();
        other_version[0] = 9;
        let mut huge_count = vec![REQUEST_VERSION];
        huge_count.extend_from_slice(&[0; 8]);
        huge_count.extend_from_slice(&[0xff, 0xff, 0xff, 0x0f]);
        for (bytes, expected) in [
            (other_version, "run one version on every node"),
            (huge_count, "read intervals in"),
            (vec![], "ends inside the version"),
        ] {
            let error = decode_request(&bytes).err().expect("refused");
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
    }

    #[test]
    fn replies_survive_the_trip() {
        for reply in [
            CommitReply::Committed(u64::MAX - 3),
            CommitReply::Conflict {
                table: "accounts".into(),
                leader_ts: 77,
            },
            CommitReply::Refused("the store failed".into()),
            CommitReply::NotLeader("not the leader".into()),
        ] {
            assert_eq!(decode_reply(&encode_reply(&reply)), Ok(reply));
        }
        assert!(decode_reply(&[7]).unwrap_err().contains("kind 7"));
    }
}
