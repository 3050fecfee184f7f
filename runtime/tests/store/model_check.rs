//! Index scans return exactly what a naive in-memory model returns, for random sequences of
//! inserts, patches, deletes, commits, aborts and paginated scans (inside transactions too,
//! so the write overlay is checked as well).

use crate::Engine;
use ferrovex_model::{DocumentId, Object, Value};
use ferrovex_runtime::store::{IndexRange, Order, Transaction, BY_CREATION_TIME, BY_ID};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Op {
    Insert {
        a: Option<Value>,
        b: Option<i64>,
    },
    SetA {
        pick: usize,
        a: Option<Value>,
    },
    Delete {
        pick: usize,
    },
    Commit,
    Abort,
    Scan {
        index: u8,
        eq: Option<Value>,
        lower: Option<(Value, bool)>,
        upper: Option<(Value, bool)>,
        desc: bool,
        page: usize,
    },
}

fn small_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0i64..4).prop_map(Value::Int64),
        Just(Value::from("x")),
        Just(Value::from("y")),
        Just(Value::Float64(1.5)),
        Just(Value::Null),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let bound = || prop::option::of((small_value(), any::<bool>()));
    prop_oneof![
        4 => (prop::option::of(small_value()), prop::option::of(0i64..4)).prop_map(|(a, b)| Op::Insert { a, b }),
        2 => (any::<usize>(), prop::option::of(small_value())).prop_map(|(pick, a)| Op::SetA { pick, a }),
        1 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
        2 => Just(Op::Commit),
        1 => Just(Op::Abort),
        3 => (0u8..3, prop::option::of(small_value()), bound(), bound(), any::<bool>(), 1usize..4)
            .prop_map(|(index, eq, lower, upper, desc, page)| Op::Scan { index, eq, lower, upper, desc, page }),
    ]
}

#[derive(Clone, Debug)]
struct ModelDoc {
    seq: u64,
    fields: Object,
}

fn fields(a: &Option<Value>, b: Option<i64>) -> Object {
    let mut f = Object::new();
    if let Some(a) = a {
        f.insert("a".into(), a.clone());
    }
    if let Some(b) = b {
        f.insert("b".into(), Value::Int64(b));
    }
    f
}

/// The model's answer: filter by the range over (a, b) (absent sorts first), then sort.
fn model_scan(
    docs: &BTreeMap<DocumentId, ModelDoc>,
    index: u8,
    eq: &Option<Value>,
    lower: &Option<(Value, bool)>,
    upper: &Option<(Value, bool)>,
    desc: bool,
) -> Vec<DocumentId> {
    let mut rows: Vec<(Vec<Option<Value>>, u64, DocumentId)> = docs
        .iter()
        .map(|(id, d)| {
            let key = match index {
                0 => vec![],
                1 => vec![],
                _ => vec![d.fields.get("a").cloned(), d.fields.get("b").cloned()],
            };
            (key, d.seq, *id)
        })
        .filter(|(key, _, _)| {
            if index != 2 {
                return true;
            }
            let mut field = 0;
            if let Some(e) = eq {
                if key[0].as_ref() != Some(e) {
                    return false;
                }
                field = 1;
            }
            let v = &key[field];
            let lower_ok = match lower {
                Some((l, true)) => v.as_ref() >= Some(l),
                Some((l, false)) => v.as_ref() > Some(l),
                None => true,
            };
            let upper_ok = match upper {
                Some((u, true)) => v.as_ref() <= Some(u),
                Some((u, false)) => v.as_ref() < Some(u),
                None => true,
            };
            lower_ok && upper_ok
        })
        .collect();
    match index {
        0 => rows.sort_by_key(|x| x.2),
        1 => rows.sort_by_key(|r| r.1),
        _ => rows.sort_by(|x, y| x.0.cmp(&y.0).then(x.2.cmp(&y.2))),
    }
    if desc {
        rows.reverse();
    }
    rows.into_iter().map(|r| r.2).collect()
}

fn store_scan(
    tx: &mut Transaction,
    index: u8,
    range: &IndexRange,
    desc: bool,
    page: usize,
) -> Vec<(DocumentId, Object)> {
    let name = [BY_ID, BY_CREATION_TIME, "by_a_b"][index as usize];
    let order = if desc { Order::Desc } else { Order::Asc };
    let mut out = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let p = tx
            .scan("t", name, range, order, page, cursor.as_deref())
            .expect("scan");
        assert!(p.documents.len() <= page);
        out.extend(p.documents.into_iter().map(|d| (d.id, d.fields)));
        if p.is_done {
            return out;
        }
        cursor = p.cursor;
    }
}

/// Runs `ops` on a store of `engine` and on the model; every scan must agree.
fn scans_match_the_model_on(engine: Engine, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (store, _dir) = engine.temp_store();
    store.define_index("t", "by_a_b", &["a", "b"]).unwrap();
    let mut committed: BTreeMap<DocumentId, ModelDoc> = BTreeMap::new();
    let mut current = committed.clone();
    let mut tx = store.begin();
    let mut seq = 0u64;
    for op in ops {
        match op {
            Op::Insert { a, b } => {
                let f = fields(&a, b);
                let id = tx.insert("t", f.clone()).unwrap();
                seq += 1;
                current.insert(id, ModelDoc { seq, fields: f });
            }
            Op::SetA { pick, a } => {
                if current.is_empty() {
                    continue;
                }
                let id = *current.keys().nth(pick % current.len()).unwrap();
                tx.patch(id, [("a".to_string(), a.clone())].into()).unwrap();
                let doc = current.get_mut(&id).unwrap();
                match a {
                    Some(v) => {
                        doc.fields.insert("a".into(), v);
                    }
                    None => {
                        doc.fields.remove("a");
                    }
                }
            }
            Op::Delete { pick } => {
                if current.is_empty() {
                    continue;
                }
                let id = *current.keys().nth(pick % current.len()).unwrap();
                tx.delete(id).unwrap();
                current.remove(&id);
            }
            Op::Commit => {
                let done = std::mem::replace(&mut tx, store.begin());
                store.commit(done).unwrap();
                tx = store.begin();
                committed = current.clone();
            }
            Op::Abort => {
                tx = store.begin();
                current = committed.clone();
            }
            Op::Scan {
                index,
                eq,
                lower,
                upper,
                desc,
                page,
            } => {
                let (eq, lower, upper) = if index == 2 {
                    (eq, lower, upper)
                } else {
                    (None, None, None)
                };
                let mut range = IndexRange::all();
                if let Some(e) = &eq {
                    range = range.eq(e.clone());
                }
                range.lower = lower.clone();
                range.upper = upper.clone();
                let got = store_scan(&mut tx, index, &range, desc, page);
                let expected = model_scan(&current, index, &eq, &lower, &upper, desc);
                let got_ids: Vec<DocumentId> = got.iter().map(|g| g.0).collect();
                prop_assert_eq!(
                    &got_ids,
                    &expected,
                    "index {} range {:?} desc {}",
                    index,
                    range,
                    desc
                );
                for (id, f) in got {
                    prop_assert_eq!(&f, &current[&id].fields);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn scans_match_the_model_rocksdb(ops in prop::collection::vec(op(), 1..60)) {
        scans_match_the_model_on(Engine::Rocks, ops)?;
    }
}

proptest! {
    // Each case is a database of its own: fewer of them, as long.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn scans_match_the_model_postgres(ops in prop::collection::vec(op(), 1..60)) {
        scans_match_the_model_on(Engine::Postgres, ops)?;
    }
}
