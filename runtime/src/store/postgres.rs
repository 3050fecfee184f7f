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
//! - `ferrovex_nodes`: the nodes of a deployment (`PgEngine::open_node`): each one's address,
//!   role, applied commit and read horizon, written by its heartbeat. Garbage collection keeps
//!   every version a live node may still read; a node away longer than `NODE_EXPIRY` is
//!   no longer waited for, and must start again.
//!
//! A group of commits is one PostgreSQL transaction, committed with `synchronous_commit` on:
//! durable before `write` returns. The trait is synchronous and called from any thread (the
//! reactor's included), so the engine runs its client on a runtime of its own and each call
//! waits for its task there.

use super::commit_wire::{decode_log_entry, encode_log_entry};
use super::engine::*;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering as AtomicOrdering};
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
/// Connections for reads (functions and live queries on the blocking pool). Each keeps its
/// prepared statements (`prepare_cached`): a query text is parsed once per connection, and
/// each call after that is one round trip, not two.
const POOL_SIZE: usize = 16;
/// Connections for the committer's writes and a follower's log tail, apart from the reads:
/// a burst of reads (a live query re-reading a thousand documents on each of many nodes)
/// must not hold up commits or the log.
const WRITE_POOL_SIZE: usize = 2;
/// Connections for the lease, the heartbeat and garbage collection, apart from everything
/// else: when reads saturate their pool, a renewal that waited behind them could let the
/// lease expire under a healthy leader.
const CONTROL_POOL_SIZE: usize = 2;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement may run (a garbage collection pass included) before the database
/// cancels it.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a call waits for a free connection of the pool.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// How often old versions, log entries and receipts are deleted.
const GC_EVERY: Duration = Duration::from_secs(30);
/// How often a node writes its row of `ferrovex_nodes` (and a follower looks at the lease).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A node whose heartbeat is older than this is no longer kept by garbage collection: what
/// it was reading may be deleted, so a node that comes back after longer must start again.
pub const NODE_EXPIRY: Duration = Duration::from_secs(30);
/// A follower reads only while its last heartbeat is younger than this (half of
/// `NODE_EXPIRY`): then garbage collection still keeps what it reads.
pub const READ_COVER: Duration = Duration::from_secs(15);
/// Rows of nodes not seen for this long are deleted from `ferrovex_nodes`.
const NODE_FORGOTTEN: Duration = Duration::from_secs(3600);
/// The advisory lock a collection holds, and a node takes while it registers: a collection
/// either sees the new node's horizon or finished before the node read anything.
const NODES_LOCK: i64 = 0x6665_7272_6f76_6578;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ferrovex_meta (name text PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE IF NOT EXISTS ferrovex_versions (
    space smallint NOT NULL, key bytea NOT NULL, ts bigint NOT NULL, value bytea,
    PRIMARY KEY (space, key, ts));
CREATE TABLE IF NOT EXISTS ferrovex_log (ts bigint PRIMARY KEY, writes bytea NOT NULL);
CREATE TABLE IF NOT EXISTS ferrovex_lease (
    id smallint PRIMARY KEY CHECK (id = 1), holder text NOT NULL, term bigint NOT NULL,
    expires_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS ferrovex_nodes (
    id text PRIMARY KEY, address text NOT NULL, role text NOT NULL,
    applied bigint NOT NULL, horizon bigint NOT NULL, behind bigint NOT NULL,
    started_at timestamptz NOT NULL, seen_at timestamptz NOT NULL);
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

/// What the engine and its node's handle (`PgNode`) share.
struct NodeState {
    /// This process's name in the lease (`holder`) and in `ferrovex_nodes`.
    id: String,
    /// The database, as logs may show it.
    shown: String,
    /// The term of the writer lease this process holds; 0 while it holds none.
    term: AtomicI64,
    /// Set when a renewal found the lease taken by another writer.
    lost: AtomicBool,
    stop: tokio::sync::Notify,
    /// The oldest timestamp this process's readers may read at (`discard_before`).
    horizon: AtomicU64,
    /// Whether this process has a row in `ferrovex_nodes` (opened with `open_node`).
    registered: bool,
    started: std::time::Instant,
    /// Until when (milliseconds after `started`) a follower's reads are safe from garbage
    /// collection: `READ_COVER` after its last heartbeat.
    covered_until_ms: AtomicU64,
    /// When (milliseconds after `started`) the lease was last taken or renewed: a writer that
    /// has not renewed it for `LEASE_SECONDS` (paused, cut off) may have lost it to a node
    /// whose garbage collection does not keep what this one reads, so it reads nothing.
    renewed_at_ms: AtomicU64,
}

impl NodeState {
    fn term(&self) -> i64 {
        self.term.load(AtomicOrdering::Acquire)
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

pub struct PgEngine {
    /// Taken out at drop, which may happen on a reactor thread, where a runtime cannot be
    /// dropped in place.
    runtime: Option<tokio::runtime::Runtime>,
    /// Reads.
    pool: Pool,
    /// Commits and the log.
    writes: Pool,
    /// The lease, the heartbeat, garbage collection.
    control: Pool,
    latest: AtomicU64,
    node: Arc<NodeState>,
}

/// A node's view of its deployment, read by its heartbeat.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// The writer lease: its holder, term, and seconds until it expires (negative: expired).
    pub lease: Option<(String, i64, f64)>,
    pub nodes: Vec<NodeRow>,
    /// How long this node had not been seen before this heartbeat (seconds), `None` when its
    /// row was gone: longer than `NODE_EXPIRY` means garbage collection stopped keeping what
    /// it reads.
    pub away_seconds: Option<f64>,
}

/// One row of `ferrovex_nodes`.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRow {
    pub id: String,
    pub address: String,
    pub role: String,
    pub applied: Timestamp,
    /// How far the log's newest commit was past `applied` at its last heartbeat (commit
    /// timestamps are nanoseconds: this is the lag in time).
    pub behind: u64,
    pub seen_seconds_ago: f64,
    pub started_seconds_ago: f64,
}

/// What a node's heartbeat writes about it.
#[derive(Clone, Debug)]
pub struct NodeReport {
    pub address: String,
    pub role: &'static str,
    pub applied: Timestamp,
    pub horizon: Timestamp,
}

/// The handle of a node opened with [`PgEngine::open_node`]: its heartbeat, and taking the
/// lease when it is free.
#[derive(Clone)]
pub struct PgNode {
    pool: Pool,
    handle: tokio::runtime::Handle,
    node: Arc<NodeState>,
}

impl PgNode {
    pub fn id(&self) -> &str {
        &self.node.id
    }

    /// The term of the lease this node holds (0: none).
    pub fn term(&self) -> i64 {
        self.node.term()
    }

    /// Whether this node held the lease and another took it.
    pub fn lost(&self) -> bool {
        self.node.lost.load(AtomicOrdering::Acquire)
    }

    /// Writes this node's row and reads the lease and every node's row.
    pub fn heartbeat(&self, report: &NodeReport) -> EngineResult<ClusterView> {
        let (pool, node, report) = (self.pool.clone(), self.node.clone(), report.clone());
        let before_ms = self.node.elapsed_ms();
        let view = block(&self.handle, async move {
            let client = pool.get().await.map_err(pool_err("heartbeat"))?;
            let away = client
                .query_one(
                    "WITH prev AS (SELECT seen_at FROM ferrovex_nodes WHERE id = $1)
                     INSERT INTO ferrovex_nodes (id, address, role, applied, horizon, behind, started_at, seen_at)
                     VALUES ($1, $2, $3, $4, $5,
                             (SELECT greatest(0, coalesce(max(ts), 0) - $4) FROM ferrovex_log),
                             now(), now())
                     ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, role = EXCLUDED.role,
                       applied = EXCLUDED.applied, horizon = EXCLUDED.horizon,
                       behind = EXCLUDED.behind, seen_at = now()
                     RETURNING (SELECT extract(epoch FROM now() - seen_at)::float8 FROM prev)",
                    &[
                        &node.id,
                        &report.address,
                        &report.role,
                        &ts_sql(report.applied),
                        &ts_sql(report.horizon),
                    ],
                )
                .await
                .map_err(err("heartbeat"))?
                .get::<_, Option<f64>>(0);
            let lease = client
                .query_opt(
                    "SELECT holder, term, extract(epoch FROM expires_at - now())::float8 FROM ferrovex_lease WHERE id = 1",
                    &[],
                )
                .await
                .map_err(err("reading the lease"))?
                .map(|row| (row.get(0), row.get(1), row.get(2)));
            let nodes = client
                .query(
                    "SELECT id, address, role, applied, behind, extract(epoch FROM now() - seen_at)::float8,
                            extract(epoch FROM now() - started_at)::float8
                     FROM ferrovex_nodes ORDER BY started_at, id",
                    &[],
                )
                .await
                .map_err(err("reading the nodes"))?
                .into_iter()
                .map(|row| NodeRow {
                    id: row.get(0),
                    address: row.get(1),
                    role: row.get(2),
                    applied: row.get::<_, i64>(3) as u64,
                    behind: row.get::<_, i64>(4) as u64,
                    seen_seconds_ago: row.get(5),
                    started_seconds_ago: row.get(6),
                })
                .collect();
            Ok(ClusterView {
                lease,
                nodes,
                away_seconds: away,
            })
        })?;
        // Covered from when this heartbeat was sent (its `seen_at` is no earlier), unless it
        // was away so long that garbage collection stopped keeping what it reads: then it
        // stays uncovered (the node stops).
        let kept = view
            .away_seconds
            .is_some_and(|s| s <= NODE_EXPIRY.as_secs_f64());
        if kept {
            self.node.covered_until_ms.store(
                before_ms + READ_COVER.as_millis() as u64,
                AtomicOrdering::Release,
            );
        }
        Ok(view)
    }

    /// Takes the writer lease if it is free or expired (one attempt): then this node writes,
    /// renews the lease and collects garbage. `Ok(None)` while another holds it.
    pub fn try_take_lease(&self) -> EngineResult<Option<i64>> {
        if self.term() != 0 {
            return Ok(Some(self.term()));
        }
        let (pool, id) = (self.pool.clone(), self.node.id.clone());
        let term = block(&self.handle, async move {
            let client = pool
                .get()
                .await
                .map_err(pool_err("taking the writer lease"))?;
            try_lease(&client, &id).await
        })?;
        if let Some(term) = term {
            self.node
                .renewed_at_ms
                .store(self.node.elapsed_ms(), AtomicOrdering::Release);
            self.node.term.store(term, AtomicOrdering::Release);
            tracing::info!("writer lease on {} taken, term {term}", self.node.shown);
            start_renewing(&self.handle, self.pool.clone(), self.node.clone());
            start_collecting(&self.handle, self.pool.clone(), self.node.clone());
        }
        Ok(term)
    }
}

impl PgEngine {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// creates the tables if they are absent, checks the format, and takes the writer lease,
    /// waiting up to `LEASE_SECONDS` for one a stopped writer left.
    pub fn open(url: &str) -> EngineResult<PgEngine> {
        Self::open_with(url, false)
    }

    /// Opens the database as one node of a deployment: registered in `ferrovex_nodes` before
    /// it reads anything, and the writer if the lease is free or expired, a follower (no
    /// lease: reads only, see [`PgEngine::node`]) otherwise.
    pub fn open_node(url: &str) -> EngineResult<PgEngine> {
        Self::open_with(url, true)
    }

    /// The handle of a node opened with [`PgEngine::open_node`].
    pub fn node(&self) -> PgNode {
        PgNode {
            pool: self.control.clone(),
            handle: self.runtime().handle().clone(),
            node: self.node.clone(),
        }
    }

    /// Whether this engine holds the writer lease.
    pub fn is_writer(&self) -> bool {
        self.node.term() != 0
    }

    fn open_with(url: &str, as_node: bool) -> EngineResult<PgEngine> {
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
        let pool_of = |size: usize| {
            let manager = Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size)
                .wait_timeout(Some(POOL_WAIT))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| EngineError(format!("PostgreSQL pool: {e}")))
        };
        let (pool, writes, control) = (
            pool_of(POOL_SIZE)?,
            pool_of(WRITE_POOL_SIZE)?,
            pool_of(CONTROL_POOL_SIZE)?,
        );
        let holder = format!("{}:{}:{:016x}", hostname(), std::process::id(), rand_u64());
        let (latest, term) = block(runtime.handle(), {
            let pool = control.clone();
            let holder = holder.clone();
            let shown = shown.clone();
            async move {
                let mut client = pool.get().await.map_err(|e| {
                    EngineError(format!("connecting to PostgreSQL at {shown}: {e}"))
                })?;
                client
                    .batch_execute(SCHEMA)
                    .await
                    .map_err(err("creating the tables"))?;
                check_format(&client, &shown).await?;
                let term = if as_node {
                    register(&mut client, &holder).await?;
                    try_lease(&client, &holder).await?.unwrap_or(0)
                } else {
                    take_lease(&client, &holder, &shown).await?
                };
                let latest: i64 = client
                    .query_one("SELECT coalesce(max(ts), 0) FROM ferrovex_log", &[])
                    .await
                    .map_err(err("reading the newest commit"))?
                    .get(0);
                Ok((latest as u64, term))
            }
        })?;
        if term != 0 {
            tracing::info!("writer lease on {shown} taken, term {term}");
        }
        let started = std::time::Instant::now();
        let node = Arc::new(NodeState {
            id: holder,
            shown,
            term: AtomicI64::new(term),
            lost: AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
            horizon: AtomicU64::new(0),
            registered: as_node,
            started,
            covered_until_ms: AtomicU64::new(READ_COVER.as_millis() as u64),
            renewed_at_ms: AtomicU64::new(0),
        });
        if term != 0 {
            start_renewing(runtime.handle(), control.clone(), node.clone());
            start_collecting(runtime.handle(), control.clone(), node.clone());
        }
        Ok(PgEngine {
            runtime: Some(runtime),
            pool,
            writes,
            control,
            latest: AtomicU64::new(latest),
            node,
        })
    }

    /// Refuses every read and write once another server took the lease: this one's
    /// snapshots may lose the versions they need to the new writer's garbage collection. A
    /// follower reads only while its heartbeat keeps garbage collection away (`READ_COVER`).
    fn may_read(&self) -> EngineResult<()> {
        if self.node.lost.load(AtomicOrdering::Acquire) {
            return Err(EngineError(
                "another server took this database's writer lease: this one serves nothing more (restart it to take the lease back once the other stops)".into(),
            ));
        }
        if self.node.term() != 0
            && self.node.elapsed_ms()
                > self.node.renewed_at_ms.load(AtomicOrdering::Acquire) + LEASE_SECONDS * 1000
        {
            return Err(EngineError(format!(
                "this server has not renewed its writer lease on {} for over {LEASE_SECONDS} s: another may have taken it, so it reads nothing until a renewal says it still holds it",
                self.node.shown
            )));
        }
        if self.node.term() == 0
            && self.node.elapsed_ms() > self.node.covered_until_ms.load(AtomicOrdering::Acquire)
        {
            return Err(EngineError(format!(
                "this node has not written its heartbeat to {} for over {READ_COVER:?}: what it reads may have been collected, so it reads nothing until the database answers again",
                self.node.shown
            )));
        }
        Ok(())
    }

    /// The term of the writer lease, for a write; refused without one.
    fn writer_term(&self) -> EngineResult<i64> {
        self.may_read()?;
        match self.node.term() {
            0 => Err(EngineError(
                "this node holds no writer lease (it follows the leader): it commits nothing itself".into(),
            )),
            term => Ok(term),
        }
    }

    fn run<T: Send + 'static>(
        &self,
        task: impl Future<Output = EngineResult<T>> + Send + 'static,
    ) -> EngineResult<T> {
        block(self.runtime().handle(), task)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }
}

