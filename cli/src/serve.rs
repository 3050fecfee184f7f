//! `runtime serve`: docs/PROTOCOL.md section 5.

use crate::app::{new_host, open_store, AppDir};
use clap::Args;
use ferrovex_runtime::server::{App, Deployer, Server};
use std::io::Write;
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
    /// Where the data lives [default: APP_DIR/data].
    #[arg(long)]
    pub data: Option<PathBuf>,
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
    let store = Arc::new(open_store(&data_dir)?);
    let host = Arc::new(new_host(&app)?);
    let wasm = app.build()?;
    let module = host
        .deploy(&store, &wasm)
        .map_err(|e| format!("deploying {}: {e}", app.dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime.block_on(async move {
        let addr = SocketAddr::new(args.host, args.port);
        let server = Server::bind(
            addr,
            App {
                store,
                host,
                module: Arc::new(module),
                web_dir: app.web_dir(),
            },
        )
        .await
        .map_err(|e| bind_error(addr, e))?;
        let side_task = tokio::spawn(alongside(app.clone(), server.deployer()));
        let bound = server.local_addr();
        println!("listening on http://{bound}");
        let _ = std::io::stdout().flush();
        let served = server.serve(shutdown_signal()).await;
        side_task.abort();
        served.map_err(|e| format!("serving: {e}"))
    })
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

/// Ctrl-C or SIGTERM: stop accepting, finish what is in flight, exit.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("shutting down: finishing requests in flight");
}
