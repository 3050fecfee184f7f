//! Several nodes over one PostgreSQL store (ARCHITECTURE.md, "Several nodes"): three
//! `runtime serve` processes on loopback, clients on every node, the leader killed with
//! SIGKILL or paused with SIGSTOP round after round, a follower paused and caught up.
//! Checked: no acknowledged commit lost, none applied twice (across a change of node with the
//! same `sessionId` too), every subscriber's transitions chaining and ending at every commit,
//! and a resumed old leader's commits refused.

use crate::pg_cluster::Cluster;
use crate::{repo_root, run_to_end, serve_command, signal, try_post, Running, TIMEOUT};
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// A node's exit status when it must stop serving (`cli::app::EXIT_NODE_STOPPED`).
const EXIT_NODE_STOPPED: i32 = 75;
/// What one live query returns: every message, newest first (the test stays far below).
const ALL_MESSAGES: u32 = 30_000;

fn serve(data: &std::path::Path, url: &str) -> std::process::Command {
    let mut command = serve_command(&repo_root().join("examples/chat"), data);
    command.args(["--store", url]);
    command
}

fn get(addr: SocketAddr, path: &str, key: &str) -> Option<Json> {
    crate::request(addr, "GET", path, None, Some(key)).map(|(_, answer)| answer)
}

/// The deployment as `addr` sees it: (its own id, the leader's id and term).
fn nodes_view(addr: SocketAddr, key: &str) -> Option<(String, Option<(String, i64)>, Json)> {
    let view = get(addr, "/api/cluster/nodes", key)?;
    let own = view["self"].as_str()?.to_owned();
    let leader = view["leader"].as_object().map(|l| {
        (
            l["id"].as_str().unwrap().to_owned(),
            l["term"].as_i64().unwrap(),
        )
    });
    Some((own, leader, view))
}

/// One node process and its id in the deployment.
struct NodeProcess {
    running: Running,
    id: String,
}

struct Deployment {
    url: String,
    key: String,
    datas: Vec<tempfile::TempDir>,
    nodes: Vec<Option<NodeProcess>>,
}

impl Deployment {
    fn start(cluster: &Cluster, count: usize) -> Deployment {
        let url = cluster.database();
        let datas: Vec<_> = (0..count).map(|_| tempfile::tempdir().unwrap()).collect();
        let first = Running::start_reading_stderr(serve(datas[0].path(), &url));
        let key = first.admin_key();
        // Nodes of one deployment share the admin key.
        for data in &datas[1..] {
            std::fs::copy(
                datas[0].path().join("admin_key"),
                data.path().join("admin_key"),
            )
            .unwrap();
        }
        let mut deployment = Deployment {
            url,
            key,
            datas,
            nodes: Vec::new(),
        };
        let id = deployment.id_of(first.addr);
        deployment
            .nodes
            .push(Some(NodeProcess { running: first, id }));
        for n in 1..count {
            let node = deployment.launch(n);
            deployment.nodes.push(Some(node));
        }
        deployment
    }

    fn launch(&self, n: usize) -> NodeProcess {
        let running = Running::start_reading_stderr(serve(self.datas[n].path(), &self.url));
        let id = self.id_of(running.addr);
        NodeProcess { running, id }
    }

    fn id_of(&self, addr: SocketAddr) -> String {
        nodes_view(addr, &self.key).expect("a node answers").0
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .flatten()
            .map(|n| n.running.addr)
            .collect()
    }

