//! `fanout`: one writer, and 100 / 1,000 / 10,000 subscribed connections (`--quick` stops at
//! 1,000), of one shared query and of distinct per-channel queries; commit-to-delivery
//! latency, the delivery rate and the server's CPU time per delivery. Beside them, two
//! baselines: the same frames written to as many sockets by a minimal tokio server (raw
//! broadcast), and a commit touching one of 10 subscriptions against one of 100,000.
//!
//! The writer commits one message at a time; each carries a sequence number, and every
//! subscriber's reader task timestamps the first frame that contains it. Latency runs from
//! just before the writer sends the mutation to that frame's arrival, so it includes the
//! mutation's run and its fsync (the writer's own round trip, send to `MutationResponse`, is
//! the baseline each row is compared with), the server's refresh, serializing each
//! transition, and the client reading it.
//!
//! - *same query*: every subscriber watches `chat:get_messages` (50 messages); each commit
//!   reaches all of them.
//! - *distinct queries*: subscriber i watches `channels:list {channel: "c<i>"}` (the
//!   `channels` guest in `runtime/tests/guests/`); each commit writes one random channel, so
//!   one subscriber is affected and the others are untouched.
//! - *raw broadcast* (`src/bin/broadcast.rs`): no store and no query; the writer hands the
//!   server a frame captured from the same-query case (its marker replaced) and the server
//!   writes it to every connection. Its latency and rate are the floor of delivering those
//!   bytes to that many sockets on this machine.
//! - *one of many*: 10 connections with one `channels:list` each, then 1,000 more with 100
//!   each (100 and 100 with `--quick`); each commit writes one random subscribed channel. The
//!   cost of a commit (server CPU per commit, and its delivery latency) should not grow with
//!   the subscriptions it does not touch.
//!
//! The delivery rate (`ops/s`) is deliveries over the summed time from each write's send to
//! its last delivery, one write at a time.

use super::{Context, BODY_BYTES};
use crate::report::Row;
use crate::server::BaselineServer;
use crate::stats::{ms, percentile, Latency};
use crate::ws::{connect, mutate, subscribe_all, Ws};
use futures_util::StreamExt;
use serde_json::{json, Value as Json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Connections being opened at once while subscribers are added.
const CONNECT_CONCURRENCY: usize = 200;
/// A write that has not reached its subscribers by then counts as lost, and the run goes on.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Commits not measured after subscribers are added (first runs, warm caches).
const WARMUP_COMMITS: usize = 2;

pub fn tiers(quick: bool) -> &'static [usize] {
    if quick {
        &[100, 1_000]
    } else {
        &[100, 1_000, 10_000]
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    SameQuery,
    DistinctQueries,
}

/// What subscriber tasks share with the writer.
pub struct Shared {
    /// The sequence number of the write being awaited.
    awaited: AtomicU64,
    /// Text frames other than `Ping` that did not carry the awaited write.
    other_frames: AtomicU64,
    /// (sequence number, subscriber index, arrival) of each frame that carried the awaited
    /// write.
    delivered: mpsc::UnboundedSender<(u64, usize, Instant)>,
    /// The last frame subscriber 0 saw carrying a write: what the raw broadcast sends.
    sample: std::sync::Mutex<String>,
}

/// Where the subscribers' deliveries arrive, for [`write_and_await`].
pub type Deliveries = mpsc::UnboundedReceiver<(u64, usize, Instant)>;

impl Shared {
    pub fn new() -> (Arc<Shared>, Deliveries) {
        let (delivered, deliveries) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            awaited: AtomicU64::new(0),
            other_frames: AtomicU64::new(0),
            delivered,
            sample: std::sync::Mutex::new(String::new()),
        });
        (shared, deliveries)
    }

    /// Frames so far that were neither the awaited write nor a `Ping`.
    pub fn other_frames(&self) -> u64 {
        self.other_frames.load(Ordering::Relaxed)
    }
}

/// A write's body: its marker, padded to a chat message's size.
pub fn tagged_body(seq: u64) -> String {
    format!("{:-<BODY_BYTES$}", marker(seq))
}

