use ferrovex_model::{obj, Value};
use ferrovex_runtime::store::{
    IndexRange, Order, Patch, Store, StoreError, BY_CREATION_TIME, BY_ID,
};

engine_test! {
fn insert_get_patch_replace_delete(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    let mut tx = store.begin();
    let id = tx
        .insert(
            "messages",
            obj! { "user" => "ada", "body" => "hi", "n" => 1i64 },
        )
        .unwrap();
    // Read-your-own-writes inside the transaction.
    assert_eq!(
        tx.get(id).unwrap().unwrap().fields["body"],
        Value::from("hi")
    );
    let ts1 = store.commit(tx).unwrap();
    assert!(ts1 > 0);

    let mut tx = store.begin();
    let doc = tx.get(id).unwrap().expect("committed document");
    assert_eq!(doc.fields["user"], Value::from("ada"));
    let whole = doc.to_value();
    assert_eq!(
        whole.as_object().unwrap()["_id"],
        Value::String(id.to_string())
    );
    assert!(
        whole.as_object().unwrap()["_creationTime"]
            .as_f64()
            .unwrap()
            > 1.6e12
    );

    let mut patch = Patch::new();
    patch.insert("body".into(), Some(Value::from("hello")));
    patch.insert("n".into(), None);
    tx.patch(id, patch).unwrap();
    let ts2 = store.commit(tx).unwrap();
    assert!(ts2 > ts1, "timestamps increase");

    let mut tx = store.begin_read_only();
    let doc = tx.get(id).unwrap().unwrap();
    assert_eq!(doc.fields, obj! { "user" => "ada", "body" => "hello" });

    let mut tx = store.begin();
    tx.replace(id, obj! { "only" => true }).unwrap();
    store.commit(tx).unwrap();
    let mut tx = store.begin();
    let replaced = tx.get(id).unwrap().unwrap();
    assert_eq!(replaced.fields, obj! { "only" => true });
    assert_eq!(
        replaced.creation_time, doc.creation_time,
        "replace keeps _creationTime"
    );
    tx.delete(id).unwrap();
    assert_eq!(
        tx.get(id).unwrap(),
        None,
        "a delete is visible to its own transaction"
    );
    store.commit(tx).unwrap();
    assert_eq!(store.begin().get(id).unwrap(), None);
    assert!(store
        .begin()
        .query("messages", BY_ID, &IndexRange::all(), Order::Asc, 10)
        .unwrap()
        .is_empty());
}
}

engine_test! {
fn snapshot_reads_do_not_see_later_commits(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    let mut tx = store.begin();
    let id = tx.insert("t", obj! { "v" => 1i64 }).unwrap();
    store.commit(tx).unwrap();

    let mut reader = store.begin_read_only();
    let mut writer = store.begin();
    writer
        .patch(id, [("v".to_string(), Some(Value::from(2i64)))].into())
        .unwrap();
    store.commit(writer).unwrap();
    assert_eq!(
        reader.get(id).unwrap().unwrap().fields["v"],
        Value::from(1i64)
    );
    assert_eq!(
        store.begin().get(id).unwrap().unwrap().fields["v"],
        Value::from(2i64)
    );
}
}

engine_test! {
fn creation_times_strictly_increase_within_a_table(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    // Many inserts in one transaction share one frozen clock.
    let mut tx = store.begin();
    tx.set_now_ms(1_700_000_000_000.0);
    for i in 0..50i64 {
        tx.insert("events", obj! { "i" => i }).unwrap();
    }
    store.commit(tx).unwrap();
    // A second transaction with a clock in the past still lands after them.
    let mut tx = store.begin();
    tx.set_now_ms(1_000.0);
    tx.insert("events", obj! { "i" => 50i64 }).unwrap();
    store.commit(tx).unwrap();

    let docs = store
        .begin()
        .query(
            "events",
            BY_CREATION_TIME,
            &IndexRange::all(),
            Order::Asc,
            100,
        )
        .unwrap();
    let order: Vec<i64> = docs
        .iter()
        .map(|d| d.fields["i"].as_i64().unwrap())
        .collect();
    assert_eq!(order, (0..51).collect::<Vec<_>>());
    for pair in docs.windows(2) {
        assert!(pair[0].creation_time < pair[1].creation_time, "{pair:?}");
    }
}
}

