//! Rust values (through serde) straight to the ABI's binary form, without building a
//! [`Value`](ferrovex_model::Value) tree first.
//!
//! [`to_binary`] gives exactly the bytes of `ferrovex_model::binary::encode(&to_value(v)?)`, and the
//! same errors as [`to_value`](crate::to_value): a function's result is encoded once, not
//! copied into a tree and then encoded. Objects are written in key order: entries that arrive
//! in order (a `BTreeMap`, a `Document`) are written in place; otherwise they are sorted
//! afterwards, and a repeated key keeps its last value, as in an object.

use crate::value::{to_value, ValueError};
use ferrovex_model::binary::write_varint;
use ferrovex_model::value::canonical_float;
use ferrovex_model::Value;
use serde::ser::{self, Serialize};

use ferrovex_model::binary::tag::*;

/// The binary form of `value`, as `ferrovex_model::binary::encode(&to_value(value)?)`.
pub fn to_binary<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ValueError> {
    let mut out = Vec::with_capacity(128);
    value.serialize(Encoder { out: &mut out })?;
    Ok(out)
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

fn int<T: TryInto<i64> + std::fmt::Display + Copy>(
    out: &mut Vec<u8>,
    v: T,
) -> Result<(), ValueError> {
    let i: i64 = v
        .try_into()
        .map_err(|_| ValueError(format!("integer {v} does not fit in int64")))?;
    out.push(INT64);
    write_varint(out, ((i << 1) ^ (i >> 63)) as u64);
    Ok(())
}

fn float(out: &mut Vec<u8>, f: f64) {
    out.push(FLOAT64);
    out.extend_from_slice(&canonical_float(f).to_le_bytes());
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.push(STRING);
    write_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Writes `{variant: ...}` up to the value, which the caller writes next.
fn variant_prefix(out: &mut Vec<u8>, variant: &str) {
    out.push(OBJECT);
    write_varint(out, 1);
    write_varint(out, variant.len() as u64);
    out.extend_from_slice(variant.as_bytes());
}

impl<'a> ser::Serializer for Encoder<'a> {
    type Ok = ();
    type Error = ValueError;
    type SerializeSeq = SeqEncoder<'a>;
    type SerializeTuple = SeqEncoder<'a>;
    type SerializeTupleStruct = SeqEncoder<'a>;
    type SerializeTupleVariant = SeqEncoder<'a>;
    type SerializeMap = MapEncoder<'a>;
    type SerializeStruct = MapEncoder<'a>;
    type SerializeStructVariant = MapEncoder<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), ValueError> {
        self.out.push(if v { TRUE } else { FALSE });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), ValueError> {
        int(self.out, v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), ValueError> {
        int(self.out, v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), ValueError> {
        int(self.out, v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), ValueError> {
        int(self.out, v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), ValueError> {
        int(self.out, v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), ValueError> {
        int(self.out, v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), ValueError> {
        int(self.out, v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), ValueError> {
        int(self.out, v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), ValueError> {
        float(self.out, v as f64);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), ValueError> {
        float(self.out, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), ValueError> {
        string(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), ValueError> {
        string(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), ValueError> {
        self.out.push(BYTES);
        write_varint(self.out, v.len() as u64);
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), ValueError> {
        self.out.push(NULL);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), ValueError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), ValueError> {
        self.out.push(NULL);
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), ValueError> {
        self.out.push(NULL);
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), ValueError> {
        string(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), ValueError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), ValueError> {
        variant_prefix(self.out, variant);
        v.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqEncoder<'a>, ValueError> {
        Ok(SeqEncoder::new(self.out, len))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqEncoder<'a>, ValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<SeqEncoder<'a>, ValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqEncoder<'a>, ValueError> {
        variant_prefix(self.out, variant);
        self.serialize_seq(Some(len))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapEncoder<'a>, ValueError> {
        Ok(MapEncoder::new(self.out, len))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<MapEncoder<'a>, ValueError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapEncoder<'a>, ValueError> {
        variant_prefix(self.out, variant);
        self.serialize_map(Some(len))
    }
}

/// The varint of `n` in a buffer of its own.
fn varint(n: usize) -> ([u8; 10], usize) {
    let (mut buf, mut len, mut v) = ([0u8; 10], 0, n as u64);
    while v >= 0x80 {
        buf[len] = (v as u8) | 0x80;
        v >>= 7;
        len += 1;
    }
    buf[len] = v as u8;
    (buf, len + 1)
}

/// A count that precedes what follows it: written up front from serde's length hint and
/// rewritten at the end only if the hint was wrong (or absent).
struct Count {
    /// Where the count starts and where what it counts starts.
    at: usize,
    body: usize,
    written: usize,
}

impl Count {
    fn write(out: &mut Vec<u8>, hint: Option<usize>) -> Count {
        let at = out.len();
        let written = hint.unwrap_or(0);
        let (buf, len) = varint(written);
        out.extend_from_slice(&buf[..len]);
        Count {
            at,
            body: out.len(),
            written,
        }
    }

    fn finish(&self, out: &mut Vec<u8>, actual: usize) {
        if actual != self.written {
            let (buf, len) = varint(actual);
            out.splice(self.at..self.body, buf[..len].iter().copied());
        }
    }
}

/// An array: the tag and count now, the elements as they come.
struct SeqEncoder<'a> {
    out: &'a mut Vec<u8>,
    count: Count,
    len: usize,
}

impl<'a> SeqEncoder<'a> {
    fn new(out: &'a mut Vec<u8>, hint: Option<usize>) -> Self {
        out.push(ARRAY);
        let count = Count::write(out, hint);
        SeqEncoder { out, count, len: 0 }
    }

    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        v.serialize(Encoder { out: self.out })?;
        self.len += 1;
        Ok(())
    }

    fn finish(self) -> Result<(), ValueError> {
        self.count.finish(self.out, self.len);
        Ok(())
    }
}

impl ser::SerializeSeq for SeqEncoder<'_> {
    type Ok = ();
    type Error = ValueError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        self.element(v)
    }
    fn end(self) -> Result<(), ValueError> {
        self.finish()
    }
}
impl ser::SerializeTuple for SeqEncoder<'_> {
    type Ok = ();
    type Error = ValueError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        self.element(v)
    }
    fn end(self) -> Result<(), ValueError> {
        self.finish()
    }
}
impl ser::SerializeTupleStruct for SeqEncoder<'_> {
    type Ok = ();
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        self.element(v)
    }
    fn end(self) -> Result<(), ValueError> {
        self.finish()
    }
}
impl ser::SerializeTupleVariant for SeqEncoder<'_> {
    type Ok = ();
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        self.element(v)
    }
    fn end(self) -> Result<(), ValueError> {
        self.finish()
    }
}

/// An object: entries written as they come (key length, key, value), each remembered by where
/// it starts and where its value starts; at the end they are put in key order if they are not.
struct MapEncoder<'a> {
    out: &'a mut Vec<u8>,
    count: Count,
    /// (entry start, value start) of each entry, in arrival order.
    entries: Vec<(usize, usize)>,
    sorted: bool,
    /// A key given to `serialize_key` waits for its value.
    key_pending: bool,
}

/// The key of an entry whose bytes are `entry` (the key's length varint, then the key).
fn key_of(entry: &[u8]) -> &[u8] {
    let skip = entry
        .iter()
        .position(|b| b & 0x80 == 0)
        .map_or(0, |i| i + 1);
    &entry[skip..]
}

impl<'a> MapEncoder<'a> {
    fn new(out: &'a mut Vec<u8>, hint: Option<usize>) -> Self {
        out.push(OBJECT);
        let count = Count::write(out, hint);
        MapEncoder {
            out,
            count,
            entries: Vec::with_capacity(hint.unwrap_or(0).min(64)),
            sorted: true,
            key_pending: false,
        }
    }

    fn write_key(&mut self, key: &str) {
        let entry = self.out.len();
        let (buf, len) = varint(key.len());
        self.out.extend_from_slice(&buf[..len]);
        self.out.extend_from_slice(key.as_bytes());
        let value = self.out.len();
        if let Some(&(last, last_value)) = self.entries.last() {
            if self.sorted && key_of(&self.out[last..last_value]) >= key.as_bytes() {
                self.sorted = false;
            }
        }
        self.entries.push((entry, value));
    }

    fn finish(mut self) -> Result<(), ValueError> {
        if !self.sorted {
            self.sort();
        }
        self.count.finish(self.out, self.entries.len());
        Ok(())
    }

    /// Rewrites the entries in key order, keeping the last value of a repeated key.
    fn sort(&mut self) {
        let base = self.count.body;
        let region = self.out.split_off(base);
        let ends = self
            .entries
            .iter()
            .skip(1)
            .map(|&(entry, _)| entry)
            .chain([base + region.len()]);
        // (entry, value, end) of each entry, relative to `region`.
        let mut spans: Vec<(usize, usize, usize)> = self
            .entries
            .iter()
            .zip(ends)
            .map(|(&(entry, value), end)| (entry - base, value - base, end - base))
            .collect();
        let key = |&(entry, value, _): &(usize, usize, usize)| key_of(&region[entry..value]);
        // Stable: of equal keys the one written last stays last, and is the one kept.
        spans.sort_by(|a, b| key(a).cmp(key(b)));
        let mut kept: Vec<(usize, usize, usize)> = Vec::with_capacity(spans.len());
        for span in spans {
            match kept.last_mut() {
                Some(last) if key(last) == key(&span) => *last = span,
                _ => kept.push(span),
            }
        }
        self.entries.clear();
        for (entry, value, end) in kept {
            let at = self.out.len();
            self.out.extend_from_slice(&region[entry..end]);
            self.entries.push((at, at + (value - entry)));
        }
    }
}

impl ser::SerializeMap for MapEncoder<'_> {
    type Ok = ();
    type Error = ValueError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ValueError> {
        match to_value(key)? {
            Value::String(k) => {
                // A key without a value is replaced, as in a `Value` object being built.
                if std::mem::replace(&mut self.key_pending, true) {
                    let (entry, _) = self.entries.pop().expect("the pending key's entry");
                    self.out.truncate(entry);
                }
                self.write_key(&k);
                Ok(())
            }
            other => Err(ValueError(format!(
                "object keys must be strings, got {}",
                other.type_name()
            ))),
        }
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        if !std::mem::take(&mut self.key_pending) {
            return Err(ValueError("map value without a key".into()));
        }
        v.serialize(Encoder { out: self.out })
    }
    fn end(self) -> Result<(), ValueError> {
        self.finish()
    }
}
impl ser::SerializeStruct for MapEncoder<'_> {
    type Ok = ();
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), ValueError> {
        self.write_key(key);
        v.serialize(Encoder { out: self.out })
    }
    fn end(self) -> Result<(), ValueError> {
        self.finish()
    }
}
impl ser::SerializeStructVariant for MapEncoder<'_> {
    type Ok = ();
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), ValueError> {
        ser::SerializeStruct::serialize_field(self, key, v)
    }
    fn end(self) -> Result<(), ValueError> {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::AnyValue;
    use crate::{Bytes, Document, Id};
    use ferrovex_model::{binary, Object};
    use serde::ser::{SerializeMap, SerializeSeq, Serializer};
    use std::collections::{BTreeMap, HashMap};

    /// `to_binary` must agree with `to_value` then `binary::encode`, errors included.
    fn same<T: Serialize + ?Sized>(value: &T) {
        let expected = to_value(value).map(|v| binary::encode(&v));
        assert_eq!(to_binary(value), expected);
    }

    #[derive(serde::Serialize)]
    struct Unsorted {
        zeta: i64,
        alpha: Option<String>,
        #[serde(rename = "Mid")]
        mid: Vec<f32>,
        nested: Inner,
        kind: Kind,
    }

    #[derive(serde::Serialize)]
    struct Inner {
        b: bool,
        a: (u8, char, ()),
        bytes: Bytes,
    }

    #[derive(serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
    enum Kind {
        Unit,
        New(i32),
        Tuple(i64, String),
        Struct { y: i64, x: i64 },
    }

    /// A map that repeats a key, sends a key twice, and has no length hint.
    struct Odd;
    impl Serialize for Odd {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(None)?;
            map.serialize_entry("b", &1i64)?;
            map.serialize_entry("a", &2i64)?;
            map.serialize_key("dropped")?;
            map.serialize_key("b")?;
            map.serialize_value(&3i64)?;
            map.serialize_entry("", &Vec::<i64>::new())?;
            map.end()
        }
    }

    /// A sequence whose length hint is wrong.
    struct Liar;
    impl Serialize for Liar {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(200))?;
            for i in 0..3i64 {
                seq.serialize_element(&i)?;
            }
            seq.end()
        }
    }

    #[test]
    fn agrees_with_value_then_encode() {
        for kind in [
            Kind::Unit,
            Kind::New(-7),
            Kind::Tuple(1 << 40, "t".into()),
            Kind::Struct { y: 2, x: 1 },
        ] {
            same(&Unsorted {
                zeta: i64::MIN,
                alpha: Some("é".into()),
                mid: vec![1.5, f32::NAN, -0.0, f32::INFINITY],
                nested: Inner {
                    b: true,
                    a: (255, '✓', ()),
                    bytes: Bytes(vec![0, 255]),
                },
                kind,
            });
        }
        same(&Odd);
        same(&Liar);
        same(&(0..300).collect::<Vec<i64>>());
        same(&(0..300).map(|i| i.to_string()).collect::<Vec<_>>());
        same(&HashMap::from([("k1", 1), ("k0", 2), ("K", 3), ("_", 4)]));
        same(&BTreeMap::from([(Kind::Unit, 1)]));
        same(&"x".repeat(200));
        same(&f64::NAN);
        same(&());
        same(&Option::<i64>::None);
        let mut fields = Object::new();
        fields.insert("body".into(), "hello".into());
        fields.insert("Upper".into(), Value::Int64(1));
        fields.insert("_z".into(), Value::Null);
        same(&vec![
            Document {
                id: Id("abc".into()),
                creation_time: 1.5,
                fields: fields.clone(),
            };
            3
        ]);
        same(&AnyValue(Value::Object(fields)));
    }

    #[test]
    fn same_errors() {
        same(&u64::MAX);
        same(&vec![Ok::<u64, ()>(1), Ok(u64::MAX)]);
        same(&HashMap::from([(1i64, "a")]));
        same(&BTreeMap::from([(Kind::New(1), 1)]));
        struct ValueFirst;
        impl Serialize for ValueFirst {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(None)?;
                map.serialize_value(&1i64)?;
                map.end()
            }
        }
        same(&ValueFirst);
    }

    /// Values of every shape from a fixed pseudo-random sequence.
    #[test]
    fn agrees_on_generated_values() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        fn gen(next: &mut dyn FnMut() -> u64, depth: u32) -> Value {
            match next() % if depth > 3 { 6 } else { 8 } {
                0 => Value::Null,
                1 => Value::Int64(next() as i64 >> (next() % 64)),
                2 => Value::Float64(f64::from_bits(next())),
                3 => Value::Boolean(next().is_multiple_of(2)),
                4 => Value::String("ab_Z".repeat((next() % 40) as usize)),
                5 => Value::Bytes(vec![7; (next() % 200) as usize]),
                6 => Value::Array((0..next() % 5).map(|_| gen(next, depth + 1)).collect()),
                _ => Value::Object(
                    (0..next() % 5)
                        .map(|_| {
                            let key = ["", "a", "_id", "B", "ab", "é"][(next() % 6) as usize];
                            (key.to_string(), gen(next, depth + 1))
                        })
                        .collect(),
                ),
            }
        }
        for _ in 0..2000 {
            let value = gen(&mut next, 0);
            same(&AnyValue(value.clone()));
            assert_eq!(
                binary::decode(&to_binary(&AnyValue(value.clone())).unwrap()).unwrap(),
                value
            );
        }
    }
}
