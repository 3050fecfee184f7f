//! The export format of `runtime export` and `runtime import`: every table as JSON Lines,
//! one JSON object per line, values in the wire form of docs/PROTOCOL.md section 1.
//!
//! ```text
//! {"type":"export","version":1,"ts":"42","tables":[{"name":"tasks","number":1,"documents":2,"indexes":[{"name":"by_done","fields":["done"]}]}]}
//! {"type":"document","table":"tasks","value":{"_id":"…","_creationTime":1732406400000.0,"title":"a","done":false}}
//! {"type":"document","table":"tasks","value":{…}}
//! {"type":"end","documents":2}
//! ```
//!
//! The header comes first and lists every table (its number, its document count and its
//! user indexes), then each table's documents oldest first, then `end`, whose count tells a
//! reader the file is whole. Documents keep `_id` and `_creationTime`. An id names its
//! table's number, so an import into a store where that number is taken gives the table a
//! new number: [`IdRemap`] then rewrites the ids, and every string equal to an exported id
//! (a reference) anywhere in a document, keeping the id's other 16 bytes.

use crate::store::{Document, TableInfo, Timestamp, BY_CREATION_TIME, BY_ID};
use ferrovex_model::json::{from_json, json_kind, to_json};
use ferrovex_model::{DocumentId, Object, Value};
use serde_json::{json, Value as Json};
use std::collections::{HashMap, HashSet};

/// The version written in the header; a reader refuses others.
pub const FORMAT_VERSION: u64 = 1;

/// A table as the header lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct TableHeader {
    pub name: String,
    pub number: u32,
    pub documents: u64,
    /// User indexes: name and field paths (`by_id` and `by_creation_time` are implied).
    pub indexes: Vec<(String, Vec<String>)>,
}

impl TableHeader {
    pub fn of(table: &TableInfo, documents: u64) -> TableHeader {
        TableHeader {
            name: table.name.clone(),
            number: table.number,
            documents,
            indexes: table
                .indexes
                .iter()
                .filter(|i| i.name != BY_ID && i.name != BY_CREATION_TIME)
                .map(|i| (i.name.clone(), i.fields.clone()))
                .collect(),
        }
    }

    pub fn to_json(&self) -> Json {
        json!({
            "name": self.name,
            "number": self.number,
            "documents": self.documents,
            "indexes": self.indexes.iter()
                .map(|(name, fields)| json!({"name": name, "fields": fields}))
                .collect::<Vec<_>>(),
        })
    }

    pub fn from_json(json: &Json) -> Result<TableHeader, String> {
        let object = json
            .as_object()
            .ok_or_else(|| format!("a table must be an object, got {}", json_kind(json)))?;
        let name = string(object, "name")?.to_owned();
        let number = object
            .get("number")
            .and_then(Json::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("table {name:?}: \"number\" must be a table number"))?;
        let documents = object
            .get("documents")
            .map(|d| {
                d.as_u64().ok_or_else(|| {
                    format!("table {name:?}: \"documents\" must be a count, got {d}")
                })
            })
            .transpose()?
            .unwrap_or(0);
        let mut indexes = Vec::new();
        for index in object
            .get("indexes")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let fields_of = |index: &Json| -> Option<(String, Vec<String>)> {
                let name = index.get("name")?.as_str()?.to_owned();
                let fields = index
                    .get("fields")?
                    .as_array()?
                    .iter()
                    .map(|f| f.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()?;
                Some((name, fields))
            };
            indexes.push(fields_of(index).ok_or_else(|| {
                format!("table {name:?}: an index must be {{\"name\": ..., \"fields\": [...]}}, got {index}")
            })?);
        }
        Ok(TableHeader {
            name,
            number,
            documents,
            indexes,
        })
    }
}

/// One line of an export.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    Header {
        ts: Timestamp,
        tables: Vec<TableHeader>,
    },
    Document {
        table: String,
        value: Object,
    },
    End {
        documents: u64,
    },
}

// Lines are written field by field so that `type` comes first, for people reading them.

pub fn header_line(ts: Timestamp, tables: &[TableHeader]) -> String {
    let tables = Json::Array(tables.iter().map(TableHeader::to_json).collect());
    format!(
        "{{\"type\":\"export\",\"version\":{FORMAT_VERSION},\"ts\":\"{ts}\",\"tables\":{tables}}}"
    )
}

pub fn document_line(table: &str, document: &Document) -> String {
    let table = Json::from(table);
    let value = to_json(&document.to_value());
    format!("{{\"type\":\"document\",\"table\":{table},\"value\":{value}}}")
}

pub fn end_line(documents: u64) -> String {
    format!("{{\"type\":\"end\",\"documents\":{documents}}}")
}