engine_test! {
fn new_ids_sort_after_the_older_ids_of_their_table(engine: Engine) {
    // The store writes a table's new documents and their `by_id` entries at the end of the
    // key order, where an insert is cheapest, rather than anywhere in it.
    let (store, _dir) = engine.temp_store();
    let mut ids = Vec::new();
    for i in 0..20i64 {
        let mut tx = store.begin();
        tx.set_now_ms(1_700_000_000_000.0 + i as f64);
        ids.push(tx.insert("events", obj! { "i" => i }).unwrap());
        store.commit(tx).unwrap();
    }
    for pair in ids.windows(2) {
        assert!(pair[0].as_bytes() < pair[1].as_bytes(), "{pair:?}");
    }
    let docs = store
        .begin()
        .query("events", BY_ID, &IndexRange::all(), Order::Asc, 100)
        .unwrap();
    let order: Vec<i64> = docs
        .iter()
        .map(|d| d.fields["i"].as_i64().unwrap())
        .collect();
    assert_eq!(order, (0..20).collect::<Vec<_>>());
}
}

engine_test! {
fn user_indexes_support_prefix_ranges_order_and_pagination(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    store
        .define_index("scores", "by_player_score", &["player", "score"])
        .unwrap();
    let mut tx = store.begin();
    for (player, score) in [
        ("ann", 5i64),
        ("bob", 3),
        ("ann", 9),
        ("ann", 1),
        ("bob", 7),
        ("cat", 2),
    ] {
        tx.insert("scores", obj! { "player" => player, "score" => score })
            .unwrap();
    }
    store.commit(tx).unwrap();
    let scores = |docs: Vec<ferrovex_runtime::store::Document>| -> Vec<i64> {
        docs.iter()
            .map(|d| d.fields["score"].as_i64().unwrap())
            .collect()
    };
    let mut tx = store.begin_read_only();
    let ann = IndexRange::all().eq("ann");
    assert_eq!(
        scores(
            tx.query("scores", "by_player_score", &ann, Order::Asc, 10)
                .unwrap()
        ),
        [1, 5, 9]
    );
    assert_eq!(
        scores(
            tx.query("scores", "by_player_score", &ann, Order::Desc, 2)
                .unwrap()
        ),
        [9, 5]
    );
    let mid = IndexRange::all().eq("ann").gt(1i64).lte(9i64);
    assert_eq!(
        scores(
            tx.query("scores", "by_player_score", &mid, Order::Asc, 10)
                .unwrap()
        ),
        [5, 9]
    );

    // Pagination: pages of two over every document, ascending and descending.
    for order in [Order::Asc, Order::Desc] {
        let mut seen = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let page = tx
                .scan(
                    "scores",
                    "by_player_score",
                    &IndexRange::all(),
                    order,
                    2,
                    cursor.as_deref(),
                )
                .unwrap();
            seen.extend(
                page.documents
                    .iter()
                    .map(|d| d.fields["score"].as_i64().unwrap()),
            );
            if page.is_done {
                break;
            }
            cursor = page.cursor;
        }
        let mut expected = vec![1, 5, 9, 3, 7, 2];
        if order == Order::Desc {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order:?}");
    }

    // The index follows patches: moving a score re-sorts it.
    let first = tx
        .query("scores", "by_player_score", &ann, Order::Asc, 1)
        .unwrap()[0]
        .id;
    let mut tx = store.begin();
    tx.patch(
        first,
        [("score".to_string(), Some(Value::from(100i64)))].into(),
    )
    .unwrap();
    // The overlay is merged into scans of the same transaction.
    assert_eq!(
        scores(
            tx.query("scores", "by_player_score", &ann, Order::Asc, 10)
                .unwrap()
        ),
        [5, 9, 100]
    );
    store.commit(tx).unwrap();
    assert_eq!(
        scores(
            store
                .begin()
                .query("scores", "by_player_score", &ann, Order::Asc, 10)
                .unwrap()
        ),
        [5, 9, 100]
    );
}
}

engine_test! {
fn defining_an_index_backfills_existing_documents(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    let mut tx = store.begin();
    for c in ["red", "blue", "red"] {
        tx.insert("cars", obj! { "color" => c }).unwrap();
    }
    store.commit(tx).unwrap();
    store.define_index("cars", "by_color", &["color"]).unwrap();
    let reds = store
        .begin()
        .query(
            "cars",
            "by_color",
            &IndexRange::all().eq("red"),
            Order::Asc,
            10,
        )
        .unwrap();
    assert_eq!(reds.len(), 2);
    // Same definition again is a no-op; a different one is refused.
    store.define_index("cars", "by_color", &["color"]).unwrap();
    assert!(matches!(
        store.define_index("cars", "by_color", &["model"]),
        Err(StoreError::IndexExists { .. })
    ));
}
}

