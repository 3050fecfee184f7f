//! The PostgreSQL storage engine: the multi-version model of the RocksDB engine, in tables of
//! a PostgreSQL database the operator already runs and backs up.
//!
//! - `ferrovex_versions (space, key, ts, value)`: every version of every key, the primary key
//!   ordering them by key then commit timestamp; a `NULL` value is a deletion. A read at `ts`
//!   takes, per key, the newest version at or before `ts`.
//! - `ferrovex_log (ts, writes)`: the commit log, one row per commit (the same encoding as the
//!   RocksDB engine's log), which another process can tail.
//! - `ferrovex_lease`: one row naming the writer and its term. The writer takes the lease at
//!   open (waiting out a holder that stopped renewing it), renews it, and every write checks
//!   its term inside the same PostgreSQL transaction: a second server, or a paused old writer
//!   that wakes after another took over, cannot write.
//! - `ferrovex_meta`: the format marker, checked at open.
//!
//! A group of commits is one PostgreSQL transaction, committed with `synchronous_commit` on:
//! durable before `write` returns. The trait is synchronous and called from any thread (the
//! reactor's included), so the engine runs its client on a runtime of its own and each call
//! waits for its task there.

use super::engine::*;
use super::rocks::{decode_log_entry, encode_log_entry};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

/// Written on creation and checked at every open, so a database of something else (or of
/// another format of this engine) is refused.
pub const FORMAT: &[u8] = b"runtime-store-postgres/1";

/// How long a lease lasts without renewal: a writer that died is replaced this long after
/// its last renewal at most.
pub const LEASE_SECONDS: u64 = 10;
/// How often the writer renews its lease (a third of its length: two renewals may fail).
const RENEW_EVERY: Duration = Duration::from_secs(LEASE_SECONDS / 3);
/// Versions the first round trip of a scan reads: most scans a function makes take a page
/// or a point, so a scan starts small, and doubles each round trip up to `SCAN_BATCH_MAX`.
const SCAN_BATCH_FIRST: i64 = 16;
const SCAN_BATCH_MAX: i64 = 1024;
/// Connections to the database: the committer, readers on the blocking pool, the lease.
/// Each keeps its prepared statements (`prepare_cached`): a query text is parsed once per
/// connection, and each call after that is one round trip, not two.
const POOL_SIZE: usize = 16;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement may run (a garbage collection pass included) before the database
/// cancels it.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a call waits for a free connection of the pool.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// How often old versions, log entries and receipts are deleted.
const GC_EVERY: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ferrovex_meta (name text PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE IF NOT EXISTS ferrovex_versions (
    space smallint NOT NULL, key bytea NOT NULL, ts bigint NOT NULL, value bytea,
    PRIMARY KEY (space, key, ts));
CREATE TABLE IF NOT EXISTS ferrovex_log (ts bigint PRIMARY KEY, writes bytea NOT NULL);
CREATE TABLE IF NOT EXISTS ferrovex_lease (
    id smallint PRIMARY KEY CHECK (id = 1), holder text NOT NULL, term bigint NOT NULL,
    expires_at timestamptz NOT NULL);
";

fn err(what: &str) -> impl Fn(tokio_postgres::Error) -> EngineError + '_ {
    move |e| {
        // The server's own message says what it refused; the client's Display alone is
        // often just "db error".
        let detail = e
            .as_db_error()
            .map(|d| format!("{}: {}", d.code().code(), d.message()))
            .unwrap_or_else(|| e.to_string());
        EngineError(format!("PostgreSQL, {what}: {detail}"))
    }
}

fn pool_err(what: &str) -> impl Fn(deadpool_postgres::PoolError) -> EngineError + '_ {
    move |e| EngineError(format!("PostgreSQL, {what}: {e}"))
}

fn space_code(space: Space) -> i16 {
    match space {
        Space::Documents => 0,
        Space::Indexes => 1,
        Space::Catalog => 2,
        Space::Receipts => 3,
    }
}

/// A commit timestamp as PostgreSQL's `bigint` (timestamps are below 2^63).
fn ts_sql(ts: Timestamp) -> i64 {
    i64::try_from(ts).unwrap_or(i64::MAX)
}

