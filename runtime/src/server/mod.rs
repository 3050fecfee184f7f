//! The HTTP server (docs/PROTOCOL.md section 4) on hyper 1 and tokio.
//!
//! - [`routes`]: which handler answers which method and path.
//! - [`api`]: the function-calling endpoints of docs/PROTOCOL.md section 4 and `GET /api/functions`.
//! - [`call_request`]: parsing the body of a function call.
//! - [`response`]: response helpers shared by the handlers: a refused request's
//!   `{"code", "message"}`, the value formats.
//! - [`static_files`]: every other `GET` (and `HEAD`), from the app's web folder.
//! - [`browser_client`]: `GET /api/client.js`, the browser client.
//! - [`logs`]: `GET /api/logs`, a WebSocket of function executions for `runtime logs`.
//! - [`transfer`]: `GET /api/export`, `POST /api/import/tables`, `POST /api/import/documents`,
//!   for `runtime export` and `runtime import`.
//!
//! Status codes of the call endpoints, as the official Convex clients expect them:
//!
//! | status | when |
//! |---|---|
//! | 200 | the call ran: `{"status": "success", "value"}`, or `{"status": "error", "errorMessage", "errorData"?}` when the function failed, its arguments were not valid values or did not match its schema, no function has that path, or it is of another kind than the endpoint runs (the message names the right endpoint) |
//! | 400 | the request is malformed: not JSON, a path that breaks the identifier rules (`BadConvexFunctionIdentifier`), an unknown `format`, an unexpected field |
//! | 404 | no such endpoint |
//! | 405 | a method the endpoint does not take |
//! | 413 | a body over [`MAX_REQUEST_BODY_BYTES`] |
//! | 500 | the store failed outside the function (the call may or may not have committed) |
//! | 503 | the host could not start the call (e.g. every instance slot is busy); retry later |
//!
//! Every status other than 200 has the body `{"code", "message"}`.
//!
//! `GET /api/sync` is the WebSocket endpoint of docs/PROTOCOL.md section 3 (`crate::sync`): its arm
//! in [`routes::handle`] answers the upgrade and spawns the socket's session. The
//! [`SyncEngine`] is made by [`Server::bind`] and refreshes subscriptions while
//! [`Server::serve`] runs; an upgraded connection leaves hyper's hands, so graceful shutdown
//! also waits for the engine's sessions (each finishes the mutation it is running, then
//! closes with 1013, so clients reconnect).
//!
//! Wasm calls block their thread for up to the call time limit, so they run on tokio's
//! blocking pool (`spawn_blocking`), never on the reactor. The runtime's threads must have
//! room for `HostConfig::max_wasm_stack` plus the host; tokio's default 2 MiB does for the
//! default 512 KiB.
//!
//! Graceful shutdown: when the shutdown future completes the listener closes (new
//! connections are refused), idle keep-alive connections close, and every request already
//! being served runs to its end and gets its response before [`Server::serve`] returns.

mod access;
mod api;
mod browser_client;
mod call_request;
pub(crate) mod cluster;
mod dashboard;
mod env;
mod http_actions;
mod logs;
pub(crate) mod response;
mod routes;
mod static_files;
mod transfer;

use crate::actions::Actions;
use crate::auth::Access;
use crate::fetch::OutboundPolicy;
use crate::scheduler::Scheduler;
use crate::store::Store;
use crate::sync::engine::SyncEngine;
use crate::wasm::{DeployError, DeployedModule, WasmHost};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use call_request::MAX_REQUEST_BODY_BYTES;

/// How long graceful shutdown waits for the scheduler to finish the job it runs (a mutation
/// ends within its own time limit, so this is only a bound on the unexpected).
const SCHEDULER_STOP: Duration = Duration::from_secs(10);

/// How long graceful shutdown waits for each of: requests in flight, WebSocket sessions, the
/// live queries' refresh (a request runs within its call's time limit, so this bounds only
/// the unexpected).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);

