//! Store benchmark: prints commits per second with group commit against single synced
//! writes of the same data, transfer throughput with uniform and Zipf-1.5 (hot) account
//! choice, and scan throughput.
//!
//! `cargo run --release -p bench --bin store -- [SECONDS_PER_SCENARIO]` (default 5).

use bench::{row, run_for, Rng, Zipf};
use model::{obj, DocumentId, Value};
use runtime::store::{IndexRange, Order, Store, StoreError, BY_CREATION_TIME};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const WRITERS: usize = 64;
const ACCOUNTS: usize = 100_000;

fn message(rng: &mut Rng) -> model::Object {
    obj! { "user" => format!("user{}", rng.below(100)), "body" => "x".repeat(120) }
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    println!(
        "store benchmark: {seconds} s per scenario, data in {}",
        dir.path().display()
    );
    println!("{:<48} {:>14} {:<10} note", "scenario", "value", "unit");

    // 1. Durable commits: the store's group commit vs one synced RocksDB write per commit.
    {
        let raw = rocksdb::DB::open_default(dir.path().join("raw")).unwrap();
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        let mut rng = Rng::new(7);
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < duration {
            let doc = model::binary::encode(&Value::Object(message(&mut rng)));
            raw.put_opt(n.to_be_bytes(), doc, &sync).unwrap();
            n += 1;
        }
        row(
            "rocksdb: one synced write per commit, 1 thread",
            n as f64 / start.elapsed().as_secs_f64(),
            "writes/s",
            "storage baseline",
        );
    }
    {
        let store = Store::open(&dir.path().join("commits")).unwrap();
        let (n, took) = run_for(1, duration, |_, rng| {
            store
                .run_mutation(|tx| tx.insert("messages", message(rng)))
                .unwrap();
        });
        row(
            "store: insert commits, 1 client",
            n as f64 / took.as_secs_f64(),
            "commits/s",
            "one fsync each",
        );
        let (n, took) = run_for(WRITERS, duration, |_, rng| {
            store
                .run_mutation(|tx| tx.insert("messages", message(rng)))
                .unwrap();
        });
        row(
            &format!("store: insert commits, {WRITERS} clients"),
            n as f64 / took.as_secs_f64(),
            "commits/s",
            "group commit",
        );
    }

    // 2. Transfers between 100,000 accounts, uniform and Zipf-1.5.
    let store = Store::open(&dir.path().join("bank")).unwrap();
    let accounts: Vec<DocumentId> = (0..ACCOUNTS / 10_000)
        .flat_map(|_| {
            store
                .run_mutation(|tx| -> Result<Vec<DocumentId>, StoreError> {
                    (0..10_000)
                        .map(|_| tx.insert("accounts", obj! { "balance" => 1_000i64 }))
                        .collect()
                })
                .unwrap()
                .value
        })
        .collect();
    let transfer = |from: DocumentId, to: DocumentId| {
        store
            .run_mutation(|tx| -> Result<(), StoreError> {
                let a = tx.get(from)?.unwrap().fields["balance"].as_i64().unwrap();
                let b = tx.get(to)?.unwrap().fields["balance"].as_i64().unwrap();
                tx.patch(
                    from,
                    [("balance".to_string(), Some(Value::from(a - 1)))].into(),
                )?;
                tx.patch(
                    to,
                    [("balance".to_string(), Some(Value::from(b + 1)))].into(),
                )?;
                Ok(())
            })
            .unwrap();
    };
    let zipf = Zipf::new(ACCOUNTS, 1.5);
    for (name, skewed) in [("uniform", false), ("zipf-1.5", true)] {
        let stats = store.stats();
        let (retries0, serial0) = (
            stats.conflict_retries.load(Ordering::Relaxed),
            stats.serial_runs.load(Ordering::Relaxed),
        );
        let (n, took) = run_for(WRITERS, duration, |_, rng| {
            let pick = |rng: &mut Rng| {
                if skewed {
                    zipf.sample(rng)
                } else {
                    rng.below(ACCOUNTS)
                }
            };
            let from = pick(rng);
            let mut to = pick(rng);
            if to == from {
                to = (from + 1) % ACCOUNTS;
            }
            transfer(accounts[from], accounts[to]);
        });
        let retries = stats.conflict_retries.load(Ordering::Relaxed) - retries0;
        let serial = stats.serial_runs.load(Ordering::Relaxed) - serial0;
        row(
            &format!("store: transfers, {name}, {WRITERS} clients"),
            n as f64 / took.as_secs_f64(),
            "commits/s",
            &format!("{retries} conflict retries, {serial} serial runs, 0 failures"),
        );
    }

    // 3. Scans: pages of 1,000 over the 100,000 accounts' creation-time index.
    let start = Instant::now();
    let mut scanned = 0usize;
    let mut passes = 0;
    while start.elapsed() < duration {
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let mut tx = store.begin_read_only();
            let page = tx
                .scan(
                    "accounts",
                    BY_CREATION_TIME,
                    &IndexRange::all(),
                    Order::Asc,
                    1_000,
                    cursor.as_deref(),
                )
                .unwrap();
            scanned += page.documents.len();
            if page.is_done || start.elapsed() >= duration {
                break;
            }
            cursor = page.cursor;
        }
        passes += 1;
    }
    row(
        "store: index scan, pages of 1,000",
        scanned as f64 / start.elapsed().as_secs_f64(),
        "docs/s",
        &format!("{passes} passes started"),
    );
}
