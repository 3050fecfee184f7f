//! Conversions between Rust types (through serde) and [`Value`].
//!
//! Integers become int64, floats float64, `Vec<u8>` an array (use [`Bytes`] for bytes),
//! structs and maps objects, `Option::None` and `()` null, unit enum variants their name as a
//! string, other variants `{"Variant": content}`.

use ferrovex_model::{Object, Value};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};
use std::fmt;

/// A value that could not be converted to or from a Rust type.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueError(pub String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ValueError {}
impl ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError(msg.to_string())
    }
}
impl de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError(msg.to_string())
    }
}

/// Converts any serializable value to a [`Value`].
///
/// ```
/// use ferrovex_sdk::{to_value, Value};
/// assert_eq!(to_value(&(1i64, "a")).unwrap(), Value::Array(vec![Value::Int64(1), "a".into()]));
/// ```
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ValueError> {
    value.serialize(ValueSerializer)
}

/// Converts a [`Value`] to any deserializable type.
///
/// ```
/// use ferrovex_sdk::{from_value, Value};
/// let n: Option<i64> = from_value(Value::Int64(3)).unwrap();
/// assert_eq!(n, Some(3));
/// ```
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ValueError> {
    T::deserialize(value_deserializer(value))
}

fn value_deserializer(value: Value) -> ValueDeserializer {
    ValueDeserializer(value)
}

/// Bytes that convert to the bytes type rather than to an array of integers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> de::Deserialize<'de> for Bytes {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A [`Value`] borrowed for serialization (used by `Document` and `Fields`).
pub(crate) struct ValueRef<'a>(pub &'a Value);

impl Serialize for ValueRef<'_> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Int64(i) => s.serialize_i64(*i),
            Value::Float64(f) => s.serialize_f64(*f),
            Value::Boolean(b) => s.serialize_bool(*b),
            Value::String(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&ValueRef(item))?;
                }
                seq.end()
            }
            Value::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, &ValueRef(v))?;
                }
                map.end()
            }
        }
    }
}

/// Any [`Value`] as a serde type: for arguments or fields of any shape.
#[derive(Clone, Debug, PartialEq)]
pub struct AnyValue(pub Value);

impl Serialize for AnyValue {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ValueRef(&self.0).serialize(s)
    }
}

