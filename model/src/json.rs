//! The JSON form of values on the wire (PROTOCOL.md section 1).
//!
//! int64 is `{"$integer": "-42"}`, bytes `{"$bytes": "<base64>"}`, non-finite floats
//! `{"$float": "NaN" | "Infinity" | "-Infinity"}`; a plain JSON number is always float64.
//! Any other object field name starting with `$` is rejected.

use crate::value::{canonical_float, Object, Value};
use base64::Engine as _;
use serde_json::{Map, Number, Value as Json};
use std::fmt;

/// Why a JSON value is not a valid value, and where in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Path to the offending part, e.g. `$.messages[3].body`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid value at {}: {}", self.path, self.message)
    }
}

impl std::error::Error for JsonError {}

/// Converts a value to its wire JSON form.
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Float64(f) => match Number::from_f64(*f) {
            Some(n) => Json::Number(n),
            None => special("$float", float_name(*f)),
        },
        Value::Int64(i) => special("$integer", i.to_string()),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => special(
            "$bytes",
            base64::engine::general_purpose::STANDARD.encode(b),
        ),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Object(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

/// Serializes a value as a JSON string in its wire form.
pub fn to_json_string(value: &Value) -> String {
    to_json(value).to_string()
}

fn float_name(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f > 0.0 {
        "Infinity".into()
    } else {
        "-Infinity".into()
    }
}

fn special(tag: &str, text: String) -> Json {
    let mut map = Map::new();
    map.insert(tag.to_owned(), Json::String(text));
    Json::Object(map)
}

/// The kind of a JSON value as an error message says it: "null", "a boolean", "a number",
/// "a string", "an array", "an object".
pub fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Converts wire JSON to a value.
pub fn from_json(json: &Json) -> Result<Value, JsonError> {
    let mut path = String::from("$");
    convert(json, &mut path)
}

/// Parses a JSON text in wire form.
pub fn from_json_str(text: &str) -> Result<Value, JsonError> {
    let json: Json = serde_json::from_str(text).map_err(|e| JsonError {
        path: "$".into(),
        message: format!("not valid JSON: {e}"),
    })?;
    from_json(&json)
}

fn error(path: &str, message: impl Into<String>) -> JsonError {
    JsonError {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn convert(json: &Json, path: &mut String) -> Result<Value, JsonError> {
    Ok(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_f64() {
            Some(f) => Value::Float64(f),
            None => return Err(error(path, format!("number {n} is not representable"))),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                out.push(convert(item, path)?);
                path.truncate(len);
            }
            Value::Array(out)
        }
        Json::Object(map) => {
            if let Some(value) = convert_special(map, path)? {
                return Ok(value);
            }
            let mut out = Object::new();
            for (key, item) in map {
                if key.starts_with('$') {
                    return Err(error(
                        path,
                        format!("field name {key:?} starts with '$', which is reserved"),
                    ));
                }
                let len = path.len();
                path.push('.');
                path.push_str(key);
                out.insert(key.clone(), convert(item, path)?);
                path.truncate(len);
            }
            Value::Object(out)
        }
    })
}

/// Recognises `{"$integer": ..}`, `{"$float": ..}` and `{"$bytes": ..}`.
fn convert_special(map: &Map<String, Json>, path: &str) -> Result<Option<Value>, JsonError> {
    if map.len() != 1 {
        return Ok(None);
    }
    let (tag, inner) = map.iter().next().expect("one entry");
    let text = || {
        inner
            .as_str()
            .ok_or_else(|| error(path, format!("{tag} must be a string, got {inner}")))
    };
    Ok(Some(match tag.as_str() {
        "$integer" => {
            let s = text()?;
            Value::Int64(s.parse::<i64>().map_err(|_| {
                error(
                    path,
                    format!("$integer {s:?} is not a decimal 64-bit integer"),
                )
            })?)
        }
        "$float" => {
            let s = text()?;
            Value::Float64(canonical_float(match s {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                other => {
                    return Err(error(
                        path,
                        format!("$float {other:?} must be \"NaN\", \"Infinity\" or \"-Infinity\""),
                    ))
                }
            }))
        }
        "$bytes" => {
            let s = text()?;
            Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| error(path, format!("$bytes is not standard base64: {e}")))?,
            )
        }
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_forms_match_the_protocol() {
        let cases: Vec<(Value, Json)> = vec![
            (Value::Null, json!(null)),
            (Value::Int64(-42), json!({"$integer": "-42"})),
            (Value::Float64(1.5), json!(1.5)),
            (Value::Float64(f64::NAN), json!({"$float": "NaN"})),
            (Value::Float64(f64::INFINITY), json!({"$float": "Infinity"})),
            (
                Value::Float64(f64::NEG_INFINITY),
                json!({"$float": "-Infinity"}),
            ),
            (Value::Bytes(vec![0, 1, 255]), json!({"$bytes": "AAH/"})),
            (Value::Boolean(true), json!(true)),
        ];
        for (value, wire) in cases {
            assert_eq!(to_json(&value), wire, "encoding {value:?}");
            assert_eq!(from_json(&wire).unwrap(), value, "decoding {wire}");
        }
        // A plain JSON number is always a float, even when integral.
        assert_eq!(from_json(&json!(3)).unwrap(), Value::Float64(3.0));
    }

    #[test]
    fn dollar_fields_are_rejected_with_their_path() {
        let err = from_json(&json!({"a": [{"$where": 1}]})).unwrap_err();
        assert_eq!(err.path, "$.a[0]");
        assert!(err.message.contains("$where"), "{err}");
        let err = from_json(&json!({"$integer": "12x"})).unwrap_err();
        assert!(err.message.contains("12x"), "{err}");
    }
}
