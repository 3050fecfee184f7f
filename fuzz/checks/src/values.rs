//! The `values` target: the value codecs of `model` on arbitrary input.
//!
//! - Raw bytes into every decoder (binary, key, JSON text): never a panic; whatever a decoder
//!   accepts re-encodes to something it decodes to the same value, and a key decodes to exactly
//!   one value whose encoding is those very bytes (the key form is canonical).
//! - Structured values: binary, key and JSON round-trips give back an equal value,
//!   `encoded_len` is the encoding's length, and the byte order of two keys is the order of
//!   their values.

use crate::gen;
use arbitrary::Unstructured;
use ferrovex_model::{binary, json, key, Value};
use std::cmp::Ordering;

pub fn values(data: &[u8]) {
    raw_decoders(data);
    let mut u = Unstructured::new(data);
    let Ok(a) = gen::value(&mut u, 0) else { return };
    let Ok(b) = gen::value(&mut u, 0) else {
        round_trips(&a);
        return;
    };
    round_trips(&a);
    round_trips(&b);
    key_order(&a, &b);
    // Equal values (e.g. NaNs with other payloads, or the same value twice) must get equal keys.
    key_order(&a, &a.clone());
}

fn raw_decoders(data: &[u8]) {
    if let Ok(value) = binary::decode(data) {
        let again = binary::encode(&value);
        assert_eq!(binary::encoded_len(&value), again.len());
        let decoded = binary::decode(&again).expect("a re-encoded value decodes");
        assert_eq!(decoded, value, "binary re-encoding changed the value");
    }
    if let Ok(value) = key::decode(data) {
        assert_eq!(
            key::encode(&value),
            data,
            "a key decoded to {value:?}, which encodes to other bytes"
        );
    }
    // Never panics on any prefix either.
    if let Ok((Some(value), used)) = key::decode_prefix(data) {
        assert!(used <= data.len());
        assert_eq!(key::encode(&value), &data[..used]);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(value) = json::from_json_str(text) {
            let wire = json::to_json_string(&value);
            let again = json::from_json_str(&wire).expect("the wire form of a value parses");
            assert_eq!(again, value, "JSON re-encoding changed the value: {wire}");
        }
    }
}

fn round_trips(value: &Value) {
    let encoded = binary::encode(value);
    assert_eq!(binary::encoded_len(value), encoded.len(), "{value:?}");
    let decoded = binary::decode(&encoded).expect("an encoded value decodes");
    assert_eq!(&decoded, value, "binary round trip");
    // The canonical NaN makes the encoding a function of the value.
    assert_eq!(binary::encode(&decoded), encoded);

    let k = key::encode(value);
    assert_eq!(
        &key::decode(&k).expect("a key decodes"),
        value,
        "key round trip"
    );

    // A field name outside the wire's rules (a leading `$`, a character that is not printable
    // ASCII, over 1,024 bytes) has no wire form (it is refused, or read as one of the tagged
    // forms): only parsing without a panic is required then.
    let wire = json::to_json_string(value);
    let back = json::from_json_str(&wire);
    if !gen::has_invalid_field_name(value) {
        match back {
            Ok(back) => assert_eq!(&back, value, "JSON round trip of {wire}"),
            Err(e) => panic!("JSON round trip of {wire} failed: {e}"),
        }
    }
}

fn key_order(a: &Value, b: &Value) {
    let (ka, kb) = (key::encode(a), key::encode(b));
    let by_value = a.cmp(b);
    assert_eq!(
        ka.cmp(&kb),
        by_value,
        "key order differs from value order for {a:?} and {b:?}"
    );
    assert_eq!(by_value == Ordering::Equal, a == b);
    assert_eq!(
        b.cmp(a),
        by_value.reverse(),
        "the order is not antisymmetric"
    );
}
