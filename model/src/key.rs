//! Order-preserving byte encoding of values for index keys.
//!
//! For any values `a` and `b`, `encode(a).cmp(&encode(b)) == a.cmp(&b)`, so an index range is
//! a plain byte range of the store. Tags rise with the type order; strings and bytes escape
//! 0x00 as `00 FF` and end with `00 00`; arrays and objects end with `00`, which sorts before
//! any element tag, so a prefix sorts first. Object fields are each introduced by `01`.
//! Tag 0x01 is left for "field absent" in index keys (absent sorts before null).

use crate::value::{canonical_float, Object, Value};

pub const TAG_ABSENT: u8 = 0x01;
const TAG_NULL: u8 = 0x02;
const TAG_INT64: u8 = 0x03;
const TAG_FLOAT64: u8 = 0x04;
const TAG_BOOLEAN: u8 = 0x05;
const TAG_STRING: u8 = 0x06;
const TAG_BYTES: u8 = 0x07;
const TAG_ARRAY: u8 = 0x08;
const TAG_OBJECT: u8 = 0x09;
const END: u8 = 0x00;
const FIELD: u8 = 0x01;

/// Appends the order-preserving encoding of `value`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Int64(i) => {
            out.push(TAG_INT64);
            out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Float64(f) => {
            out.push(TAG_FLOAT64);
            let bits = canonical_float(*f).to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits | (1 << 63)
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Value::Boolean(b) => {
            out.push(TAG_BOOLEAN);
            out.push(*b as u8);
        }
        Value::String(s) => {
            out.push(TAG_STRING);
            escape_into(s.as_bytes(), out);
        }
        Value::Bytes(b) => {
            out.push(TAG_BYTES);
            escape_into(b, out);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            for item in items {
                encode_into(item, out);
            }
            out.push(END);
        }
        Value::Object(fields) => {
            out.push(TAG_OBJECT);
            for (key, item) in fields {
                out.push(FIELD);
                escape_into(key.as_bytes(), out);
                encode_into(item, out);
            }
            out.push(END);
        }
    }
}

pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

fn escape_into(raw: &[u8], out: &mut Vec<u8>) {
    for &b in raw {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Decodes one key-encoded value from the front of `bytes`, returning it and the bytes used.
/// `Ok(None)` for the absent marker. Never panics on arbitrary input.
pub fn decode_prefix(bytes: &[u8]) -> Result<(Option<Value>, usize), &'static str> {
    let mut pos = 0;
    if bytes.first() == Some(&TAG_ABSENT) {
        return Ok((None, 1));
    }
    let value = decode_value(bytes, &mut pos, 0)?;
    Ok((Some(value), pos))
}

/// Decodes a key that holds exactly one value.
pub fn decode(bytes: &[u8]) -> Result<Value, &'static str> {
    let mut pos = 0;
    let value = decode_value(bytes, &mut pos, 0)?;
    if pos != bytes.len() {
        return Err("trailing bytes after the key");
    }
    Ok(value)
}

fn decode_value(bytes: &[u8], pos: &mut usize, depth: usize) -> Result<Value, &'static str> {
    if depth > crate::binary::MAX_DECODE_DEPTH {
        return Err("key nested too deeply");
    }
    let tag = *bytes.get(*pos).ok_or("unexpected end of key")?;
    *pos += 1;
    let fixed8 = |pos: &mut usize| -> Result<u64, &'static str> {
        let raw = bytes
            .get(*pos..*pos + 8)
            .ok_or("truncated fixed-width key")?;
        *pos += 8;
        Ok(u64::from_be_bytes(raw.try_into().expect("8 bytes")))
    };
    Ok(match tag {
        TAG_NULL => Value::Null,
        TAG_INT64 => Value::Int64((fixed8(pos)? ^ (1 << 63)) as i64),
        TAG_FLOAT64 => {
            let ordered = fixed8(pos)?;
            let bits = if ordered >> 63 == 1 {
                ordered & !(1 << 63)
            } else {
                !ordered
            };
            let f = f64::from_bits(bits);
            if f.is_nan() && bits != crate::value::CANONICAL_NAN_BITS {
                return Err("NaN is not in canonical form");
            }
            Value::Float64(f)
        }
        TAG_BOOLEAN => match bytes.get(*pos) {
            Some(b @ (0 | 1)) => {
                *pos += 1;
                Value::Boolean(*b == 1)
            }
            _ => return Err("bad boolean in key"),
        },
        TAG_STRING => Value::String(
            String::from_utf8(unescape(bytes, pos)?).map_err(|_| "string key is not UTF-8")?,
        ),
        TAG_BYTES => Value::Bytes(unescape(bytes, pos)?),
        TAG_ARRAY => {
            let mut items = Vec::new();
            loop {
                match bytes.get(*pos) {
                    Some(&END) => {
                        *pos += 1;
                        break Value::Array(items);
                    }
                    Some(_) => items.push(decode_value(bytes, pos, depth + 1)?),
                    None => return Err("unterminated array in key"),
                }
            }
        }
        TAG_OBJECT => {
            let mut fields = Object::new();
            let mut previous: Option<String> = None;
            loop {
                match bytes.get(*pos) {
                    Some(&END) => {
                        *pos += 1;
                        break Value::Object(fields);
                    }
                    Some(&FIELD) => {
                        *pos += 1;
                        let key = String::from_utf8(unescape(bytes, pos)?)
                            .map_err(|_| "field name in key is not UTF-8")?;
                        if previous
                            .as_deref()
                            .is_some_and(|p| p.as_bytes() >= key.as_bytes())
                        {
                            return Err("object keys in key are not strictly increasing");
                        }
                        let item = decode_value(bytes, pos, depth + 1)?;
                        previous = Some(key.clone());
                        fields.insert(key, item);
                    }
                    _ => return Err("bad object field marker in key"),
                }
            }
        }
        _ => return Err("unknown tag in key"),
    })
}

fn unescape(bytes: &[u8], pos: &mut usize) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    loop {
        let b = *bytes.get(*pos).ok_or("unterminated string in key")?;
        *pos += 1;
        if b != 0 {
            out.push(b);
            continue;
        }
        match bytes.get(*pos) {
            Some(0xff) => {
                *pos += 1;
                out.push(0);
            }
            Some(0) => {
                *pos += 1;
                return Ok(out);
            }
            _ => return Err("bad escape in key string"),
        }
    }
}

/// The smallest byte string greater than every string that starts with `prefix`
/// (`None` when no such bound exists: the prefix is all 0xFF).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}
