//! Bad input: each a clear error naming the rule or limit and what was given; nothing written.

use crate::Engine;
use ferrovex_model::limits::{MAX_DOCUMENT_BYTES, MAX_INDEX_RANGES_READ, MAX_NESTING_DEPTH};
use ferrovex_model::{obj, DocumentId, Object, Value};
use ferrovex_runtime::store::{IndexRange, Order, Store, StoreError, BY_ID};

/// Asserts the store holds exactly the `count` documents of table `t` it held before.
fn assert_untouched(store: &Store, before_ts: u64) {
    assert_eq!(store.latest_ts(), before_ts, "nothing was committed");
}

fn seeded(engine: Engine) -> (Store, crate::Location, DocumentId) {
    let (store, dir) = engine.temp_store();
    let mut tx = store.begin();
    let id = tx.insert("t", obj! { "a" => 1i64 }).unwrap();
    store.commit(tx).unwrap();
    (store, dir, id)
}

engine_test! {
fn oversized_document(engine: Engine) {
    let (store, _dir, _) = seeded(engine);
    let before = store.latest_ts();
    let big = Value::Bytes(vec![7; MAX_DOCUMENT_BYTES]);
    let err = store
        .run_mutation(|tx| tx.insert("t", obj! { "blob" => big.clone() }))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            StoreError::LimitExceeded {
                limit: "MAX_DOCUMENT_BYTES",
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains(&MAX_DOCUMENT_BYTES.to_string()) && text.contains("\"t\""),
        "{text}"
    );
    assert_untouched(&store, before);
}
}

engine_test! {
fn nesting_too_deep(engine: Engine) {
    let (store, _dir, _) = seeded(engine);
    let before = store.latest_ts();
    let mut deep = Value::Null;
    for _ in 0..MAX_NESTING_DEPTH {
        deep = Value::Array(vec![deep]);
    }
    let err = store
        .run_mutation(|tx| tx.insert("t", obj! { "deep" => deep.clone() }))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::LimitExceeded { limit: "MAX_NESTING_DEPTH", given, .. } if given == MAX_NESTING_DEPTH + 1),
        "{text}"
    );
    // One level less is accepted.
    let Value::Array(mut inner) = deep else {
        unreachable!()
    };
    let ok = inner.pop().unwrap();
    store
        .run_mutation(|tx| tx.insert("t", obj! { "deep" => ok.clone() }))
        .unwrap();
    assert!(store.latest_ts() > before);
}
}

engine_test! {
fn dollar_and_reserved_field_names(engine: Engine) {
    let (store, _dir, id) = seeded(engine);
    let before = store.latest_ts();
    let nested_dollar: Object = obj! { "outer" => Value::Object(obj! { "$inc" => 1i64 }) };
    for (fields, needle) in [
        (obj! { "$set" => 1i64 }, "$set"),
        (nested_dollar, "$inc"),
        (obj! { "_id" => "mine" }, "_id"),
    ] {
        let err = store
            .run_mutation(|tx| tx.insert("t", fields.clone()))
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidDocument { .. }), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        let err = store
            .run_mutation(|tx| tx.replace(id, fields.clone()))
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert_untouched(&store, before);
    assert_eq!(
        store.begin().get(id).unwrap().unwrap().fields,
        obj! { "a" => 1i64 }
    );
}
}

engine_test! {
fn unknown_table_in_get(engine: Engine) {
    let (store, _dir, _) = seeded(engine);
    let stranger = DocumentId::new(999, [1; 16]);
    let err = store.begin().get(stranger).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnknownTableOfId {
                table_number: 999,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&stranger.to_string()), "{err}");
    // Scanning a table that does not exist is simply empty.
    assert!(store
        .begin()
        .query("nope", BY_ID, &IndexRange::all(), Order::Asc, 5)
        .unwrap()
        .is_empty());
    let err = store
        .begin()
        .query("t", "by_nothing", &IndexRange::all(), Order::Asc, 5)
        .unwrap_err();
    assert!(
        err.to_string().contains("by_nothing") && err.to_string().contains("by_id"),
        "{err}"
    );
}
}

engine_test! {
fn malformed_id(engine: Engine) {
    let (store, _dir, id) = seeded(engine);
    for bad in [
        "",
        "not-an-id",
        &id.to_string()[1..],
        &format!("{}x", &id.to_string()[..35]),
    ] {
        let err = store.begin().get_str(bad).unwrap_err();
        assert!(matches!(err, StoreError::InvalidId(_)), "{bad:?}: {err}");
        assert!(err.to_string().contains("malformed document id"), "{err}");
    }
}
}

engine_test! {
fn invalid_table_names_and_ranges(engine: Engine) {
    let (store, _dir, _) = seeded(engine);
    let before = store.latest_ts();
    for name in ["", "1abc", "has space", "x".repeat(65).as_str()] {
        let err = store
            .run_mutation(|tx| tx.insert(name, obj! {}))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidName { .. }),
            "{name:?}: {err}"
        );
    }
    // A range constraining more fields than the index has.
    let err = store
        .begin()
        .query("t", BY_ID, &IndexRange::all().eq(1i64), Order::Asc, 1)
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidRange { .. }), "{err}");
    assert_untouched(&store, before);
}
}

engine_test! {
fn too_many_index_ranges(engine: Engine) {
    let (store, _dir, id) = seeded(engine);
    let mut tx = store.begin_read_only();
    for _ in 0..MAX_INDEX_RANGES_READ {
        tx.get(id).unwrap();
    }
    let err = tx.get(id).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::LimitExceeded {
                limit: "MAX_INDEX_RANGES_READ",
                ..
            }
        ),
        "{err}"
    );
}
}

engine_test! {
fn queries_cannot_write(engine: Engine) {
    let (store, _dir, id) = seeded(engine);
    let mut tx = store.begin_read_only();
    assert!(matches!(
        tx.insert("t", obj! {}),
        Err(StoreError::ReadOnly { .. })
    ));
    assert!(matches!(tx.delete(id), Err(StoreError::ReadOnly { .. })));
}
}

engine_test! {
fn missing_document_in_patch(engine: Engine) {
    let (store, _dir, id) = seeded(engine);
    store.run_mutation(|tx| tx.delete(id)).unwrap();
    let err = store
        .run_mutation(|tx| tx.patch(id, Default::default()))
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}
}

#[test]
fn not_our_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let err = Store::open(dir.path()).err().expect("refused");
    assert!(err.to_string().contains("not a data folder"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "hello"
    );
}

engine_test! {
fn forged_cursor(engine: Engine) {
    let (store, _dir, _) = seeded(engine);
    store.define_index("t", "by_a", &["a"]).unwrap();
    let mut tx = store.begin_read_only();
    let page = tx
        .scan(
            "t",
            "by_a",
            &IndexRange::all().eq(1i64),
            Order::Asc,
            1,
            None,
        )
        .unwrap();
    assert!(page.is_done);
    // A key from another index (by_id), handed back as a cursor for by_a.
    let other = tx
        .scan("t", BY_ID, &IndexRange::all(), Order::Asc, 1, None)
        .unwrap();
    assert_eq!(other.documents.len(), 1);
    let mut forged = vec![0, 0, 0, 1];
    forged.extend_from_slice(other.documents[0].id.as_bytes());
    let err = tx
        .scan(
            "t",
            "by_a",
            &IndexRange::all().eq(1i64),
            Order::Asc,
            10,
            Some(&forged),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidCursor { .. }), "{err}");
    assert!(err.to_string().contains("t.by_a"), "{err}");
}
}
