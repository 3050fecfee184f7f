//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary folder, the server on
//! a free loopback port, a fresh database per store, and `pg_ctl stop` when the test process
//! exits. Debian's PostgreSQL (`scripts/setup` installs it) in `/usr/lib/postgresql/*/bin`,
//! or `PG_BIN`. As root, the cluster runs as the `postgres` user (initdb refuses root).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The folder with PostgreSQL's server binaries.
fn bin_dir() -> PathBuf {
    let has_all = |d: &Path| {
        ["initdb", "pg_ctl", "postgres", "psql"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Some(dir) = std::env::var_os("PG_BIN").map(PathBuf::from) {
        assert!(
            has_all(&dir),
            "PG_BIN={} lacks initdb, pg_ctl, postgres or psql",
            dir.display()
        );
        return dir;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| has_all(d))
        .collect();
    versions.sort();
    versions.pop().expect(
        "PostgreSQL's server is not installed (no initdb in /usr/lib/postgresql/*/bin): scripts/setup installs Debian's postgresql",
    )
}

pub struct Cluster {
    bin: PathBuf,
    as_postgres: bool,
    dir: PathBuf,
    pub port: u16,
    databases: AtomicU32,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// Stops the shared cluster when the test process exits (statics are never dropped).
extern "C" fn stop_at_exit() {
    if let Some(cluster) = CLUSTER.get() {
        cluster.stop("immediate");
        let _ = std::fs::remove_dir_all(&cluster.dir);
    }
}

impl Cluster {
    /// The cluster every test of this process shares, started on first use.
    pub fn shared() -> &'static Cluster {
        CLUSTER.get_or_init(|| {
            let cluster = Cluster::start();
            // SAFETY: registers a plain `extern "C"` function that only runs commands.
            unsafe { libc::atexit(stop_at_exit) };
            cluster
        })
    }

    /// A new cluster of its own, stopped when dropped.
    pub fn start() -> Cluster {
        let bin = bin_dir();
        // SAFETY: a plain system call.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        // Under the system temp folder: the `postgres` user must be able to reach it.
        let dir = std::env::temp_dir().join(format!(
            "runtime-test-pg-{}-{}",
            std::process::id(),
            NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the cluster's folder");
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:", &dir.display().to_string()])
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "cannot give {} to the postgres user",
                dir.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cluster = Cluster {
            bin,
            as_postgres,
            dir,
            port,
            databases: AtomicU32::new(0),
        };
        let mut init = cluster.command("initdb");
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
        cluster.run(init, "initdb");
        cluster.start_server();
        cluster
    }

    /// Starts the server (again, after [`Cluster::stop`]) on the same port and data.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on -c synchronous_commit=on",
            self.port,
            self.dir.display()
        );
        let mut start = self.command("pg_ctl");
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
        self.run(start, "pg_ctl start");
    }

    /// Stops the server: `fast` (clients disconnected, a clean shutdown) or `immediate` (no
    /// shutdown checkpoint: a crash, recovered from the write-ahead log at the next start).
    pub fn stop(&self, mode: &str) {
        let mut stop = self.command("pg_ctl");
        stop.args(["-D", "data", "-m", mode, "-w", "stop"]);
        let _ = stop.current_dir(&self.dir).output();
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        let name = format!("store_{}", self.databases.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` in `database`; what it printed.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut psql = self.command("psql");
        psql.args([
            "-q",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-p", &self.port.to_string(), "-d", database, "-c", sql]);
        String::from_utf8_lossy(&self.run(psql, "psql").stdout).into_owned()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, mut command: Command, what: &str) -> Output {
        let output = command
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            output.status.success(),
            "{what} failed ({}): {}{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
        output
    }
}

static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
