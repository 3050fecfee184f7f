//! Crash recovery with a real process crash, and what the store does once a durable write
//! failed.
//!
//! `kill_and_recover` runs this test binary again as a child (`crash_child`), which commits
//! seeded random transactions on several threads against `Store::open` and prints every
//! acknowledged commit, with what it wrote, one line each. After a seeded number of those
//! lines the parent kills the child (SIGKILL), reopens the store and checks: every
//! acknowledged commit is there, every document present comes from an acknowledged commit
//! or from the one commit each thread may have had in flight, and each commit is there
//! entirely or not at all. Each thread's commits are sequential, so what survives of a
//! thread is its commits 1..=m, with m its last acknowledged commit or the one after; every
//! commit also moves the thread's head document to its number and a shared counter up by
//! one, so a partial commit cannot match. Whatever the timing of the kill, that holds.

use ferrovex_model::{DocumentId, Object, Value};
use ferrovex_runtime::store::engine::{
    CommitRecord, EngineError, EngineResult, KeyRange, Order, Scan, Space, StorageEngine,
};
use ferrovex_runtime::store::rocks::RocksEngine;
use ferrovex_runtime::store::{Document, Store, StoreError, Timestamp, Transaction};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

const CHILD_DIR: &str = "FUZZ_CHECKS_CRASH_DIR";
const CHILD_SEED: &str = "FUZZ_CHECKS_CRASH_SEED";
const THREADS: u64 = 4;
/// The child stops by itself after this long, should no one kill it.
const CHILD_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30);
/// Thread 0 declares this index on `docs` right after its commit number `INDEX_AFTER`.
const INDEX: &str = "by_thread";
const INDEX_AFTER: u64 = 5;

/// One draw of SplitMix64 seeded with `x` (the simulation's generator).
fn splitmix(x: u64) -> u64 {
    ferrovex_fuzz_checks::sim::Rng::new(x).next_u64()
}

/// How many documents commit `s` of thread `t` inserts into `docs` (1 to 3).
fn docs_in(seed: u64, t: u64, s: u64) -> u64 {
    1 + splitmix(seed ^ (t << 40) ^ s) % 3
}

fn int(v: u64) -> Value {
    Value::Int64(v as i64)
}

fn field(doc: &Document, name: &str) -> u64 {
    match doc.fields.get(name) {
        Some(Value::Int64(v)) => *v as u64,
        other => panic!("document {} has {name} = {other:?}", doc.id),
    }
}

fn all_documents(store: &Store, table: &str) -> Vec<Document> {
    let snapshot = store.snapshot();
    let docs = snapshot
        .documents(table)
        .expect("a scan")
        .collect::<Result<Vec<_>, _>>()
        .expect("reading documents");
    docs
}

