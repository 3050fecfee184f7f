//! Many threads run conflicting transfers between a few accounts, half of them through the
//! blocking driver (`Store::run_mutation`) and half through the async one
//! (`Store::run_mutation_async`, as WebSocket sessions do, its first attempt inline, over
//! PostgreSQL too, since the accounts' reads are answered from memory; one transfer in five
//! says its inline attempt ran long
//! after writing, which must be thrown away and made again on the blocking pool). The total
//! is conserved, every committed transfer is reflected, no transfer fails on conflict, and a
//! checker over the recorded history finds no serializability violation: replaying the
//! committed transfers in commit-timestamp order, each one read exactly the versions that
//! were current just before it.

use ferrovex_model::{obj, DocumentId, Value};
use ferrovex_runtime::store::{IndexRange, Order, Store, StoreError, Transaction, BY_ID};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const ACCOUNTS: usize = 6;
const THREADS: usize = 8;
const TRANSFERS_PER_THREAD: usize = 150;
const INITIAL: i64 = 1_000;

#[derive(Debug, Clone)]
struct Transfer {
    ts: u64,
    from: DocumentId,
    to: DocumentId,
    amount: i64,
    /// The (balance, version) of each account as this transfer read them.
    read_from: (i64, i64),
    read_to: (i64, i64),
}

fn read_account(
    tx: &mut ferrovex_runtime::store::Transaction,
    id: DocumentId,
) -> Result<(i64, i64), StoreError> {
    let doc = tx.get(id)?.expect("accounts are never deleted");
    Ok((
        doc.fields["balance"].as_i64().unwrap(),
        doc.fields["version"].as_i64().unwrap(),
    ))
}

/// How a worker runs its transfers: blocking, or awaited on `runtime`.
#[derive(Clone, Copy)]
enum Driver<'r> {
    Blocking,
    Async(&'r tokio::runtime::Runtime),
}

fn transfer(
    store: &Arc<Store>,
    driver: Driver,
    from: DocumentId,
    to: DocumentId,
    amount: i64,
) -> Transfer {
    let body = move |tx: &mut Transaction| -> Result<_, StoreError> {
        let read_from = read_account(tx, from)?;
        let read_to = read_account(tx, to)?;
        tx.replace(
            from,
            obj! { "balance" => read_from.0 - amount, "version" => read_from.1 + 1 },
        )?;
        tx.replace(
            to,
            obj! { "balance" => read_to.0 + amount, "version" => read_to.1 + 1 },
        )?;
        if tx.runs_inline() && amount % 5 == 0 {
            // What the host does when a call runs long inline, here after the writes: were
            // this attempt committed, the replay below would find a version nobody read.
            tx.mark_overran();
        }
        Ok((read_from, read_to))
    };
    let committed = match driver {
        Driver::Blocking => store.run_mutation_of(Some("transfer"), body),
        Driver::Async(runtime) => {
            runtime.block_on(store.run_mutation_async("transfer", true, body))
        }
    }
    .expect("a transfer never fails: conflicts end in a serial run, not an error");
    Transfer {
        ts: committed.ts,
        from,
        to,
        amount,
        read_from: committed.value.0,
        read_to: committed.value.1,
    }
}

