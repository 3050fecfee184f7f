//! Sync benchmark: a real server over a fresh store, driven over real WebSocket connections
//! (PROTOCOL.md section 3).
//!
//! `cargo run --release -p bench --bin sync -- [--quick]`; `BENCH_DIR` chooses where the
//! store's temp dir goes.
//!
//! What it prints:
//!
//! 1. **Mutations over WebSocket**: 64 connections, each sending `chat:send_message` one after
//!    another and waiting for its `MutationResponse`, for 5 s (2 s with `--quick`).
//!    Mutations/s counts answered mutations; latency is send to `MutationResponse`. Each
//!    answer means a durable commit: the committer groups concurrent commits into one synced
//!    RocksDB write (one fsync per group).
//! 2. **Commit-to-delivery** with 100, 1,000 and 10,000 subscribed connections (`--quick`
//!    stops at 1,000). One writer connection commits one message at a time; each commit's
//!    body carries a sequence number, and every subscriber's reader task timestamps the
//!    first frame that contains it. Latency runs from just before the writer sends the
//!    mutation to that frame's arrival, so it includes the mutation's run and its fsync
//!    (the writer's round trip, send to `MutationResponse`, is shown beside it), the
//!    server's refresh, serializing each transition, and the client reading it.
//!    `setup s` is the time to connect and subscribe the subscribers added for the row,
//!    `write p50` the writer's round trip, `last p50` the time until the last affected
//!    subscriber had the write, and `lost` deliveries that had not come after 30 s.
//!    - *same query*: every subscriber watches `chat:get_messages` (50 messages); each
//!      commit reaches all of them.
//!    - *distinct queries*: subscriber i watches `channels:list {channel: "c<i>"}` (the
//!      `channels` guest in `runtime/tests/guests/`); each commit writes one random
//!      channel, so one subscriber is affected and the others are untouched: the latency
//!      shows what a refresh costs as untouched subscribers grow. `other` counts
//!      frames that did not carry the awaited write (untouched subscribers should get none).
//!
//! Everything runs on one machine: loopback TCP, JSON text frames parsed and serialized on
//! both sides, and the clients (all on one tokio runtime) share the CPU with the server, so
//! figures are noisy on a small or busy machine. Every connection needs a file descriptor on
//! each side; when the limit cannot be raised far enough for both ends in one process, the
//! server (the same code) runs in a child process of this program instead.

use futures_util::{SinkExt, StreamExt};
use runtime::server::{App, Server};
use runtime::store::Store;
use runtime::wasm::{build_app, HostConfig, WasmHost};
use serde_json::{json, Value as Json};
use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const MUTATORS: usize = 64;
/// Chat-sized messages: the body is padded to this many bytes.
const BODY_BYTES: usize = 48;
/// Connections being opened at once while subscribers are added.
const CONNECT_CONCURRENCY: usize = 200;
/// A write that has not reached its subscribers by then counts as lost, and the run goes on.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Descriptors beyond the sockets: the store's files, the runtime's, stdio.
const FD_RESERVE: u64 = 512;

