//! Tables and their indexes.
//!
//! The catalog lives in the `Catalog` space, versioned like data, one entry per table keyed by
//! its name, so creating a table is part of the transaction that first inserts into it and two
//! transactions racing to create one conflict like any other write. In memory it is an
//! immutable `Catalog` value, replaced whole by the committer on each change and taken by
//! every transaction at begin.

use super::document::StoredDocument;
use super::error::StoreError;
use ferrovex_model::binary::write_varint;
use ferrovex_model::{key, DocumentId, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub type TableNumber = u32;
pub type IndexId = u32;

pub const BY_ID: &str = "by_id";
pub const BY_CREATION_TIME: &str = "by_creation_time";
pub const CREATION_TIME_FIELD: &str = "_creationTime";
pub const ID_FIELD: &str = "_id";

#[derive(Clone, Debug, PartialEq)]
pub struct IndexInfo {
    pub id: IndexId,
    pub name: String,
    /// Field paths (dot-separated) whose values, in order, make the key; the document id
    /// always follows, so keys are unique. `by_id` has none.
    pub fields: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableInfo {
    pub number: TableNumber,
    pub name: String,
    /// `by_id` first, `by_creation_time` second, then user indexes.
    pub indexes: Vec<IndexInfo>,
}

impl TableInfo {
    /// A new table with its system indexes `by_id` and `by_creation_time`.
    pub fn new(
        number: TableNumber,
        name: &str,
        mut allocate_index_id: impl FnMut() -> IndexId,
    ) -> Self {
        TableInfo {
            number,
            name: name.to_owned(),
            indexes: vec![
                IndexInfo {
                    id: allocate_index_id(),
                    name: BY_ID.into(),
                    fields: vec![],
                },
                IndexInfo {
                    id: allocate_index_id(),
                    name: BY_CREATION_TIME.into(),
                    fields: vec![CREATION_TIME_FIELD.into()],
                },
            ],
        }
    }

    pub fn index(&self, name: &str) -> Option<&IndexInfo> {
        self.indexes.iter().find(|i| i.name == name)
    }

    pub fn by_id(&self) -> &IndexInfo {
        &self.indexes[0]
    }

    pub fn by_creation_time(&self) -> &IndexInfo {
        &self.indexes[1]
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.number.to_be_bytes());
        write_varint(&mut out, self.name.len() as u64);
        out.extend_from_slice(self.name.as_bytes());
        write_varint(&mut out, self.indexes.len() as u64);
        for index in &self.indexes {
            out.extend_from_slice(&index.id.to_be_bytes());
            let fields = Value::Array(
                std::iter::once(Value::from(index.name.as_str()))
                    .chain(index.fields.iter().map(|f| Value::from(f.as_str())))
                    .collect(),
            );
            let bytes = ferrovex_model::binary::encode(&fields);
            write_varint(&mut out, bytes.len() as u64);
            out.extend_from_slice(&bytes);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<TableInfo, String> {
        let bad = |what: &str| format!("malformed catalog entry: {what}");
        let mut pos = 0usize;
        let take = |n: usize, pos: &mut usize| -> Result<&[u8], String> {
            let slice = bytes.get(*pos..*pos + n).ok_or_else(|| bad("truncated"))?;
            *pos += n;
            Ok(slice)
        };
        let number = u32::from_be_bytes(take(4, &mut pos)?.try_into().unwrap());
        let varint = |pos: &mut usize| -> Result<usize, String> {
            let mut v = 0usize;
            for shift in (0..35).step_by(7) {
                let b = *bytes.get(*pos).ok_or_else(|| bad("truncated varint"))?;
                *pos += 1;
                v |= ((b & 0x7f) as usize) << shift;
                if b & 0x80 == 0 {
                    return Ok(v);
                }
            }
            Err(bad("varint too long"))
        };
        let len = varint(&mut pos)?;
        let name = String::from_utf8(take(len, &mut pos)?.to_vec()).map_err(|_| bad("name"))?;
        let count = varint(&mut pos)?;
        let mut indexes = Vec::new();
        for _ in 0..count {
            let id = u32::from_be_bytes(take(4, &mut pos)?.try_into().unwrap());
            let len = varint(&mut pos)?;
            let value =
                ferrovex_model::binary::decode(take(len, &mut pos)?).map_err(|e| e.to_string())?;
            let Value::Array(parts) = value else {
                return Err(bad("index fields"));
            };
            let mut strings = parts.into_iter().map(|p| match p {
                Value::String(s) => Ok(s),
                _ => Err(bad("index field name")),
            });
            let name = strings.next().ok_or_else(|| bad("index name"))??;
            let fields = strings.collect::<Result<Vec<_>, _>>()?;
            indexes.push(IndexInfo { id, name, fields });
        }
        Ok(TableInfo {
            number,
            name,
            indexes,
        })
    }
}

/// The catalog key of a table: `t` then the escaped name, prefix-free like every key.
pub fn table_catalog_key(name: &str) -> Vec<u8> {
    let mut out = vec![b't'];
    key::encode_into(&Value::from(name), &mut out);
    out
}

/// The key of `doc` in `index`: index id, each field's key encoding (absent fields sort
/// first), then the document id.
pub fn index_key(index: &IndexInfo, id: &DocumentId, doc: &StoredDocument) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 24 * index.fields.len() + 20);
    out.extend_from_slice(&index.id.to_be_bytes());
    for field in &index.fields {
        match doc.field(id, field) {
            Some(value) => key::encode_into(&value, &mut out),
            None => out.push(key::TAG_ABSENT),
        }
    }
    out.extend_from_slice(id.as_bytes());
    out
}

/// The document id at the end of an index key.
pub fn id_from_index_key(key: &[u8]) -> Option<DocumentId> {
    DocumentId::from_bytes(key.get(key.len().checked_sub(ferrovex_model::id::ID_BYTES)?..)?)
}

/// The index id at the front of an index key.
pub fn index_id_of_key(key: &[u8]) -> Option<IndexId> {
    Some(u32::from_be_bytes(key.get(..4)?.try_into().ok()?))
}

#[derive(Clone, Debug, Default)]
pub struct Catalog {
    by_name: BTreeMap<String, Arc<TableInfo>>,
    by_number: HashMap<TableNumber, Arc<TableInfo>>,
    table_of_index: HashMap<IndexId, TableNumber>,
}

impl Catalog {
    pub fn table(&self, name: &str) -> Option<&Arc<TableInfo>> {
        self.by_name.get(name)
    }

    pub fn table_by_number(&self, number: TableNumber) -> Option<&Arc<TableInfo>> {
        self.by_number.get(&number)
    }

    pub fn table_of_index(&self, index: IndexId) -> Option<&Arc<TableInfo>> {
        self.by_number.get(self.table_of_index.get(&index)?)
    }

    pub fn tables(&self) -> impl Iterator<Item = &Arc<TableInfo>> {
        self.by_name.values()
    }

    /// A copy with `table` added or replaced.
    pub fn with(&self, table: Arc<TableInfo>) -> Catalog {
        let mut next = self.clone();
        for index in &table.indexes {
            next.table_of_index.insert(index.id, table.number);
        }
        next.by_number.insert(table.number, table.clone());
        next.by_name.insert(table.name.clone(), table);
        next
    }

    /// Tables in the catalog.
    pub fn table_count(&self) -> usize {
        self.by_number.len()
    }

    /// This catalog with `tables` added: one copy however many there are.
    pub fn with_all(&self, tables: &[Arc<TableInfo>]) -> Catalog {
        let mut next = self.clone();
        for table in tables {
            for index in &table.indexes {
                next.table_of_index.insert(index.id, table.number);
            }
            next.by_number.insert(table.number, table.clone());
            next.by_name.insert(table.name.clone(), table.clone());
        }
        next
    }

    pub fn max_table_number(&self) -> TableNumber {
        self.by_number.keys().copied().max().unwrap_or(0)
    }

    pub fn max_index_id(&self) -> IndexId {
        self.table_of_index.keys().copied().max().unwrap_or(0)
    }
}

/// The scheduler's jobs (`crate::jobs`).
pub const SCHEDULED_FUNCTIONS: &str = "_scheduled_functions";
/// The crons' next times (`crate::scheduler`).
pub const CRON_JOBS: &str = "_cron_jobs";
/// Tables the host keeps for itself: their names start with `_`, which no other table's may.
/// Functions read them like any table; only the host writes them, and exports and imports
/// leave them out.
pub const SYSTEM_TABLES: &[&str] = &[SCHEDULED_FUNCTIONS, CRON_JOBS];

pub fn is_system_table(name: &str) -> bool {
    SYSTEM_TABLES.contains(&name)
}

/// Table and index names: letters, digits and `_`, starting with a letter, at most
/// `MAX_NAME_BYTES` long; and the [`SYSTEM_TABLES`].
pub fn check_name(kind: &str, name: &str) -> Result<(), StoreError> {
    if kind == "table" && is_system_table(name) {
        return Ok(());
    }
    let ok = !name.is_empty()
        && name.len() <= ferrovex_model::limits::MAX_NAME_BYTES
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            kind: kind.to_owned(),
            given: name.chars().take(80).collect(),
        })
    }
}
