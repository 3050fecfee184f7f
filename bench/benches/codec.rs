//! Binary encodings of values: the hand-written codec of `ferrovex_model::binary` against bincode 2
//! (standard configuration, derived `Encode`/`Decode` on an equivalent tree), on a chat
//! message and on a larger nested document.
//!
//! `cargo bench -p ferrovex-bench --bench codec`

use bincode::{Decode, Encode};
use criterion::{criterion_group, criterion_main, Criterion};
use ferrovex_model::{binary, obj, Value};
use std::hint::black_box;

/// The same tree as `Value`, in the shape bincode derives for.
#[derive(Encode, Decode, Clone, Debug, PartialEq)]
enum Tree {
    Null,
    Int64(i64),
    Float64(f64),
    Boolean(bool),
    String(String),
    Bytes(Vec<u8>),
    Array(Vec<Tree>),
    Object(Vec<(String, Tree)>),
}

fn to_tree(v: &Value) -> Tree {
    match v {
        Value::Null => Tree::Null,
        Value::Int64(i) => Tree::Int64(*i),
        Value::Float64(f) => Tree::Float64(*f),
        Value::Boolean(b) => Tree::Boolean(*b),
        Value::String(s) => Tree::String(s.clone()),
        Value::Bytes(b) => Tree::Bytes(b.clone()),
        Value::Array(a) => Tree::Array(a.iter().map(to_tree).collect()),
        Value::Object(o) => Tree::Object(o.iter().map(|(k, v)| (k.clone(), to_tree(v))).collect()),
    }
}

fn documents() -> Vec<(&'static str, Value)> {
    let message = Value::Object(
        obj! { "user" => "ada", "body" => "Hello there, how is the build going?", "_creationTime" => 1.7e12 },
    );
    let items: Vec<Value> = (0..50i64)
        .map(|i| Value::Object(obj! { "sku" => format!("item-{i}"), "qty" => i, "price" => i as f64 * 1.25, "tags" => Value::Array(vec!["a".into(), "b".into()]) }))
        .collect();
    let order = Value::Object(
        obj! { "customer" => "grace", "items" => Value::Array(items), "paid" => true, "note" => Value::Null },
    );
    vec![("message", message), ("order-50-items", order)]
}

fn codec(c: &mut Criterion) {
    let config = bincode::config::standard();
    for (name, value) in documents() {
        let tree = to_tree(&value);
        let ours = binary::encode(&value);
        let theirs = bincode::encode_to_vec(&tree, config).unwrap();
        println!(
            "{name}: ferrovex_model::binary {} bytes, bincode {} bytes",
            ours.len(),
            theirs.len()
        );
        c.bench_function(&format!("{name}/encode/ferrovex_model::binary"), |b| {
            b.iter(|| binary::encode(black_box(&value)))
        });
        c.bench_function(&format!("{name}/encode/bincode"), |b| {
            b.iter(|| bincode::encode_to_vec(black_box(&tree), config).unwrap())
        });
        c.bench_function(&format!("{name}/decode/ferrovex_model::binary"), |b| {
            b.iter(|| binary::decode(black_box(&ours)).unwrap())
        });
        c.bench_function(&format!("{name}/decode/bincode"), |b| {
            b.iter(|| bincode::decode_from_slice::<Tree, _>(black_box(&theirs), config).unwrap())
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = codec
}
criterion_main!(benches);