/// The child: commits until killed, printing `@ack T S TS ID,ID,...` for each acknowledged
/// commit (`S` of thread `T`, at `TS`, the ids of its new documents in `docs`) and `@index
/// TS` once the index is declared. Not a test of its own: `kill_and_recover` runs it.
#[test]
#[ignore = "the child process of kill_and_recover"]
fn crash_child() {
    let dir = std::env::var(CHILD_DIR).expect("run by kill_and_recover, which names the folder");
    let seed: u64 = std::env::var(CHILD_SEED)
        .expect("a seed")
        .parse()
        .expect("a number");
    let store = Arc::new(Store::open(Path::new(&dir)).expect("open the store"));
    // Thread heads and the shared counter, committed before anything is acknowledged.
    let mut tx = store.begin();
    let mut heads = Vec::new();
    for t in 0..THREADS {
        let id = tx
            .insert(
                "heads",
                Object::from([("t".into(), int(t)), ("last".into(), int(0))]),
            )
            .expect("insert");
        heads.push(id);
    }
    let total = tx
        .insert("heads", Object::from([("total".into(), int(0))]))
        .expect("insert");
    store.commit(tx).expect("the set-up commit");

    let started = std::time::Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, head) = (store.clone(), heads[t as usize]);
            std::thread::spawn(move || {
                let mut inserted: BTreeMap<u64, Vec<DocumentId>> = BTreeMap::new();
                for s in 1u64.. {
                    if started.elapsed() > CHILD_LIFETIME {
                        return;
                    }
                    let doomed = inserted.get(&s.saturating_sub(2)).map(|ids| ids[0]);
                    let committed = store
                        .run_mutation(|tx: &mut Transaction| {
                            one_commit(tx, seed, t, s, head, total, doomed)
                        })
                        .expect("a mutation");
                    let ids = committed.value;
                    let line = format!(
                        "@ack {t} {s} {} {}\n",
                        committed.ts,
                        ids.iter()
                            .map(|id| id.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    inserted.insert(s, ids);
                    print_line(&line);
                    if t == 0 && s == INDEX_AFTER {
                        let ts = store
                            .define_index("docs", INDEX, &["t", "s"])
                            .expect("an index");
                        print_line(&format!("@index {ts}\n"));
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a thread");
    }
}

/// Prints one whole line with one write, so a line the parent reads is never cut by the kill
/// unless it is the last, which then has no newline.
fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).expect("stdout");
    out.flush().expect("stdout");
}

/// Commit `s` of thread `t`: its documents in `docs`, one in its own table (created by its
/// first commit), its head moved to `s`, the shared counter up by one, and the first
/// document of its commit `s - 2` deleted.
fn one_commit(
    tx: &mut Transaction,
    seed: u64,
    t: u64,
    s: u64,
    head: DocumentId,
    total: DocumentId,
    doomed: Option<DocumentId>,
) -> Result<Vec<DocumentId>, StoreError> {
    let mut ids = Vec::new();
    for j in 0..docs_in(seed, t, s) {
        let fields = Object::from([
            ("t".into(), int(t)),
            ("s".into(), int(s)),
            ("j".into(), int(j)),
        ]);
        ids.push(tx.insert("docs", fields)?);
    }
    tx.insert(&format!("own{t}"), Object::from([("s".into(), int(s))]))?;
    tx.patch(head, BTreeMap::from([("last".into(), Some(int(s)))]))?;
    let n = match tx.get(total)?.and_then(|d| d.fields.get("total").cloned()) {
        Some(Value::Int64(n)) => n,
        other => panic!("the counter holds {other:?}"),
    };
    tx.patch(
        total,
        BTreeMap::from([("total".into(), Some(Value::Int64(n + 1)))]),
    )?;
    if let Some(id) = doomed {
        tx.delete(id)?;
    }
    Ok(ids)
}

/// What the parent read of the child's output.
#[derive(Default)]
struct Acks {
    /// Per thread, per commit number: its timestamp and new ids.
    commits: BTreeMap<u64, BTreeMap<u64, (Timestamp, Vec<DocumentId>)>>,
    index: Option<Timestamp>,
    count: usize,
}

impl Acks {
    fn read(&mut self, line: &str) {
        // libtest may print its own words on the line before ours.
        let Some(start) = line.find('@') else {
            return;
        };
        let mut words = line[start..].split_whitespace();
        match words.next() {
            Some("@ack") => {
                let mut number =
                    || -> u64 { words.next().expect("a field").parse().expect("a number") };
                let (t, s, ts) = (number(), number(), number());
                let ids = words
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .filter(|w| !w.is_empty())
                    .map(|w| DocumentId::parse(w).expect("an id"))
                    .collect();
                let last = self.commits.entry(t).or_default();
                assert_eq!(
                    last.keys().next_back().copied().unwrap_or(0) + 1,
                    s,
                    "thread {t} acknowledged out of order"
                );
                last.insert(s, (ts, ids));
                self.count += 1;
            }
            Some("@index") => {
                self.index = Some(words.next().expect("a ts").parse().expect("a number"));
            }
            _ => {}
        }
    }

    fn last(&self, t: u64) -> u64 {
        self.commits
            .get(&t)
            .and_then(|c| c.keys().next_back().copied())
            .unwrap_or(0)
    }
}

/// Runs the child on `dir` with `seed` and kills it after `kill_after` acknowledgements;
/// returns everything it acknowledged, read to the end of its output.
fn run_and_kill(dir: &Path, seed: u64, kill_after: usize) -> Acks {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_SEED, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the child");
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut acks = Acks::default();
    let mut killed = false;
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).expect("reading the child") == 0 {
            break;
        }
        if !line.ends_with('\n') {
            // Cut by the kill: not acknowledged.
            break;
        }
        acks.read(&line);
        if !killed && acks.count >= kill_after {
            child.kill().expect("killing the child");
            killed = true;
        }
    }
    let status = child.wait().expect("waiting for the child");
    assert!(
        killed,
        "the child ended by itself ({status}) after {} acknowledgements",
        acks.count
    );
    acks
}