engine_test! {
fn data_and_indexes_survive_reopen(engine: Engine) {
    let location = engine.location();
    let id;
    let last_ct;
    {
        let store = location.open();
        store.define_index("people", "by_name", &["name"]).unwrap();
        let mut tx = store.begin();
        id = tx.insert("people", obj! { "name" => "grace" }).unwrap();
        store.commit(tx).unwrap();
        last_ct = store.begin().get(id).unwrap().unwrap().creation_time;
    }
    let store = location.open();
    let mut tx = store.begin();
    assert_eq!(
        tx.get(id).unwrap().unwrap().fields["name"],
        Value::from("grace")
    );
    let found = tx
        .query(
            "people",
            "by_name",
            &IndexRange::all().eq("grace"),
            Order::Asc,
            5,
        )
        .unwrap();
    assert_eq!(found.len(), 1);
    // Creation times keep increasing across restarts, whatever the clock says.
    tx.set_now_ms(0.0);
    let newer = tx.insert("people", obj! { "name" => "linus" }).unwrap();
    store.commit(tx).unwrap();
    assert!(store.begin().get(newer).unwrap().unwrap().creation_time > last_ct);
}
}

engine_test! {
fn failed_transactions_leave_nothing_behind(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    let result: Result<_, StoreError> = store.run_mutation(|tx| {
        tx.insert("t", obj! { "a" => 1i64 })?;
        // A later failure inside the same mutation: nothing of it may be written.
        tx.insert("t", obj! { "$bad" => 1i64 })?;
        Ok(())
    });
    assert!(
        matches!(result, Err(StoreError::InvalidDocument { .. })),
        "{result:?}"
    );
    assert!(store.tables().is_empty(), "not even the table was created");
    assert_eq!(store.latest_ts(), 0);
}
}

engine_test! {
fn a_receipt_taken_as_absent_still_conflicts_with_its_commit(engine: Engine) {
    // A receipt's absence read without a lookup (`receipt_absent`, for a request never sent
    // before) is in the read set as a looked-up one is: a commit of the same receipt since
    // the transaction began conflicts with it, and the retry's lookup finds its outcome.
    let (store, _dir) = engine.temp_store();
    let key = b"session-3/1".to_vec();
    let mut unlooked = store.begin();
    unlooked.receipt_absent(&key);
    unlooked
        .insert("messages", obj! { "user" => "x", "body" => "second" })
        .unwrap();
    unlooked.set_receipt(key.clone(), b"second".to_vec());
    let mut looked = store.begin();
    assert!(looked.receipt(&key).unwrap().is_none());
    looked
        .insert("messages", obj! { "user" => "x", "body" => "first" })
        .unwrap();
    looked.set_receipt(key.clone(), b"first".to_vec());
    store.commit(looked).unwrap();
    let refused = store.commit(unlooked).unwrap_err();
    assert!(refused.is_conflict(), "{refused}");
    let mut retry = store.begin();
    let (outcome, _) = retry.receipt(&key).unwrap().expect("the retry's lookup finds it");
    assert_eq!(outcome, b"first");
}
}

engine_test! {
fn an_attempt_is_told_how_many_before_it_went_to_a_commit(engine: Engine) {
    // After a conflict, the next attempt knows it is not the first (a request never sent
    // before then looks up its receipt: it may have met a commit of it).
    let (store, _dir) = engine.temp_store();
    let mut tx = store.begin();
    let id = tx.insert("accounts", obj! { "n" => 0i64 }).unwrap();
    store.commit(tx).unwrap();
    let mut earlier = Vec::new();
    store
        .run_mutation_of(None, |tx| -> Result<(), StoreError> {
            earlier.push(tx.earlier_attempts());
            let n = tx.get(id)?.unwrap().fields["n"].as_i64().unwrap();
            if earlier.len() == 1 {
                // Another transaction changes what this attempt read: it conflicts.
                let mut other = store.begin();
                other.patch(id, Patch::from([("n".into(), Some(Value::from(10i64)))]))?;
                store.commit(other)?;
            }
            tx.patch(id, Patch::from([("n".into(), Some(Value::from(n + 1)))]))
        })
        .unwrap();
    assert_eq!(earlier, [0, 1]);
}
}

