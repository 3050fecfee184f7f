//! What imports need from the store: tables made with a given number, documents inserted
//! with their ids and creation times, and a snapshot read whole without a transaction's
//! limits.

use ferrovex_model::{obj, DocumentId, Object, Value};
use ferrovex_runtime::store::{IndexRange, Order, StoreError, BY_CREATION_TIME};

fn indexes(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    list.iter()
        .map(|(name, fields)| {
            (
                name.to_string(),
                fields.iter().map(|f| f.to_string()).collect(),
            )
        })
        .collect()
}

fn id(table: u32, n: u8) -> DocumentId {
    DocumentId::new(table, [n; 16])
}

engine_test! {
fn a_table_gets_its_exported_number_when_free_and_a_new_one_when_taken(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    let free = store
        .prepare_import_table("posts", 7, &indexes(&[("by_author", &["author"])]))
        .unwrap();
    assert_eq!(free.number, 7);
    assert_eq!(free.index("by_author").unwrap().fields, vec!["author"]);
    // Number 7 is taken now, and numbers below it may belong to tables yet to commit.
    let taken = store.prepare_import_table("users", 7, &[]).unwrap();
    assert!(taken.number > 7, "got {}", taken.number);
    let below = store.prepare_import_table("tags", 3, &[]).unwrap();
    assert!(below.number > taken.number, "got {}", below.number);
    // New tables allocated afterwards never collide with a claimed number.
    let committed = store
        .run_mutation(|tx| tx.insert("later", obj! { "x" => 1.0 }))
        .unwrap();
    assert!(![7, taken.number, below.number].contains(&committed.value.table_number()));
    // An existing empty table is taken as it is, gaining the listed indexes.
    let again = store
        .prepare_import_table("posts", 99, &indexes(&[("by_title", &["title"])]))
        .unwrap();
    assert_eq!(again.number, 7);
    assert!(again.index("by_author").is_some() && again.index("by_title").is_some());
}
}

engine_test! {
fn imported_documents_keep_their_ids_and_creation_times_and_fill_every_index(engine: Engine) {
    let (store, dir) = engine.temp_store();
    let table = store
        .prepare_import_table("posts", 4, &indexes(&[("by_author", &["author"])]))
        .unwrap();
    assert_eq!(table.number, 4);
    let documents = [
        (id(4, 1), 1000.5, "ada"),
        (id(4, 2), 2000.25, "bob"),
        (id(4, 3), 3000.0, "ada"),
    ];
    store
        .run_mutation(|tx| {
            for (id, time, author) in documents {
                tx.insert_imported("posts", id, time, obj! { "author" => author })?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    drop(store);
    // Across a reopen: ids, times and index entries are stored, not just cached.
    let store = dir.open();
    let mut tx = store.begin_read_only();
    let by_author = tx
        .query(
            "posts",
            "by_author",
            &IndexRange::all().eq("ada"),
            Order::Asc,
            10,
        )
        .unwrap();
    assert_eq!(
        by_author
            .iter()
            .map(|d| (d.id, d.creation_time))
            .collect::<Vec<_>>(),
        vec![(id(4, 1), 1000.5), (id(4, 3), 3000.0)]
    );
    let oldest_first = tx
        .query(
            "posts",
            BY_CREATION_TIME,
            &IndexRange::all(),
            Order::Asc,
            10,
        )
        .unwrap();
    assert_eq!(
        oldest_first.iter().map(|d| d.id).collect::<Vec<_>>(),
        documents.iter().map(|d| d.0).collect::<Vec<_>>()
    );
    // Creation times stay strictly increasing: a later ordinary insert sorts last.
    let newer = store
        .run_mutation(|tx| tx.insert("posts", obj! { "author" => "cy" }))
        .unwrap()
        .value;
    let mut tx = store.begin_read_only();
    let newest = tx
        .query(
            "posts",
            BY_CREATION_TIME,
            &IndexRange::all(),
            Order::Desc,
            1,
        )
        .unwrap();
    assert_eq!(newest[0].id, newer);
    assert!(newest[0].creation_time > 3000.0);
}
}

engine_test! {
fn a_snapshot_reads_every_document_past_the_transaction_limits(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    let count = ferrovex_model::limits::MAX_DOCUMENTS_READ + 10;
    for chunk in 0..count.div_ceil(10_000) {
        store
            .run_mutation(|tx| {
                for i in chunk * 10_000..((chunk + 1) * 10_000).min(count) {
                    tx.insert("many", obj! { "i" => i as i64 })?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }
    let snapshot = store.snapshot();
    // A write after the snapshot is not part of it.
    store
        .run_mutation(|tx| tx.insert("many", obj! { "i" => -1i64 }))
        .unwrap();
    assert_eq!(snapshot.count_documents("many").unwrap(), count as u64);
    assert_eq!(snapshot.count_documents("absent").unwrap(), 0);
    let mut expected = 0i64;
    for document in snapshot.documents("many").unwrap() {
        assert_eq!(document.unwrap().fields["i"], Value::Int64(expected));
        expected += 1;
    }
    assert_eq!(expected as usize, count);
}
}

engine_test! {
fn bad_imports_are_refused_and_change_nothing(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    store.prepare_import_table("posts", 2, &[]).unwrap();
    store
        .run_mutation(|tx| tx.insert_imported("posts", id(2, 1), 5.0, Object::new()))
        .unwrap();
    let before = store.latest_ts();
    let attempt = |table: &str, doc_id: DocumentId, time: f64, fields: Object| {
        store
            .run_mutation(|tx| {
                // A valid document first: the failure must take it back too.
                tx.insert_imported("posts", id(2, 9), 1.0, Object::new())?;
                tx.insert_imported(table, doc_id, time, fields.clone())
            })
            .unwrap_err()
            .to_string()
    };
    let cases = [
        (
            attempt("posts", id(2, 1), 6.0, Object::new()),
            "already exists in table \"posts\"",
        ),
        (
            attempt("posts", id(3, 4), 6.0, Object::new()),
            "belongs to table number 3, not to table \"posts\" (number 2)",
        ),
        (
            attempt("nope", id(2, 4), 6.0, Object::new()),
            "table \"nope\" does not exist",
        ),
        (
            attempt("posts", id(2, 4), f64::NAN, Object::new()),
            "_creationTime",
        ),
        (
            attempt("posts", id(2, 4), 6.0, obj! { "_secret" => 1.0 }),
            "reserved for system fields",
        ),
    ];
    for (error, expected) in cases {
        assert!(
            error.contains(expected),
            "{error:?} should contain {expected:?}"
        );
    }
    assert_eq!(store.latest_ts(), before);
    assert!(store.begin_read_only().get(id(2, 9)).unwrap().is_none());

    // A table with documents is refused, with what to do; so is an index with other fields.
    let error = store
        .prepare_import_table("posts", 2, &[])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("table \"posts\" already has documents"),
        "{error}"
    );
    store
        .prepare_import_table("empty", 20, &indexes(&[("by_x", &["x"])]))
        .unwrap();
    let error = store
        .prepare_import_table("empty", 20, &indexes(&[("by_x", &["y"])]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("index empty.by_x already exists with different fields"),
        "{error}"
    );
    let error = store
        .prepare_import_table("bad name", 21, &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("invalid table name \"bad name\""), "{error}");
}
}