/// What one write came to: the writer's own round trip (send to `MutationResponse`), and
/// each delivery's latency from the send, with the subscriber's index.
pub struct WriteResult {
    pub written: Duration,
    pub delivered: Vec<(usize, Duration)>,
}

impl WriteResult {
    /// The latest delivery's latency (zero if none came).
    pub fn last(&self) -> Duration {
        self.delivered
            .iter()
            .map(|(_, latency)| *latency)
            .max()
            .unwrap_or_default()
    }
}

/// Sends the mutation `path(args)` with sequence number `seq` (its arguments carry
/// [`tagged_body`]`(seq)`) on `writer`, then waits until `affected` subscribers have shown it
/// or [`DELIVERY_TIMEOUT`] has passed. `Err` if the mutation failed.
pub async fn write_and_await(
    writer: &mut Ws,
    shared: &Shared,
    deliveries: &mut Deliveries,
    seq: u64,
    (path, args): (&str, Json),
    affected: usize,
) -> Result<WriteResult, String> {
    shared.awaited.store(seq, Ordering::Release);
    let sent = Instant::now();
    mutate(writer, seq, path, args).await?;
    let written = sent.elapsed();
    let delivered = await_deliveries(deliveries, seq, sent, affected).await;
    Ok(WriteResult { written, delivered })
}

/// The raw broadcast's write: hands `frame` to the baseline server (which writes it to every
/// other connection), then waits for the deliveries as [`write_and_await`] does.
async fn broadcast_and_await(
    writer: &mut Ws,
    shared: &Shared,
    deliveries: &mut Deliveries,
    seq: u64,
    frame: &str,
    affected: usize,
) -> WriteResult {
    shared.awaited.store(seq, Ordering::Release);
    let sent = Instant::now();
    send_text(writer, format!("BROADCAST {frame}")).await;
    loop {
        match writer.next().await {
            Some(Ok(Message::Text(text))) if text.as_str() == "sent" => break,
            Some(Ok(_)) => {}
            other => panic!("the baseline server's connection ended: {other:?}"),
        }
    }
    let written = sent.elapsed();
    let delivered = await_deliveries(deliveries, seq, sent, affected).await;
    WriteResult { written, delivered }
}

async fn send_text(ws: &mut Ws, text: String) {
    use futures_util::SinkExt;
    ws.send(Message::text(text)).await.expect("sending a frame");
}

/// Each delivery of write `seq` (sent at `sent`) until `affected` have come or
/// [`DELIVERY_TIMEOUT`] has passed: the subscriber's index and the latency.
async fn await_deliveries(
    deliveries: &mut Deliveries,
    seq: u64,
    sent: Instant,
    affected: usize,
) -> Vec<(usize, Duration)> {
    let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
    let mut delivered = Vec::with_capacity(affected);
    while delivered.len() < affected {
        match tokio::time::timeout_at(deadline, deliveries.recv()).await {
            Ok(Some((s, index, arrived))) if s == seq => delivered.push((index, arrived - sent)),
            // A late frame for an earlier write.
            Ok(Some(_)) => {}
            Ok(None) => unreachable!("the sender lives in `shared`"),
            Err(_) => break,
        }
    }
    delivered
}

/// What the write with sequence number `seq` carries, so a subscriber can find it by a
/// substring search instead of parsing every frame.
fn marker(seq: u64) -> String {
    format!("w{seq:010}")
}