    /// Which node leads (index), once every live node agrees on a leader among them whose
    /// term is above `after`.
    fn wait_for_leader(&self, after: i64) -> (usize, i64) {
        let start = Instant::now();
        loop {
            let mut agreed = None;
            let mut all = true;
            for node in self.nodes.iter().flatten() {
                match nodes_view(node.running.addr, &self.key) {
                    Some((_, Some((leader, term)), view)) if term > after => {
                        // The leader itself must say it leads (it has applied the log).
                        let leads = view["nodes"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|n| n["id"] == leader.as_str() && n["role"] == "leader");
                        if !leads
                            || agreed
                                .as_ref()
                                .is_some_and(|a: &(String, i64)| a.0 != leader)
                        {
                            all = false;
                        }
                        agreed = Some((leader, term));
                    }
                    _ => all = false,
                }
            }
            if let (true, Some((leader, term))) = (all, agreed) {
                if let Some(index) = self
                    .nodes
                    .iter()
                    .position(|n| n.as_ref().is_some_and(|n| n.id == leader))
                {
                    return (index, term);
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "no leader above term {after} that every node agrees on"
            );
            // The polling period of the check, not a wait for anything to happen.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    acknowledged: BTreeSet<String>,
    /// Per subscriber: the last result it was shown (bodies, newest first).
    last_shown: Vec<Vec<String>>,
    /// Violations found by the subscribers as they went (checked at the end).
    violations: Vec<String>,
}

/// A subscriber of `chat:list_messages` (every message) that moves to another node when
/// its node goes away; on each connection, every transition must start at the version the
/// previous one ended at, and a result must never lose a message an earlier one showed.
fn subscribe(
    number: usize,
    addrs: Arc<Mutex<Vec<SocketAddr>>>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut shown_ever: BTreeSet<String> = BTreeSet::new();
        let mut connection = 0;
        // As the official clients do: a reconnect says the newest state it was shown, and
        // no node then shows it an older one.
        let mut observed: Option<Json> = None;
        while !stop.load(Ordering::SeqCst) {
            let addr = {
                let addrs = addrs.lock().unwrap();
                addrs[(number + connection) % addrs.len()]
            };
            connection += 1;
            let Ok(stream) = TcpStream::connect(addr) else {
                continue;
            };
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let Ok((mut socket, _)) = tungstenite::client(format!("ws://{addr}/api/sync"), stream)
            else {
                continue;
            };
            let frames = [
                {
                    let mut connect = json!({"type": "Connect", "sessionId": format!("subscriber-{number}-{connection}"), "connectionCount": 0});
                    if let Some(ts) = &observed {
                        connect["maxObservedTimestamp"] = ts.clone();
                    }
                    connect
                },
                json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
                    {"type": "Add", "queryId": 0, "udfPath": "chat:list_messages",
                     "args": [{"paginationOpts": {"numItems": ALL_MESSAGES, "cursor": null}}]}]}),
            ];
            if frames
                .iter()
                .any(|f| socket.send(Message::text(f.to_string())).is_err())
            {
                continue;
            }
            let mut version: Option<Json> = None;
            loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let frame = match socket.read() {
                    Ok(Message::Text(text)) => serde_json::from_str::<Json>(text.as_str()).unwrap(),
                    Ok(_) => continue,
                    Err(tungstenite::Error::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue
                    }
                    Err(_) => break,
                };
                if frame["type"] != "Transition" {
                    continue;
                }
                let mut seen = seen.lock().unwrap();
                if let Some(previous) = &version {
                    if frame["startVersion"] != *previous {
                        seen.violations.push(format!(
                            "subscriber {number}: a transition from {} after one that ended at {previous}",
                            frame["startVersion"]
                        ));
                    }
                }
                version = Some(frame["endVersion"].clone());
                observed = Some(frame["endVersion"]["ts"].clone());
                for modification in frame["modifications"].as_array().unwrap() {
                    if modification["type"] != "QueryUpdated" {
                        continue;
                    }
                    let bodies: Vec<String> = modification["value"]["page"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| m["body"].as_str().unwrap().to_owned())
                        .collect();
                    let distinct: BTreeSet<String> = bodies.iter().cloned().collect();
                    if distinct.len() != bodies.len() {
                        seen.violations.push(format!(
                            "subscriber {number}: a result shows a message twice"
                        ));
                    }
                    // Messages are never deleted here: a newer result holds every one shown.
                    if let Some(lost) = shown_ever.iter().find(|b| !distinct.contains(*b)) {
                        seen.violations.push(format!(
                            "subscriber {number}: {lost:?} was shown, then missing from a later result"
                        ));
                    }
                    shown_ever.extend(distinct);
                    seen.last_shown[number] = bodies;
                }
            }
        }
    })
}

/// A writer that sends one mutation after another to its node (or the next live one), and
/// keeps what was acknowledged.
fn write(
    number: usize,
    addrs: Arc<Mutex<Vec<SocketAddr>>>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for n in 0.. {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let addr = {
                let addrs = addrs.lock().unwrap();
                addrs[(number + n) % addrs.len()]
            };
            let body = format!("w{number}-{n}");
            let sent = try_post(
                addr,
                "/api/mutation",
                &json!({"path": "chat:send_message", "args": {"user": "w", "body": body}}),
            );
            if let Some((200, answer)) = sent {
                if answer["status"] == "success" {
                    seen.lock().unwrap().acknowledged.insert(body);
                }
            }
            // Keeps the total small enough for every subscriber to re-read it all.
            std::thread::sleep(Duration::from_millis(300));
        }
    })
}