engine_test! {
fn the_commit_log_can_be_tailed_in_order_where_another_process_can_follow(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    let mut stamps = Vec::new();
    for i in 0..5i64 {
        let mut tx = store.begin();
        tx.insert("log", obj! { "i" => i }).unwrap();
        stamps.push(store.commit(tx).unwrap());
    }
    if matches!(engine, crate::Engine::Rocks) {
        // One process holds a RocksDB folder: nobody can follow it, so it keeps no log.
        let refused = store.engine().log_after(stamps[1], 100).unwrap_err();
        assert!(refused.to_string().contains("keeps no commit log"), "{refused}");
        return;
    }
    let records = store.engine().log_after(stamps[1], 100).unwrap();
    assert_eq!(
        records.iter().map(|r| r.ts).collect::<Vec<_>>(),
        stamps[2..]
    );
    assert!(records.iter().all(|r| !r.writes.is_empty()));
}
}

engine_test! {
fn read_sets_record_only_what_was_consumed(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    let mut tx = store.begin();
    for i in 0..10i64 {
        tx.insert("nums", obj! { "i" => i }).unwrap();
    }
    tx.insert("other", obj! {}).unwrap();
    store.commit(tx).unwrap();
    // Take the 3 newest: a later insert (newer creation time) falls in the consumed range,
    // an older document's patch below the third does not.
    let mut reader = store.begin_read_only();
    let newest = reader
        .query("nums", BY_CREATION_TIME, &IndexRange::all(), Order::Desc, 3)
        .unwrap();
    assert_eq!(newest.len(), 3);

    let oldest = store
        .begin()
        .query("nums", BY_CREATION_TIME, &IndexRange::all(), Order::Asc, 1)
        .unwrap()[0]
        .id;
    let mut old_write = store.begin();
    old_write
        .patch(oldest, [("i".to_string(), Some(Value::from(-1i64)))].into())
        .unwrap();
    let mut new_write = store.begin();
    new_write.insert("nums", obj! { "i" => 10i64 }).unwrap();
    // Writers that read the same range conflict only with the insert, not the old patch.
    let mut rw = store.begin();
    rw.query("nums", BY_CREATION_TIME, &IndexRange::all(), Order::Desc, 3)
        .unwrap();
    rw.insert("other", obj! {}).unwrap();
    store.commit(old_write).unwrap();
    let mut rw2 = store.begin();
    rw2.query("nums", BY_CREATION_TIME, &IndexRange::all(), Order::Desc, 3)
        .unwrap();
    rw2.insert("other", obj! {}).unwrap();
    store
        .commit(rw)
        .expect("a write outside the consumed range is no conflict");
    store.commit(new_write).unwrap();
    let err = store.commit(rw2).unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { table, .. } if table == "nums"),
        "{err}"
    );
    assert!(!reader.read_set().is_empty());
}
}

