//! `fanout`: one writer, and 100 / 1,000 / 10,000 subscribed connections (`--quick` stops at
//! 1,000), of one shared query and of distinct per-channel queries; commit-to-delivery
//! latency.
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

use super::{Context, BODY_BYTES};
use crate::report::Row;
use crate::stats::{ms, percentile, Latency};
use crate::ws::{connect, mutate, subscribe, Ws};
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
    Ok(WriteResult { written, delivered })
}

/// What the write with sequence number `seq` carries, so a subscriber can find it by a
/// substring search instead of parsing every frame.
fn marker(seq: u64) -> String {
    format!("w{seq:010}")
}

/// Subscriber `index`: connects, subscribes to `path(args)`, says when its first result has
/// come (releasing its connect permit), then reads every frame (timestamping the awaited
/// write's, when `shared` is given) until its task is aborted.
pub async fn subscriber(
    addr: SocketAddr,
    index: usize,
    path: &'static str,
    args: Json,
    shared: Option<Arc<Shared>>,
    ready: oneshot::Sender<()>,
    permit: OwnedSemaphorePermit,
) {
    let mut ws = connect(addr, &format!("subscriber-{index}-{}", std::process::id())).await;
    subscribe(&mut ws, path, args).await;
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
        } else if !text.as_str().contains("\"Ping\"") {
            shared.other_frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Grows `subscribers` to `count` connections, each subscribed to `query(index)`, a bounded
/// number connecting at once; returns when every one has its first result.
pub async fn add_subscribers(
    addr: SocketAddr,
    subscribers: &mut Vec<JoinHandle<()>>,
    count: usize,
    query: impl Fn(usize) -> (&'static str, Json),
    shared: Option<Arc<Shared>>,
) {
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut readies = Vec::new();
    for index in subscribers.len()..count {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (ready, is_ready) = oneshot::channel();
        readies.push(is_ready);
        let (path, args) = query(index);
        subscribers.push(tokio::spawn(subscriber(
            addr,
            index,
            path,
            args,
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
    for kind in [Kind::SameQuery, Kind::DistinctQueries] {
        let (app, name) = match kind {
            Kind::SameQuery => ("examples/chat", "fanout-same"),
            Kind::DistinctQueries => ("runtime/tests/guests/channels", "fanout-distinct"),
        };
        let server = ctx.serve(app, name)?;
        let rss = || server.rss_bytes().unwrap_or(0);
        let quick = ctx.quick;
        let rows = ctx
            .clients
            .block_on(fan_out(server.addr, kind, tiers(quick), quick, &rss));
        server.stop()?;
        for row in rows {
            ctx.push(row);
        }
    }
    Ok(())
}

async fn fan_out(
    addr: SocketAddr,
    kind: Kind,
    tiers: &[usize],
    quick: bool,
    rss: &dyn Fn() -> u64,
) -> Vec<Row> {
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
                Kind::SameQuery => ("chat:get_messages", json!({})),
                Kind::DistinctQueries => ("channels:list", json!({"channel": format!("c{index}")})),
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
        let budget = Duration::from_secs(budget);
        let affected = match kind {
            Kind::SameQuery => tier,
            Kind::DistinctQueries => 1,
        };
        let (mut latencies, mut writes, mut lasts) = (Vec::new(), Vec::new(), Vec::new());
        let mut lost = 0;
        let mut failed = 0;
        let mut other_before = 0;
        let mut measuring = Instant::now();
        for k in 0..WARMUP_COMMITS + commits {
            if k == WARMUP_COMMITS {
                measuring = Instant::now();
                other_before = shared.other_frames();
            }
            if k > WARMUP_COMMITS && measuring.elapsed() > budget {
                break;
            }
            seq += 1;
            let tag = tagged_body(seq);
            let write = match kind {
                Kind::SameQuery => ("chat:send_message", json!({"user": "writer", "body": tag})),
                Kind::DistinctQueries => (
                    "channels:send",
                    json!({"channel": format!("c{}", rng.below(tier)), "body": tag}),
                ),
            };
            let Ok(write) =
                write_and_await(&mut writer, &shared, &mut deliveries, seq, write, affected).await
            else {
                failed += 1;
                continue;
            };
            if k >= WARMUP_COMMITS {
                lost += affected - write.delivered.len();
                lasts.push(write.last());
                writes.push(write.written);
                latencies.extend(write.delivered.into_iter().map(|(_, latency)| latency));
            }
        }
        let other = shared.other_frames() - other_before;
        writes.sort_unstable();
        lasts.sort_unstable();
        let write_p50 = ms(percentile(&writes, 0.5));
        let (series, case) = match kind {
            Kind::SameQuery => ("same query", format!("{tier} subscribers, same query")),
            Kind::DistinctQueries => (
                "distinct queries",
                format!("{tier} subscribers, distinct queries"),
            ),
        };
        let per_connection = rss_now.saturating_sub(rss_before) as f64 / tier as f64;
        rows.push(
            Row::new("fanout", case)
                .latency(Latency::of(latencies))
                .at_load(series, tier as f64)
                .latency_ratio("the writer's commit round trip", write_p50)
                .note(format!(
                    "{} commits, write p50 {write_p50:.2} ms, last subscriber p50 {:.2} ms, setup {:.1} s, server RSS {:.0} MiB (+{:.1} KiB/connection), {lost} lost, {other} other frames, {failed} failed writes",
                    writes.len(),
                    ms(percentile(&lasts, 0.5)),
                    setup_took.as_secs_f64(),
                    rss_now as f64 / (1 << 20) as f64,
                    per_connection / 1024.0,
                )),
        );
    }
    close_all(subscribers).await;
    rows
}