/// The connection string as logs may show it: without its password, whether it is in the
/// URL's user part, in its `password` parameter, or a `password=` of a key-value string.
pub fn redacted(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.password().is_some() {
            let _ = parsed.set_password(Some("***"));
        }
        if parsed.query_pairs().any(|(k, _)| k == "password") {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" {
                        "***".into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
        return parsed.to_string();
    }
    url.split_whitespace()
        .map(|part| match part.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => "password=***".to_owned(),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Who holds the writer lease, and in which term.
struct Lease {
    holder: String,
    term: i64,
}

pub struct PgEngine {
    /// Taken out at drop, which may happen on a reactor thread, where a runtime cannot be
    /// dropped in place.
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    latest: AtomicU64,
    horizon: Arc<AtomicU64>,
    lease: Lease,
    /// Set when a renewal found the lease taken by another writer.
    lost: Arc<AtomicBool>,
    stop: Arc<tokio::sync::Notify>,
}

impl PgEngine {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// creates the tables if they are absent, checks the format, and takes the writer lease,
    /// waiting up to `LEASE_SECONDS` for one a stopped writer left.
    pub fn open(url: &str) -> EngineResult<PgEngine> {
        let shown = redacted(url);
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            EngineError(format!(
                "--store {shown}: not a PostgreSQL URL ({e}); write postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            ))
        })?;
        // Durable before visible: whatever the server's or the role's default, a commit
        // returns only once it is on the database's disk.
        let options = format!(
            "{} -c synchronous_commit=on",
            config.get_options().unwrap_or_default()
        );
        config.options(options.trim_start());
        // A database that goes silent (a partition rather than a refused connection) must
        // not hold the committer, or the lease row's lock, for long: connections give up,
        // and the server ends a transaction left open (an old writer cut off mid-commit)
        // so that the next writer can take the lease.
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .tcp_user_timeout(Duration::from_secs(LEASE_SECONDS));
        let options = format!(
            "{} -c idle_in_transaction_session_timeout={} -c statement_timeout={}",
            config.get_options().unwrap_or_default(),
            LEASE_SECONDS * 1000,
            STATEMENT_TIMEOUT.as_millis()
        );
        config.options(options.trim_start());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("postgres")
            .enable_all()
            .build()
            .map_err(|e| EngineError(format!("starting the PostgreSQL client: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| EngineError(format!("PostgreSQL pool: {e}")))?;
        let holder = format!("{}:{}:{:016x}", hostname(), std::process::id(), rand_u64());
        let (latest, term) = block(&runtime, {
            let pool = pool.clone();
            let holder = holder.clone();
            let shown = shown.clone();
            async move {
                let client = pool.get().await.map_err(|e| {
                    EngineError(format!("connecting to PostgreSQL at {shown}: {e}"))
                })?;
                client
                    .batch_execute(SCHEMA)
                    .await
                    .map_err(err("creating the tables"))?;
                check_format(&client, &shown).await?;
                let term = take_lease(&client, &holder, &shown).await?;
                let latest: i64 = client
                    .query_one("SELECT coalesce(max(ts), 0) FROM ferrovex_log", &[])
                    .await
                    .map_err(err("reading the newest commit"))?
                    .get(0);
                Ok((latest as u64, term))
            }
        })?;
        let engine = PgEngine {
            runtime: Some(runtime),
            pool,
            latest: AtomicU64::new(latest),
            horizon: Arc::new(AtomicU64::new(0)),
            lease: Lease { holder, term },
            lost: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(tokio::sync::Notify::new()),
        };
        engine.start_renewing();
        engine.start_collecting();
        Ok(engine)
    }

    /// Refuses every read and write once another server took the lease: this one's
    /// snapshots may lose the versions they need to the new writer's garbage collection.
    fn still_the_writer(&self) -> EngineResult<()> {
        if self.lost.load(AtomicOrdering::Acquire) {
            return Err(EngineError(
                "another server took this database's writer lease: this one serves nothing more (restart it to take the lease back once the other stops)".into(),
            ));
        }
        Ok(())
    }

    fn run<T: Send + 'static>(
        &self,
        task: impl Future<Output = EngineResult<T>> + Send + 'static,
    ) -> EngineResult<T> {
        block(self.runtime(), task)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    fn start_renewing(&self) {
        let (pool, holder, term) = (
            self.pool.clone(),
            self.lease.holder.clone(),
            self.lease.term,
        );
        let (lost, stop) = (self.lost.clone(), self.stop.clone());
        self.runtime().spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(RENEW_EVERY) => {}
                    () = stop.notified() => return,
                }
                let Ok(client) = pool.get().await else {
                    // Unreachable for now: the lease runs out unless a later renewal works.
                    continue;
                };
                match client
                    .execute(
                        "UPDATE ferrovex_lease SET expires_at = now() + make_interval(secs => $3)
                         WHERE id = 1 AND holder = $1 AND term = $2",
                        &[&holder, &term, &(LEASE_SECONDS as f64)],
                    )
                    .await
                {
                    Ok(0) => {
                        tracing::error!(
                            "another writer took the lease on this database (our term {term} ended): this server commits nothing more"
                        );
                        lost.store(true, AtomicOrdering::Release);
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("renewing the writer lease: {e}"),
                }
            }
        });
    }

    /// Deletes, every `GC_EVERY`, versions no reader can see (shadowed at or before the
    /// horizon), log entries past their retention, and old receipts.
    fn start_collecting(&self) {
        let (pool, horizon, stop) = (self.pool.clone(), self.horizon.clone(), self.stop.clone());
        self.runtime().spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(GC_EVERY) => {}
                    () = stop.notified() => return,
                }
                let h = horizon.load(AtomicOrdering::Acquire);
                if let Err(e) = collect(&pool, h).await {
                    tracing::warn!("deleting old versions: {e}");
                }
            }
        });
    }
}