/// Parses one line (without its newline).
pub fn parse_line(text: &str) -> Result<Line, String> {
    let json: Json = serde_json::from_str(text).map_err(|e| format!("not a JSON object ({e})"))?;
    let object = json
        .as_object()
        .ok_or_else(|| format!("a line must be a JSON object, got {}", json_kind(&json)))?;
    match string(object, "type")? {
        "export" => {
            let version = object.get("version").and_then(Json::as_u64);
            if version != Some(FORMAT_VERSION) {
                return Err(format!(
                    "this is export format version {}, and this runtime reads version {FORMAT_VERSION}",
                    object.get("version").map_or("(none)".into(), |v| v.to_string())
                ));
            }
            let ts = string(object, "ts")?
                .parse()
                .map_err(|_| "\"ts\" must be a decimal timestamp".to_owned())?;
            let tables = object
                .get("tables")
                .and_then(Json::as_array)
                .ok_or("the header needs \"tables\": [...]")?
                .iter()
                .map(TableHeader::from_json)
                .collect::<Result<_, _>>()?;
            Ok(Line::Header { ts, tables })
        }
        "document" => {
            let table = string(object, "table")?.to_owned();
            let value = object
                .get("value")
                .ok_or("a document line needs \"value\"")?;
            match from_json(value).map_err(|e| format!("\"value\": {e}"))? {
                Value::Object(value) => Ok(Line::Document { table, value }),
                other => Err(format!(
                    "\"value\" must be an object, got {}",
                    other.type_name()
                )),
            }
        }
        "end" => Ok(Line::End {
            documents: object
                .get("documents")
                .and_then(Json::as_u64)
                .ok_or("the end line needs \"documents\": a count")?,
        }),
        other => Err(format!(
            "unknown line type {other:?}: expected \"export\", \"document\" or \"end\""
        )),
    }
}

fn string<'a>(object: &'a serde_json::Map<String, Json>, field: &str) -> Result<&'a str, String> {
    object
        .get(field)
        .and_then(Json::as_str)
        .ok_or_else(|| format!("\"{field}\" must be a string"))
}

/// A document as an import sends it: its table, id, creation time and user fields.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedDocument {
    pub table: String,
    pub id: DocumentId,
    pub creation_time: f64,
    pub fields: Object,
}

impl ImportedDocument {
    /// Splits the system fields off an exported document's value.
    pub fn from_value(table: &str, mut value: Object) -> Result<ImportedDocument, String> {
        let id = match value.remove("_id") {
            Some(Value::String(text)) => DocumentId::parse(&text).map_err(|e| e.to_string())?,
            Some(other) => return Err(format!("_id must be a string, got {}", other.type_name())),
            None => return Err("the document has no _id".into()),
        };
        let creation_time = match value.remove("_creationTime") {
            Some(Value::Float64(t)) if t.is_finite() => t,
            Some(other) => {
                return Err(format!(
                    "_creationTime must be a finite float64 (milliseconds), got {}",
                    ferrovex_model::json::to_json_string(&other)
                ))
            }
            None => return Err(format!("document {id} has no _creationTime")),
        };
        Ok(ImportedDocument {
            table: table.to_owned(),
            id,
            creation_time,
            fields: value,
        })
    }

    /// The document's value with its system fields, as an export writes it.
    pub fn to_value(&self) -> Value {
        Document {
            id: self.id,
            creation_time: self.creation_time,
            fields: self.fields.clone(),
        }
        .to_value()
    }
}

/// Rewrites the ids of tables whose number changed on import, and the references to them.
#[derive(Debug, Default)]
pub struct IdRemap {
    /// Exported table number → the number it has in the importing store, where they differ.
    numbers: HashMap<u32, u32>,
    /// Every id the export holds in a renumbered table: only strings equal to one of these
    /// are references (a string that merely looks like an id is left alone).
    exported: HashSet<DocumentId>,
}

impl IdRemap {
    /// `numbers` maps exported table numbers to new ones; equal pairs are dropped.
    pub fn new(numbers: impl IntoIterator<Item = (u32, u32)>) -> IdRemap {
        IdRemap {
            numbers: numbers.into_iter().filter(|(a, b)| a != b).collect(),
            exported: HashSet::new(),
        }
    }

    /// Records an id of the export, so references to it are rewritten.
    pub fn note_exported(&mut self, id: DocumentId) {
        if self.numbers.contains_key(&id.table_number()) {
            self.exported.insert(id);
        }
    }

    pub fn id(&self, id: DocumentId) -> DocumentId {
        match self.numbers.get(&id.table_number()) {
            Some(&number) => {
                let unique: [u8; 16] = id.as_bytes()[4..].try_into().expect("16 bytes");
                DocumentId::new(number, unique)
            }
            None => id,
        }
    }

