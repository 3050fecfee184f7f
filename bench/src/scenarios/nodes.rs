//! `nodes`: three `runtime serve examples/chat --store postgres://…` over one PostgreSQL
//! database (the first started takes the writer lease and commits; the two started after it
//! follow the commit log and forward their commits to it), against one server on a database
//! of its own. Both databases are in one throwaway cluster on loopback, the one the
//! PostgreSQL-engine rows of `chat-send` use.
//!
//! - *fan-out*: 1,000 subscribers of `chat:get_messages` (300 with `--quick`), the raw
//!   sockets of the `fanout` scenario: all on the one server, then spread evenly over the
//!   three nodes. One writer on the leader (on the one server) commits a message at a time
//!   and waits until every subscriber has shown it; latency per delivery runs from just
//!   before the writer sends the mutation to the frame's arrival, as in `fanout`. A follower
//!   shows a commit once it has read it from the commit log. `ops/s` is deliveries per
//!   second, one commit after another.
//! - *chat-send*: the 64 official clients of `chat-send`, against the one server, then the
//!   leader of the three nodes, then the two followers (32 clients each), which send each
//!   commit to the leader over HTTP and resolve it once they have applied it from the log.
//!
//! CPU time is summed over every `runtime serve` process of the case; PostgreSQL's own is not
//! counted.

