//! Property tests of the encodings: key order is value order, and every encoding round-trips.

use ferrovex_model::{binary, json, key, Object, Value};
use proptest::prelude::*;

/// Arbitrary values, with floats drawn to hit the edge cases (±0, ±inf, NaN, subnormals).
fn any_value() -> impl Strategy<Value = Value> {
    let float = prop_oneof![
        any::<f64>(),
        Just(0.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MIN_POSITIVE / 2.0),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Int64),
        float.prop_map(Value::from),
        any::<bool>().prop_map(Value::Boolean),
        // Small alphabets make shared prefixes and embedded NULs likely.
        "[a-c\u{0}\u{e9}]{0,4}".prop_map(Value::String),
        prop::collection::vec(
            prop_oneof![Just(0u8), Just(1), Just(255), any::<u8>()],
            0..4
        )
        .prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c_ ~]{0,3}", inner, 0..4).prop_map(
                |m: std::collections::BTreeMap<String, Value>| Value::Object(
                    m.into_iter().collect::<Object>()
                )
            ),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn key_order_is_value_order(a in any_value(), b in any_value()) {
        prop_assert_eq!(key::encode(&a).cmp(&key::encode(&b)), a.cmp(&b), "{:?} vs {:?}", a, b);
    }

    #[test]
    fn key_encoding_round_trips(v in any_value()) {
        prop_assert_eq!(key::decode(&key::encode(&v)).unwrap(), v);
    }

    #[test]
    fn binary_round_trips(v in any_value()) {
        let bytes = binary::encode(&v);
        prop_assert_eq!(bytes.len(), binary::encoded_len(&v));
        prop_assert_eq!(binary::decode(&bytes).unwrap(), v.clone());
        // A stored document's fields are encoded and measured without building the value.
        if let Value::Object(fields) = &v {
            let mut direct = Vec::new();
            binary::encode_object_into(fields, &mut direct);
            prop_assert_eq!(&direct, &bytes);
            prop_assert_eq!(binary::object_encoded_len(fields), bytes.len());
        }
    }

    #[test]
    fn json_round_trips(v in any_value()) {
        // Field names outside the wire's rules are not representable on it by design.
        prop_assume!(!has_invalid_field_name(&v));
        let text = json::to_json_string(&v);
        let back = json::from_json_str(&text).unwrap();
        prop_assert_eq!(back, v, "via {}", text);
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = binary::decode(&bytes);
        let _ = key::decode(&bytes);
    }
}

fn has_invalid_field_name(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(has_invalid_field_name),
        Value::Object(fields) => fields
            .iter()
            .any(|(k, v)| json::field_name_error(k).is_some() || has_invalid_field_name(v)),
        _ => false,
    }
}