    /// Rewrites every string in `value` that is an exported id of a renumbered table.
    pub fn rewrite(&self, value: &mut Value) {
        if self.exported.is_empty() {
            return;
        }
        match value {
            Value::String(text) => {
                if let Ok(id) = DocumentId::parse(text) {
                    if self.exported.contains(&id) {
                        *text = self.id(id).to_string();
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.rewrite(v)),
            Value::Object(fields) => fields.values_mut().for_each(|v| self.rewrite(v)),
            _ => {}
        }
    }

    /// The document as it is to be inserted: its own id and every reference rewritten.
    pub fn apply(&self, document: &mut ImportedDocument) {
        document.id = self.id(document.id);
        for value in document.fields.values_mut() {
            self.rewrite(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovex_model::obj;

    fn id(table: u32, n: u8) -> DocumentId {
        DocumentId::new(table, [n; 16])
    }

    #[test]
    fn lines_round_trip() {
        let tables = vec![TableHeader {
            name: "tasks".into(),
            number: 3,
            documents: 1,
            indexes: vec![("by_done".into(), vec!["done".into(), "meta.rank".into()])],
        }];
        assert_eq!(
            parse_line(&header_line(42, &tables)).unwrap(),
            Line::Header { ts: 42, tables }
        );
        let document = Document {
            id: id(3, 1),
            creation_time: 1.5,
            fields: obj! { "n" => 7i64, "b" => Value::Bytes(vec![0, 255]) },
        };
        let Line::Document { table, value } =
            parse_line(&document_line("tasks", &document)).unwrap()
        else {
            panic!("a document line")
        };
        assert_eq!(table, "tasks");
        let imported = ImportedDocument::from_value(&table, value).unwrap();
        assert_eq!(imported.id, document.id);
        assert_eq!(imported.creation_time, 1.5);
        assert_eq!(imported.fields, document.fields);
        assert_eq!(
            parse_line(&end_line(9)).unwrap(),
            Line::End { documents: 9 }
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let cases = [
            ("[1]", "must be a JSON object"),
            (
                "{\"type\":\"export\",\"version\":2,\"ts\":\"1\",\"tables\":[]}",
                "version 2",
            ),
            ("{\"type\":\"row\"}", "unknown line type \"row\""),
            (
                "{\"type\":\"document\",\"table\":\"t\",\"value\":[]}",
                "must be an object",
            ),
            (
                "{\"type\":\"document\",\"table\":\"t\",\"value\":{\"$x\":1}}",
                "$x",
            ),
            ("{\"type\":\"end\"}", "needs \"documents\""),
            ("{\"type\": ", "not a JSON object"),
        ];
        for (line, expected) in cases {
            let error = parse_line(line).unwrap_err();
            assert!(error.contains(expected), "{line}: {error}");
        }
        let no_time = obj! { "_id" => id(1, 1).to_string() };
        assert!(ImportedDocument::from_value("t", no_time)
            .unwrap_err()
            .contains("no _creationTime"));
        let bad_id = obj! { "_id" => "nope", "_creationTime" => 1.0 };
        assert!(ImportedDocument::from_value("t", bad_id)
            .unwrap_err()
            .contains("malformed document id"));
    }

    #[test]
    fn remap_rewrites_ids_and_references_only() {
        let mut remap = IdRemap::new([(1, 5), (2, 2)]);
        let (author, other_table, unexported) = (id(1, 7), id(2, 8), id(1, 9));
        remap.note_exported(author);
        remap.note_exported(other_table);
        let mut document = ImportedDocument {
            table: "posts".into(),
            id: id(1, 3),
            creation_time: 1.0,
            fields: obj! {
                "author" => author.to_string(),
                "nested" => Value::Array(vec![Value::Object(obj! { "ref" => author.to_string() })]),
                "same" => other_table.to_string(),
                "lookalike" => unexported.to_string(),
                "text" => "hello",
            },
        };
        remap.apply(&mut document);
        assert_eq!(document.id, id(5, 3));
        let moved = id(5, 7).to_string();
        assert_eq!(document.fields["author"], Value::from(moved.as_str()));
        assert_eq!(
            document.fields["nested"],
            Value::Array(vec![Value::Object(obj! { "ref" => moved.as_str() })])
        );
        assert_eq!(
            document.fields["same"],
            Value::from(other_table.to_string())
        );
        assert_eq!(
            document.fields["lookalike"],
            Value::from(unexported.to_string())
        );
        assert_eq!(document.fields["text"], Value::from("hello"));
        // A pair that keeps its number rewrites nothing, not even its table's ids.
        let mut same = IdRemap::new([(4, 4)]);
        same.note_exported(id(4, 1));
        assert_eq!(same.id(id(4, 1)), id(4, 1));
    }
}