use super::fanout::{add_subscribers, close_all, tagged_body, write_and_await, Shared};
use super::{chat, postgres, Context, CLIENTS};
use crate::http::Http;
use crate::report::Row;
use crate::server::RuntimeServer;
use crate::stats::{ms, percentile, Latency};
use crate::ws::{closed_loop_over, connect, Kind};
use serde_json::{json, Value as Json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const APP: &str = "examples/chat";
/// Nodes of the deployment: a leader and two followers.
const NODES: usize = 3;
/// Commits not measured after the subscribers are added (first runs, warm caches).
const WARMUP_COMMITS: usize = 2;
/// How long the nodes may take to agree on the leader and know each other's addresses.
const AGREE_WITHIN: Duration = Duration::from_secs(60);

fn subscribers(quick: bool) -> usize {
    if quick {
        300
    } else {
        1_000
    }
}

/// Measured commits of a fan-out case, and the time that bounds them.
fn commits(quick: bool) -> (usize, Duration) {
    if quick {
        (30, Duration::from_secs(3))
    } else {
        (100, Duration::from_secs(10))
    }
}

pub fn run(ctx: &mut Context) -> Result<(), String> {
    let database = postgres::EngineDatabase::start("nodes")?;
    let version = database.version();
    let count = subscribers(ctx.quick);

    // One server on a database of its own.
    let single = ctx.serve_with(APP, "nodes-single", &["--store", &database.url])?;
    let one = std::slice::from_ref(&single);
    let fan_one = fan_out(ctx, one, count);
    let one_row = fan_one.row(format!("{count} subscribers, same query, one node"));
    ctx.push(one_row.clone().note(format!("{}; {version}", one_row.note)));
    let send_one = closed(ctx, one, &[single.addr], "chat-send, 64 clients, one node")?;
    ctx.push(send_one.clone());
    single.stop()?;

    // Three nodes over another database: the first started leads.
    let url = database.another("nodes_three")?;
    let (nodes, agreed) = start_deployment(ctx, &url)?;
    let fan_three = fan_out(ctx, &nodes, count);
    let row = fan_three.row(format!(
        "{count} subscribers over {NODES} nodes, same query"
    ));
    let by_node: Vec<String> = (0..NODES)
        .map(|n| {
            let mut mine: Vec<Duration> = fan_three
                .delivered
                .iter()
                .filter(|(node, _)| *node == n)
                .map(|(_, latency)| *latency)
                .collect();
            mine.sort_unstable();
            format!(
                "{} p50 {:.2} ms, p99 {:.2} ms",
                if n == 0 { "leader's" } else { "follower's" },
                ms(percentile(&mine, 0.5)),
                ms(percentile(&mine, 0.99))
            )
        })
        .collect();
    let note = format!(
        "{}; subscribers by node: {}; the nodes agreed {:.1} s after the last started",
        row.note,
        by_node.join(", "),
        agreed.as_secs_f64()
    );
    let row = row
        .latency_ratio(
            one_row.label(),
            one_row.latency.as_ref().map_or(0.0, |l| l.p50_ms),
        )
        .note(note);
    ctx.push(row);

    let to_leader = closed(
        ctx,
        &nodes,
        &[nodes[0].addr],
        "chat-send, 64 clients, to the leader of 3",
    )?;
    ctx.push(to_leader.clone().throughput_ratio(&send_one));
    let followers: Vec<SocketAddr> = nodes[1..].iter().map(|n| n.addr).collect();
    let to_followers = closed(
        ctx,
        &nodes,
        &followers,
        "chat-send, 64 clients, to the 2 followers",
    )?;
    ctx.push(
        to_followers
            .throughput_ratio(&to_leader)
            .throughput_ratio(&send_one),
    );

    // Followers first: a follower that outlives its leader would wait to take the lease.
    let mut stopped = Vec::new();
    for node in nodes.into_iter().rev() {
        stopped.push(node.stop());
    }
    stopped.into_iter().collect::<Result<Vec<()>, String>>()?;
    Ok(())
}

/// Starts the leader, then the followers with its admin key (the nodes of a deployment share
/// it), and waits until every node names the first as leader and lists all of them with
/// their addresses: the nodes (the leader first), and how long that agreement took.
fn start_deployment(ctx: &Context, url: &str) -> Result<(Vec<RuntimeServer>, Duration), String> {
    let name = |n: usize| format!("nodes-{n}");
    let mut nodes = vec![ctx.serve_with(APP, &name(0), &["--store", url])?];
    let key = ctx.store_dir(&name(0)).join("admin_key");
    for n in 1..NODES {
        let data = ctx.store_dir(&name(n));
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        std::fs::copy(&key, data.join("admin_key"))
            .map_err(|e| format!("copying the admin key: {e}"))?;
        nodes.push(ctx.serve_with(APP, &name(n), &["--store", url])?);
    }
    let started = Instant::now();
    let leader = view(&nodes[0])?["self"]
        .as_str()
        .ok_or("the first node has no id: is it on PostgreSQL?")?
        .to_owned();
    loop {
        let mut agreed = true;
        for (n, node) in nodes.iter().enumerate() {
            let Ok(view) = view(node) else {
                agreed = false;
                continue;
            };
            let listed = view["nodes"].as_array().cloned().unwrap_or_default();
            let role_of_self = listed
                .iter()
                .find(|m| m["self"] == true)
                .and_then(|m| m["role"].as_str())
                .unwrap_or_default();
            agreed &= view["leader"]["id"] == leader.as_str()
                && role_of_self == if n == 0 { "leader" } else { "follower" }
                && listed.len() == NODES
                && listed
                    .iter()
                    .all(|m| m["address"].as_str().is_some_and(|a| !a.is_empty()));
        }
        if agreed {
            return Ok((nodes, started.elapsed()));
        }
        if started.elapsed() > AGREE_WITHIN {
            let views: Vec<String> = nodes
                .iter()
                .map(|n| view(n).map_or_else(|e| e, |v| v.to_string()))
                .collect();
            return Err(format!(
                "the nodes did not agree on a leader within {AGREE_WITHIN:?}: {}",
                views.join("; ")
            ));
        }
        // The polling period of the check; the heartbeat runs every second.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET /api/cluster/nodes` of `node`.
fn view(node: &RuntimeServer) -> Result<Json, String> {
    Http::connect(node.addr)
        .map_err(|e| format!("connecting to {}: {e}", node.addr))?
        .get_admin("/api/cluster/nodes", &node.admin_key)
}

/// The CPU seconds of every server so far, in order; `None` if /proc was not readable.
fn cpu(servers: &[RuntimeServer]) -> Option<Vec<f64>> {
    servers.iter().map(RuntimeServer::cpu_seconds).collect()
}

fn cpu_since(servers: &[RuntimeServer], before: &Option<Vec<f64>>) -> Option<Vec<f64>> {
    let after = cpu(servers)?;
    Some(
        after
            .iter()
            .zip(before.as_ref()?)
            .map(|(a, b)| a - b)
            .collect(),
    )
}

/// What a fan-out case measured.
struct FanOut {
    /// (node of the subscriber, latency) of each delivery.
    delivered: Vec<(usize, Duration)>,
    writes: Vec<Duration>,
    lasts: Vec<Duration>,
    took: Duration,
    cpu: Option<Vec<f64>>,
    lost: usize,
    failed: usize,
    other_frames: u64,
}

impl FanOut {
    fn row(&self, case: String) -> Row {
        let mut writes = self.writes.clone();
        writes.sort_unstable();
        let mut lasts = self.lasts.clone();
        lasts.sort_unstable();
        let mut row = Row::new("nodes", case)
            .throughput(self.delivered.len() as f64 / self.took.as_secs_f64())
            .latency(Latency::of(
                self.delivered.iter().map(|(_, latency)| *latency).collect(),
            ));
        let mut cpu_note = String::new();
        if let Some(cpu) = &self.cpu {
            row = row.cpu_per_call(cpu.iter().sum(), self.delivered.len());
            let per_commit: Vec<String> = cpu
                .iter()
                .map(|s| format!("{:.2}", s * 1e3 / self.writes.len().max(1) as f64))
                .collect();
            cpu_note = format!(", server CPU per commit {} ms", per_commit.join(" + "));
        }
        row.note(format!(
            "ops are deliveries; {} commits one at a time through the leader, write p50 {:.2} ms, last subscriber p50 {:.2} ms{cpu_note}, {} lost, {} other frames, {} failed writes",
            self.writes.len(),
            ms(percentile(&writes, 0.5)),
            ms(percentile(&lasts, 0.5)),
            self.lost,
            self.other_frames,
            self.failed,
        ))
    }
}

/// `count` subscribers of `chat:get_messages` split evenly over `servers` (in order), a
/// writer on the first; then commits one at a time until every subscriber has shown each.
fn fan_out(ctx: &Context, servers: &[RuntimeServer], count: usize) -> FanOut {
    let (commits, budget) = commits(ctx.quick);
    ctx.clients.block_on(async {
        let (shared, mut deliveries) = Shared::new();
        let mut subscriptions = Vec::new();
        // The node of each subscriber, by its index.
        let mut node_of = Vec::with_capacity(count);
        for (n, server) in servers.iter().enumerate() {
            add_subscribers(
                server.addr,
                &mut subscriptions,
                count * (n + 1) / servers.len(),
                |_| vec![("chat:get_messages", json!({}))],
                Some(shared.clone()),
            )
            .await;
            node_of.resize(subscriptions.len(), n);
        }
        let mut writer = connect(servers[0].addr, &format!("writer-{}", std::process::id())).await;
        let mut out = FanOut {
            delivered: Vec::new(),
            writes: Vec::new(),
            lasts: Vec::new(),
            took: Duration::ZERO,
            cpu: None,
            lost: 0,
            failed: 0,
            other_frames: 0,
        };
        let (mut measuring, mut cpu_before, mut other_before) = (Instant::now(), None, 0);
        for k in 0..WARMUP_COMMITS + commits {
            if k == WARMUP_COMMITS {
                measuring = Instant::now();
                cpu_before = cpu(servers);
                other_before = shared.other_frames();
            }
            if k > WARMUP_COMMITS && measuring.elapsed() > budget {
                break;
            }
            let seq = k as u64 + 1;
            let message = (
                "chat:send_message",
                json!({"user": "writer", "body": tagged_body(seq)}),
            );
            let write =
                match write_and_await(&mut writer, &shared, &mut deliveries, seq, message, count)
                    .await
                {
                    Ok(write) => write,
                    Err(_) => {
                        out.failed += 1;
                        continue;
                    }
                };
            if k >= WARMUP_COMMITS {
                out.lost += count - write.delivered.len();
                out.lasts.push(write.last());
                out.writes.push(write.written);
                out.delivered.extend(
                    write
                        .delivered
                        .into_iter()
                        .map(|(index, latency)| (node_of[index], latency)),
                );
            }
        }
        out.took = measuring.elapsed();
        out.cpu = cpu_since(servers, &cpu_before);
        out.other_frames = shared.other_frames() - other_before;
        close_all(subscriptions).await;
        out
    })
}

/// The closed loop of `chat-send` with its clients spread over `targets`; CPU summed over
/// every process of `servers`.
fn closed(
    ctx: &Context,
    servers: &[RuntimeServer],
    targets: &[SocketAddr],
    case: &str,
) -> Result<Row, String> {
    let before = cpu(servers);
    let result = ctx.clients.block_on(closed_loop_over(
        Kind::Mutation,
        targets,
        CLIENTS,
        ctx.duration(),
        chat::message,
    ));
    let used = cpu_since(servers, &before);
    let mut row = Row::new("nodes", case)
        .throughput(result.per_second())
        .latency(result.latency.clone());
    let mut cpu_note = String::new();
    if let Some(used) = used {
        row = row.cpu_per_call(used.iter().sum(), result.answered);
        if used.len() > 1 {
            let each: Vec<String> = used.iter().map(|s| format!("{s:.2}")).collect();
            cpu_note = format!(", server CPU s by node (leader first) {}", each.join(" + "));
        }
    }
    Ok(row.note(format!(
        "{} durable commits{cpu_note}, {}",
        result.answered,
        result.failed()
    )))
}