engine_test! {
fn a_mutation_that_keeps_conflicting_commits_in_the_serial_lane(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    let id = store
        .run_mutation(|tx| tx.insert("hot", obj! { "n" => 0i64 }))
        .unwrap()
        .value;
    let mut runs = 0;
    let committed = store
        .run_mutation(|tx| -> Result<i64, StoreError> {
            runs += 1;
            let n = tx.get(id)?.unwrap().fields["n"].as_i64().unwrap();
            if runs <= ferrovex_runtime::store::OPTIMISTIC_ATTEMPTS {
                // Another writer changes what this attempt read: every optimistic attempt conflicts.
                let mut other = store.begin();
                other.patch(id, [("n".to_string(), Some(Value::from(n + 100)))].into())?;
                store.commit(other)?;
            }
            tx.patch(id, [("n".to_string(), Some(Value::from(n + 1)))].into())?;
            Ok(n)
        })
        .unwrap();
    assert_eq!(
        committed.attempts,
        ferrovex_runtime::store::OPTIMISTIC_ATTEMPTS + 1
    );
    assert_eq!(runs, ferrovex_runtime::store::OPTIMISTIC_ATTEMPTS + 1);
    // The serial run read the latest state: one interfering write of +100 per optimistic attempt.
    let interfering = 100 * ferrovex_runtime::store::OPTIMISTIC_ATTEMPTS as i64;
    assert_eq!(committed.value, interfering);
    assert_eq!(
        store.begin().get(id).unwrap().unwrap().fields["n"],
        Value::from(interfering + 1)
    );
    assert_eq!(
        store
            .stats()
            .serial_runs
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
}

engine_test! {
fn compaction_keeps_every_version_an_open_transaction_can_read(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    let id = store
        .run_mutation(|tx| tx.insert("c", obj! { "n" => 0i64 }))
        .unwrap()
        .value;
    let mut old_reader = store.begin_read_only();
    for n in 1..=50i64 {
        store
            .run_mutation(|tx| tx.patch(id, [("n".to_string(), Some(Value::from(n)))].into()))
            .unwrap();
    }
    store.compact().unwrap();
    // The reader that began before the patches still sees its snapshot after compaction.
    assert_eq!(
        old_reader.get(id).unwrap().unwrap().fields["n"],
        Value::from(0i64)
    );
    assert_eq!(
        store.begin().get(id).unwrap().unwrap().fields["n"],
        Value::from(50i64)
    );
    let by_creation = old_reader
        .query("c", BY_CREATION_TIME, &IndexRange::all(), Order::Asc, 5)
        .unwrap();
    assert_eq!(by_creation.len(), 1);
    drop(old_reader);
    store.compact().unwrap();
    assert_eq!(
        store.begin().get(id).unwrap().unwrap().fields["n"],
        Value::from(50i64)
    );
}
}

/// A clean close leaves nothing in the write-ahead log, so the next open has nothing to
/// replay (replaying was most of a restart's time with a million documents). An open that
/// replays writes what it replayed into a new table file; after a clean close it writes none.
/// (Log files stay, to be written over: `WAL_FILES_RECYCLED`.)
#[test]
fn a_clean_close_leaves_no_log_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let tables = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sst"))
            .collect();
        names.sort();
        names
    };
    let store = Store::open(&path).unwrap();
    for batch in 0..10 {
        store
            .run_mutation(|tx| {
                for i in 0..100 {
                    tx.insert("notes", obj! { "n" => (batch * 100 + i) as i64 })?;
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }
    assert!(tables().is_empty(), "the commits are only in the log");
    drop(store);
    let closed = tables();
    assert!(!closed.is_empty(), "a clean close writes the memtables out");
    let store = Store::open(&path).unwrap();
    let mut tx = store.begin_read_only();
    let all = tx
        .query(
            "notes",
            BY_CREATION_TIME,
            &IndexRange::all(),
            Order::Asc,
            2000,
        )
        .unwrap();
    assert_eq!(all.len(), 1000);
    assert_eq!(tables(), closed, "the open replayed a log into a new table");
}

/// On PostgreSQL, garbage collection deletes the versions no reader can see any more (the
/// RocksDB engine's compaction filter is tested with the engine).
#[test]
fn postgres_deletes_the_versions_no_reader_can_see() {
    let location = crate::Engine::Postgres.location();
    let crate::Location::Database(url) = &location else {
        unreachable!("a PostgreSQL location is a database")
    };
    let database = url.rsplit('/').next().unwrap().to_owned();
    let versions = || {
        crate::pg_cluster::Cluster::shared()
            .psql(
                &database,
                "SELECT count(*) FROM ferrovex_versions WHERE space = 0",
            )
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    let store = location.open();
    let id = store
        .run_mutation(|tx| tx.insert("t", obj! { "n" => 0i64 }))
        .unwrap()
        .value;
    for n in 1..10i64 {
        store
            .run_mutation(|tx| tx.patch(id, [("n".to_owned(), Some(Value::Int64(n)))].into()))
            .unwrap();
    }
    assert_eq!(versions(), 10);
    // A reader pins its snapshot: the version it reads survives a collection.
    let reader = store.snapshot();
    store
        .run_mutation(|tx| tx.patch(id, [("n".to_owned(), Some(Value::Int64(10)))].into()))
        .unwrap();
    store.compact().unwrap();
    assert_eq!(
        reader.begin_read_only().get(id).unwrap().unwrap().fields["n"],
        Value::Int64(9)
    );
    drop(reader);
    // With no reader left behind, one more commit moves the horizon, and only the newest
    // version is kept.
    store
        .run_mutation(|tx| tx.patch(id, [("n".to_owned(), Some(Value::Int64(11)))].into()))
        .unwrap();
    store.compact().unwrap();
    assert_eq!(versions(), 1);
    assert_eq!(
        store.begin_read_only().get(id).unwrap().unwrap().fields["n"],
        Value::Int64(11)
    );
}
