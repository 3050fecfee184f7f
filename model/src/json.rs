//! The JSON form of values on the wire (docs/PROTOCOL.md section 1): Convex's encoding, so the
//! official Convex clients read and write it unchanged.
//!
//! A finite float64 other than -0 is a plain JSON number, and every plain JSON number is a
//! float64. int64 is `{"$integer": base64 of its 8 little-endian bytes}`; NaN, ±Infinity and
//! -0 are `{"$float": base64 of the 8 little-endian IEEE-754 bytes}`; bytes are
//! `{"$bytes": standard base64}`. Field names follow [`field_name_error`].
//!
//! [`to_clean_json`] is the lossy form HTTP callers get with `"format": "json"` (or none):
//! int64 as a decimal string, bytes as a plain base64 string, non-finite floats as strings.

use crate::limits::MAX_FIELD_NAME_BYTES;
use crate::value::{canonical_float, Object, Value};
use base64::Engine as _;
use serde_json::{Map, Number, Value as Json};
use std::fmt;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

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

/// Why `name` cannot be a field name, or `None` when it can: printable ASCII (0x20 to 0x7E)
/// only, at most `MAX_FIELD_NAME_BYTES`, no leading `$` (that marks the encoded types). The
/// npm client throws on any object from the server that breaks these rules, so they hold for
/// arguments, documents and results alike. A leading `_` is for system fields; the store
/// decides where it is allowed.
pub fn field_name_error(name: &str) -> Option<String> {
    if name.starts_with('$') {
        let shown: String = name.chars().take(64).collect();
        return Some(format!(
            "field name {shown:?} starts with '$', which is reserved"
        ));
    }
    if name.len() > MAX_FIELD_NAME_BYTES {
        return Some(format!(
            "a field name of {} bytes exceeds MAX_FIELD_NAME_BYTES ({MAX_FIELD_NAME_BYTES})",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| !(' '..='~').contains(c)) {
        let shown: String = name.chars().take(64).collect();
        return Some(format!(
            "field name {shown:?} has the character {c:?}: field names are printable ASCII only"
        ));
    }
    None
}

/// The first field name anywhere in `value` that breaks [`field_name_error`]'s rules: where
/// it is (`$.a[2].b`) and why. `None` if every name is fine.
pub fn bad_field_name(value: &Value) -> Option<(String, String)> {
    fn walk(value: &Value, path: &mut String) -> Option<(String, String)> {
        match value {
            Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                path.truncate(len);
                found
            }),
            Value::Object(fields) => fields.iter().find_map(|(name, item)| {
                if let Some(reason) = field_name_error(name) {
                    return Some((path.clone(), reason));
                }
                let len = path.len();
                path.push('.');
                path.push_str(name);
                let found = walk(item, path);
                path.truncate(len);
                found
            }),
            _ => None,
        }
    }
    walk(value, &mut String::from("$"))
}

/// Converts a value to its wire JSON form: [`Encoded`]'s output, as a tree.
pub fn to_json(value: &Value) -> Json {
    serde_json::to_value(Encoded(value)).expect("a value always converts to JSON")
}

/// Serializes a value as a JSON string in its wire form, written as it is walked: no JSON
/// tree is built on the way.
pub fn to_json_string(value: &Value) -> String {
    serde_json::to_string(&Encoded(value)).expect("a value always serializes")
}

/// A value serialized in its wire form straight to the writer, without building a JSON tree:
/// how large results reach a socket with one copy, the bytes. The one definition of the form
/// ([`to_json`] is its tree).
pub struct Encoded<'a>(pub &'a Value);

/// A value serialized in the lossy "clean" form straight to the writer; the one definition of
/// the form ([`to_clean_json`] is its tree).
pub struct Clean<'a>(pub &'a Value);

/// `{tag: text}`: how the wire form writes int64, bytes and special floats.
struct Special<'a>(&'static str, &'a str);

impl serde::Serialize for Special<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(self.0, self.1)?;
        map.end()
    }
}

impl serde::Serialize for Encoded<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Boolean(b) => s.serialize_bool(*b),
            Value::Float64(f) => match plain_number(*f) {
                Some(n) => n.serialize(s),
                None => Special("$float", &BASE64.encode(f.to_le_bytes())).serialize(s),
            },
            Value::Int64(i) => Special("$integer", &BASE64.encode(i.to_le_bytes())).serialize(s),
            Value::String(text) => s.serialize_str(text),
            Value::Bytes(b) => Special("$bytes", &BASE64.encode(b)).serialize(s),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Encoded(item))?;
                }
                seq.end()
            }
            Value::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (name, item) in fields {
                    map.serialize_entry(name, &Encoded(item))?;
                }
                map.end()
            }
        }
    }
}

