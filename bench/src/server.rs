//! The `runtime` binary (`cli/`), run as `runtime serve APP --port 0 --data DIR` in a child
//! process on loopback, exactly as a user starts it.

use crate::report::CpuSpent;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The workspace root (where `examples/` and `Cargo.toml` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The `runtime` binary beside this one. Both come from `cargo test --release --workspace
/// --no-run` (the README's build command for the bench): the workspace's one feature set, so
/// wasmtime and RocksDB are built once for the tests, the server and the bench alike.
pub fn runtime_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let binary = exe
        .parent()
        .ok_or("no folder for the current executable")?
        .join("runtime");
    if !binary.is_file() {
        return Err(format!(
            "no runtime binary at {}: build it with `cargo test --release --workspace --no-run`",
            binary.display()
        ));
    }
    Ok(binary)
}

/// Builds an app crate to wasm where `runtime serve` looks for it (`APP/target`), so that
/// the server's own build is a no-op and a timed start never includes compiling.
/// Returns the module's path.
pub fn build_app(app: &Path) -> Result<PathBuf, String> {
    ferrovex_runtime::wasm::build_app(app, &app.join("target"))
        .map_err(|e| format!("building {}: {e}", app.display()))
}

/// A running `runtime serve`.
pub struct RuntimeServer {
    child: Child,
    pub addr: SocketAddr,
    /// The admin key of its data folder (for `GET /api/metrics`).
    pub admin_key: String,
    /// From spawning the process to its `listening on` line.
    pub started_in: Duration,
    log: PathBuf,
    /// `perf record` of the server, when `BENCH_PERF` is set.
    perf: Option<Child>,
}

impl RuntimeServer {
    /// Starts `runtime serve APP --port 0 --data DATA`; its stderr goes to `log`.
    pub fn start(binary: &Path, app: &Path, data: &Path, log: &Path) -> Result<Self, String> {
        Self::start_with(binary, app, data, log, &[])
    }

    /// [`RuntimeServer::start`] with more flags of `runtime serve` (`--allow-private-fetch`
    /// for the scenario whose actions fetch from a server on loopback).
    pub fn start_with(
        binary: &Path,
        app: &Path,
        data: &Path,
        log: &Path,
        flags: &[&str],
    ) -> Result<Self, String> {
        let started = Instant::now();
        let stderr = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = Command::new(binary)
            .arg("serve")
            .arg(app)
            .args(["--host", "127.0.0.1", "--port", "0", "--data"])
            .arg(data)
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        // Read stdout on a thread (and keep draining it), so a timeout can be had.
        let stdout = child.stdout.take().unwrap();
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { return };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
            for _ in lines {}
        });
        let deadline = started + Duration::from_secs(600);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match line_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                        let addr = addr
                            .parse()
                            .map_err(|e| format!("the server said {line:?}: {e}"))?;
                        let started_in = started.elapsed();
                        let admin_key = ferrovex_runtime::auth::AdminKeyFile::existing(data)
                            .and_then(|file| file.read())?;
                        let perf = std::env::var_os("BENCH_PERF")
                            .and_then(|_| profile(child.id(), &log.with_extension("perf.data")));
                        return Ok(RuntimeServer {
                            child,
                            addr,
                            admin_key,
                            started_in,
                            log: log.to_owned(),
                            perf,
                        });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "runtime serve {} did not start; the end of {}:\n{}",
                        app.display(),
                        log.display(),
                        tail(log)
                    ));
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The CPU time the server has used so far, user and system, all threads.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_of(self.pid())
    }

    /// The server's resident memory, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kib: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// SIGKILL: a crash, nothing flushed or closed.
    pub fn kill(mut self) {
        self.stop_profile();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a graceful shutdown), then SIGKILL if it has not exited within 60 s.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop_profile();
        // SAFETY: a plain system call on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(format!(
                        "the server exited with {status}; the end of {}:\n{}",
                        self.log.display(),
                        tail(&self.log)
                    ))
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err("the server did not stop within 60 s; killed".into());
                }
            }
        }
    }
}

impl RuntimeServer {
    fn stop_profile(&mut self) {
        if let Some(mut perf) = self.perf.take() {
            // SAFETY: a plain system call on our own child's pid.
            unsafe {
                libc::kill(perf.id() as libc::pid_t, libc::SIGINT);
            }
            let _ = perf.wait();
        }
    }
}

/// `perf record -g` of process `pid` into `output`, until it is sent SIGINT.
fn profile(pid: u32, output: &Path) -> Option<Child> {
    Command::new("perf")
        .args([
            "record",
            "-F",
            "499",
            "-g",
            "-q",
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(output)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

impl Drop for RuntimeServer {
    fn drop(&mut self) {
        self.stop_profile();
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The CPU time process `pid` has used so far, user and system, all threads (from
/// /proc/PID/stat, in clock ticks).
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: utime
    // and stime are the 14th and 15th fields of the line, the 12th and 13th after it.
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// The CPU time a server and this process (the benchmark's clients, all threads) spend from
/// `start` on: the clients share the cores with the server, so what they take bounds the
/// rate whatever the server costs.
pub struct CpuMeter {
    server_pid: u32,
    server: Option<f64>,
    clients: Option<f64>,
}

impl CpuMeter {
    pub fn start(server: &RuntimeServer) -> CpuMeter {
        CpuMeter {
            server_pid: server.pid(),
            server: server.cpu_seconds(),
            clients: cpu_seconds_of(std::process::id()),
        }
    }

    /// What each side spent since `start`.
    pub fn spent(&self) -> CpuSpent {
        let since = |now: Option<f64>, then: Option<f64>| now.zip(then).map(|(n, t)| n - t);
        CpuSpent {
            server: since(cpu_seconds_of(self.server_pid), self.server),
            clients: since(cpu_seconds_of(std::process::id()), self.clients),
        }
    }
}

/// A baseline server built beside this binary (`src/bin/broadcast.rs` for the fan-out
/// scenario, `src/bin/http_floor.rs` for the calls) in a child process, killed when dropped.
pub struct BaselineServer {
    child: Child,
    pub addr: SocketAddr,
}

impl BaselineServer {
    /// Starts the binary `name` and waits for its `listening on` line.
    pub fn start(name: &str) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let binary = exe.with_file_name(name);
        let mut child = Command::new(&binary)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| format!("{} said {line:?}", binary.display()))?;
        Ok(BaselineServer { child, addr })
    }

    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_of(self.child.id())
    }
}

impl Drop for BaselineServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises the soft descriptor limit as far as allowed (children inherit it); returns the
/// soft limit in force.
pub fn raise_fd_limit() -> u64 {
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