type Ws = WebSocketStream<TcpStream>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve-child") {
        serve_child(&args[2..]);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let tiers: &[usize] = if quick {
        &[100, 1_000]
    } else {
        &[100, 1_000, 10_000]
    };
    let fd_limit = raise_fd_limit();
    let max_connections = *tiers.last().unwrap() as u64 + 1;
    // Both ends of every connection in one process, or only the client end here.
    let in_process = fd_limit >= 2 * max_connections + FD_RESERVE;
    if !in_process && fd_limit < max_connections + FD_RESERVE {
        eprintln!("RLIMIT_NOFILE is {fd_limit}: too low for {max_connections} connections");
        std::process::exit(1);
    }

    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let guests = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| PathBuf::from(d).join("guests"))
        .unwrap_or_else(|| dir.path().join("guests"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let build = |app: &str| {
        build_app(&root.join(app), &guests).unwrap_or_else(|e| panic!("building {app}: {e}"))
    };
    let chat_wasm = build("examples/chat");
    let channels_wasm = build("runtime/tests/guests/channels");

    println!(
        "sync benchmark{}: data in {}, RLIMIT_NOFILE {fd_limit}, {} cores",
        if quick { " (--quick)" } else { "" },
        dir.path().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "server: {}",
        if in_process {
            "in this process, on a tokio runtime of its own"
        } else {
            "in a child process (the descriptor limit does not fit both ends of every connection in one)"
        }
    );

    let clients = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = guests.join("compiled");

    let chat = BenchServer::start(in_process, &chat_wasm, &dir.path().join("chat"), &cache);
    let duration = Duration::from_secs(if quick { 2 } else { 5 });
    clients.block_on(mutation_throughput(chat.addr, duration));
    clients.block_on(fan_out(chat.addr, Scenario::SameQuery, tiers, quick));
    chat.stop();

    let channels = BenchServer::start(
        in_process,
        &channels_wasm,
        &dir.path().join("channels"),
        &cache,
    );
    clients.block_on(fan_out(
        channels.addr,
        Scenario::DistinctQueries,
        tiers,
        quick,
    ));
    channels.stop();
}

/// Raises the soft descriptor limit to the hard one (raising the hard one needs privileges
/// a container often lacks); returns the soft limit in force.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        let wanted = libc::rlimit {
            rlim_cur: 65_536.max(limit.rlim_cur),
            rlim_max: 65_536.max(limit.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
            return wanted.rlim_cur;
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
            return limit.rlim_cur;
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

// ---------------------------------------------------------------------------------------
// The server

/// The server over a fresh store in `data`, serving the module at `wasm` as `runtime serve`
/// would (default host limits, compiled modules cached in `cache`).
async fn start_server(
    wasm: &Path,
    data: &Path,
    cache: &Path,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<std::io::Result<()>>,
) {
    let store = Arc::new(Store::open(data).expect("opening the store"));
    let host = Arc::new(
        WasmHost::new(HostConfig {
            cache_dir: Some(cache.to_owned()),
            ..HostConfig::default()
        })
        .expect("creating the wasm host"),
    );
    let bytes = std::fs::read(wasm).expect("reading the module");
    let module = Arc::new(host.deploy(&store, &bytes).expect("deploying"));
    let app = App {
        store,
        host,
        module,
        web_dir: None,
    };
    let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), app)
        .await
        .expect("binding a port");
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

/// Stops a server started by [`start_server`] once its clients are gone.
async fn stop_server(stop: oneshot::Sender<()>, task: JoinHandle<std::io::Result<()>>) {
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(60), task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(outcome) => eprintln!("the server stopped badly: {outcome:?}"),
        Err(_) => eprintln!("the server did not stop within 60 s"),
    }
}

struct BenchServer {
    addr: SocketAddr,
    running: Running,
}

enum Running {
    InProcess {
        runtime: tokio::runtime::Runtime,
        stop: oneshot::Sender<()>,
        task: JoinHandle<std::io::Result<()>>,
    },
    Child(std::process::Child),
}

impl BenchServer {
    fn start(in_process: bool, wasm: &Path, data: &Path, cache: &Path) -> BenchServer {
        if in_process {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("server")
                .build()
                .unwrap();
            let (addr, stop, task) = runtime.block_on(start_server(wasm, data, cache));
            return BenchServer {
                addr,
                running: Running::InProcess {
                    runtime,
                    stop,
                    task,
                },
            };
        }
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--serve-child")
            .args([wasm, data, cache])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting the server process");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("the server process said {line:?}"));
        BenchServer {
            addr,
            running: Running::Child(child),
        }
    }