engine_test! {
fn conflicting_transfers_are_serializable_and_conserve_the_total(engine: Engine) {
    let (store, _dir) = engine.temp_store();
    let store = Arc::new(store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let accounts: Vec<DocumentId> = store
        .run_mutation(|tx| -> Result<_, StoreError> {
            (0..ACCOUNTS)
                .map(|_| tx.insert("accounts", obj! { "balance" => INITIAL, "version" => 0i64 }))
                .collect()
        })
        .unwrap()
        .value;

    let writers_done = AtomicBool::new(false);
    let history: Vec<Transfer> = std::thread::scope(|scope| {
        // An auditor reads every account in one snapshot while transfers run: the total
        // must be exact in every snapshot.
        let auditor = scope.spawn(|| {
            let mut audits = 0;
            while !writers_done.load(Ordering::Acquire) || audits == 0 {
                let mut tx = store.begin_read_only();
                let docs = tx
                    .query("accounts", BY_ID, &IndexRange::all(), Order::Asc, 100)
                    .unwrap();
                let total: i64 = docs
                    .iter()
                    .map(|d| d.fields["balance"].as_i64().unwrap())
                    .sum();
                assert_eq!(
                    total,
                    INITIAL * ACCOUNTS as i64,
                    "a snapshot showed a partial transfer"
                );
                audits += 1;
            }
            audits
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, accounts) = (&store, &accounts);
                let driver = if t % 2 == 0 {
                    Driver::Blocking
                } else {
                    Driver::Async(&runtime)
                };
                scope.spawn(move || {
                    let mut rng = 0x9E37_79B9u64 * (t as u64 + 1);
                    let mut next = move || {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng
                    };
                    (0..TRANSFERS_PER_THREAD)
                        .map(|_| {
                            let from = accounts[next() as usize % ACCOUNTS];
                            let mut to = accounts[next() as usize % ACCOUNTS];
                            if to == from {
                                to = accounts[(accounts.iter().position(|a| *a == from).unwrap()
                                    + 1)
                                    % ACCOUNTS];
                            }
                            transfer(store, driver, from, to, (next() % 50) as i64 + 1)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let history = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        writers_done.store(true, Ordering::Release);
        assert!(auditor.join().unwrap() > 0);
        history
    });

    assert_eq!(
        history.len(),
        THREADS * TRANSFERS_PER_THREAD,
        "every transfer committed"
    );
    let stats = store.stats();
    println!(
        "committed {} retries {} serial {}",
        stats.committed.load(Ordering::Relaxed),
        stats.conflict_retries.load(Ordering::Relaxed),
        stats.serial_runs.load(Ordering::Relaxed)
    );
    // Over PostgreSQL too: the accounts were written by this store, so their reads are
    // answered from memory and the attempts run inline (`inline_attempts_over_the_network`).
    let overruns = stats.inline_overruns.load(Ordering::Relaxed);
    assert!(overruns > 0, "no inline attempt was thrown away");

    // Replay in commit order: each transfer must have read the then-current state.
    let mut sorted = history.clone();
    sorted.sort_by_key(|t| t.ts);
    for pair in sorted.windows(2) {
        assert!(pair[0].ts < pair[1].ts, "commit timestamps are unique");
    }
    let mut state: HashMap<DocumentId, (i64, i64)> =
        accounts.iter().map(|a| (*a, (INITIAL, 0))).collect();
    for t in &sorted {
        assert_eq!(
            state[&t.from], t.read_from,
            "transfer at {} read a stale 'from' (not serializable)",
            t.ts
        );
        assert_eq!(
            state[&t.to], t.read_to,
            "transfer at {} read a stale 'to' (not serializable)",
            t.ts
        );
        let f = state.get_mut(&t.from).unwrap();
        *f = (f.0 - t.amount, f.1 + 1);
        let to = state.get_mut(&t.to).unwrap();
        *to = (to.0 + t.amount, to.1 + 1);
    }
    // The store's final state is exactly the replay's: every committed transfer is reflected.
    let mut tx = store.begin_read_only();
    for (id, (balance, version)) in &state {
        let doc = tx.get(*id).unwrap().unwrap();
        assert_eq!(doc.fields["balance"], Value::Int64(*balance));
        assert_eq!(doc.fields["version"], Value::Int64(*version));
    }
    let total: i64 = state.values().map(|s| s.0).sum();
    assert_eq!(total, INITIAL * ACCOUNTS as i64);
}
}

/// What each attempt of a mutation saw: whether it ran inline, how many attempts before it
/// went to a commit, and how its read went.
type Seen = Arc<std::sync::Mutex<Vec<(bool, u32, Result<(), String>)>>>;

engine_test! {
fn inline_attempts_over_the_network(engine: Engine) {
    // An inline attempt must not wait on the network. Over PostgreSQL it stops at its first
    // read that memory does not answer, and is made again on the blocking pool; one that
    // reads nothing there runs to its end inline. Over RocksDB every read runs inline.
    let location = engine.location();
    let id = {
        let store = location.open();
        let mut tx = store.begin();
        let id = tx.insert("accounts", obj! { "balance" => 1i64 }).unwrap();
        store.commit(tx).unwrap();
        id
    };
    // Reopened: nothing of the document is in memory, so reading it asks the engine.
    let store = Arc::new(location.open());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = |read: bool| -> Vec<(bool, u32, Result<(), String>)> {
        let seen: Seen = Arc::default();
        let body = {
            let seen = seen.clone();
            move |tx: &mut Transaction| -> Result<(), StoreError> {
                let outcome = if read { tx.get(id).map(|_| ()) } else { Ok(()) };
                let shown = outcome.as_ref().map(|_| ()).map_err(|e| e.to_string());
                seen.lock()
                    .unwrap()
                    .push((tx.runs_inline(), tx.earlier_attempts(), shown));
                outcome?;
                tx.insert("log", obj! { "read" => read })?;
                Ok(())
            }
        };
        runtime
            .block_on(store.run_mutation_async("transfer", true, body))
            .unwrap();
        let seen = seen.lock().unwrap().clone();
        seen
    };
    let network_reads = || store.stats().inline_network_reads.load(Ordering::Relaxed);

    assert_eq!(run(false), [(true, 0, Ok(()))], "nothing read: one attempt, inline");
    let attempts = run(true);
    match engine {
        crate::Engine::Rocks => {
            assert_eq!(attempts, [(true, 0, Ok(()))]);
            assert_eq!(network_reads(), 0);
        }
        crate::Engine::Postgres => {
            assert_eq!(attempts.len(), 2, "{attempts:?}");
            let (inline, earlier, stopped) = &attempts[0];
            assert!(*inline);
            assert_eq!(*earlier, 0);
            assert!(
                stopped.as_ref().unwrap_err().contains("waits on the network"),
                "{stopped:?}"
            );
            // The stopped attempt committed nothing, so it is not an earlier one.
            assert_eq!(attempts[1], (false, 0, Ok(())), "made again on the pool");
            assert_eq!(network_reads(), 1);
        }
    }
    let mut tx = store.begin();
    let logged = tx
        .query("log", BY_ID, &IndexRange::all(), Order::Asc, 10)
        .unwrap();
    assert_eq!(logged.len(), 2, "each mutation committed once");
}
}
