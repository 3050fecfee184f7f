//! The scheduler against `runtime serve` killed with SIGKILL at moments that vary, many rounds
//! over one store, on each engine: every scheduled mutation whose scheduling committed runs
//! exactly once, and no scheduled action runs twice.

use crate::{post, repo_root, serve_command, Running};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Calls that committed before each kill: early, in the middle of a burst, later.
const KILL_AFTER: [usize; 8] = [1, 9, 23, 4, 40, 14, 31, 6];
const WRITERS: usize = 2;

/// A POST that gives up quietly when the server is gone (killed mid-request).
fn try_post(addr: SocketAddr, path: &str, body: &Json) -> Option<Json> {
    crate::try_post(addr, path, body).map(|(_, answer)| answer)
}

fn query(addr: SocketAddr, path: &str) -> Json {
    let (status, answer) = post(addr, "/api/query", &json!({ "path": path, "args": {} }));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "success", "{answer}");
    answer["value"].clone()
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

#[test]
fn scheduled_mutations_run_exactly_once_and_actions_at_most_once_across_sigkill_rocksdb() {
    across_sigkill(None, &KILL_AFTER);
}

/// The same on the PostgreSQL engine: a transaction that schedules, a job's mutation with
/// the job's success, each lands whole or not at all. Fewer rounds: each restart waits out
/// the killed server's lease (10 s).
#[test]
fn scheduled_mutations_run_exactly_once_and_actions_at_most_once_across_sigkill_postgres() {
    let cluster = crate::pg_cluster::Cluster::start();
    across_sigkill(Some(&cluster.database()), &KILL_AFTER[..4]);
}

fn across_sigkill(store: Option<&str>, kills: &[usize]) {
    let app = repo_root().join("runtime/tests/guests/jobs");
    let data = tempfile::tempdir().unwrap();
    let serve = || {
        let mut command = serve_command(&app, data.path());
        if let Some(url) = store {
            command.args(["--store", url]);
        }
        command
    };
    let mut acknowledged = Vec::new();
    for (round, &kill_after) in kills.iter().enumerate() {
        let server = Running::start(serve());
        let addr = server.addr;
        let committed = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let committed = committed.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0.. {
                        let tag = format!("{round}.{w}.{i}");
                        // Due now, or a little later, so kills land while jobs run too.
                        let at = now_ms() + [0.0, 0.0, 30.0, 120.0][i % 4];
                        let args = json!({ "tag": tag, "at": at, "action": i % 3 == 0 });
                        let body = json!({ "path": "jobs:schedule_at", "args": args });
                        match try_post(addr, "/api/mutation", &body) {
                            Some(answer) if answer["status"] == "success" => {
                                mine.push(tag);
                                committed.fetch_add(1, Ordering::SeqCst);
                            }
                            Some(answer) => panic!("{answer}"),
                            None => return mine, // killed
                        }
                    }
                    unreachable!()
                })
            })
            .collect();
        let start = Instant::now();
        while committed.load(Ordering::SeqCst) < kill_after {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "writers stalled"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        server.kill();
        for writer in writers {
            acknowledged.extend(writer.join().expect("a writer failed"));
        }
    }
    // Once more, to let every job end.
    let server = Running::start(serve());
    let start = Instant::now();
    while query(server.addr, "jobs:unfinished").as_f64() != Some(0.0) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "jobs never finished"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let scheduled: Vec<String> =
        serde_json::from_value(query(server.addr, "jobs:scheduled_tags")).unwrap();
    let runs: Vec<String> = serde_json::from_value(query(server.addr, "jobs:runs")).unwrap();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for tag in &runs {
        *count.entry(tag.as_str()).or_default() += 1;
    }
    assert!(acknowledged.len() >= kills.iter().sum::<usize>());
    for tag in &acknowledged {
        assert!(
            scheduled.contains(tag),
            "{tag} was acknowledged but not committed"
        );
    }
    // Every committed scheduling (acknowledged or not) ran its mutation exactly once.
    for tag in &scheduled {
        assert_eq!(
            count.get(tag.as_str()),
            Some(&1),
            "the job of {tag} ran {count:?}"
        );
    }
    // Actions at most once; and nothing ran that was not scheduled.
    for (tag, n) in &count {
        match tag.strip_suffix("-action") {
            Some(base) => {
                assert_eq!(*n, 1, "{tag}");
                assert!(scheduled.iter().any(|s| s == base), "{tag}");
            }
            None => assert!(
                scheduled.iter().any(|s| s == tag),
                "{tag} was never scheduled"
            ),
        }
    }
    let actions_ran = count.keys().filter(|t| t.ends_with("-action")).count();
    eprintln!(
        "scheduler under SIGKILL: {} rounds, {} schedulings committed ({} acknowledged), {} actions ran of {} scheduled",
        kills.len(),
        scheduled.len(),
        acknowledged.len(),
        actions_ran,
        scheduled.iter().enumerate().filter(|(_, t)| t.rsplit('.').next().and_then(|i| i.parse::<usize>().ok()).is_some_and(|i| i % 3 == 0)).count()
    );
    server.stop();
}