/// A WebSocket mutation sent on `session` to `addr`; the response, if one came.
fn ws_mutation(
    addr: SocketAddr,
    session: &str,
    count: u32,
    body: &str,
    wait: bool,
) -> Option<Json> {
    let stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let (mut socket, _) = tungstenite::client(format!("ws://{addr}/api/sync"), stream).ok()?;
    for frame in [
        json!({"type": "Connect", "sessionId": session, "connectionCount": count}),
        json!({"type": "Mutation", "requestId": 0, "udfPath": "chat:send_message",
               "args": [{"user": "s", "body": body}]}),
    ] {
        socket.send(Message::text(frame.to_string())).ok()?;
    }
    if !wait {
        // Leave with the mutation sent and its answer unread: the node dies next.
        std::mem::forget(socket);
        return None;
    }
    loop {
        match socket.read().ok()? {
            Message::Text(text) => {
                let frame: Json = serde_json::from_str(text.as_str()).unwrap();
                if frame["type"] == "MutationResponse" {
                    return Some(frame);
                }
            }
            _ => continue,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Round {
    KillLeader,
    PauseLeader,
    PauseFollower,
    KillFollower,
}

#[test]
fn three_nodes_lose_nothing_and_apply_nothing_twice_through_failovers() {
    let cluster = Cluster::start();
    let mut deployment = Deployment::start(&cluster, 3);
    let key = deployment.key.clone();
    let (mut leader, mut term) = deployment.wait_for_leader(0);
    assert_eq!(leader, 0, "the first node to start leads");

    let addrs = Arc::new(Mutex::new(deployment.addrs()));
    let seen = Arc::new(Mutex::new(Seen {
        last_shown: vec![Vec::new(); 3],
        ..Seen::default()
    }));
    let (stop_reading, stop_writing) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let subscribers: Vec<_> = (0..3)
        .map(|n| subscribe(n, addrs.clone(), seen.clone(), stop_reading.clone()))
        .collect();
    let writers: Vec<_> = (0..3)
        .map(|n| write(n, addrs.clone(), seen.clone(), stop_writing.clone()))
        .collect();
    let mut resent: Vec<String> = Vec::new();

    let rounds = [
        Round::KillLeader,
        Round::PauseFollower,
        Round::PauseLeader,
        Round::KillFollower,
        Round::KillLeader,
        Round::PauseLeader,
        Round::KillLeader,
        Round::PauseLeader,
    ];
    for (r, round) in rounds.into_iter().enumerate() {
        // Let the writers get some commits in on the settled deployment.
        std::thread::sleep(Duration::from_secs(2));
        let victim = match round {
            Round::KillLeader | Round::PauseLeader => leader,
            Round::KillFollower | Round::PauseFollower => (leader + 1 + r % 2) % 3,
        };
        let node = deployment.nodes[victim]
            .take()
            .expect("every node runs between rounds");
        let victim_addr = node.running.addr;
        let survivors: Vec<SocketAddr> = deployment
            .addrs()
            .into_iter()
            .filter(|a| *a != victim_addr)
            .collect();
        eprintln!("round {r}: {round:?} node {victim} ({})", node.id);
        // A mutation on a session of the victim's, in flight when it goes.
        let session = format!("resend-{r}");
        let body = format!("resent-{r}");
        ws_mutation(victim_addr, &session, 0, &body, false);
        match round {
            Round::KillLeader | Round::KillFollower => {
                node.running.kill();
                *addrs.lock().unwrap() = survivors.clone();
                if matches!(round, Round::KillLeader) {
                    (leader, term) = deployment.wait_for_leader(term);
                }
            }
            Round::PauseFollower => {
                // Its log tail stops with it; writers and subscribers elsewhere go on.
                signal(&node.running.child, libc::SIGSTOP);
                std::thread::sleep(Duration::from_secs(4));
                signal(&node.running.child, libc::SIGCONT);
                deployment.nodes[victim] = Some(node);
            }
            Round::PauseLeader => {
                signal(&node.running.child, libc::SIGSTOP);
                *addrs.lock().unwrap() = survivors.clone();
                let mut old = node;
                // A commit sent to the old leader while it sleeps: it must not land.
                let stale = format!("to-the-paused-leader-{r}");
                let attempt = {
                    let stale = stale.clone();
                    std::thread::spawn(move || {
                        try_post(
                            victim_addr,
                            "/api/mutation",
                            &json!({"path": "chat:send_message", "args": {"user": "x", "body": stale}}),
                        )
                    })
                };
                (leader, term) = deployment.wait_for_leader(term);
                signal(&old.running.child, libc::SIGCONT);
                match attempt.join().unwrap() {
                    // Gone before answering, or refused by the lease: not committed either way.
                    None => {}
                    Some((status, answer)) => {
                        assert_ne!(
                            answer["status"], "success",
                            "the old leader committed: {answer}"
                        );
                        // Refused at the commit (a 500), or at a read the function made (a
                        // failed call): by the lease either way.
                        let message = answer["message"]
                            .as_str()
                            .or(answer["errorMessage"].as_str())
                            .unwrap_or_default();
                        assert!(matches!(status, 200 | 500), "{status}: {answer}");
                        assert!(message.contains("writer lease"), "{message}");
                    }
                }
                // It learns its term ended and stops, saying why.
                let status = old
                    .running
                    .child
                    .wait()
                    .expect("waiting for the old leader");
                assert_eq!(status.code(), Some(EXIT_NODE_STOPPED), "{status}");
                old.running
                    .wait_for_stderr("another node took the writer lease");
                seen.lock().unwrap().acknowledged.remove(&stale);
                resent.push(stale.clone());
                let bodies = crate::message_bodies(survivors[0]);
                assert!(
                    !bodies.contains(&stale),
                    "the paused old leader's commit landed"
                );
            }
        }
        // The same session on another node re-sends the mutation: applied once, answered.
        let response = ws_mutation(survivors[r % survivors.len()], &session, 1, &body, true)
            .expect("a surviving node answers the re-sent mutation");
        assert_eq!(response["success"], true, "{response}");
        seen.lock().unwrap().acknowledged.insert(body.clone());
        // The node comes back (as a follower) for the next round.
        if deployment.nodes[victim].is_none() {
            let node = deployment.launch(victim);
            deployment.nodes[victim] = Some(node);
            *addrs.lock().unwrap() = deployment.addrs();
        }
        let (again, same_term) = deployment.wait_for_leader(term - 1);
        assert_eq!(
            (again, same_term),
            (leader, term),
            "a rejoining node changed the leader"
        );
    }

    // Quiet: every subscriber must come to show every acknowledged message, once.
    stop_writing.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    let acknowledged = seen.lock().unwrap().acknowledged.clone();
    let stored: Vec<String> = {
        let (status, answer) = try_post(deployment.addrs()[0],
            "/api/query",
            &json!({"path": "chat:list_messages", "args": {"paginationOpts": {"numItems": ALL_MESSAGES, "cursor": null}}}))
        .expect("a node answers");
        assert_eq!(status, 200);
        answer["value"]["page"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_owned())
            .collect()
    };
    let distinct: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(distinct.len(), stored.len(), "a message was applied twice");
    let missing: Vec<_> = acknowledged.difference(&distinct).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    for r in 0..rounds.len() {
        let body = format!("resent-{r}");
        assert_eq!(stored.iter().filter(|b| **b == body).count(), 1, "{body}");
    }
    for body in resent.iter().filter(|b| b.starts_with("to-the-paused")) {
        assert!(
            !distinct.contains(body),
            "{body} was committed by a fenced leader"
        );
    }
    assert!(
        acknowledged.len() > 60,
        "too few commits to tell: {}",
        acknowledged.len()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let caught_up = seen
            .lock()
            .unwrap()
            .last_shown
            .iter()
            .all(|shown| shown.iter().cloned().collect::<BTreeSet<_>>() == distinct);
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a subscriber never showed every commit"
        );
        // The polling period of the check, not a wait for anything to happen.
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_reading.store(true, Ordering::SeqCst);
    for subscriber in subscribers {
        subscriber.join().unwrap();
    }
    let violations = seen.lock().unwrap().violations.clone();
    assert!(violations.is_empty(), "{violations:#?}");

    // The CLI shows the nodes, their roles and lag, from any node (once each has seen the
    // last node to rejoin: views are as fresh as the last heartbeat).
    for addr in deployment.addrs() {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let shown = run_to_end({
                let mut command = std::process::Command::new(crate::runtime_bin());
                command.args(["nodes", "--url", &format!("http://{addr}")]);
                command.env("FERROVEX_ADMIN_KEY", &key);
                command
            });
            let table = String::from_utf8_lossy(&shown.stdout).into_owned();
            assert!(
                shown.status.success(),
                "{table}{}",
                String::from_utf8_lossy(&shown.stderr)
            );
            let complete = deployment
                .nodes
                .iter()
                .flatten()
                .all(|n| table.contains(&n.id))
                && table.matches(" leader ").count() == 1
                && table.matches(" follower ").count() == 2
                && table.contains(" gone ");
            if complete {
                eprintln!("runtime nodes --url http://{addr}:\n{table}");
                // The dashboard's Health page shows the same nodes.
                let health = get(addr, "/api/dashboard/health", &key).expect("health");
                assert_eq!(
                    health["cluster"]["leader"]["id"],
                    deployment.nodes[leader].as_ref().unwrap().id.as_str()
                );
                let live = health["cluster"]["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|n| n["role"] == "leader" || n["role"] == "follower")
                    .count();
                assert_eq!(live, 3, "{health}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "runtime nodes never showed the deployment:\n{table}"
            );
            // The polling period of the check, not a wait for anything to happen.
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