/// A client that has not sent its request headers within this time is disconnected, so idle
/// half-open sockets cannot pile up.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server serves: one deployed module over one store, and the app's web files.
pub struct App {
    pub store: Arc<Store>,
    pub host: Arc<WasmHost>,
    /// The module to serve first; [`Deployer::deploy`] replaces it while serving.
    pub module: Arc<DeployedModule>,
    /// The folder of static files served for every other `GET`; `None` if the app has none.
    pub web_dir: Option<PathBuf>,
    /// The admin key, and the sign-in providers of `module` ([`Access::new`]).
    pub access: Arc<Access>,
    /// What actions' outbound requests may reach.
    pub outbound: OutboundPolicy,
    /// This node's place in its deployment, when the store is shared by several nodes
    /// (`crate::cluster`); `None` for a server on its own.
    pub cluster: Option<Arc<crate::cluster::Membership>>,
}

/// What the handlers share. The module in use is the sync engine's
/// ([`SyncEngine::module`]), so HTTP calls and subscriptions always agree on it.
pub(crate) struct Served {
    pub store: Arc<Store>,
    pub host: Arc<WasmHost>,
    pub web_dir: Option<PathBuf>,
    pub access: Arc<Access>,
    /// Every action runs through it (its running slots, its HTTP client).
    pub actions: Arc<Actions>,
    /// Turns true when graceful shutdown begins.
    pub stopping: watch::Receiver<bool>,
    /// Snapshots `/api/query_ts` handed out.
    pub pinned: api::PinnedSnapshots,
    /// What the dashboard keeps as the server runs (counts, commit rate, the live stream).
    pub dashboard: Arc<dashboard::Dashboard>,
    pub cluster: Option<Arc<crate::cluster::Membership>>,
}

/// A bound listener, ready to serve [`App`].
pub struct Server {
    listener: TcpListener,
    app: Arc<Served>,
    sync: Arc<SyncEngine>,
    scheduler: Arc<Scheduler>,
    stop_sender: watch::Sender<bool>,
}

/// Deploys new versions of the app into a running [`Server`] with no outage: connections
/// stay open, subscriptions re-run on the new code, and calls started before the switch
/// finish on the old one.
#[derive(Clone)]
pub struct Deployer {
    store: Arc<Store>,
    host: Arc<WasmHost>,
    sync: Arc<SyncEngine>,
    scheduler: Arc<Scheduler>,
}

impl Deployer {
    /// Compiles and checks `wasm` (see [`WasmHost::deploy`]), reads its auth config and
    /// fetches its providers' keys, then switches every call and subscription to it. On
    /// error the running version keeps serving.
    pub async fn deploy(&self, wasm: Vec<u8>) -> Result<Arc<DeployedModule>, DeployError> {
        let (store, host) = (self.store.clone(), self.host.clone());
        let module = tokio::task::spawn_blocking(move || host.deploy(&store, &wasm))
            .await
            .expect("deploying does not panic")?;
        let access = &self.sync.access;
        let providers = access
            .prepare(&module.auth_config)
            .map_err(DeployError::AuthConfig)?;
        providers.prefetch().await;
        access.install(providers);
        let module = Arc::new(module);
        self.sync.deploy(module.clone()).await;
        // Its crons may differ.
        self.scheduler.wake();
        Ok(module)
    }

    /// The version serving now.
    pub fn current(&self) -> Arc<DeployedModule> {
        self.sync.module()
    }
}

