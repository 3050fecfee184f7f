//! A runtime server in process, for the test binaries that talk to one over real sockets:
//! a store in a folder, a fresh wasm host, the module deployed, `Server::serve` in a task.
//! Shared like `guests.rs` (which the including crate must also declare, as `mod guests`):
//! `#[path = "../common/test_server.rs"] mod test_server;`.

// Each test binary uses its part.
#![allow(dead_code)]

use crate::guests;
use ferrovex_runtime::auth::{Access, AdminKeyFile, AuthSettings};
use ferrovex_runtime::fetch::OutboundPolicy;
use ferrovex_runtime::server::{App, Deployer, Server};
use ferrovex_runtime::store::Store;
use ferrovex_runtime::wasm::{DeployedModule, HostConfig, WasmHost};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What shutdown may take before a test fails instead of hanging.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(60);

/// A server running in a task of the test's tokio runtime.
pub struct Serving {
    pub addr: SocketAddr,
    /// Weak, so that shutdown can wait for the store to close (RocksDB locks its folder).
    pub store: Weak<Store>,
    pub host: Arc<WasmHost>,
    pub module: Arc<DeployedModule>,
    pub deployer: Deployer,
    /// The data folder's admin key.
    pub admin_key: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Opens the store in `data`, deploys `wasm` on a new host, and serves it (with the web files
/// of `web_dir`) on `addr`; port 0 picks a free one, which `Serving::addr` tells.
pub async fn serve(
    data: &Path,
    wasm: &[u8],
    addr: SocketAddr,
    web_dir: Option<PathBuf>,
) -> Serving {
    serve_with_auth(data, wasm, addr, web_dir, AuthSettings::default()).await
}

/// [`serve`], with the environment the app's auth config reads (its issuers, audiences and
/// key sets).
pub async fn serve_with_auth(
    data: &Path,
    wasm: &[u8],
    addr: SocketAddr,
    web_dir: Option<PathBuf>,
    settings: AuthSettings,
) -> Serving {
    // Tests' outbound requests go to their own servers on loopback.
    let loopback = OutboundPolicy {
        allow_private: true,
    };
    serve_with_policy(data, wasm, addr, web_dir, settings, loopback).await
}

/// [`serve_with_auth`], with what actions' outbound requests may reach.
pub async fn serve_with_policy(
    data: &Path,
    wasm: &[u8],
    addr: SocketAddr,
    web_dir: Option<PathBuf>,
    settings: AuthSettings,
    outbound: OutboundPolicy,
) -> Serving {
    let store = Store::open(data).expect("opening the store");
    serve_over(store, data, wasm, addr, web_dir, settings, outbound).await
}

/// [`serve_with_policy`] over a store opened by the caller (on another engine), with `data`
/// still the folder of the admin key and the environment variables.
pub async fn serve_over(
    store: Store,
    data: &Path,
    wasm: &[u8],
    addr: SocketAddr,
    web_dir: Option<PathBuf>,
    settings: AuthSettings,
    outbound: OutboundPolicy,
) -> Serving {
    std::fs::create_dir_all(data).expect("the data folder");
    let store = Arc::new(store);
    let host = Arc::new(
        WasmHost::new(HostConfig {
            max_instances: 16,
            cache_dir: Some(guests::guest_target_dir().join("compiled")),
            ..HostConfig::default()
        })
        .expect("creating the wasm host"),
    );
    let module = Arc::new(
        host.deploy(&store, wasm)
            .unwrap_or_else(|e| panic!("deploying: {e}")),
    );
    let (admin_key, _) = AdminKeyFile::open_or_create(data).expect("making the admin key");
    let key = admin_key.read().expect("reading the admin key");
    let env_vars = ferrovex_runtime::env_vars::EnvVars::of(data);
    let access = Access::new(admin_key, settings, Some(env_vars), &module.auth_config)
        .unwrap_or_else(|e| panic!("the auth config: {e}"));
    let app = App {
        store: store.clone(),
        host: host.clone(),
        module: module.clone(),
        web_dir,
        access: Arc::new(access),
        outbound,
        cluster: None,
    };
    let server = Server::bind(addr, app)
        .await
        .unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    let addr = server.local_addr();
    let deployer = server.deployer();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    Serving {
        addr,
        store: Arc::downgrade(&store),
        host,
        module,
        deployer,
        admin_key: key,
        stop: Some(stop),
        task,
    }
}

impl Serving {
    /// The store, while the server runs.
    pub fn store(&self) -> Arc<Store> {
        self.store
            .upgrade()
            .expect("the store is open while serving")
    }

    /// Asks the server to shut down, without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down gracefully: returns once every connection is served and closed.
    pub async fn shutdown(mut self) {
        self.signal_shutdown();
        tokio::time::timeout(SHUTDOWN_DEADLINE, self.task)
            .await
            .expect("the server shuts down")
            .expect("the server task panicked")
            .expect("serving failed");
    }

    /// Shuts down, then waits until the store has closed, so that its folder can be opened
    /// again (a restart). The caller must hold no `Arc` of the store.
    pub async fn shutdown_and_close(self) {
        let store = self.store.clone();
        self.shutdown().await;
        // Blocking-pool tasks of the old server may hold the store a moment longer.
        let start = Instant::now();
        while store.strong_count() > 0 {
            assert!(
                start.elapsed() < SHUTDOWN_DEADLINE,
                "the store never closed after shutdown"
            );
            // The polling period, not a wait for anything to happen.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
