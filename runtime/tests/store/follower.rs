//! A store that follows another's commits over one PostgreSQL database (`store::follower`),
//! both in this process: the follower's commits reach the leader through a link that calls
//! `Store::commit_forwarded`, as the HTTP link does between processes.

use crate::intercept::{Intercept, Intercepted};
use crate::pg_cluster::Cluster;
use ferrovex_model::{obj, Value};
use ferrovex_runtime::store::engine::{CommitRecord, EngineResult, Space};
use ferrovex_runtime::store::postgres::{NodeReport, PgEngine, PgNode};
use ferrovex_runtime::store::{
    CommittedKeys, LeaderLink, LinkError, Patch, StorageEngine, Store, StoreError, Timestamp,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The follower's engine's log tail, paused while `paused` is set (the log reads as if
/// nothing new had been committed). A read holds the flag's lock, so setting it waits for a
/// read in flight.
struct Pausable {
    paused: Arc<Mutex<bool>>,
}

impl Intercept for Pausable {
    fn log_after(
        &self,
        inner: &dyn StorageEngine,
        after: Timestamp,
        limit: usize,
    ) -> EngineResult<Vec<CommitRecord>> {
        let paused = self.paused.lock().unwrap();
        if *paused {
            return Ok(Vec::new());
        }
        inner.log_after(after, limit)
    }
}

/// The leader, in process (weak: the test may stop it).
struct Local(std::sync::Weak<Store>);

impl LeaderLink for Local {
    fn send(&self, request: &[u8]) -> Result<Vec<u8>, LinkError> {
        match self.0.upgrade() {
            Some(leader) => Ok(leader.commit_forwarded(request)),
            None => Err(LinkError::NotSent("the leader stopped".into())),
        }
    }
}

struct Pair {
    leader: Arc<Store>,
    follower: Store,
    paused: Arc<Mutex<bool>>,
    node: PgNode,
    /// What each store's commit listener heard, in order.
    heard_by_leader: Arc<Mutex<Vec<CommittedKeys>>>,
    heard_by_follower: Arc<Mutex<Vec<CommittedKeys>>>,
}

fn listen(store: &Store) -> Arc<Mutex<Vec<CommittedKeys>>> {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = heard.clone();
    store.on_commit(Box::new(move |commits| {
        sink.lock().unwrap().extend(commits.iter().cloned())
    }));
    heard
}

/// A leader (which defines `messages.by_user` first) and a follower on one new database.
fn pair() -> Pair {
    let url = Cluster::shared().database();
    let leader = Arc::new(Store::open_postgres(&url).expect("the leader opens"));
    leader
        .define_index("messages", "by_user", &["user"])
        .unwrap();
    let heard_by_leader = listen(&leader);
    let engine = PgEngine::open_node(&url).expect("the follower opens");
    assert!(!engine.is_writer(), "the leader holds the lease");
    let node = engine.node();
    let paused = Arc::new(Mutex::new(false));
    let follower = Store::follower(
        Box::new(Intercepted {
            inner: engine,
            intercept: Pausable {
                paused: paused.clone(),
            },
        }),
        Arc::new(Local(Arc::downgrade(&leader))),
    )
    .expect("the follower's store opens");
    let heard_by_follower = listen(&follower);
    let pair = Pair {
        leader,
        follower,
        paused,
        node,
        heard_by_leader,
        heard_by_follower,
    };
    pair.heartbeat();
    pair
}

impl Pair {
    /// What the node's thread does every second (keeps the follower's reads covered).
    fn heartbeat(&self) {
        self.node
            .heartbeat(&NodeReport {
                address: String::new(),
                role: "follower",
                applied: self.follower.latest_ts(),
                horizon: self.follower.gc_horizon(),
            })
            .expect("a heartbeat");
    }

    /// What the leader announced after `ts`.
    fn leader_heard_after(&self, ts: Timestamp) -> Vec<CommittedKeys> {
        let heard = self.heard_by_leader.lock().unwrap();
        heard.iter().filter(|c| c.ts > ts).cloned().collect()
    }

    fn caught_up(&self) {
        let target = self.leader.latest_ts();
        let start = Instant::now();
        while self.follower.latest_ts() < target {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the follower never applied {target}"
            );
            // The polling period of the check, not a wait for anything to happen.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn bodies(store: &Store, table: &str) -> Vec<Value> {
    let snapshot = store.snapshot();
    snapshot
        .documents(table)
        .unwrap()
        .map(|d| d.unwrap().fields["body"].clone())
        .collect()
}

fn summary(heard: &[CommittedKeys]) -> Vec<(Timestamp, Vec<(Space, Vec<u8>)>, Vec<(u32, i64)>)> {
    heard
        .iter()
        .map(|c| (c.ts, (*c.keys).clone(), (*c.tables).clone()))
        .collect()
}

#[test]
fn a_follower_reads_its_own_writes_and_hears_every_commit_as_the_leader_announced_it() {
    let p = pair();
    let opened_at = p.follower.latest_ts();
    // Written through the follower: committed by the leader, visible here on return.
    let mut tx = p.follower.begin();
    let ada = tx
        .insert("messages", obj! { "user" => "ada", "body" => "one" })
        .unwrap();
    tx.set_receipt(b"session-1/0".to_vec(), b"done".to_vec());
    let ts = p.follower.commit(tx).unwrap();
    assert!(
        p.follower.latest_ts() >= ts,
        "answered before it was applied"
    );
    assert_eq!(bodies(&p.follower, "messages"), [Value::from("one")]);
    assert_eq!(bodies(&p.leader, "messages"), [Value::from("one")]);

    // Every kind of change, through either store: a patch that leaves the index key alone,
    // a replace that moves it, an insert into a new table, a delete.
    let mut tx = p.leader.begin();
    let mut patch = Patch::new();
    patch.insert("body".into(), Some(Value::from("one, edited")));
    tx.patch(ada, patch).unwrap();
    let bob = tx
        .insert("messages", obj! { "user" => "bob", "body" => "two" })
        .unwrap();
    p.leader.commit(tx).unwrap();
    // A follower reads its own writes at once; another node's once it has applied them.
    p.caught_up();
    let mut tx = p.follower.begin();
    tx.replace(bob, obj! { "user" => "cyd", "body" => "two, moved" })
        .unwrap();
    tx.insert("other", obj! { "body" => "elsewhere" }).unwrap();
    p.follower.commit(tx).unwrap();
    let mut tx = p.leader.begin();
    tx.delete(ada).unwrap();
    p.leader.commit(tx).unwrap();
    p.caught_up();
    assert_eq!(bodies(&p.follower, "messages"), [Value::from("two, moved")]);
    assert_eq!(bodies(&p.follower, "other"), [Value::from("elsewhere")]);

    // The table the follower made took numbers the leader must not give out again: an index
    // defined and a table made on the leader afterwards get numbers of their own.
    p.leader
        .define_index("messages", "by_user_body", &["user", "body"])
        .unwrap();
    let mut tx = p.leader.begin();
    tx.insert("third", obj! { "body" => "mine" }).unwrap();
    p.leader.commit(tx).unwrap();
    let tables = p.leader.tables();
    let numbers: std::collections::BTreeSet<u32> = tables.iter().map(|t| t.number).collect();
    let index_ids: Vec<u32> = tables
        .iter()
        .flat_map(|t| t.indexes.iter().map(|i| i.id))
        .collect();
    let distinct: std::collections::BTreeSet<u32> = index_ids.iter().copied().collect();
    assert_eq!(
        numbers.len(),
        tables.len(),
        "table numbers repeat: {tables:?}"
    );
    assert_eq!(
        distinct.len(),
        index_ids.len(),
        "index ids repeat: {tables:?}"
    );

    // The follower announced each commit with the keys and count changes the leader's
    // committer announced: what its live queries and the dashboard's counts are fed.
    p.caught_up();
    let leader_heard = p.leader_heard_after(opened_at);
    let follower_heard = p.heard_by_follower.lock().unwrap().clone();
    assert_eq!(leader_heard.len(), 6);
    assert_eq!(summary(&follower_heard), summary(&leader_heard));

    // The catalog is the leader's to change.
    let refused = p
        .follower
        .define_index("messages", "by_body", &["body"])
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Follower { .. })
            && refused.to_string().contains("writer lease"),
        "{refused}"
    );
    // One that exists already is no change, and answers.
    p.follower
        .define_index("messages", "by_user", &["user"])
        .unwrap();
}

#[test]
fn a_follower_whose_tail_was_paused_catches_up_without_a_missed_or_repeated_commit() {
    let p = pair();
    let opened_at = p.follower.latest_ts();
    *p.paused.lock().unwrap() = true;
    for n in 0..40 {
        let mut tx = p.leader.begin();
        tx.insert("messages", obj! { "user" => "w", "body" => n as i64 })
            .unwrap();
        p.leader.commit(tx).unwrap();
    }
    // Nothing new here while the tail is paused: the follower serves its older state.
    assert_eq!(p.follower.latest_ts(), opened_at);
    assert!(bodies(&p.follower, "messages").is_empty());
    p.heartbeat();
    *p.paused.lock().unwrap() = false;
    p.caught_up();
    let expected: Vec<Value> = (0..40).map(|n| Value::from(n as i64)).collect();
    assert_eq!(bodies(&p.follower, "messages"), expected);
    let heard = p.heard_by_follower.lock().unwrap().clone();
    let leader_heard = p.leader_heard_after(opened_at);
    assert_eq!(heard.len(), 40, "each commit heard once");
    assert!(
        heard.windows(2).all(|w| w[0].ts < w[1].ts),
        "in commit order"
    );
    assert_eq!(summary(&heard), summary(&leader_heard));
}

#[test]
fn commits_from_both_nodes_are_serializable_and_a_receipt_applies_once() {
    let p = pair();
    let mut tx = p.leader.begin();
    let counter = tx.insert("counters", obj! { "n" => 0i64 }).unwrap();
    p.leader.commit(tx).unwrap();
    p.caught_up();
    p.heartbeat();
    // Increments from both nodes at once: conflicts retry, none is lost.
    let follower = Arc::new(p.follower);
    let stores: Vec<Arc<Store>> = vec![
        p.leader.clone(),
        p.leader.clone(),
        follower.clone(),
        follower.clone(),
    ];
    let threads: Vec<_> = stores
        .into_iter()
        .map(|store| {
            std::thread::spawn(move || {
                for _ in 0..20 {
                    store
                        .run_mutation(|tx| {
                            let n = tx.get(counter)?.unwrap().fields["n"].as_i64().unwrap();
                            let mut patch = Patch::new();
                            patch.insert("n".into(), Some(Value::from(n + 1)));
                            tx.patch(counter, patch)
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let read = |store: &Store| {
        let mut tx = store.begin_read_only();
        tx.get(counter).unwrap().unwrap().fields["n"].clone()
    };
    assert_eq!(read(&p.leader), Value::from(80i64));

    // The same request run on both nodes, each having seen no receipt: the second to
    // commit conflicts (it read the receipt's absence), and its retry finds the receipt.
    let key = b"session-9/4".to_vec();
    let mut on_follower = follower.begin();
    assert!(on_follower.receipt(&key).unwrap().is_none());
    on_follower
        .insert("messages", obj! { "user" => "x", "body" => "resent" })
        .unwrap();
    on_follower.set_receipt(key.clone(), b"first".to_vec());
    let mut on_leader = p.leader.begin();
    assert!(on_leader.receipt(&key).unwrap().is_none());
    on_leader
        .insert("messages", obj! { "user" => "x", "body" => "resent" })
        .unwrap();
    on_leader.set_receipt(key.clone(), b"second".to_vec());
    p.leader.commit(on_leader).unwrap();
    let refused = follower.commit(on_follower).unwrap_err();
    assert!(refused.is_conflict(), "{refused}");
    let mut retry = follower.begin();
    let (outcome, _) = retry.receipt(&key).unwrap().expect("the retry sees it");
    assert_eq!(outcome, b"second");
    assert_eq!(bodies(&follower, "messages"), [Value::from("resent")]);
}

#[test]
fn tables_made_on_two_nodes_at_once_get_their_own_numbers_and_the_follower_takes_over() {
    let p = pair();
    // Both allocate the next table number from the same catalog.
    let mut on_follower = p.follower.begin();
    on_follower
        .insert("from_follower", obj! { "body" => "f" })
        .unwrap();
    let mut on_leader = p.leader.begin();
    on_leader
        .insert("from_leader", obj! { "body" => "l" })
        .unwrap();
    p.leader.commit(on_leader).unwrap();
    let refused = p.follower.commit(on_follower).unwrap_err();
    assert!(refused.is_conflict(), "{refused}");
    // A mutation retries against the newer catalog.
    p.follower
        .run_mutation(|tx| {
            tx.insert("from_follower", obj! { "body" => "f" })
                .map(|_| ())
        })
        .unwrap();
    p.caught_up();
    let numbers: Vec<u32> = p
        .leader
        .tables()
        .iter()
        .filter(|t| t.name.starts_with("from_"))
        .map(|t| t.number)
        .collect();
    assert_eq!(numbers.len(), 2);
    assert_ne!(numbers[0], numbers[1]);
    assert_eq!(bodies(&p.follower, "from_leader"), [Value::from("l")]);
    assert_eq!(bodies(&p.follower, "from_follower"), [Value::from("f")]);

    // The leader stops (and gives the lease back): the follower takes it, applies the log
    // to its end, and commits itself from then on, with everything there.
    let Pair {
        leader,
        follower,
        node,
        ..
    } = p;
    let mut tx = leader.begin();
    tx.insert("from_leader", obj! { "body" => "last from the old leader" })
        .unwrap();
    leader.commit(tx).unwrap();
    drop(leader);
    assert_eq!(node.try_take_lease().unwrap(), Some(2), "term 2");
    follower.promote().unwrap();
    assert!(follower.is_leader());
    let mut tx = follower.begin();
    tx.insert("from_follower", obj! { "body" => "as the leader" })
        .unwrap();
    follower.commit(tx).unwrap();
    assert_eq!(
        bodies(&follower, "from_leader"),
        [Value::from("l"), Value::from("last from the old leader")]
    );
    assert_eq!(
        bodies(&follower, "from_follower"),
        [Value::from("f"), Value::from("as the leader")]
    );
}
