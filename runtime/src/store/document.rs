//! Documents: user fields plus the system fields `_id` and `_creationTime`, and the rules a
//! document must satisfy before it is written.

use super::error::StoreError;
use ferrovex_model::json::field_name_error;
use ferrovex_model::limits::{MAX_DOCUMENT_BYTES, MAX_NESTING_DEPTH};
use ferrovex_model::{binary, DocumentId, Object, Value};

/// A document as stored: its creation time, then its user fields. The creation time sits in
/// a fixed 8-byte header so the committer can settle it without re-encoding the fields.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredDocument {
    pub creation_time: f64,
    pub fields: Object,
}

impl StoredDocument {
    /// The length of [`StoredDocument::encode`]'s bytes, without encoding.
    pub fn encoded_len(&self) -> usize {
        8 + binary::object_encoded_len(&self.fields)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&self.creation_time.to_le_bytes());
        binary::encode_object_into(&self.fields, &mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt(format!("stored document: {why}"));
        if bytes.len() < 8 {
            return Err(corrupt("shorter than its header".into()));
        }
        let creation_time = f64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        match binary::decode(&bytes[8..]).map_err(|e| corrupt(e.to_string()))? {
            Value::Object(fields) => Ok(StoredDocument {
                creation_time,
                fields,
            }),
            other => Err(corrupt(format!(
                "body is {}, not an object",
                other.type_name()
            ))),
        }
    }

    /// The value at a dot-separated path, including the system fields.
    pub fn field(&self, id: &DocumentId, path: &str) -> Option<Value> {
        match path {
            "_id" => return Some(Value::String(id.to_string())),
            "_creationTime" => return Some(Value::Float64(self.creation_time)),
            _ => {}
        }
        let mut parts = path.split('.');
        let mut current = self.fields.get(parts.next()?)?;
        for part in parts {
            current = current.as_object()?.get(part)?;
        }
        Some(current.clone())
    }
}

/// A document as a reader sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub id: DocumentId,
    pub creation_time: f64,
    pub fields: Object,
}

impl Document {
    pub(crate) fn from_stored(id: DocumentId, stored: StoredDocument) -> Self {
        Document {
            id,
            creation_time: stored.creation_time,
            fields: stored.fields,
        }
    }

    /// The whole document as a value, system fields included.
    pub fn to_value(&self) -> Value {
        let mut fields = self.fields.clone();
        fields.insert("_id".into(), Value::String(self.id.to_string()));
        fields.insert("_creationTime".into(), Value::Float64(self.creation_time));
        Value::Object(fields)
    }

    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field)
    }
}

/// Checks user fields against every document rule, returning the encoded size.
pub fn validate_fields(table: &str, fields: &Object) -> Result<usize, StoreError> {
    let invalid = |reason: String| StoreError::InvalidDocument {
        table: table.to_owned(),
        reason,
    };
    for name in fields.keys() {
        if name.starts_with('_') {
            return Err(invalid(format!(
                "field {name:?} starts with '_', which is reserved for system fields (_id, _creationTime)"
            )));
        }
    }
    check_names(fields).map_err(invalid)?;
    // The document object itself is depth 1.
    let depth = 1 + fields.values().map(Value::depth).max().unwrap_or(0);
    if depth > MAX_NESTING_DEPTH {
        return Err(StoreError::LimitExceeded {
            limit: "MAX_NESTING_DEPTH",
            what: format!("nesting depth of a document in table {table:?}"),
            max: MAX_NESTING_DEPTH,
            given: depth,
        });
    }
    let size = 8 + binary::object_encoded_len(fields);
    if size > MAX_DOCUMENT_BYTES {
        return Err(StoreError::LimitExceeded {
            limit: "MAX_DOCUMENT_BYTES",
            what: format!("size in bytes of a document in table {table:?}"),
            max: MAX_DOCUMENT_BYTES,
            given: size,
        });
    }
    Ok(size)
}

fn check_names(fields: &Object) -> Result<(), String> {
    for (name, value) in fields {
        if let Some(message) = field_name_error(name) {
            return Err(message);
        }
        check_value_names(value)?;
    }
    Ok(())
}

fn check_value_names(value: &Value) -> Result<(), String> {
    match value {
        Value::Object(fields) => check_names(fields),
        Value::Array(items) => items.iter().try_for_each(check_value_names),
        _ => Ok(()),
    }
}