/// Renews the lease every `RENEW_EVERY` until it is lost or the engine closes.
fn start_renewing(handle: &tokio::runtime::Handle, pool: Pool, node: Arc<NodeState>) {
    let term = node.term();
    handle.spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(RENEW_EVERY) => {}
                () = node.stop.notified() => return,
            }
            let Ok(client) = pool.get().await else {
                // Unreachable for now: the lease runs out unless a later renewal works.
                continue;
            };
            match client
                .execute(
                    "UPDATE ferrovex_lease SET expires_at = now() + make_interval(secs => $3)
                     WHERE id = 1 AND holder = $1 AND term = $2",
                    &[&node.id, &term, &(LEASE_SECONDS as f64)],
                )
                .await
            {
                Ok(0) => {
                    tracing::error!(
                        "another writer took the lease on this database (our term {term} ended): this server commits nothing more"
                    );
                    node.lost.store(true, AtomicOrdering::Release);
                    return;
                }
                Ok(_) => node
                    .renewed_at_ms
                    .store(node.elapsed_ms(), AtomicOrdering::Release),
                Err(e) => tracing::warn!("renewing the writer lease: {e}"),
            }
        }
    });
}

/// Deletes, every `GC_EVERY`, versions no reader can see (shadowed at or before the
/// horizon), log entries past their retention, and old receipts.
fn start_collecting(handle: &tokio::runtime::Handle, pool: Pool, node: Arc<NodeState>) {
    handle.spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(GC_EVERY) => {}
                () = node.stop.notified() => return,
            }
            let h = node.horizon.load(AtomicOrdering::Acquire);
            if let Err(e) = collect(&pool, h).await {
                tracing::warn!("deleting old versions: {e}");
            }
        }
    });
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
    runtime: &tokio::runtime::Handle,
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
        if let Some(term) = try_lease(client, holder).await? {
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

/// One attempt at the writer lease: taken if free or expired (the term goes up by one).
async fn try_lease(client: &deadpool_postgres::Client, holder: &str) -> EngineResult<Option<i64>> {
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
    Ok(taken.map(|row| row.get(0)))
}

/// Puts a new node in `ferrovex_nodes` with the newest commit as its horizon, under the lock
/// a collection holds: no collection that missed the row can run after the node's first read.
async fn register(client: &mut deadpool_postgres::Client, id: &str) -> EngineResult<()> {
    let tx = client
        .transaction()
        .await
        .map_err(err("registering the node"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&NODES_LOCK])
        .await
        .map_err(err("registering the node"))?;
    tx.execute(
        "INSERT INTO ferrovex_nodes (id, address, role, applied, horizon, behind, started_at, seen_at)
         SELECT $1, '', 'starting', m, m, 0, now(), now()
         FROM (SELECT coalesce(max(ts), 0) AS m FROM ferrovex_log) newest",
        &[&id],
    )
    .await
    .map_err(err("registering the node"))?;
    tx.commit().await.map_err(err("registering the node"))
}

async fn collect(pool: &Pool, horizon: Timestamp) -> EngineResult<()> {
    let mut client = pool.get().await.map_err(pool_err("collecting"))?;
    let tx = client.transaction().await.map_err(err("collecting"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&NODES_LOCK])
        .await
        .map_err(err("collecting"))?;
    let latest: i64 = tx
        .query_one("SELECT coalesce(max(ts), 0) FROM ferrovex_log", &[])
        .await
        .map_err(err("collecting"))?
        .get(0);
    // What every live node may still read (a node's horizon is at most what it has applied,
    // so the log it has yet to apply is kept too).
    let nodes: i64 = tx
        .query_one(
            "SELECT coalesce(min(horizon), $1) FROM ferrovex_nodes
             WHERE seen_at > now() - make_interval(secs => $2)",
            &[&i64::MAX, &NODE_EXPIRY.as_secs_f64()],
        )
        .await
        .map_err(err("collecting"))?
        .get(0);
    let h = ts_sql(horizon).min(nodes);
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
    let log_floor = latest
        .saturating_sub(ts_sql(LOG_RETENTION_NANOS))
        .min(nodes);
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
    tx.execute(
        "DELETE FROM ferrovex_nodes WHERE seen_at < now() - make_interval(secs => $1)",
        &[&NODE_FORGOTTEN.as_secs_f64()],
    )
    .await
    .map_err(err("forgetting old nodes"))?;
    tx.commit().await.map_err(err("collecting"))
}

/// This machine's name (it names nodes, and the address a node advertises by default).
pub fn hostname() -> String {
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
        self.node.stop.notify_waiters();
        let (pool, node) = (self.control.clone(), self.node.clone());
        let released = block(self.runtime().handle(), async move {
            let release = async {
                let client = pool.get().await.map_err(pool_err("releasing the lease"))?;
                if node.term() != 0 && !node.lost.load(AtomicOrdering::Acquire) {
                    client
                        .execute(
                            "UPDATE ferrovex_lease SET expires_at = now() WHERE id = 1 AND holder = $1 AND term = $2",
                            &[&node.id, &node.term()],
                        )
                        .await
                        .map_err(err("releasing the lease"))?;
                }
                if node.registered {
                    client
                        .execute("DELETE FROM ferrovex_nodes WHERE id = $1", &[&node.id])
                        .await
                        .map_err(err("leaving the node list"))?;
                }
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
            if let Err(e) = self.engine.may_read() {
                self.done = true;
                return Some(Err(e));
            }
            let batch = self
                .engine
                .run(scan_batch(
                    self.engine.pool.clone(),
                    self.space,
                    self.range.clone(),
                    self.ts,
                    self.order,
                    self.batch,
                ))
                // Again after: a pause during the read may have outlasted its cover.
                .and_then(|batch| self.engine.may_read().map(|()| batch));
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
        self.may_read()?;
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
        // Again after: a pause during the read may have outlasted what kept its versions.
        .and_then(|value| self.may_read().map(|()| value))
    }

    /// One statement for all the keys, not a round trip for each.
    fn get_many(
        &self,
        space: Space,
        keys: &[&[u8]],
        ts: Timestamp,
    ) -> EngineResult<Vec<Option<Vec<u8>>>> {
        if keys.len() < 2 {
            return keys.iter().map(|key| self.get(space, key, ts)).collect();
        }
        self.may_read()?;
        let pool = self.pool.clone();
        let owned: Vec<Vec<u8>> = keys.iter().map(|key| key.to_vec()).collect();
        let count = keys.len();
        self.run(async move {
            let client = pool.get().await.map_err(pool_err("reading"))?;
            let statement = client
                .prepare_cached(
                    "SELECT found.value FROM unnest($2::bytea[]) WITH ORDINALITY AS asked(key, n)
                     LEFT JOIN LATERAL (
                         SELECT value FROM ferrovex_versions
                         WHERE space = $1 AND key = asked.key AND ts <= $3
                         ORDER BY ts DESC LIMIT 1
                     ) AS found ON true
                     ORDER BY asked.n",
                )
                .await
                .map_err(err("reading"))?;
            let rows = client
                .query(&statement, &[&space_code(space), &owned, &ts_sql(ts)])
                .await
                .map_err(err("reading"))?;
            if rows.len() != count {
                return Err(EngineError(format!(
                    "reading {count} keys at once returned {} rows",
                    rows.len()
                )));
            }
            Ok(rows
                .iter()
                .map(|row| row.get::<_, Option<Vec<u8>>>(0))
                .collect())
        })
        // Again after: a pause during the read may have outlasted what kept its versions.
        .and_then(|values| self.may_read().map(|()| values))
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
        let term = self.writer_term()?;
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
        let (pool, holder) = (self.writes.clone(), self.node.id.clone());
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
        // A follower away too long may find the log it missed collected: it applies nothing
        // until its heartbeat says it was kept (else it stops).
        self.may_read()?;
        let pool = self.writes.clone();
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
        self.may_read()?;
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
        self.node.horizon.fetch_max(horizon, AtomicOrdering::AcqRel);
    }

    fn compact(&self) -> EngineResult<()> {
        self.writer_term()?;
        let (pool, horizon) = (
            self.control.clone(),
            self.node.horizon.load(AtomicOrdering::Acquire),
        );
        self.run(async move { collect(&pool, horizon).await })
    }

    fn durable_ts(&self) -> EngineResult<Timestamp> {
        let term = self.writer_term()?;
        let (pool, holder) = (self.writes.clone(), self.node.id.clone());
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

    /// Every read is a round trip to the database server.
    fn reads_locally(&self) -> bool {
        false
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