impl Server {
    /// Binds `addr` (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(addr: SocketAddr, app: App) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
        let App {
            store,
            host,
            module,
            web_dir,
            access,
            outbound,
            cluster,
        } = app;
        let actions = Actions::new(store.clone(), host.clone(), access.clone(), outbound);
        let sync = Arc::new(SyncEngine::new(
            store.clone(),
            host.clone(),
            module,
            access.clone(),
            actions.clone(),
        ));
        let current = {
            let sync = sync.clone();
            Arc::new(move || sync.module()) as crate::scheduler::CurrentModule
        };
        let scheduler = Scheduler::new(store.clone(), host.clone(), actions.clone(), current)
            .map_err(|e| io::Error::other(format!("starting the scheduler: {e}")))?;
        let (stop_sender, stopping) = watch::channel(false);
        let dashboard = dashboard::Dashboard::attach(&store);
        Ok(Server {
            listener,
            app: Arc::new(Served {
                store,
                host,
                web_dir,
                access,
                actions,
                stopping,
                pinned: api::PinnedSnapshots::default(),
                dashboard,
                cluster,
            }),
            sync,
            scheduler,
            stop_sender,
        })
    }

    /// A handle that deploys new versions while [`Server::serve`] runs.
    pub fn deployer(&self) -> Deployer {
        Deployer {
            store: self.app.store.clone(),
            host: self.app.host.clone(),
            sync: self.sync.clone(),
            scheduler: self.scheduler.clone(),
        }
    }

    /// The address actually bound, with the port chosen when 0 was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: stops accepting, lets
    /// every in-flight request finish, and returns once every connection is closed.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Server {
            listener,
            app,
            sync,
            scheduler,
            stop_sender,
        } = self;
        let refresher = tokio::spawn(sync.clone().run());
        let scheduling = tokio::spawn(scheduler.run(app.stopping.clone()));
        // The providers' keys, before the first token needs them.
        let access = app.access.clone();
        tokio::spawn(async move { access.prefetch().await });
        let stop = app.stopping.clone();
        let mut connections = JoinSet::new();
        let mut shutdown = pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        connections.spawn(serve_connection(stream, app.clone(), sync.clone(), stop.clone()));
                    }
                    // Per-connection failures (a reset before accept, too many open files)
                    // must not stop the server; back off briefly so EMFILE does not spin.
                    Err(e) => {
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                // Reap finished connections so the set does not grow with every client.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        // Actions waiting for a slot are refused now, so their requests end.
        app.actions.stop();
        // Every connection task holds a receiver; send fails only if none is left.
        let _ = stop_sender.send(true);
        // Each wait is bounded, and one that runs out says which it was: a shutdown must end
        // even if a request or a session never finishes.
        let drained = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_WAIT, drained).await.is_err() {
            tracing::warn!(
                "requests still in flight {SHUTDOWN_WAIT:?} after shutdown began; shutting down without them"
            );
        }
        // WebSocket sessions are no longer hyper's connections: stop them and wait.
        if tokio::time::timeout(SHUTDOWN_WAIT, sync.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "WebSocket sessions still open {SHUTDOWN_WAIT:?} after shutdown began; shutting down without them"
            );
        }
        if tokio::time::timeout(SHUTDOWN_WAIT, refresher)
            .await
            .is_err()
        {
            tracing::warn!(
                "the live queries' refresh did not stop within {SHUTDOWN_WAIT:?}; shutting down without it"
            );
        }
        // The scheduler finishes the job it is running (a mutation ends within its time
        // limit). Actions still running are not waited for: the process that owns the
        // runtime decides how long to give them (`runtime serve`: a few seconds).
        if tokio::time::timeout(SCHEDULER_STOP, scheduling)
            .await
            .is_err()
        {
            tracing::warn!(
                "the scheduler did not stop within {SCHEDULER_STOP:?}; shutting down without it"
            );
        }
        Ok(())
    }
}

/// Serves one TCP connection until the client closes it or shutdown finishes its requests.
async fn serve_connection(
    stream: TcpStream,
    app: Arc<Served>,
    sync: Arc<SyncEngine>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let app = app.clone();
        let sync = sync.clone();
        async move { Ok::<_, Infallible>(routes::handle(app, &sync, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        // For the WebSocket endpoint.
        .with_upgrades();
    let mut connection = pin!(connection);
    // A closed channel means the server is gone: stop as well.
    let stopping = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopping => {
            // Finish the request in progress (if any), then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("HTTP connection ended with an error: {e}");
    }
}