/// Checks the store the killed child left against what it acknowledged; returns how many
/// threads had a commit survive that was not acknowledged.
fn check_recovered(dir: &Path, seed: u64, acks: &Acks) -> usize {
    let store = Store::open(dir).expect("reopen after the kill");
    let tables: BTreeMap<String, u32> = store
        .tables()
        .iter()
        .map(|t| (t.name.clone(), t.number))
        .collect();
    let numbers: BTreeSet<u32> = tables.values().copied().collect();
    assert_eq!(
        numbers.len(),
        tables.len(),
        "two tables share a number: {tables:?}"
    );

    // What survived of each thread: commits 1..=m, m its head.
    let mut survived = BTreeMap::new();
    let mut total = None;
    for doc in all_documents(&store, "heads") {
        if doc.fields.contains_key("total") {
            total = Some(field(&doc, "total"));
        } else {
            survived.insert(field(&doc, "t"), field(&doc, "last"));
        }
    }
    assert_eq!(survived.len() as u64, THREADS, "the thread heads");
    for (&t, &m) in &survived {
        let acked = acks.last(t);
        assert!(
            m == acked || m == acked + 1,
            "thread {t}: commit {m} survived, {acked} was the last acknowledged"
        );
    }
    assert_eq!(
        total,
        Some(survived.values().sum::<u64>()),
        "the counter against the surviving commits {survived:?}"
    );

    // `docs`: exactly the surviving commits' documents, less the deleted ones.
    let mut expected = BTreeSet::new();
    for (&t, &m) in &survived {
        for s in 1..=m {
            for j in 0..docs_in(seed, t, s) {
                if !(j == 0 && s + 2 <= m) {
                    expected.insert((t, s, j));
                }
            }
        }
    }
    let docs = all_documents(&store, "docs");
    let mut present = BTreeMap::new();
    for doc in &docs {
        let key = (field(doc, "t"), field(doc, "s"), field(doc, "j"));
        assert_eq!(doc.fields.len(), 3, "document {} has other fields", doc.id);
        assert!(present.insert(key, doc.id).is_none(), "{key:?} twice");
    }
    assert_eq!(
        present.keys().copied().collect::<BTreeSet<_>>(),
        expected,
        "the documents of docs, for the surviving commits {survived:?}"
    );
    for pair in docs.windows(2) {
        assert!(
            pair[0].creation_time < pair[1].creation_time,
            "creation times out of order"
        );
    }
    for (&t, commits) in &acks.commits {
        for (&s, (_, ids)) in commits {
            for (j, id) in ids.iter().enumerate() {
                if let Some(found) = present.get(&(t, s, j as u64)) {
                    assert_eq!(found, id, "the id of ({t}, {s}, {j})");
                }
            }
        }
    }
    for (&t, &m) in &survived {
        let own: Vec<u64> = all_documents(&store, &format!("own{t}"))
            .iter()
            .map(|d| field(d, "s"))
            .collect();
        assert_eq!(own, (1..=m).collect::<Vec<_>>(), "table own{t}");
        assert_eq!(
            tables.contains_key(&format!("own{t}")),
            m > 0,
            "table own{t}"
        );
    }
    assert_eq!(
        tables.len(),
        2 + survived.values().filter(|&&m| m > 0).count(),
        "the tables {tables:?}"
    );

    // The index: there if acknowledged, and if there, complete.
    let info = store
        .tables()
        .into_iter()
        .find(|t| t.name == "docs")
        .expect("docs exists");
    match info.index(INDEX) {
        Some(_) => {
            let mut tx = store.begin_read_only();
            let by_index = tx
                .query(
                    "docs",
                    INDEX,
                    &ferrovex_runtime::store::IndexRange::all(),
                    Order::Asc,
                    100_000,
                )
                .expect("a scan of the index");
            let keys: Vec<_> = by_index
                .iter()
                .map(|d| (field(d, "t"), field(d, "s"), d.id))
                .collect();
            let mut sorted = keys.clone();
            sorted.sort_by(|x, y| (x.0, x.1, x.2.as_bytes()).cmp(&(y.0, y.1, y.2.as_bytes())));
            assert_eq!(keys, sorted, "the index order");
            assert_eq!(
                keys.iter().map(|k| k.2).collect::<BTreeSet<_>>(),
                present.values().copied().collect::<BTreeSet<_>>(),
                "the index holds every document"
            );
        }
        None => assert_eq!(acks.index, None, "an acknowledged index is missing"),
    }

    // Timestamps: the newest covers every acknowledged commit, and the next is above it.
    let newest_acked = acks
        .commits
        .values()
        .flat_map(|c| c.values().map(|(ts, _)| *ts))
        .chain(acks.index)
        .max()
        .unwrap_or(0);
    let latest = store.latest_ts();
    assert!(
        latest >= newest_acked,
        "newest {latest} below an acknowledged {newest_acked}"
    );
    let mut tx = store.begin();
    let id = tx
        .insert(
            "docs",
            Object::from([("after".into(), Value::Boolean(true))]),
        )
        .expect("insert");
    assert!(
        !present.values().any(|p| *p == id),
        "a new id is one a document has"
    );
    tx.insert("after", Object::new()).expect("a new table");
    let ts = store.commit(tx).expect("a commit after recovery");
    assert!(ts > latest, "a commit at {ts}, not above {latest}");
    let created = store
        .tables()
        .iter()
        .find(|t| t.name == "after")
        .expect("created")
        .number;
    assert!(!numbers.contains(&created), "a table number reused");
    let last = all_documents(&store, "docs");
    let newest = last.last().expect("the new document");
    assert_eq!(
        newest.id, id,
        "the new document sorts last by creation time"
    );
    survived.iter().filter(|(&t, &m)| m > acks.last(t)).count()
}

