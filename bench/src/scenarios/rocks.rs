//! The storage limit: RocksDB alone, writing the bytes of the same documents with synced
//! writes from one thread and from 64 (RocksDB then groups concurrent writers into one WAL
//! write and one fsync, as the store's committer does).

use super::{Context, BODY_BYTES, CLIENTS};
use crate::report::Row;
use crate::stats::Latency;
use crate::Rng;
use ferrovex_model::{obj, Value};
use std::time::{Duration, Instant};

pub const ONE_WRITER: &str = "rocksdb alone, 1 synced writer";
pub const CHAT: &str = "rocksdb alone, 64 synced writers, 1 doc";
pub const BANK: &str = "rocksdb alone, 64 synced writers, 2 docs";

/// A chat message as the store encodes it.
pub fn message_bytes(rng: &mut Rng) -> Vec<u8> {
    let body = format!("{:-<BODY_BYTES$}", format!("m{}", rng.next_u64()));
    ferrovex_model::binary::encode(&Value::Object(
        obj! { "user" => format!("user{}", rng.below(64)), "body" => body },
    ))
}

fn account_bytes(balance: i64) -> Vec<u8> {
    ferrovex_model::binary::encode(&Value::Object(obj! { "balance" => balance }))
}

/// `threads` writers, each writing `batch(rng)` synced, one after another, for `duration`;
/// latency per write.
fn synced_writes(
    db: &rocksdb::DB,
    threads: usize,
    duration: Duration,
    batch: impl Fn(&mut Rng) -> rocksdb::WriteBatch + Sync,
) -> (Latency, f64) {
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    let start = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (batch, sync) = (&batch, &sync);
                scope.spawn(move || {
                    let mut rng = Rng::new(t as u64 + 100);
                    let mut latencies = Vec::new();
                    // Bounded in count too: 1M writes per thread is far past any disk here.
                    while start.elapsed() < duration && latencies.len() < 1_000_000 {
                        let b = batch(&mut rng);
                        let t0 = Instant::now();
                        db.write_opt(b, sync).expect("a synced RocksDB write");
                        latencies.push(t0.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let took = start.elapsed();
    let rate = latencies.len() as f64 / took.as_secs_f64();
    (Latency::of(latencies), rate)
}

pub fn run(ctx: &mut Context) -> Result<(), String> {
    let dir = ctx.store_dir("rocksdb-alone");
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    // The store's write-ahead log setting, so that the limit is measured with the same disk
    // writes per sync.
    options.set_recycle_log_file_num(ferrovex_runtime::store::rocks::WAL_FILES_RECYCLED);
    let db = rocksdb::DB::open(&options, &dir).map_err(|e| e.to_string())?;
    let duration = ctx.duration();
    let key = |rng: &mut Rng| rng.next_u64().to_be_bytes();
    let chat_message = |rng: &mut Rng| {
        let mut b = rocksdb::WriteBatch::default();
        b.put(key(rng), message_bytes(rng));
        b
    };
    let (latency, rate) = synced_writes(&db, 1, duration.min(Duration::from_secs(2)), chat_message);
    ctx.push(
        Row::new("baseline", ONE_WRITER)
            .throughput(rate)
            .latency(latency)
            .note("one fsync per write: the disk's sync latency"),
    );
    let (latency, rate) = synced_writes(&db, CLIENTS, duration, chat_message);
    ctx.push(
        Row::new("baseline", CHAT)
            .throughput(rate)
            .latency(latency)
            .note("a chat message's bytes per write; RocksDB groups concurrent synced writes"),
    );
    let (latency, rate) = synced_writes(&db, CLIENTS, duration, |rng| {
        let mut b = rocksdb::WriteBatch::default();
        b.put(key(rng), account_bytes(1_000 - rng.below(10) as i64));
        b.put(key(rng), account_bytes(1_000 + rng.below(10) as i64));
        b
    });
    ctx.push(
        Row::new("baseline", BANK)
            .throughput(rate)
            .latency(latency)
            .note("two accounts' bytes per write batch"),
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