/// The fence: the lease row, locked for the rest of `tx`, must still name this writer's
/// term.
async fn fenced(
    tx: &deadpool_postgres::Transaction<'_>,
    holder: &str,
    term: i64,
) -> EngineResult<()> {
    let statement = tx
        .prepare_cached(LEASE_FOR_UPDATE)
        .await
        .map_err(err("checking the writer lease"))?;
    let lease = tx
        .query_opt(&statement, &[])
        .await
        .map_err(err("checking the writer lease"))?;
    check_lease(lease, holder, term)
}

const LEASE_FOR_UPDATE: &str = "SELECT holder, term FROM ferrovex_lease WHERE id = 1 FOR UPDATE";

/// Whether the lease row read under its lock names this writer's term.
fn check_lease(lease: Option<tokio_postgres::Row>, holder: &str, term: i64) -> EngineResult<()> {
    match lease {
        Some(row) if row.get::<_, String>(0) == holder && row.get::<_, i64>(1) == term => Ok(()),
        Some(row) => Err(EngineError(format!(
            "the writer lease moved to {} (term {}); this server (term {term}) commits nothing more",
            row.get::<_, String>(0),
            row.get::<_, i64>(1)
        ))),
        None => Err(EngineError("the writer lease is gone".into())),
    }
}

/// Runs `task` on `runtime` and waits for it, from any thread: a blocking thread, the
/// committer, or a reactor thread (where a nested `block_on` would panic).
fn block<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    task: impl Future<Output = EngineResult<T>> + Send + 'static,
) -> EngineResult<T> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = sender.send(task.await);
    });
    receiver
        .recv()
        .map_err(|_| EngineError("the PostgreSQL client stopped".into()))?
}

