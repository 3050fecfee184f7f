//! Compact binary encoding of values, used for stored documents and across the host ABI.
//!
//! One tag byte per value, LEB128 varints for lengths and zigzag varints for int64, floats as
//! 8 little-endian bytes, object fields in key order. The decoder treats its input as hostile:
//! it never panics, never allocates more than the input could hold, and bounds recursion.

use crate::limits::MAX_DECODED_VALUE_BYTES;
pub use crate::limits::MAX_DECODE_DEPTH;
use crate::value::{canonical_float, Object, Value};
use std::fmt;

/// The tag byte that starts each value; public for encoders that write the same form
/// without building a `Value` first (the guest SDK's).
pub mod tag {
    pub const NULL: u8 = 0;
    pub const INT64: u8 = 1;
    pub const FLOAT64: u8 = 2;
    pub const FALSE: u8 = 3;
    pub const TRUE: u8 = 4;
    pub const STRING: u8 = 5;
    pub const BYTES: u8 = 6;
    pub const ARRAY: u8 = 7;
    pub const OBJECT: u8 = 8;
}
use tag::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub message: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed binary value at byte {}: {}",
            self.offset, self.message
        )
    }
}

impl std::error::Error for DecodeError {}

/// Appends the encoding of `value` to `out`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(NULL),
        Value::Int64(i) => {
            out.push(INT64);
            write_varint(out, ((*i << 1) ^ (*i >> 63)) as u64);
        }
        Value::Float64(f) => {
            out.push(FLOAT64);
            out.extend_from_slice(&canonical_float(*f).to_le_bytes());
        }
        Value::Boolean(false) => out.push(FALSE),
        Value::Boolean(true) => out.push(TRUE),
        Value::String(s) => {
            out.push(STRING);
            write_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(BYTES);
            write_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            out.push(ARRAY);
            write_varint(out, items.len() as u64);
            for item in items {
                encode_into(item, out);
            }
        }
        Value::Object(fields) => encode_object_into(fields, out),
    }
}

/// Appends the encoding of an object of `fields`: what [`encode_into`] writes for
/// `Value::Object(fields)`, without building (cloning into) the value.
pub fn encode_object_into(fields: &Object, out: &mut Vec<u8>) {
    out.push(OBJECT);
    write_varint(out, fields.len() as u64);
    for (key, item) in fields {
        write_varint(out, key.len() as u64);
        out.extend_from_slice(key.as_bytes());
        encode_into(item, out);
    }
}

/// Encodes a value into a fresh buffer.
pub fn encode(value: &Value) -> Vec<u8> {
    // A guess, not a pre-pass: measuring first costs more than the occasional regrowth.
    let mut out = Vec::with_capacity(128);
    encode_into(value, &mut out);
    out
}

/// The exact length `encode` produces, computed without allocating; this is a value's size
/// for every byte limit.
pub fn encoded_len(value: &Value) -> usize {
    // Each arm counts the tag byte.
    match value {
        Value::Null | Value::Boolean(_) => 1,
        Value::Int64(i) => 1 + varint_len(((*i << 1) ^ (*i >> 63)) as u64),
        Value::Float64(_) => 1 + 8,
        Value::String(s) => 1 + varint_len(s.len() as u64) + s.len(),
        Value::Bytes(b) => 1 + varint_len(b.len() as u64) + b.len(),
        Value::Array(items) => {
            1 + varint_len(items.len() as u64) + items.iter().map(encoded_len).sum::<usize>()
        }
        Value::Object(fields) => object_encoded_len(fields),
    }
}

/// The encoded length of an object of `fields`, without building the value.
pub fn object_encoded_len(fields: &Object) -> usize {
    1 + varint_len(fields.len() as u64)
        + fields
            .iter()
            .map(|(k, v)| varint_len(k.len() as u64) + k.len() + encoded_len(v))
            .sum::<usize>()
}

/// Decodes exactly one value that must fill all of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut reader = Reader {
        bytes,
        pos: 0,
        budget: MAX_DECODED_VALUE_BYTES,
    };
    let value = reader.value(0)?;
    if reader.pos != bytes.len() {
        return Err(reader.error("trailing bytes after the value"));
    }
    Ok(value)
}

pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// What the decoded value may still take ([`MAX_DECODED_VALUE_BYTES`], estimated).
    budget: usize,
}

/// The estimated memory of one decoded value, before its strings and bytes.
const VALUE_COST: usize = std::mem::size_of::<Value>();
/// The estimated memory of one object field beside its value: the key's `String`.
const FIELD_COST: usize = std::mem::size_of::<String>();

