//! The PostgreSQL baseline: the bank transfer as a PL/pgSQL function, called by `pgbench`
//! from 64 concurrent clients with synchronous commit (PostgreSQL's default), on a
//! throwaway cluster in a temporary folder, on a loopback port.
//!
//! Needs PostgreSQL's server binaries (`initdb`, `pg_ctl`, `postgres`, `psql`, `pgbench`):
//! on Debian `apt-get install -y postgresql`, which puts them in `/usr/lib/postgresql/*/bin`
//! (or set `PG_BIN`). As root, the cluster runs as the `postgres` user (initdb refuses root).

use super::{Context, ACCOUNTS, CLIENTS};
use crate::report::Row;
use crate::stats::Latency;
use crate::Skew;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub fn case(skew: Skew) -> String {
    format!("postgresql transfer(), {CLIENTS} clients, {}", skew.name())
}

/// The folder with PostgreSQL's binaries, if it is installed.
fn bin_dir() -> Option<PathBuf> {
    let has_all = |d: &Path| {
        ["initdb", "pg_ctl", "postgres", "psql", "pgbench"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Some(dir) = std::env::var_os("PG_BIN").map(PathBuf::from) {
        return has_all(&dir).then_some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| has_all(d))
        .collect();
    versions.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

/// Runs PostgreSQL's commands as `postgres` when we are root.
struct Pg {
    bin: PathBuf,
    as_postgres: bool,
    dir: PathBuf,
    port: u16,
}

impl Pg {
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, mut command: Command, what: &str) -> Result<Output, String> {
        let output = command
            .current_dir(&self.dir)
            .output()
            .map_err(|e| format!("{what}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{what} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(output)
    }

    fn psql(&self, sql: &str) -> Result<(), String> {
        let mut c = self.command("psql");
        c.args([
            "-q",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql]);
        self.run(c, "psql").map(|_| ())
    }
}

const SETUP: &str = r#"
CREATE TABLE accounts (id integer PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, ACCOUNTS) g;
-- The same logic as bank:transfer: read both balances, write both. Rows are locked in id
-- order first, so two transfers between the same accounts wait instead of deadlocking.
CREATE FUNCTION transfer(src integer, dst integer, amount bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE a bigint; b bigint;
BEGIN
  IF src = dst THEN dst := src % ACCOUNTS + 1; END IF;
  PERFORM 1 FROM accounts WHERE id IN (src, dst) ORDER BY id FOR UPDATE;
  SELECT balance INTO a FROM accounts WHERE id = src;
  SELECT balance INTO b FROM accounts WHERE id = dst;
  UPDATE accounts SET balance = a - amount WHERE id = src;
  UPDATE accounts SET balance = b + amount WHERE id = dst;
END $$;
"#;

impl Pg {
    /// A cluster in a new temporary folder (given to `postgres` when we are root), on a free
    /// loopback port: initialised and started.
    fn start(name: &str) -> Result<Pg, String> {
        let bin = bin_dir().ok_or(
            "PostgreSQL is not installed (no initdb, pg_ctl, postgres, psql and pgbench in /usr/lib/postgresql/*/bin or PG_BIN); on Debian: apt-get install -y postgresql",
        )?;
        // SAFETY: a plain system call.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        // Under the system temp folder: the `postgres` user must be able to reach it.
        let dir = std::env::temp_dir().join(format!("bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:", &dir.display().to_string()])
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(
                    "cannot give the cluster's folder to the postgres user (is there one?)".into(),
                );
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let pg = Pg {
            bin,
            as_postgres,
            dir,
            port,
        };
        let mut init = pg.command("initdb");
        init.args([
            "-D",
            "data",
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        pg.run(init, "initdb")?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on -c synchronous_commit=on -c shared_buffers=256MB",
            pg.port,
            pg.dir.display()
        );
        let mut start = pg.command("pg_ctl");
        start.args([
            "-D",
            "data",
            "-l",
            "server.log",
            "-w",
            "-t",
            "60",
            "-o",
            &options,
            "start",
        ]);
        pg.run(start, "pg_ctl start")?;
        Ok(pg)
    }

    fn version(&self) -> String {
        self.bin
            .parent()
            .and_then(|v| v.file_name())
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let mut stop = self.command("pg_ctl");
        stop.args(["-D", "data", "-m", "fast", "-w", "stop"]);
        let _ = self.run(stop, "pg_ctl stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster for a server on the PostgreSQL engine (`runtime serve --store URL`): the same
/// settings as the baseline's, one empty database; stopped and removed when dropped.
pub struct EngineDatabase {
    pg: Pg,
    pub url: String,
}

impl EngineDatabase {
    pub fn start(name: &str) -> Result<EngineDatabase, String> {
        let pg = Pg::start(name)?;
        pg.psql("CREATE DATABASE store")?;
        let url = format!("postgres://postgres@127.0.0.1:{}/store", pg.port);
        Ok(EngineDatabase { pg, url })
    }

    /// `PostgreSQL 15`, for notes.
    pub fn version(&self) -> String {
        format!("PostgreSQL {}", self.pg.version())
    }

    /// Another empty database `name` in the same cluster: its URL.
    pub fn another(&self, name: &str) -> Result<String, String> {
        self.pg.psql(&format!("CREATE DATABASE {name}"))?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.pg.port
        ))
    }
}

/// Starts a cluster, runs the transfer with each skew for the run's duration, stops it.
pub fn run(ctx: &mut Context, skews: &[Skew]) -> Result<Vec<Row>, String> {
    let pg = Pg::start("postgres")?;
    measure(ctx, &pg, skews)
}

fn measure(ctx: &Context, pg: &Pg, skews: &[Skew]) -> Result<Vec<Row>, String> {
    pg.psql(&SETUP.replace("ACCOUNTS", &ACCOUNTS.to_string()))?;
    // Outside the setup's transaction: VACUUM cannot run in one.
    pg.psql("VACUUM ANALYZE accounts")?;
    let version = pg.version();

    let mut rows = Vec::new();
    for &skew in skews {
        let pick = match skew {
            Skew::Uniform => format!("random(1, {ACCOUNTS})"),
            Skew::Zipf(s) => format!("random_zipfian(1, {ACCOUNTS}, {s})"),
        };
        let name = skew.name();
        let script =
            format!("\\set src {pick}\n\\set dst {pick}\nSELECT transfer(:src, :dst, 1);\n");
        let script_path = pg.dir.join(format!("{name}.sql"));
        std::fs::write(&script_path, script).map_err(|e| e.to_string())?;
        let log_prefix = format!("latency-{name}");
        let mut bench = pg.command("pgbench");
        bench
            .args(["-n", "-M", "prepared", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &pg.port.to_string()])
            .args(["-c", &CLIENTS.to_string(), "-j", "2"])
            .args(["-T", &ctx.duration().as_secs().to_string()])
            .args(["-l", "--log-prefix", &log_prefix, "-f"])
            .arg(&script_path)
            .arg("postgres");
        let output = pg.run(bench, "pgbench")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let tps: f64 = stdout
            .lines()
            .find(|l| l.starts_with("tps = "))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no tps in pgbench's output: {stdout}"))?;
        let failed = stdout
            .lines()
            .find(|l| l.starts_with("number of failed transactions"))
            .map(|l| l.trim().to_owned())
            .unwrap_or_default();
        let latencies = read_latencies(&pg.dir, &log_prefix)?;
        rows.push(
            Row::new("baseline", case(skew))
                .throughput(tps)
                .latency(Latency::of(latencies))
                .note(format!("PostgreSQL {version}, pgbench -c {CLIENTS} -j 2, synchronous_commit=on; {failed}")),
        );
    }
    Ok(rows)
}

/// Per-transaction latencies from pgbench's `-l` logs (third field, microseconds).
fn read_latencies(dir: &Path, prefix: &str) -> Result<Vec<Duration>, String> {
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).map_err(|e| e.to_string())?;
        latencies.extend(
            text.lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
                .map(Duration::from_micros),
        );
    }
    if latencies.is_empty() {
        return Err(format!(
            "no pgbench latency log {prefix}.* in {}",
            dir.display()
        ));
    }
    Ok(latencies)
}