#[test]
fn kill_and_recover() {
    let started = std::time::Instant::now();
    for seed in 1..=8u64 {
        let dir = ferrovex_fuzz_checks::scratch_dir();
        let data = dir.path().join("data");
        let kill_after = 20 + (splitmix(seed) % 400) as usize;
        let acks = run_and_kill(&data, seed, kill_after);
        let unacknowledged = check_recovered(&data, seed, &acks);
        eprintln!(
            "seed {seed}: killed after {} acknowledged commits (asked {kill_after}), per \
             thread {:?}, index {}; {unacknowledged} threads had an unacknowledged commit \
             survive",
            acks.count,
            (0..THREADS).map(|t| acks.last(t)).collect::<Vec<_>>(),
            if acks.index.is_some() {
                "acknowledged"
            } else {
                "not acknowledged"
            }
        );
    }
    eprintln!("kill_and_recover: {:?}", started.elapsed());
}

/// A RocksDB engine whose `fail_at`-th write fails, made durable first when `durable` (the
/// store cannot tell which), and whose other writes succeed, as after a transient error.
struct FailingEngine {
    inner: RocksEngine,
    fail_at: usize,
    durable: bool,
    writes: std::sync::Mutex<usize>,
}

impl StorageEngine for FailingEngine {
    fn get(&self, space: Space, key: &[u8], ts: Timestamp) -> EngineResult<Option<Vec<u8>>> {
        self.inner.get(space, key, ts)
    }

    fn scan(&self, space: Space, range: &KeyRange, ts: Timestamp, order: Order) -> Scan<'_> {
        self.inner.scan(space, range, ts, order)
    }

    fn write(&self, commits: &[CommitRecord]) -> EngineResult<()> {
        let mut writes = self.writes.lock().unwrap();
        *writes += 1;
        if *writes != self.fail_at {
            return self.inner.write(commits);
        }
        if self.durable {
            self.inner.write(commits)?;
        }
        Err(EngineError("injected failure".into()))
    }

    fn latest_ts(&self) -> Timestamp {
        self.inner.latest_ts()
    }

    fn log_after(&self, after: Timestamp, limit: usize) -> EngineResult<Vec<CommitRecord>> {
        self.inner.log_after(after, limit)
    }

    fn discard_before(&self, horizon: Timestamp) {
        self.inner.discard_before(horizon)
    }

    fn compact(&self) -> EngineResult<()> {
        self.inner.compact()
    }
}

/// Once a durable write failed, nothing may commit, index definitions included: the store no
/// longer knows what is on disk. An index definition whose write failed may be on disk
/// (here it is) while the store's catalog lacks it; had documents been written after it,
/// they would have left the index without their entries.
#[test]
fn no_commit_after_a_failed_write() {
    for (fail_at, durable) in [(2, false), (2, true), (3, false), (3, true)] {
        let dir = ferrovex_fuzz_checks::scratch_dir();
        let engine = FailingEngine {
            inner: RocksEngine::open(&dir.path().join("data")).expect("open"),
            fail_at,
            durable,
            writes: std::sync::Mutex::new(0),
        };
        let store = Store::with_engine(Box::new(engine)).expect("open the store");
        // Write 1: a table with a document.
        let mut tx = store.begin();
        tx.insert("t", Object::from([("a".into(), int(1))]))
            .expect("insert");
        store.commit(tx).expect("the first write");
        // Write 2: a commit or an index definition, failing when `fail_at` is 2.
        let failed = if fail_at == 2 {
            store.define_index("t", "by_a", &["a"]).is_err()
        } else {
            store.define_index("t", "by_a", &["a"]).expect("an index");
            let mut tx = store.begin();
            tx.insert("t", Object::from([("a".into(), int(2))]))
                .expect("insert");
            store.commit(tx).is_err()
        };
        assert!(failed, "the write that fails");
        let mut tx = store.begin();
        tx.insert("t", Object::from([("a".into(), int(3))]))
            .expect("insert");
        let commit = store.commit(tx);
        assert!(
            commit.is_err(),
            "fail_at {fail_at}, durable {durable}: a commit after a failed write: {commit:?}"
        );
        let index = store.define_index("t", "by_b", &["b"]);
        assert!(
            index.is_err(),
            "fail_at {fail_at}, durable {durable}: an index defined after a failed write: {index:?}"
        );
    }
}
