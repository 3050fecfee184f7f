//! `actions`: 16 official Convex clients of `runtime serve bench/apps/jobs`, each calling the
//! action `outside:fetch_once` after the previous one resolved; every action makes one
//! outbound `GET` to an HTTP server of the bench's own on 127.0.0.1, so the server runs with
//! `--allow-private-fetch` (loopback is refused without it). The figures: actions per second,
//! their latency as the client sees it, and the server's CPU time per action (the target
//! server's own CPU is the bench process's, not counted).

use super::{Context, JOBS_APP};
use crate::http::Http;
use crate::report::Row;
use crate::server::CpuMeter;
use crate::ws::{closed_loop_of, Kind};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Concurrent clients: under the server's `MAX_CONCURRENT_ACTIONS` (32), so no action waits
/// for a slot and the figure is the actions' own cost.
pub const ACTION_CLIENTS: usize = 16;

pub fn run(ctx: &mut Context) -> Result<(), String> {
    let target = Target::start().map_err(|e| format!("the loopback HTTP server: {e}"))?;
    let server = ctx.serve_with(JOBS_APP, "actions", &["--allow-private-fetch"])?;
    let url = format!("http://{}/", target.addr);
    // One call before the loop, over HTTP: a refused or failed fetch stops here with the
    // server's own message.
    let mut http = Http::connect(server.addr).map_err(|e| e.to_string())?;
    http.call("action", "outside:fetch_once", json!({ "url": url }))?;
    drop(http);

    let served_before = target.served();
    let cpu = CpuMeter::start(&server);
    let result = ctx.clients.block_on(closed_loop_of(
        Kind::Action,
        server.addr,
        ACTION_CLIENTS,
        ctx.duration(),
        move |_, _| ("outside:fetch_once", json!({ "url": url })),
    ));
    let spent = cpu.spent();
    let served = target.served() - served_before;
    server.stop()?;
    target.stop();
    let row = Row::new(
        "actions",
        format!("{ACTION_CLIENTS} clients, outside:fetch_once (1 fetch)"),
    )
    .throughput(result.per_second())
    .latency(result.latency.clone())
    .note(format!(
        "{} actions, {served} requests served on loopback, {}",
        result.answered,
        result.failed()
    ));
    // Server CPU only: this process also serves the actions' fetches, so its CPU is not the
    // clients' alone.
    ctx.push(match spent.server {
        Some(cpu) => row.cpu_per_call(cpu, result.answered),
        None => row,
    });
    Ok(())
}

/// The server the actions fetch from: HTTP/1.1 on 127.0.0.1, a thread per connection,
/// keep-alive, `200 ok` to every request. Plain threads, apart from the client runtime, so
/// its answers do not wait behind the load clients' tasks.
pub struct Target {
    pub addr: SocketAddr,
    served: Arc<AtomicU64>,
    stopping: Arc<AtomicBool>,
}

impl Target {
    pub fn start() -> std::io::Result<Target> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let served = Arc::new(AtomicU64::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let (count, stop) = (served.clone(), stopping.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let count = count.clone();
                std::thread::spawn(move || {
                    let _ = answer(stream, &count);
                });
            }
        });
        Ok(Target {
            addr,
            served,
            stopping,
        })
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Acquire)
    }

    /// Stops accepting (a connection of its own wakes the accept); open connections end when
    /// their clients close them, or after a minute idle.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Answers the requests of one connection until it closes.
fn answer(stream: TcpStream, served: &AtomicU64) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut length = 0;
        let mut close = false;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.trim().eq_ignore_ascii_case("close");
                }
            }
        }
        std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink())?;
        writer.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok",
        )?;
        served.fetch_add(1, Ordering::AcqRel);
        if close {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one response with a `content-length` body.
    fn response(reader: &mut BufReader<TcpStream>) -> (String, String) {
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim_end().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        (
            status.trim_end().to_owned(),
            String::from_utf8(body).unwrap(),
        )
    }

    #[test]
    fn the_target_answers_every_request_of_a_kept_alive_connection() {
        let target = Target::start().unwrap();
        let mut stream = TcpStream::connect(target.addr).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        // A request with a body, then one without: the body must not be read as a request.
        stream
            .write_all(b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello")
            .unwrap();
        assert_eq!(
            response(&mut reader),
            ("HTTP/1.1 200 OK".into(), "ok".into())
        );
        stream
            .write_all(b"GET /b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(
            response(&mut reader),
            ("HTTP/1.1 200 OK".into(), "ok".into())
        );
        // Closed after `connection: close`.
        assert_eq!(reader.read_line(&mut String::new()).unwrap(), 0);
        assert_eq!(target.served(), 2);
        target.stop();
    }
}