impl<'a> Reader<'a> {
    /// Charges `bytes` of decoded memory against the budget.
    fn charge(&mut self, bytes: usize) -> Result<(), DecodeError> {
        self.budget = self.budget.checked_sub(bytes).ok_or_else(|| {
            self.error(
                "the value takes more than MAX_DECODED_VALUE_BYTES (64 MiB) of memory once decoded",
            )
        })?;
        Ok(())
    }

    fn error(&self, message: &'static str) -> DecodeError {
        DecodeError {
            offset: self.pos,
            message,
        }
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.error("unexpected end of input"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n > remaining {
            return Err(self.error("length runs past the end of input"));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut result = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = (b & 0x7f) as u64;
            if shift == 63 && bits > 1 {
                return Err(self.error("varint overflows 64 bits"));
            }
            result |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(result);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    /// A count of items that each take at least one byte: larger than the rest of the input
    /// cannot be honest, and checking it first keeps allocation bounded by the input.
    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        if n > (self.bytes.len() - self.pos) as u64 {
            return Err(self.error("item count exceeds the remaining input"));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.varint()?;
        let raw = self.take(len)?;
        self.charge(raw.len())?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| self.error("string is not valid UTF-8"))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DECODE_DEPTH {
            return Err(self.error("value nested deeper than MAX_DECODE_DEPTH (64) allows"));
        }
        self.charge(VALUE_COST)?;
        Ok(match self.byte()? {
            NULL => Value::Null,
            INT64 => {
                let z = self.varint()?;
                Value::Int64(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            FLOAT64 => {
                let raw = self.take(8)?;
                let f = f64::from_le_bytes(raw.try_into().expect("8 bytes"));
                if f.is_nan() && f.to_bits() != crate::value::CANONICAL_NAN_BITS {
                    return Err(self.error("NaN is not in canonical form"));
                }
                Value::Float64(f)
            }
            FALSE => Value::Boolean(false),
            TRUE => Value::Boolean(true),
            STRING => Value::String(self.string()?),
            BYTES => {
                let len = self.varint()?;
                let raw = self.take(len)?;
                self.charge(raw.len())?;
                Value::Bytes(raw.to_vec())
            }
            ARRAY => {
                let n = self.count()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            OBJECT => {
                let n = self.count()?;
                let mut fields = Object::new();
                for _ in 0..n {
                    self.charge(FIELD_COST)?;
                    let key = self.string()?;
                    if fields
                        .last_key_value()
                        .is_some_and(|(last, _)| last.as_bytes() >= key.as_bytes())
                    {
                        return Err(self.error("object keys are not strictly increasing"));
                    }
                    let item = self.value(depth + 1)?;
                    fields.insert(key, item);
                }
                Value::Object(fields)
            }
            _ => {
                return Err(DecodeError {
                    offset: self.pos - 1,
                    message: "unknown type tag",
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_inputs_are_errors_not_panics() {
        for bad in [
            &[][..],
            &[ARRAY, 0xff, 0xff, 0xff, 0xff, 0x0f][..],
            &[STRING, 2, 0xc3, 0x28][..],
            &[OBJECT, 2, 1, b'b', NULL, 1, b'a', NULL][..],
            &[99][..],
            &[NULL, NULL][..],
            &[
                INT64, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ][..],
        ] {
            assert!(decode(bad).is_err(), "{bad:?} should not decode");
        }
        let mut deep = [ARRAY, 1].repeat(MAX_DECODE_DEPTH + 2);
        deep.push(NULL);
        assert!(decode(&deep).is_err());
    }

    #[test]
    fn a_value_that_would_expand_past_the_budget_is_refused() {
        // 4 MiB of one-byte nulls: 128 MiB once decoded.
        let n = 4 * 1024 * 1024;
        let mut nulls = vec![ARRAY];
        write_varint(&mut nulls, n as u64);
        nulls.resize(nulls.len() + n, NULL);
        let error = decode(&nulls).unwrap_err();
        assert!(error.message.contains("MAX_DECODED_VALUE_BYTES"), "{error}");
        // A quarter as many fit.
        let n = n / 4;
        let mut nulls = vec![ARRAY];
        write_varint(&mut nulls, n as u64);
        nulls.resize(nulls.len() + n, NULL);
        assert!(decode(&nulls).is_ok());
    }

    #[test]
    fn encoded_len_is_exact() {
        for i in [0i64, 1, -1, 63, 64, -65, i64::MAX, i64::MIN] {
            let v = Value::Int64(i);
            assert_eq!(encode(&v).len(), encoded_len(&v), "{i}");
            assert_eq!(decode(&encode(&v)).unwrap(), v);
        }
    }
}