impl<'de> de::Deserialize<'de> for AnyValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyVisitor).map(AnyValue)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(AnyVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Boolean(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int64)
            .map_err(|_| E::custom(format!("{v} does not fit in int64")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(v))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(AnyValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Object::new();
        while let Some((k, AnyValue(v))) = map.next_entry::<String, AnyValue>()? {
            fields.insert(k, v);
        }
        Ok(Value::Object(fields))
    }
}

// ---- Serializer: Rust -> Value ----

struct ValueSerializer;

fn int<T: TryInto<i64> + fmt::Display + Copy>(v: T) -> Result<Value, ValueError> {
    v.try_into()
        .map(Value::Int64)
        .map_err(|_| ValueError(format!("integer {v} does not fit in int64")))
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = ValueError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = VariantBuilder<SeqBuilder>;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = VariantBuilder<MapBuilder>;

    fn serialize_bool(self, v: bool) -> Result<Value, ValueError> {
        Ok(Value::Boolean(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_i16(self, v: i16) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_i32(self, v: i32) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_i64(self, v: i64) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_u8(self, v: u8) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_u16(self, v: u16) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_u32(self, v: u32) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_u64(self, v: u64) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_f32(self, v: f32) -> Result<Value, ValueError> {
        Ok(Value::from(v as f64))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, ValueError> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, ValueError> {
        Ok(Value::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ValueError> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, ValueError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, ValueError> {
        Ok(Value::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Value, ValueError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Value, ValueError> {
        let mut o = Object::new();
        o.insert(variant.to_owned(), to_value(v)?);
        Ok(Value::Object(o))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, ValueError> {
        Ok(SeqBuilder(Vec::with_capacity(len.unwrap_or(0).min(4096))))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, ValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqBuilder, ValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantBuilder<SeqBuilder>, ValueError> {
        Ok(VariantBuilder {
            variant,
            inner: self.serialize_seq(Some(len))?,
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapBuilder, ValueError> {
        Ok(MapBuilder {
            fields: Object::new(),
            key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<MapBuilder, ValueError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<VariantBuilder<MapBuilder>, ValueError> {
        Ok(VariantBuilder {
            variant,
            inner: self.serialize_map(None)?,
        })
    }
}

struct SeqBuilder(Vec<Value>);

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        self.0.push(to_value(v)?);
        Ok(())
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Array(self.0))
    }
}
impl ser::SerializeTuple for SeqBuilder {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, ValueError> {
        ser::SerializeSeq::end(self)
    }
}
impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, ValueError> {
        ser::SerializeSeq::end(self)
    }
}

struct MapBuilder {
    fields: Object,
    key: Option<String>,
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ValueError> {
        match to_value(key)? {
            Value::String(k) => {
                self.key = Some(k);
                Ok(())
            }
            other => Err(ValueError(format!(
                "object keys must be strings, got {}",
                other.type_name()
            ))),
        }
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| ValueError("map value without a key".into()))?;
        self.fields.insert(key, to_value(v)?);
        Ok(())
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Object(self.fields))
    }
}
impl ser::SerializeStruct for MapBuilder {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), ValueError> {
        self.fields.insert(key.to_owned(), to_value(v)?);
        Ok(())
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Object(self.fields))
    }
}

struct VariantBuilder<B> {
    variant: &'static str,
    inner: B,
}

impl<B> VariantBuilder<B> {
    fn wrap(variant: &str, inner: Value) -> Value {
        let mut o = Object::new();
        o.insert(variant.to_owned(), inner);
        Value::Object(o)
    }
}
impl ser::SerializeTupleVariant for VariantBuilder<SeqBuilder> {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(&mut self.inner, v)
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(Self::wrap(
            self.variant,
            ser::SerializeSeq::end(self.inner)?,
        ))
    }
}
impl ser::SerializeStructVariant for VariantBuilder<MapBuilder> {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), ValueError> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, v)
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(Self::wrap(
            self.variant,
            ser::SerializeStruct::end(self.inner)?,
        ))
    }
}

// ---- Deserializer: Value -> Rust ----

struct ValueDeserializer(Value);

impl<'de> de::Deserializer<'de> for ValueDeserializer {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Int64(i) => visitor.visit_i64(i),
            Value::Float64(f) => visitor.visit_f64(f),
            Value::Boolean(b) => visitor.visit_bool(b),
            Value::String(s) => visitor.visit_string(s),
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            Value::Array(items) => visitor.visit_seq(de::value::SeqDeserializer::new(
                items.into_iter().map(ValueDeserializer),
            )),
            Value::Object(fields) => visitor.visit_map(de::value::MapDeserializer::new(
                fields.into_iter().map(|(k, v)| (k, ValueDeserializer(v))),
            )),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(ValueDeserializer(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self.0 {
            Value::String(variant) => visitor.visit_enum(variant.into_deserializer()),
            Value::Object(fields) if fields.len() == 1 => {
                let (variant, content) = fields.into_iter().next().expect("one field");
                visitor.visit_enum(EnumAccess { variant, content })
            }
            other => Err(ValueError(format!(
                "expected an enum (a string or an object with one field), got {}",
                other.type_name()
            ))),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, ValueError> for ValueDeserializer {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

struct EnumAccess {
    variant: String,
    content: Value,
}

impl<'de> de::EnumAccess<'de> for EnumAccess {
    type Error = ValueError;
    type Variant = ValueDeserializer;
    fn variant_seed<V: de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, ValueDeserializer), ValueError> {
        let variant = seed.deserialize(self.variant.into_deserializer())?;
        Ok((variant, ValueDeserializer(self.content)))
    }
}

impl<'de> de::VariantAccess<'de> for ValueDeserializer {
    type Error = ValueError;
    fn unit_variant(self) -> Result<(), ValueError> {
        Ok(())
    }
    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, ValueError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, ValueError> {
        de::Deserializer::deserialize_any(self, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        de::Deserializer::deserialize_any(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Message {
        user: String,
        n: i64,
        score: f64,
        tags: Vec<String>,
        reply_to: Option<String>,
        kind: Kind,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Kind {
        Plain,
        Tagged(String),
    }

    #[test]
    fn structs_round_trip() {
        for kind in [Kind::Plain, Kind::Tagged("x".into())] {
            let m = Message {
                user: "ada".into(),
                n: -4,
                score: 1.5,
                tags: vec!["a".into()],
                reply_to: None,
                kind,
            };
            let v = to_value(&m).unwrap();
            assert_eq!(v.as_object().unwrap().get("n"), Some(&Value::Int64(-4)));
            assert_eq!(from_value::<Message>(v).unwrap(), m);
        }
        assert_eq!(
            to_value(&Bytes(vec![1, 2])).unwrap(),
            Value::Bytes(vec![1, 2])
        );
        assert!(to_value(&u64::MAX).is_err());
        let any: AnyValue = from_value(Value::Array(vec![Value::Null, 2i64.into()])).unwrap();
        assert_eq!(to_value(&any).unwrap(), any.0);
    }
}
