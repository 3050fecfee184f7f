//! `runtime serve`: docs/PROTOCOL.md section 5.

use crate::app::{new_host, open_store, AppDir};
use clap::Args;
use ferrovex_runtime::auth::{Access, AuthSettings};
use ferrovex_runtime::env_vars::EnvVars;
use ferrovex_runtime::fetch::OutboundPolicy;
use ferrovex_runtime::server::{App, Deployer, Server};
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// The app crate's folder.
    #[arg(default_value = ".")]
    pub app_dir: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// The port to listen on; 0 picks a free one (printed once listening).
    #[arg(long, default_value_t = 3210)]
    pub port: u16,
    /// Where the data lives [default: APP_DIR/data]. With --store, the folder keeps only
    /// the admin key and the environment variables.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Keep the documents in a PostgreSQL database instead of the data folder:
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`. Every server on one database is a node
    /// of one deployment: the first leads, the others follow it (see `runtime nodes`).
    #[arg(
        long,
        env = "FERROVEX_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub store: Option<String>,
    /// Let actions' outbound requests reach loopback, private and link-local addresses (a
    /// service on this machine or network). Refused by default, against request forgery.
    #[arg(long)]
    pub allow_private_fetch: bool,
    /// With --store, where the other nodes of the deployment reach this one
    /// (`http://HOST:PORT`) [default: the address listened on, with this machine's name
    /// when that is 0.0.0.0 or ::].
    #[arg(long, env = "FERROVEX_ADVERTISE", value_name = "URL")]
    pub advertise: Option<String>,
}

pub fn run(args: ServeArgs) -> Result<(), String> {
    serve_with(args, |_, _| async {})
}

/// Builds, deploys and serves the app; `alongside` runs next to the server (given the app
/// and a deployer) until shutdown. Used by `serve` (nothing alongside) and `dev` (a watcher).
pub fn serve_with<F, Fut>(args: ServeArgs, alongside: F) -> Result<(), String>
where
    F: FnOnce(Arc<AppDir>, Deployer) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let app = Arc::new(AppDir::open(&args.app_dir)?);
    let data_dir = args.data.clone().unwrap_or_else(|| app.default_data_dir());
    // Fail on the data folder before a long build.
    let (store, cluster, (admin_key, made)) = open_store(&data_dir, args.store.as_deref())?;
    let host = Arc::new(new_host(&app)?);
    let wasm = app.build()?;
    let module = host
        .deploy(&store, &wasm)
        .map_err(|e| format!("deploying {}: {e}", app.dir.display()))?;
    let access = Access::new(
        admin_key,
        AuthSettings::from_process(Some(app.dir.clone())),
        Some(EnvVars::of(&data_dir)),
        &module.auth_config,
    )
    .map_err(|e| format!("deploying {}: {e}", app.dir.display()))?;
    if let Some(key) = made {
        show_new_admin_key(&data_dir, &key);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    let served = runtime.block_on(async move {
        let addr = SocketAddr::new(args.host, args.port);
        let server = Server::bind(
            addr,
            App {
                store,
                host,
                module: Arc::new(module),
                web_dir: app.web_dir(),
                access: Arc::new(access),
                outbound: OutboundPolicy {
                    allow_private: args.allow_private_fetch,
                },
                cluster: cluster.clone(),
            },
        )
        .await
        .map_err(|e| bind_error(addr, e))?;
        let shutdown = shutdown_signal();
        let side_task = tokio::spawn(alongside(app.clone(), server.deployer()));
        let bound = server.local_addr();
        if let Some(cluster) = &cluster {
            cluster.set_address(advertised(args.advertise.as_deref(), bound));
        }
        println!("listening on http://{bound}");
        let _ = std::io::stdout().flush();
        let served = server.serve(shutdown).await;
        side_task.abort();
        served.map_err(|e| format!("serving: {e}"))
    });
    // Actions still running (on threads of their own) get a moment to end; an action that
    // has not is left behind: a job it ran for stays in progress, and the next start marks
    // it failed, as after a crash.
    runtime.shutdown_timeout(ACTIONS_AT_EXIT);
    served
}

/// The address other nodes reach this one at.
fn advertised(given: Option<&str>, bound: SocketAddr) -> String {
    if let Some(given) = given {
        return given.trim_end_matches('/').to_owned();
    }
    if bound.ip().is_unspecified() {
        let host = ferrovex_runtime::store::postgres::hostname();
        return format!("http://{host}:{}", bound.port());
    }
    format!("http://{bound}")
}

/// How long `serve` waits at exit for actions still running.
const ACTIONS_AT_EXIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A new data folder's admin key: shown once on a terminal; otherwise (output to a file or a
/// pipe, where it would stay) only where to find it.
fn show_new_admin_key(data_dir: &std::path::Path, key: &str) {
    if std::io::stdout().is_terminal() {
        println!(
            "admin key (for logs, export, import, internal functions; shown this once, `runtime admin-key` prints it again):\n  {key}"
        );
    } else {
        println!(
            "made an admin key in {}; `runtime admin-key` prints it",
            data_dir.display()
        );
    }
}

fn bind_error(addr: SocketAddr, e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "port {} on {} is already in use (is another server running?). Stop it, or pick another port with --port N (--port 0 picks a free one)",
            addr.port(),
            addr.ip()
        )
    } else {
        e.to_string()
    }
}

/// Ctrl-C or SIGTERM: stop accepting, finish what is in flight, exit. Both handlers are
/// installed when this is called, before the server says it listens: a signal sent as soon
/// as that line appears stops it gracefully instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("shutting down: finishing requests in flight");
    }
}