    fn stop(self) {
        match self.running {
            Running::InProcess {
                runtime,
                stop,
                task,
            } => {
                runtime.block_on(stop_server(stop, task));
                runtime.shutdown_timeout(Duration::from_secs(5));
            }
            Running::Child(mut child) => {
                // Closing its stdin is the child's signal to shut down.
                drop(child.stdin.take());
                let deadline = Instant::now() + Duration::from_secs(60);
                while child.try_wait().unwrap().is_none() {
                    if Instant::now() > deadline {
                        eprintln!("the server process did not stop; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// `--serve-child WASM DATA CACHE`: serves until stdin closes.
fn serve_child(args: &[String]) {
    raise_fd_limit();
    let [wasm, data, cache] = args else {
        panic!("--serve-child WASM DATA CACHE");
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (addr, stop, task) =
            start_server(Path::new(wasm), Path::new(data), Path::new(cache)).await;
        println!("listening on {addr}");
        std::io::stdout().flush().unwrap();
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await;
        stop_server(stop, task).await;
    });
}

// ---------------------------------------------------------------------------------------
// Clients

async fn connect(addr: SocketAddr, session: &str) -> Ws {
    let stream = TcpStream::connect(addr).await.expect("connecting");
    stream.set_nodelay(true).unwrap();
    // A small read buffer: 10,000 connections at the default 128 KiB would be 1.3 GB.
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(
        "ws://localhost/api/sync",
        stream,
        Some(config),
    )
    .await
    .expect("the WebSocket handshake");
    send(
        &mut ws,
        json!({"type": "Connect", "sessionId": session, "connectionCount": 0}),
    )
    .await;
    ws
}

async fn send(ws: &mut Ws, message: Json) {
    ws.send(Message::text(message.to_string()))
        .await
        .expect("sending a frame");
}

/// The next text frame, parsed.
async fn next_json(ws: &mut Ws) -> Json {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(text.as_str()).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("the connection ended: {other:?}"),
        }
    }
}

/// Sends a mutation and waits for its answer, skipping other frames.
async fn mutate(ws: &mut Ws, request_id: u64, path: &str, args: Json) {
    send(
        ws,
        json!({"type": "Mutation", "requestId": request_id, "udfPath": path, "args": args}),
    )
    .await;
    loop {
        let frame = next_json(ws).await;
        if frame["type"] == "MutationResponse" && frame["requestId"] == request_id {
            assert_eq!(frame["success"], true, "{path} failed: {frame}");
            return;
        }
    }
}

/// A message body of [`BODY_BYTES`] whose start identifies it.
fn body(tag: &str) -> String {
    format!("{tag:-<BODY_BYTES$}")
}

/// What the write with sequence number `seq` carries, so a subscriber can find it by a
/// substring search instead of parsing every frame.
fn marker(seq: u64) -> String {
    format!("w{seq:010}")
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------------------------------
// 1. Mutation throughput

async fn mutation_throughput(addr: SocketAddr, duration: Duration) {
    let mut sockets = Vec::new();
    for i in 0..MUTATORS {
        sockets.push(connect(addr, &format!("mutator-{i}")).await);
    }
    let start = Instant::now();
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut request_id = 0;
                while start.elapsed() < duration {
                    request_id += 1;
                    let args = json!({"user": format!("user{i}"), "body": body(&format!("m{i}-{request_id}"))});
                    let sent = Instant::now();
                    mutate(&mut ws, request_id, "chat:send_message", args).await;
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let took = start.elapsed();
    latencies.sort_unstable();
    println!();
    println!(
        "1. Mutations over WebSocket: {MUTATORS} connections, each chat:send_message after the previous answer, {} s",
        duration.as_secs()
    );
    println!(
        "   {:>12} {:>14} {:>10} {:>10} {:>10}",
        "mutations", "mutations/s", "p50 ms", "p99 ms", "max ms"
    );
    println!(
        "   {:>12} {:>14.0} {:>10} {:>10} {:>10}",
        latencies.len(),
        latencies.len() as f64 / took.as_secs_f64(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
}

// ---------------------------------------------------------------------------------------
// 2. Commit-to-delivery

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    SameQuery,
    DistinctQueries,
}

/// What subscriber tasks share with the writer.
struct Shared {
    /// The sequence number of the write being awaited.
    awaited: AtomicU64,
    /// Text frames other than `Ping` that did not carry the awaited write.
    other_frames: AtomicU64,
    /// (sequence number, arrival) of each frame that carried the awaited write.
    delivered: mpsc::UnboundedSender<(u64, Instant)>,
}

/// Subscriber `index`: connects, subscribes, says when its first result has come (releasing
/// its connect permit), then timestamps every frame.
async fn subscriber(
    addr: SocketAddr,
    scenario: Scenario,
    index: usize,
    shared: Arc<Shared>,
    ready: oneshot::Sender<()>,
    permit: OwnedSemaphorePermit,
) {
    let mut ws = connect(addr, &format!("subscriber-{index}")).await;
    let (path, args) = match scenario {
        Scenario::SameQuery => ("chat:get_messages", json!({})),
        Scenario::DistinctQueries => ("channels:list", json!({"channel": format!("c{index}")})),
    };
    send(
        &mut ws,
        json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
               "modifications": [{"type": "Add", "queryId": 1, "udfPath": path, "args": args}]}),
    )
    .await;
    loop {
        let frame = next_json(&mut ws).await;
        if frame["type"] == "Transition" && frame["endVersion"]["querySet"] == 1 {
            break;
        }
    }
    drop(permit);
    let _ = ready.send(());
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let arrived = Instant::now();
        let seq = shared.awaited.load(Ordering::Acquire);
        if text.as_str().contains(&marker(seq)) {
            let _ = shared.delivered.send((seq, arrived));
        } else if !text.as_str().contains("\"Ping\"") {
            shared.other_frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Commits not measured after subscribers are added (first runs, warm caches).
const WARMUP_COMMITS: usize = 2;

async fn fan_out(addr: SocketAddr, scenario: Scenario, tiers: &[usize], quick: bool) {
    let (delivered, mut deliveries) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        awaited: AtomicU64::new(0),
        other_frames: AtomicU64::new(0),
        delivered,
    });
    let mut writer = connect(addr, "writer").await;
    let mut seq = 0u64;
    let mut subscribers: Vec<JoinHandle<()>> = Vec::new();
    let mut rng = bench::Rng::new(42);
    println!();
    match scenario {
        Scenario::SameQuery => println!(
            "2a. Commit-to-delivery, every subscriber on chat:get_messages (50 messages per result)"
        ),
        Scenario::DistinctQueries => println!(
            "2b. Commit-to-delivery, subscriber i on channels:list {{channel: \"c<i>\"}}, each commit to one random channel"
        ),
    }
    println!(
        "    {:>6} {:>9} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>5}",
        "subs",
        "untouched",
        "commits",
        "setup s",
        "write p50",
        "p50 ms",
        "p99 ms",
        "max ms",
        "last p50",
        "other",
        "lost"
    );
    for &tier in tiers {
        // Grow to `tier` subscribers, a bounded number connecting at once.
        let setup = Instant::now();
        let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
        let mut readies = Vec::new();
        for index in subscribers.len()..tier {
            let permit = permits.clone().acquire_owned().await.unwrap();
            let (ready, is_ready) = oneshot::channel();
            readies.push(is_ready);
            let shared = shared.clone();
            subscribers.push(tokio::spawn(subscriber(
                addr, scenario, index, shared, ready, permit,
            )));
        }
        for ready in readies {
            ready.await.expect("a subscriber got its first result");
        }
        let setup_took = setup.elapsed();

        let (commits, budget) = match (scenario, quick) {
            // About 5 s a commit at 10,000 subscribers on two cores: bound by time.
            (Scenario::SameQuery, false) => ((20_000 / tier).clamp(10, 200), 45),
            (Scenario::SameQuery, true) => ((5_000 / tier).clamp(10, 50), 5),
            (Scenario::DistinctQueries, false) => (300, 15),
            (Scenario::DistinctQueries, true) => (100, 5),
        };
        let budget = Duration::from_secs(budget);
        let affected = match scenario {
            Scenario::SameQuery => tier,
            Scenario::DistinctQueries => 1,
        };
        let (mut latencies, mut writes, mut lasts) = (Vec::new(), Vec::new(), Vec::new());
        let mut lost = 0;
        let mut other_before = 0;
        let mut measuring = Instant::now();
        for k in 0..WARMUP_COMMITS + commits {
            if k == WARMUP_COMMITS {
                measuring = Instant::now();
                other_before = shared.other_frames.load(Ordering::Relaxed);
            }
            if k > WARMUP_COMMITS && measuring.elapsed() > budget {
                break;
            }
            seq += 1;
            shared.awaited.store(seq, Ordering::Release);
            let tag = body(&marker(seq));
            let (path, args) = match scenario {
                Scenario::SameQuery => {
                    ("chat:send_message", json!({"user": "writer", "body": tag}))
                }
                Scenario::DistinctQueries => (
                    "channels:send",
                    json!({"channel": format!("c{}", rng.below(tier)), "body": tag}),
                ),
            };
            let sent = Instant::now();
            mutate(&mut writer, seq, path, args).await;
            let written = sent.elapsed();
            let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
            let (mut got, mut last) = (0, Duration::ZERO);
            let mut these = Vec::with_capacity(affected);
            while got < affected {
                match tokio::time::timeout_at(deadline, deliveries.recv()).await {
                    Ok(Some((s, arrived))) if s == seq => {
                        got += 1;
                        let latency = arrived - sent;
                        last = last.max(latency);
                        these.push(latency);
                    }
                    // A late frame for an earlier write.
                    Ok(Some(_)) => {}
                    Ok(None) => unreachable!("the sender lives in `shared`"),
                    Err(_) => break,
                }
            }
            if k >= WARMUP_COMMITS {
                lost += affected - got;
                latencies.extend(these);
                writes.push(written);
                lasts.push(last);
            }
        }
        let other = shared.other_frames.load(Ordering::Relaxed) - other_before;
        latencies.sort_unstable();
        writes.sort_unstable();
        lasts.sort_unstable();
        println!(
            "    {:>6} {:>9} {:>7} {:>8.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>5}",
            tier,
            tier - affected,
            writes.len(),
            setup_took.as_secs_f64(),
            ms(percentile(&writes, 0.50)),
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies.last().copied().unwrap_or_default()),
            ms(percentile(&lasts, 0.50)),
            other,
            lost,
        );
    }
    for task in &subscribers {
        task.abort();
    }
    for task in subscribers {
        let _ = task.await;
    }
}