async fn check_format(client: &deadpool_postgres::Client, shown: &str) -> EngineResult<()> {
    let found = client
        .query_opt("SELECT value FROM ferrovex_meta WHERE name = 'format'", &[])
        .await
        .map_err(err("reading the format"))?;
    match found {
        Some(row) => {
            let value: Vec<u8> = row.get(0);
            if value != FORMAT {
                return Err(EngineError(format!(
                    "{shown} holds data of format {:?}, this runtime reads {:?}",
                    String::from_utf8_lossy(&value),
                    String::from_utf8_lossy(FORMAT)
                )));
            }
        }
        None => {
            client
                .execute(
                    "INSERT INTO ferrovex_meta (name, value) VALUES ('format', $1) ON CONFLICT DO NOTHING",
                    &[&FORMAT],
                )
                .await
                .map_err(err("writing the format"))?;
        }
    }
    Ok(())
}

/// Takes the writer lease: free, expired, or (after waiting for it to expire) left by a
/// writer that stopped renewing it. Refuses while a live writer holds it.
async fn take_lease(
    client: &deadpool_postgres::Client,
    holder: &str,
    shown: &str,
) -> EngineResult<i64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(LEASE_SECONDS + 2);
    let mut told = false;
    loop {
        let taken = client
            .query_opt(
                "INSERT INTO ferrovex_lease (id, holder, term, expires_at)
                 VALUES (1, $1, 1, now() + make_interval(secs => $2))
                 ON CONFLICT (id) DO UPDATE
                   SET holder = EXCLUDED.holder, term = ferrovex_lease.term + 1,
                       expires_at = EXCLUDED.expires_at
                   WHERE ferrovex_lease.expires_at < now()
                 RETURNING term",
                &[&holder, &(LEASE_SECONDS as f64)],
            )
            .await
            .map_err(err("taking the writer lease"))?;
        if let Some(row) = taken {
            let term: i64 = row.get(0);
            tracing::info!("writer lease on {shown} taken, term {term}");
            return Ok(term);
        }
        let row = client
            .query_one(
                "SELECT holder, term, extract(epoch FROM expires_at - now())::float8 FROM ferrovex_lease WHERE id = 1",
                &[],
            )
            .await
            .map_err(err("reading the writer lease"))?;
        let (other, term, left): (String, i64, f64) = (row.get(0), row.get(1), row.get(2));
        if tokio::time::Instant::now() >= deadline {
            return Err(EngineError(format!(
                "another server ({other}, term {term}) writes to {shown} and keeps renewing its lease: one database has one writer; stop that server first"
            )));
        }
        if !told {
            tracing::warn!(
                "{shown}: another server ({other}, term {term}) holds the writer lease for {left:.1} s more; waiting for it to expire (a server that stopped leaves it behind)"
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn collect(pool: &Pool, horizon: Timestamp) -> EngineResult<()> {
    let mut client = pool.get().await.map_err(pool_err("collecting"))?;
    let tx = client.transaction().await.map_err(err("collecting"))?;
    let latest: i64 = tx
        .query_one("SELECT coalesce(max(ts), 0) FROM ferrovex_log", &[])
        .await
        .map_err(err("collecting"))?
        .get(0);
    let h = ts_sql(horizon);
    // Versions a newer version at or before the horizon shadows: no reader sees them.
    tx.execute(
        "DELETE FROM ferrovex_versions v WHERE v.ts < $1 AND EXISTS (
           SELECT 1 FROM ferrovex_versions w
           WHERE w.space = v.space AND w.key = v.key AND w.ts > v.ts AND w.ts <= $1)",
        &[&h],
    )
    .await
    .map_err(err("deleting shadowed versions"))?;
    // Deletions at or before the horizon, now with nothing older left to hide.
    tx.execute(
        "DELETE FROM ferrovex_versions WHERE value IS NULL AND ts <= $1",
        &[&h],
    )
    .await
    .map_err(err("deleting old deletions"))?;
    let log_floor = latest.saturating_sub(ts_sql(LOG_RETENTION_NANOS));
    tx.execute("DELETE FROM ferrovex_log WHERE ts < $1", &[&log_floor])
        .await
        .map_err(err("deleting old log entries"))?;
    let receipt_floor = latest.saturating_sub(ts_sql(RECEIPT_RETENTION_NANOS));
    tx.execute(
        "DELETE FROM ferrovex_versions WHERE space = $1 AND ts < $2",
        &[&space_code(Space::Receipts), &receipt_floor],
    )
    .await
    .map_err(err("deleting old receipts"))?;
    tx.commit().await.map_err(err("collecting"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}

fn rand_u64() -> u64 {
    // Only tells two servers on one host apart; a failure leaves the pid to do that.
    getrandom::u64().unwrap_or(0)
}

impl Drop for PgEngine {
    /// Gives the lease back, so the next server need not wait for it to expire.
    fn drop(&mut self) {
        self.stop.notify_waiters();
        let (pool, holder, term) = (
            self.pool.clone(),
            self.lease.holder.clone(),
            self.lease.term,
        );
        let released = block(self.runtime(), async move {
            let release = async {
                let client = pool.get().await.map_err(pool_err("releasing the lease"))?;
                client
                    .execute(
                        "UPDATE ferrovex_lease SET expires_at = now() WHERE id = 1 AND holder = $1 AND term = $2",
                        &[&holder, &term],
                    )
                    .await
                    .map_err(err("releasing the lease"))?;
                Ok(())
            };
            // An unreachable database must not hold up the exit: the lease then runs out.
            tokio::time::timeout(CONNECT_TIMEOUT, release)
                .await
                .map_err(|_| {
                    EngineError("releasing the lease: the database did not answer".into())
                })?
        });
        if let Err(e) = released {
            tracing::warn!("{e}");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The SQL condition and parameters of a key range, from parameter `$first` on.
fn range_sql(range: &KeyRange, first: usize) -> (String, Vec<Vec<u8>>) {
    let mut sql = String::new();
    let mut params = Vec::new();
    let mut n = first;
    match &range.start {
        Bound::Included(s) => {
            sql.push_str(&format!(" AND key >= ${n}"));
            params.push(s.clone());
            n += 1;
        }
        Bound::Excluded(s) => {
            sql.push_str(&format!(" AND key > ${n}"));
            params.push(s.clone());
            n += 1;
        }
        Bound::Unbounded => {}
    }
    match &range.end {
        Bound::Included(e) => {
            sql.push_str(&format!(" AND key <= ${n}"));
            params.push(e.clone());
        }
        Bound::Excluded(e) => {
            sql.push_str(&format!(" AND key < ${n}"));
            params.push(e.clone());
        }
        Bound::Unbounded => {}
    }
    (sql, params)
}

/// One batch of a scan: up to `batch` versions of keys in `range`, each key's newest
/// (at or before `ts`) first; the live entries among the first version of each key, and
/// whether the range may hold more.
async fn scan_batch(
    pool: Pool,
    space: Space,
    range: KeyRange,
    ts: Timestamp,
    order: Order,
    batch: i64,
) -> EngineResult<(Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>)> {
    let client = pool.get().await.map_err(pool_err("scanning"))?;
    let (condition, keys) = range_sql(&range, 4);
    let direction = match order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    let sql = format!(
        "SELECT key, value FROM ferrovex_versions WHERE space = $1 AND ts <= $2{condition}
         ORDER BY key {direction}, ts DESC LIMIT $3"
    );
    let space = space_code(space);
    let ts = ts_sql(ts);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&space, &ts, &batch];
    for key in &keys {
        params.push(key);
    }
    // A handful of texts (by which bounds are given, and the order): cached per connection.
    let statement = client.prepare_cached(&sql).await.map_err(err("scanning"))?;
    let rows = client
        .query(&statement, &params)
        .await
        .map_err(err("scanning"))?;
    let full = rows.len() as i64 == batch;
    let mut live = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    for row in rows {
        let key: Vec<u8> = row.get(0);
        if last.as_deref() == Some(key.as_slice()) {
            continue; // An older version of a key already decided.
        }
        let value: Option<Vec<u8>> = row.get(1);
        if let Some(value) = value {
            live.push((key.clone(), value));
        }
        last = Some(key);
    }
    // A full batch may stop inside the last key's versions: its newest came first, so the
    // key is decided, and the next batch starts past it.
    Ok((live, if full { last } else { None }))
}

/// A scan read in batches as it is consumed.
struct PgScan<'a> {
    engine: &'a PgEngine,
    space: Space,
    range: KeyRange,
    ts: Timestamp,
    order: Order,
    buffered: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    done: bool,
    /// Versions the next round trip reads.
    batch: i64,
}

impl Iterator for PgScan<'_> {
    type Item = EngineResult<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.buffered.next() {
                return Some(Ok(entry));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.engine.still_the_writer() {
                self.done = true;
                return Some(Err(e));
            }
            let batch = self.engine.run(scan_batch(
                self.engine.pool.clone(),
                self.space,
                self.range.clone(),
                self.ts,
                self.order,
                self.batch,
            ));
            self.batch = (self.batch * 2).min(SCAN_BATCH_MAX);
            match batch {
                Ok((entries, resume_after)) => {
                    self.buffered = entries.into_iter();
                    match resume_after {
                        Some(key) => match self.order {
                            Order::Asc => self.range.start = Bound::Excluded(key),
                            Order::Desc => self.range.end = Bound::Excluded(key),
                        },
                        None => self.done = true,
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl StorageEngine for PgEngine {
    fn get(&self, space: Space, key: &[u8], ts: Timestamp) -> EngineResult<Option<Vec<u8>>> {
        self.still_the_writer()?;
        let (pool, key) = (self.pool.clone(), key.to_vec());
        self.run(async move {
            let client = pool.get().await.map_err(pool_err("reading"))?;
            let statement = client
                .prepare_cached(
                    "SELECT value FROM ferrovex_versions WHERE space = $1 AND key = $2 AND ts <= $3
                     ORDER BY ts DESC LIMIT 1",
                )
                .await
                .map_err(err("reading"))?;
            let row = client
                .query_opt(&statement, &[&space_code(space), &key, &ts_sql(ts)])
                .await
                .map_err(err("reading"))?;
            Ok(row.and_then(|row| row.get::<_, Option<Vec<u8>>>(0)))
        })
    }

    fn scan(&self, space: Space, range: &KeyRange, ts: Timestamp, order: Order) -> Scan<'_> {
        Box::new(PgScan {
            engine: self,
            space,
            range: range.clone(),
            ts,
            order,
            buffered: Vec::new().into_iter(),
            done: false,
            batch: SCAN_BATCH_FIRST,
        })
    }

    fn write(&self, commits: &[CommitRecord]) -> EngineResult<()> {
        self.still_the_writer()?;
        let (mut spaces, mut keys, mut stamps, mut values) = (vec![], vec![], vec![], vec![]);
        let (mut log_ts, mut log_entries) = (vec![], vec![]);
        for commit in commits {
            for write in &commit.writes {
                spaces.push(space_code(write.space));
                keys.push(write.key.clone());
                stamps.push(ts_sql(commit.ts));
                values.push(write.value.clone());
            }
            log_ts.push(ts_sql(commit.ts));
            log_entries.push(encode_log_entry(&commit.writes));
        }
        let (pool, holder, term) = (
            self.pool.clone(),
            self.lease.holder.clone(),
            self.lease.term,
        );
        self.run(async move {
            let mut client = pool.get().await.map_err(pool_err("committing"))?;
            let tx = client.transaction().await.map_err(err("committing"))?;
            // Parsed once per connection; later commits find them cached.
            let lease = tx
                .prepare_cached(LEASE_FOR_UPDATE)
                .await
                .map_err(err("checking the writer lease"))?;
            let versions = tx
                .prepare_cached(
                    "INSERT INTO ferrovex_versions (space, key, ts, value)
                     SELECT * FROM unnest($1::smallint[], $2::bytea[], $3::bigint[], $4::bytea[])",
                )
                .await
                .map_err(err("writing versions"))?;
            let log = tx
                .prepare_cached(
                    "INSERT INTO ferrovex_log (ts, writes) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                )
                .await
                .map_err(err("writing the commit log"))?;
            // The fence and both inserts go out together (the client pipelines requests made
            // at once on one connection) and run in that order: one round trip instead of
            // three. A fence that fails rolls the inserts back with the transaction.
            let (lease, _, _) = tokio::try_join!(
                async {
                    tx.query_opt(&lease, &[])
                        .await
                        .map_err(err("checking the writer lease"))
                },
                async {
                    tx.execute(&versions, &[&spaces, &keys, &stamps, &values])
                        .await
                        .map_err(err("writing versions"))
                },
                async {
                    tx.execute(&log, &[&log_ts, &log_entries])
                        .await
                        .map_err(err("writing the commit log"))
                },
            )?;
            check_lease(lease, &holder, term)?;
            tx.commit().await.map_err(err("committing"))
        })?;
        if let Some(last) = commits.last() {
            self.latest.store(last.ts, AtomicOrdering::Release);
        }
        Ok(())
    }

    fn latest_ts(&self) -> Timestamp {
        self.latest.load(AtomicOrdering::Acquire)
    }

    fn log_after(&self, after: Timestamp, limit: usize) -> EngineResult<Vec<CommitRecord>> {
        let pool = self.pool.clone();
        let rows = self.run(async move {
            let client = pool.get().await.map_err(pool_err("reading the log"))?;
            client
                .query(
                    "SELECT ts, writes FROM ferrovex_log WHERE ts > $1 ORDER BY ts LIMIT $2",
                    &[&ts_sql(after), &(limit.min(i64::MAX as usize) as i64)],
                )
                .await
                .map_err(err("reading the log"))
        })?;
        rows.into_iter()
            .map(|row| {
                let ts: i64 = row.get(0);
                let writes: Vec<u8> = row.get(1);
                Ok(CommitRecord {
                    ts: ts as u64,
                    writes: decode_log_entry(&writes)?,
                })
            })
            .collect()
    }

    fn discard_before(&self, horizon: Timestamp) {
        self.horizon.fetch_max(horizon, AtomicOrdering::AcqRel);
    }

    fn compact(&self) -> EngineResult<()> {
        let (pool, horizon) = (
            self.pool.clone(),
            self.horizon.load(AtomicOrdering::Acquire),
        );
        self.run(async move { collect(&pool, horizon).await })
    }

    fn durable_ts(&self) -> EngineResult<Timestamp> {
        self.still_the_writer()?;
        let (pool, holder, term) = (
            self.pool.clone(),
            self.lease.holder.clone(),
            self.lease.term,
        );
        let latest = self.run(async move {
            let mut client = pool
                .get()
                .await
                .map_err(pool_err("reading the newest commit"))?;
            let tx = client
                .transaction()
                .await
                .map_err(err("reading the newest commit"))?;
            // Every write holds the lease row until it commits or aborts: taking it here
            // waits out a commit of ours still in flight, which would otherwise land after
            // this answer and be forgotten.
            fenced(&tx, &holder, term).await?;
            let row = tx
                .query_one("SELECT coalesce(max(ts), 0) FROM ferrovex_log", &[])
                .await
                .map_err(err("reading the newest commit"))?;
            tx.commit()
                .await
                .map_err(err("reading the newest commit"))?;
            Ok(row.get::<_, i64>(0) as u64)
        })?;
        self.latest.store(latest, AtomicOrdering::Release);
        Ok(latest)
    }

    fn size_bytes(&self) -> Option<u64> {
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(pool_err("measuring"))?;
            let row = client
                .query_one(
                    "SELECT (pg_total_relation_size('ferrovex_versions')
                           + pg_total_relation_size('ferrovex_log'))::bigint",
                    &[],
                )
                .await
                .map_err(err("measuring"))?;
            Ok(row.get::<_, i64>(0) as u64)
        })
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_show() {
        for (given, shown) in [
            (
                "postgres://app:s3cret@db:5432/prod",
                "postgres://app:***@db:5432/prod",
            ),
            (
                "postgres://app@db/prod?password=s3cret&sslmode=disable",
                "postgres://app@db/prod?password=***&sslmode=disable",
            ),
            (
                "host=db user=app password=s3cret dbname=prod",
                "host=db user=app password=*** dbname=prod",
            ),
            ("postgres://app@db/prod", "postgres://app@db/prod"),
        ] {
            assert_eq!(redacted(given), shown);
        }
    }
}
