//! Structured input from fuzz bytes: values with the corner cases the codecs care about.

use arbitrary::{Result, Unstructured};
use ferrovex_model::{Object, Value};

/// Deepest value generated: deep enough for every nesting rule, shallow enough for serde_json's
/// recursion limit.
pub const MAX_DEPTH: usize = 6;

/// A value of any type, nested at most `MAX_DEPTH - depth` more levels.
pub fn value(u: &mut Unstructured, depth: usize) -> Result<Value> {
    let kinds = if depth >= MAX_DEPTH { 6 } else { 8 };
    Ok(match u.int_in_range(0..=kinds - 1)? {
        0 => Value::Null,
        1 => Value::Int64(int(u)?),
        2 => Value::Float64(float(u)?),
        3 => Value::Boolean(u.arbitrary()?),
        4 => Value::String(string(u)?),
        5 => Value::Bytes(bytes(u)?),
        6 => {
            let len = u.int_in_range(0..=4)?;
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                items.push(value(u, depth + 1)?);
            }
            Value::Array(items)
        }
        _ => {
            let len = u.int_in_range(0..=4)?;
            let mut fields = Object::new();
            for _ in 0..len {
                fields.insert(string(u)?, value(u, depth + 1)?);
            }
            Value::Object(fields)
        }
    })
}

pub fn int(u: &mut Unstructured) -> Result<i64> {
    Ok(match u.int_in_range(0..=3)? {
        0 => *u.choose(&[0, 1, -1, i64::MIN, i64::MAX, i64::MIN + 1, 1 << 53])?,
        1 => u.int_in_range(-3..=3)?,
        _ => u.arbitrary()?,
    })
}

pub fn float(u: &mut Unstructured) -> Result<f64> {
    Ok(match u.int_in_range(0..=3)? {
        0 => *u.choose(&[
            0.0,
            -0.0,
            1.5,
            -1.5,
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            5e-324,
        ])?,
        1 => u.int_in_range(-3i32..=3)? as f64,
        _ => f64::from_bits(u.arbitrary()?),
    })
}

/// Strings drawn mostly from a small alphabet (so values collide and compare equal often),
/// sometimes arbitrary UTF-8 (NUL, `$`, `_`, multi-byte).
pub fn string(u: &mut Unstructured) -> Result<String> {
    if u.ratio(1, 4)? {
        let s: String = u.arbitrary()?;
        return Ok(s.chars().take(12).collect());
    }
    let len = u.int_in_range(0..=3)?;
    let mut s = String::new();
    for _ in 0..len {
        s.push(*u.choose(&['a', 'b', '\0', '$', '_', 'é', '\u{ffff}'])?);
    }
    Ok(s)
}

pub fn bytes(u: &mut Unstructured) -> Result<Vec<u8>> {
    let len = u.int_in_range(0..=6)?;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        out.push(*u.choose(&[0u8, 1, 0xff, 0xfe, b'a'])?);
    }
    Ok(out)
}

/// Whether any object field name anywhere in `value` breaks the wire's rules
/// (`ferrovex_model::json::field_name_error`): such a value has no JSON form.
pub fn has_invalid_field_name(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(has_invalid_field_name),
        Value::Object(fields) => fields.iter().any(|(k, v)| {
            ferrovex_model::json::field_name_error(k).is_some() || has_invalid_field_name(v)
        }),
        _ => false,
    }
}