/// Subscriber `index`: connects, subscribes to `queries` (none: a raw broadcast's
/// connection, which waits for the server's `ready`), says when its first result has come
/// (releasing its connect permit), then reads every frame (timestamping the awaited write's,
/// when `shared` is given) until its task is aborted.
pub async fn subscriber(
    addr: SocketAddr,
    index: usize,
    queries: Vec<(&'static str, Json)>,
    shared: Option<Arc<Shared>>,
    ready: oneshot::Sender<()>,
    permit: OwnedSemaphorePermit,
) {
    let mut ws = connect(addr, &format!("subscriber-{index}-{}", std::process::id())).await;
    if queries.is_empty() {
        while !matches!(ws.next().await, Some(Ok(Message::Text(_)))) {}
    } else {
        subscribe_all(&mut ws, &queries).await;
    }
    drop(permit);
    let _ = ready.send(());
    while let Some(Ok(message)) = ws.next().await {
        let (Message::Text(text), Some(shared)) = (message, &shared) else {
            continue;
        };
        let arrived = Instant::now();
        let seq = shared.awaited.load(Ordering::Acquire);
        if text.as_str().contains(&marker(seq)) {
            let _ = shared.delivered.send((seq, index, arrived));
            if index == 0 {
                *shared.sample.lock().unwrap() = text.as_str().to_owned();
            }
        } else if !text.as_str().contains("\"Ping\"") {
            shared.other_frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Grows `subscribers` to `count` connections, connection `index` subscribed to
/// `queries(index)`, a bounded number connecting at once; returns when every one has its
/// first result.
pub async fn add_subscribers(
    addr: SocketAddr,
    subscribers: &mut Vec<JoinHandle<()>>,
    count: usize,
    queries: impl Fn(usize) -> Vec<(&'static str, Json)>,
    shared: Option<Arc<Shared>>,
) {
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut readies = Vec::new();
    for index in subscribers.len()..count {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (ready, is_ready) = oneshot::channel();
        readies.push(is_ready);
        subscribers.push(tokio::spawn(subscriber(
            addr,
            index,
            queries(index),
            shared.clone(),
            ready,
            permit,
        )));
    }
    for ready in readies {
        ready.await.expect("a subscriber got its first result");
    }
}

pub async fn close_all(subscribers: Vec<JoinHandle<()>>) {
    for task in &subscribers {
        task.abort();
    }
    for task in subscribers {
        let _ = task.await;
    }
}

pub fn run(ctx: &mut Context) -> Result<(), String> {
    let tiers = tiers(ctx.quick);
    // One shared query. Its rows are compared with the raw broadcast's, which sends the frame
    // they captured, so they are pushed after it.
    let (same, sample) = serve_and_fan_out(ctx, "examples/chat", "fanout-same", Kind::SameQuery)?;
    let raw = raw_broadcast(ctx, tiers, &sample)?;
    for row in &raw {
        ctx.push(row.clone());
    }
    for row in same {
        let baseline = raw.iter().find(|r| r.load == row.load);
        ctx.push(match baseline {
            Some(baseline) => row.throughput_ratio(baseline),
            None => row,
        });
    }
    let channels = "runtime/tests/guests/channels";
    let (distinct, _) = serve_and_fan_out(ctx, channels, "fanout-distinct", Kind::DistinctQueries)?;
    for row in distinct {
        ctx.push(row);
    }
    one_of_many(ctx)
}

/// [`fan_out`] of `kind` over every tier against a server of its own (`app`, data `name`).
fn serve_and_fan_out(
    ctx: &Context,
    app: &str,
    name: &str,
    kind: Kind,
) -> Result<(Vec<Row>, String), String> {
    let server = ctx.serve(app, name)?;
    let out = ctx.clients.block_on(fan_out(
        server.addr,
        kind,
        tiers(ctx.quick),
        ctx.quick,
        &|| server.rss_bytes().unwrap_or(0),
        &|| server.cpu_seconds(),
    ));
    server.stop()?;
    Ok(out)
}

/// What the writes of one case came to.
#[derive(Default)]
struct Measured {
    /// Every delivery's latency from its write's send.
    latencies: Vec<Duration>,
    /// Each write's own round trip.
    writes: Vec<Duration>,
    /// Each write's last delivery.
    lasts: Vec<Duration>,
    lost: usize,
    failed: usize,
    other_frames: u64,
    /// The server's CPU seconds over the measured writes.
    cpu: Option<f64>,
}

impl Measured {
    fn delivered(&self) -> usize {
        self.latencies.len()
    }

    /// The writes' own round trip at p50, in milliseconds.
    fn write_p50(&self) -> f64 {
        ms(percentile(&self.writes, 0.5))
    }

    /// The row of `case`: latency, delivery rate, CPU per delivery, and a note.
    fn row(self, scenario: &str, case: String, extra: &str) -> Row {
        let delivered = self.delivered();
        let busy: Duration = self.lasts.iter().sum();
        let write_p50 = self.write_p50();
        let commits = self.writes.len();
        let mut row = Row::new(scenario, case);
        if !busy.is_zero() {
            row = row.throughput(delivered as f64 / busy.as_secs_f64());
        }
        let per_commit = match self.cpu {
            Some(cpu) if commits > 0 => {
                row = row.cpu_per_call(cpu, delivered);
                format!(
                    ", server CPU per commit {:.2} ms",
                    cpu * 1e3 / commits as f64
                )
            }
            _ => String::new(),
        };
        row.note(format!(
            "ops are deliveries; {commits} writes one at a time, write p50 {write_p50:.2} ms, last delivery p50 {:.2} ms{per_commit}, {} lost, {} other frames, {} failed writes{extra}",
            ms(percentile(&self.lasts, 0.5)),
            self.lost,
            self.other_frames,
            self.failed,
        ))
        .latency(Latency::of(self.latencies))
    }

    fn cpu_per_commit(&self) -> Option<f64> {
        Some(self.cpu? / self.writes.len().max(1) as f64)
    }
}

/// Makes up to `commits` writes (after [`WARMUP_COMMITS`] unmeasured ones), one at a time,
/// for at most `budget`; `write(seq)` makes write `seq` and waits for its `affected`
/// deliveries. The writes' and last deliveries' times come sorted.
async fn measure(
    commits: usize,
    budget: Duration,
    affected: usize,
    shared: &Shared,
    seq: &mut u64,
    cpu: &dyn Fn() -> Option<f64>,
    mut write: impl AsyncFnMut(u64) -> Result<WriteResult, String>,
) -> Measured {
    let mut out = Measured::default();
    let mut measuring = Instant::now();
    let (mut other_before, mut cpu_before) = (0, None);
    for k in 0..WARMUP_COMMITS + commits {
        if k == WARMUP_COMMITS {
            measuring = Instant::now();
            other_before = shared.other_frames();
            cpu_before = cpu();
        }
        if k > WARMUP_COMMITS && measuring.elapsed() > budget {
            break;
        }
        *seq += 1;
        let Ok(written) = write(*seq).await else {
            out.failed += 1;
            continue;
        };
        if k >= WARMUP_COMMITS {
            out.lost += affected - written.delivered.len();
            out.lasts.push(written.last());
            out.writes.push(written.written);
            out.latencies
                .extend(written.delivered.into_iter().map(|(_, latency)| latency));
        }
    }
    out.other_frames = shared.other_frames() - other_before;
    out.cpu = cpu_before.zip(cpu()).map(|(before, after)| after - before);
    out.writes.sort_unstable();
    out.lasts.sort_unstable();
    out
}

/// The runtime's rows of `kind`, tier by tier, and the last frame subscriber 0 saw.
async fn fan_out(
    addr: SocketAddr,
    kind: Kind,
    tiers: &[usize],
    quick: bool,
    rss: &dyn Fn() -> u64,
    cpu: &dyn Fn() -> Option<f64>,
) -> (Vec<Row>, String) {
    let (shared, mut deliveries) = Shared::new();
    let mut writer = connect(addr, &format!("writer-{}", std::process::id())).await;
    let mut seq = 0u64;
    let mut subscribers: Vec<JoinHandle<()>> = Vec::new();
    let mut rng = crate::Rng::new(42);
    let mut rows = Vec::new();
    let rss_before = rss();
    for &tier in tiers {
        let setup = Instant::now();
        add_subscribers(
            addr,
            &mut subscribers,
            tier,
            |index| match kind {
                Kind::SameQuery => vec![("chat:get_messages", json!({}))],
                Kind::DistinctQueries => {
                    vec![("channels:list", json!({"channel": format!("c{index}")}))]
                }
            },
            Some(shared.clone()),
        )
        .await;
        let setup_took = setup.elapsed();
        let rss_now = rss();

        let (commits, budget) = match (kind, quick) {
            // About 5 s a commit at 10,000 subscribers on two cores: bound by time.
            (Kind::SameQuery, false) => ((20_000 / tier).clamp(10, 200), 45),
            (Kind::SameQuery, true) => ((5_000 / tier).clamp(10, 50), 5),
            (Kind::DistinctQueries, false) => (300, 15),
            (Kind::DistinctQueries, true) => (100, 5),
        };
        let affected = match kind {
            Kind::SameQuery => tier,
            Kind::DistinctQueries => 1,
        };
        let measured = measure(
            commits,
            Duration::from_secs(budget),
            affected,
            &shared,
            &mut seq,
            cpu,
            async |seq| {
                let tag = tagged_body(seq);
                let write = match kind {
                    Kind::SameQuery => {
                        ("chat:send_message", json!({"user": "writer", "body": tag}))
                    }
                    Kind::DistinctQueries => (
                        "channels:send",
                        json!({"channel": format!("c{}", rng.below(tier)), "body": tag}),
                    ),
                };
                write_and_await(&mut writer, &shared, &mut deliveries, seq, write, affected).await
            },
        )
        .await;
        let (series, case) = match kind {
            Kind::SameQuery => ("same query", format!("{tier} subscribers, same query")),
            Kind::DistinctQueries => (
                "distinct queries",
                format!("{tier} subscribers, distinct queries"),
            ),
        };
        let write_p50 = measured.write_p50();
        let per_connection = rss_now.saturating_sub(rss_before) as f64 / tier as f64;
        let extra = format!(
            "; setup {:.1} s, server RSS {:.0} MiB (+{:.1} KiB/connection)",
            setup_took.as_secs_f64(),
            rss_now as f64 / (1 << 20) as f64,
            per_connection / 1024.0,
        );
        rows.push(
            measured
                .row("fanout", case, &extra)
                .at_load(series, tier as f64)
                .latency_ratio("the writer's commit round trip", write_p50),
        );
    }
    close_all(subscribers).await;
    let sample = shared.sample.lock().unwrap().clone();
    (rows, sample)
}

/// The raw broadcast, tier by tier: `sample` (a transition the same-query case delivered)
/// written to every connection by the baseline server, its marker replaced by each write's.
fn raw_broadcast(ctx: &Context, tiers: &[usize], sample: &str) -> Result<Vec<Row>, String> {
    // Where a write's marker sits in the frame: `"w` and ten digits, then the padding.
    let at = sample.match_indices("\"w").map(|(i, _)| i + 1).find(|&i| {
        let tail = sample.as_bytes().get(i + 1..i + 12);
        tail.is_some_and(|t| t[..10].iter().all(u8::is_ascii_digit) && t[10] == b'-')
    });
    let Some(at) = at else {
        return Err("the same-query case delivered no frame to copy".into());
    };
    let server = BaselineServer::start("broadcast")?;
    let quick = ctx.quick;
    let rows = ctx.clients.block_on(async {
        let (shared, mut deliveries) = Shared::new();
        let mut writer = connect(server.addr, "raw-writer").await;
        // Apart from the writes the sample itself shows.
        let mut seq = 1_000_000_000u64;
        let mut subscribers = Vec::new();
        let mut rows = Vec::new();
        for &tier in tiers {
            add_subscribers(
                server.addr,
                &mut subscribers,
                tier,
                |_| Vec::new(),
                Some(shared.clone()),
            )
            .await;
            let commits = if quick { 50 } else { 200 };
            let measured = measure(
                commits,
                Duration::from_secs(if quick { 5 } else { 20 }),
                tier,
                &shared,
                &mut seq,
                &|| server.cpu_seconds(),
                async |seq| {
                    let marker = marker(seq);
                    let frame =
                        format!("{}{marker}{}", &sample[..at], &sample[at + marker.len()..]);
                    let written = broadcast_and_await(
                        &mut writer,
                        &shared,
                        &mut deliveries,
                        seq,
                        &frame,
                        tier,
                    )
                    .await;
                    Ok(written)
                },
            )
            .await;
            let extra = format!(
                "; a minimal tokio server writing the same {}-byte frame to every socket",
                sample.len()
            );
            rows.push(
                measured
                    .row(
                        "baseline",
                        format!("raw broadcast to {tier} connections"),
                        &extra,
                    )
                    .at_load("raw broadcast", tier as f64),
            );
        }
        close_all(subscribers).await;
        rows
    });
    Ok(rows)
}

/// A commit touching one subscription of 10, then of about 100,000 (10,000 with `--quick`):
/// what a commit costs should not grow with the subscriptions it does not touch.
fn one_of_many(ctx: &mut Context) -> Result<(), String> {
    let server = ctx.serve("runtime/tests/guests/channels", "fanout-many")?;
    let (connections, per_connection) = if ctx.quick { (100, 100) } else { (1_000, 100) };
    let quick = ctx.quick;
    let rows = ctx.clients.block_on(async {
        let (shared, mut deliveries) = Shared::new();
        let mut writer = connect(server.addr, &format!("writer-{}", std::process::id())).await;
        let mut seq = 0u64;
        let mut subscribers = Vec::new();
        let mut rng = crate::Rng::new(7);
        let mut rows = Vec::new();
        // Connections 0..10 watch channels c0..c9; connection 10 + i watches the
        // `per_connection` channels after those.
        let few = 10;
        let channels_of = |index: usize| -> Vec<(&'static str, Json)> {
            let channels = if index < few {
                index..index + 1
            } else {
                let first = few + (index - few) * per_connection;
                first..first + per_connection
            };
            channels
                .map(|c| ("channels:list", json!({"channel": format!("c{c}")})))
                .collect()
        };
        let mut base: Option<(Option<f64>, f64)> = None;
        for (count, subscriptions) in [
            (few, few),
            (few + connections, few + connections * per_connection),
        ] {
            add_subscribers(
                server.addr,
                &mut subscribers,
                count,
                channels_of,
                Some(shared.clone()),
            )
            .await;
            let measured = measure(
                if quick { 100 } else { 300 },
                Duration::from_secs(if quick { 5 } else { 15 }),
                1,
                &shared,
                &mut seq,
                &|| server.cpu_seconds(),
                async |seq| {
                    let channel = rng.below(subscriptions);
                    let write = (
                        "channels:send",
                        json!({"channel": format!("c{channel}"), "body": tagged_body(seq)}),
                    );
                    write_and_await(&mut writer, &shared, &mut deliveries, seq, write, 1).await
                },
            )
            .await;
            let case = format!("a commit touching 1 of {subscriptions} subscriptions");
            let extra = format!("; {count} connections");
            let cpu_per_commit = measured.cpu_per_commit();
            let row = match base {
                None => measured.row("fanout", case, &extra),
                Some((base_cpu, base_p50)) => {
                    let cpu_ratio = cpu_per_commit
                        .zip(base_cpu)
                        .map(|(now, then)| {
                            format!("; {:.2}x the server CPU per commit with {few}", now / then)
                        })
                        .unwrap_or_default();
                    measured
                        .row("fanout", case, &format!("{extra}{cpu_ratio}"))
                        .latency_ratio(
                            format!("fanout a commit touching 1 of {few} subscriptions"),
                            base_p50,
                        )
                }
            };
            // The first case is the one the second is compared with.
            if base.is_none() {
                base = Some((
                    cpu_per_commit,
                    row.latency.as_ref().map_or(0.0, |l| l.p50_ms),
                ));
            }
            rows.push(row);
        }
        close_all(subscribers).await;
        rows
    });
    server.stop()?;
    for row in rows {
        ctx.push(row);
    }
    Ok(())
}