impl serde::Serialize for Clean<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Clean(item))?;
                }
                seq.end()
            }
            Value::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (name, item) in fields {
                    map.serialize_entry(name, &Clean(item))?;
                }
                map.end()
            }
            Value::Null => s.serialize_unit(),
            Value::Boolean(b) => s.serialize_bool(*b),
            Value::Float64(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float64(f) if f.is_nan() => s.serialize_str("NaN"),
            Value::Float64(f) if *f > 0.0 => s.serialize_str("Infinity"),
            Value::Float64(_) => s.serialize_str("-Infinity"),
            Value::Int64(i) => s.collect_str(i),
            Value::String(text) => s.serialize_str(text),
            Value::Bytes(b) => s.serialize_str(&BASE64.encode(b)),
        }
    }
}

/// The lossy "clean" JSON form: int64 as a decimal string, bytes as a plain base64 string,
/// NaN and ±Infinity as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`. For readers that
/// want plain JSON (HTTP calls with `"format": "json"`, printing results for people).
/// [`Clean`]'s output, as a tree.
pub fn to_clean_json(value: &Value) -> Json {
    serde_json::to_value(Clean(value)).expect("a value always converts to JSON")
}

/// A float that travels as a plain JSON number: finite and not -0 (a JSON number cannot
/// tell -0 from 0 once a JavaScript client has read it).
fn plain_number(f: f64) -> Option<Number> {
    if f == 0.0 && f.is_sign_negative() {
        return None;
    }
    Number::from_f64(f)
}

/// Base64 of a u64's 8 little-endian bytes: how commit timestamps travel.
pub fn encode_u64(n: u64) -> String {
    BASE64.encode(n.to_le_bytes())
}

/// The inverse of [`encode_u64`]: the text must be standard padded base64 of exactly 8 bytes.
pub fn decode_u64(text: &str) -> Result<u64, String> {
    decode_8_bytes(text).map(u64::from_le_bytes)
}

