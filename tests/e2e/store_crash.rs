//! A child process commits under load and is killed with SIGKILL at arbitrary points, again
//! and again. After each kill the store is reopened: every acknowledged commit is present,
//! and no transaction is partly visible.

use ferrovex_runtime::store::{IndexRange, Order, Store, BY_ID};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const ROUNDS: u64 = 20;
const THREADS: i64 = 4;

/// Every `seq` of one table for each thread, checking none repeats.
fn seqs_by_thread(store: &Store, table: &str) -> BTreeMap<i64, BTreeSet<i64>> {
    let mut tx = store.begin_read_only();
    let mut out: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let page = tx
            .scan(
                table,
                BY_ID,
                &IndexRange::all(),
                Order::Asc,
                1000,
                cursor.as_deref(),
            )
            .unwrap();
        for doc in &page.documents {
            let thread = doc.fields["thread"].as_i64().unwrap();
            let seq = doc.fields["seq"].as_i64().unwrap();
            assert!(
                out.entry(thread).or_default().insert(seq),
                "{table}: seq {seq} of thread {thread} twice"
            );
        }
        if page.is_done {
            return out;
        }
        cursor = page.cursor;
        // A fresh transaction per page keeps each one under the read limits.
        tx = store.begin_read_only();
    }
}

#[test]
fn acknowledged_commits_survive_sigkill_and_no_transaction_is_partial() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut acknowledged: BTreeMap<i64, i64> = BTreeMap::new();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..ROUNDS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Kill after a varying number of acknowledgements: commits are in flight at that
        // moment, in every phase of the commit path.
        let kill_after = 20 + rng % 200;
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-child"))
            .arg(&data)
            .arg(THREADS.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start child");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for _ in 0..kill_after {
            let line = lines.next().expect("child output").expect("line");
            let mut parts = line
                .split_whitespace()
                .skip(1)
                .map(|p| p.parse::<i64>().unwrap());
            let (thread, seq) = (parts.next().unwrap(), parts.next().unwrap());
            let highest = acknowledged.entry(thread).or_insert(0);
            *highest = (*highest).max(seq);
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        drop(lines);

        let store = Store::open(&data).expect("reopen after kill");
        let left = seqs_by_thread(&store, "left");
        let right = seqs_by_thread(&store, "right");
        let mut tx = store.begin_read_only();
        let counters = tx
            .query("counters", BY_ID, &IndexRange::all(), Order::Asc, 100)
            .unwrap();
        for doc in counters {
            let thread = doc.fields["thread"].as_i64().unwrap();
            let count = doc.fields["count"].as_i64().unwrap();
            let expected: BTreeSet<i64> = (1..=count).collect();
            // All three writes of a transaction are there, or none is.
            assert_eq!(
                left.get(&thread).cloned().unwrap_or_default(),
                expected,
                "round {round} thread {thread}: left"
            );
            assert_eq!(
                right.get(&thread).cloned().unwrap_or_default(),
                expected,
                "round {round} thread {thread}: right"
            );
            let acked = acknowledged.get(&thread).copied().unwrap_or(0);
            assert!(
                count >= acked,
                "round {round} thread {thread}: acknowledged {acked}, only {count} survived"
            );
        }
        for (thread, acked) in &acknowledged {
            assert!(
                left.get(thread).is_some_and(|s| s.contains(acked)),
                "round {round}: ack {thread}/{acked} lost"
            );
        }
    }
    assert!(acknowledged.values().sum::<i64>() >= (ROUNDS * 20) as i64);
}