fn decode_8_bytes(text: &str) -> Result<[u8; 8], String> {
    let bytes = BASE64
        .decode(text)
        .map_err(|e| format!("{text:?} is not standard padded base64 ({e})"))?;
    <[u8; 8]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "{text:?} decodes to {} bytes, not the 8 little-endian bytes required",
            bytes.len()
        )
    })
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
                if let Some(message) = field_name_error(key) {
                    return Err(error(path, message));
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
    if !matches!(tag.as_str(), "$integer" | "$float" | "$bytes") {
        return Ok(None);
    }
    let text = inner
        .as_str()
        .ok_or_else(|| error(path, format!("{tag} must be a base64 string, got {inner}")))?;
    let eight = || decode_8_bytes(text).map_err(|e| error(path, format!("{tag}: {e}")));
    Ok(Some(match tag.as_str() {
        "$integer" => Value::Int64(i64::from_le_bytes(eight()?)),
        "$float" => {
            let f = f64::from_le_bytes(eight()?);
            if plain_number(f).is_some() {
                return Err(error(
                    path,
                    format!("$float {f} must be sent as a plain JSON number: only NaN, ±Infinity and -0 use $float"),
                ));
            }
            Value::Float64(canonical_float(f))
        }
        _ => Value::Bytes(
            BASE64
                .decode(text)
                .map_err(|e| error(path, format!("$bytes is not standard padded base64 ({e})")))?,
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn streamed_forms_are_the_wire_text() {
        let nested = Value::Object(Object::from([
            (
                "a".to_owned(),
                Value::Array(vec![Value::Int64(-3), Value::Float64(-0.0)]),
            ),
            ("b".to_owned(), Value::Bytes(vec![0, 255, 7])),
            ("c".to_owned(), Value::Float64(f64::INFINITY)),
            ("d".to_owned(), Value::String("\"quoted\" \u{1f600}".into())),
            ("e".to_owned(), Value::Object(Object::new())),
            ("f".to_owned(), Value::Boolean(true)),
            ("g".to_owned(), Value::Null),
            ("h".to_owned(), Value::Float64(2.5)),
        ]));
        // Written out once, the forms as they go to the wire: nesting, escaping, specials.
        assert_eq!(
            to_json_string(&nested),
            r#"{"a":[{"$integer":"/f////////8="},{"$float":"AAAAAAAAAIA="}],"b":{"$bytes":"AP8H"},"c":{"$float":"AAAAAAAA8H8="},"d":"\"quoted\" 😀","e":{},"f":true,"g":null,"h":2.5}"#
        );
        assert_eq!(
            serde_json::to_string(&Clean(&nested)).unwrap(),
            r#"{"a":["-3",-0.0],"b":"AP8H","c":"Infinity","d":"\"quoted\" 😀","e":{},"f":true,"g":null,"h":2.5}"#
        );
        assert_eq!(to_clean_json(&Value::Float64(f64::NAN)), json!("NaN"));
        assert_eq!(
            to_clean_json(&Value::Int64(i64::MIN)),
            json!("-9223372036854775808")
        );
    }

    #[test]
    fn wire_forms_match_convex() {
        // The examples of Convex's encoding, byte for byte.
        let cases: Vec<(Value, Json)> = vec![
            (Value::Null, json!(null)),
            (Value::Int64(42), json!({"$integer": "KgAAAAAAAAA="})),
            (Value::Int64(-42), json!({"$integer": "1v////////8="})),
            (Value::Int64(0), json!({"$integer": "AAAAAAAAAAA="})),
            (Value::Float64(1.5), json!(1.5)),
            (Value::Float64(0.0), json!(0.0)),
            (Value::Float64(f64::NAN), json!({"$float": "AAAAAAAA+H8="})),
            (
                Value::Float64(f64::INFINITY),
                json!({"$float": "AAAAAAAA8H8="}),
            ),
            (
                Value::Float64(f64::NEG_INFINITY),
                json!({"$float": "AAAAAAAA8P8="}),
            ),
            (Value::Float64(-0.0), json!({"$float": "AAAAAAAAAIA="})),
            (Value::Bytes(vec![1, 2, 3]), json!({"$bytes": "AQID"})),
            (Value::Boolean(true), json!(true)),
        ];
        for (value, wire) in cases {
            assert_eq!(to_json(&value), wire, "encoding {value:?}");
            let back = from_json(&wire).unwrap();
            assert_eq!(back, value, "decoding {wire}");
        }
        // -0 survives the round trip as -0, not 0.
        let Value::Float64(f) = from_json(&json!({"$float": "AAAAAAAAAIA="})).unwrap() else {
            panic!("a float")
        };
        assert!(f == 0.0 && f.is_sign_negative());
        // A plain JSON number is always a float, even when integral.
        assert_eq!(from_json(&json!(3)).unwrap(), Value::Float64(3.0));
        assert_eq!(encode_u64(0), "AAAAAAAAAAA=");
        assert_eq!(
            decode_u64(&encode_u64(1_796_230_657_000_000_123)).unwrap(),
            1_796_230_657_000_000_123
        );
    }

    #[test]
    fn bad_values_say_what_and_where() {
        let cases = [
            (
                json!({"a": [{"$where": 1}]}),
                "$.a[0]",
                "\"$where\" starts with '$'",
            ),
            (
                json!({"$integer": "12x"}),
                "$",
                "not standard padded base64",
            ),
            (
                json!({"$integer": "KgAAAA=="}),
                "$",
                "decodes to 4 bytes, not the 8",
            ),
            (
                json!({"$integer": 5}),
                "$",
                "$integer must be a base64 string",
            ),
            (
                json!({"$float": "AAAAAAAA8D8="}),
                "$",
                "$float 1 must be sent as a plain JSON number",
            ),
            (
                json!({"$bytes": "A"}),
                "$",
                "$bytes is not standard padded base64",
            ),
            (
                json!({"x": {"caf\u{e9}": 1}}),
                "$.x",
                "printable ASCII only",
            ),
            (json!({"tab\there": 1}), "$", "printable ASCII only"),
            (json!({"$set": []}), "$", "\"$set\" starts with '$'"),
        ];
        for (wire, path, needle) in cases {
            let err = from_json(&wire).unwrap_err();
            assert_eq!(err.path, path, "{wire}: {err}");
            assert!(err.message.contains(needle), "{wire}: {err}");
        }
        let long = "f".repeat(MAX_FIELD_NAME_BYTES + 1);
        let err = from_json(&json!({ long: 1 })).unwrap_err();
        assert!(
            err.message
                .contains("1025 bytes exceeds MAX_FIELD_NAME_BYTES (1024)"),
            "{err}"
        );
        assert!(from_json(&json!({ "f".repeat(MAX_FIELD_NAME_BYTES): 1 })).is_ok());
        for bad in ["", "AAAA", "AAAAAAAAAAAAAAAAAAAAAAA=", "not base64!"] {
            assert!(decode_u64(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clean_json_is_plain() {
        let value = Value::Object(crate::obj! {
            "n" => 42i64, "b" => Value::Bytes(vec![1, 2, 3]), "f" => f64::NEG_INFINITY, "x" => 2.5
        });
        assert_eq!(
            to_clean_json(&value),
            json!({"b": "AQID", "f": "-Infinity", "n": "42", "x": 2.5})
        );
    }
}
