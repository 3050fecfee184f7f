//! Several nodes over one PostgreSQL store (ARCHITECTURE.md, "Several nodes").
//!
//! Every `runtime serve --store postgres://…` is a node. The one holding the writer lease
//! commits; the others follow the commit log and forward their transactions' commits to it
//! (`store::follower`). This module is the node's side of that: its heartbeat thread, which
//! writes its row of `ferrovex_nodes`, learns the leader and its address, takes the lease when
//! it expires and promotes the store, and stops the process when going on would be wrong
//! ([`role`] holds those rules, without I/O); and [`HttpLink`], how a follower's commits reach
//! the leader (`POST /api/cluster/commit` with the admin key).

pub mod role;

use crate::auth::AdminKeyFile;
use crate::store::postgres::{ClusterView, NodeReport, PgEngine, PgNode, HEARTBEAT_EVERY};
use crate::store::{LeaderLink, LinkError, Store};
use parking_lot::RwLock;
use role::{Role, RoleCore, Step};
use std::sync::Arc;
use std::time::Duration;

/// How long a forwarded commit may take end to end (the leader's commit is bounded by its
/// storage's own timeouts; this bounds a leader that went silent).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

/// What a node knows of its deployment, shared by its heartbeat, its link to the leader and
/// the endpoints that show the nodes.
pub struct Membership {
    id: String,
    /// This node's address, as other nodes reach it; empty until the server is bound.
    address: RwLock<String>,
    view: RwLock<ClusterView>,
    role: RwLock<Role>,
}

impl Membership {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sets the address other nodes reach this one at (`http://HOST:PORT`).
    pub fn set_address(&self, address: String) {
        *self.address.write() = address;
    }

    pub fn address(&self) -> String {
        self.address.read().clone()
    }

    /// The deployment as the last heartbeat read it.
    pub fn view(&self) -> ClusterView {
        self.view.read().clone()
    }

    pub fn role(&self) -> Role {
        self.role.read().clone()
    }

    /// The leader's address, if a node holds the lease and has said where it listens.
    pub fn leader_address(&self) -> Option<String> {
        let view = self.view.read();
        let (holder, _, _) = view.lease.as_ref()?;
        view.nodes
            .iter()
            .find(|n| &n.id == holder)
            .map(|n| n.address.clone())
            .filter(|a| !a.is_empty())
    }
}

/// A follower's way to the leader: its commits, sent over HTTP with the admin key (nodes of
/// one deployment share it).
pub struct HttpLink {
    membership: Arc<Membership>,
    admin_key: AdminKeyFile,
    client: reqwest::Client,
    /// The link is called from any thread (a blocking call's, the reactor's): requests run
    /// on this runtime and the caller waits for the answer. Taken out at drop, which may
    /// happen on a reactor thread, where a runtime cannot be dropped in place.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for HttpLink {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl HttpLink {
    pub fn new(membership: Arc<Membership>, admin_key: AdminKeyFile) -> Result<HttpLink, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("leader-link")
            .enable_all()
            .build()
            .map_err(|e| format!("starting the link to the leader: {e}"))?;
        crate::fetch::install_crypto_provider();
        // Nodes reach each other on the operator's network: no private-address guard here
        // (that guards actions' requests), no redirects, no proxy.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(FORWARD_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("making the link to the leader: {e}"))?;
        Ok(HttpLink {
            membership,
            admin_key,
            client,
            runtime: Some(runtime),
        })
    }
}

impl LeaderLink for HttpLink {
    fn send(&self, request: &[u8]) -> Result<Vec<u8>, LinkError> {
        let Some(leader) = self.membership.leader_address() else {
            return Err(LinkError::NotSent(
                "no node holds the writer lease right now (or it has not said where it listens yet)".into(),
            ));
        };
        let key = self.admin_key.read().map_err(LinkError::NotSent)?;
        let (client, url) = (self.client.clone(), format!("{leader}/api/cluster/commit"));
        let body = request.to_vec();
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        runtime.spawn(async move {
            let outcome = async {
                let response = client
                    .post(&url)
                    .header("Authorization", format!("Convex {key}"))
                    .header("Content-Type", "application/octet-stream")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| {
                        let said = format!("forwarding a commit to the leader at {url}: {e}");
                        if e.is_connect() {
                            LinkError::NotSent(said)
                        } else {
                            LinkError::Unknown(said)
                        }
                    })?;
                let status = response.status();
                let body = response.bytes().await.map_err(|e| {
                    LinkError::Unknown(format!("reading the leader's answer from {url}: {e}"))
                })?;
                if !status.is_success() {
                    // Refused before it reached the store (the key, the size): not committed.
                    return Err(LinkError::Refused(format!(
                        "the leader at {url} answered {status}: {} (nodes of one deployment need the same admin key); nothing was committed",
                        String::from_utf8_lossy(&body[..body.len().min(512)])
                    )));
                }
                Ok(body.to_vec())
            };
            let _ = sender.send(outcome.await);
        });
        receiver
            .recv()
            .map_err(|_| LinkError::Unknown("the link to the leader stopped".to_owned()))?
    }
}

/// Opens the store at `url` as a node of its deployment: the leader if the writer lease is
/// free or expired, a follower that forwards its commits to the leader otherwise (with
/// `admin_key`, which every node of the deployment shares). Start the returned node's
/// heartbeat at once ([`Node::start`]), and give it the server's address once bound.
pub fn open(url: &str, admin_key: AdminKeyFile) -> Result<(Store, Node), String> {
    let engine = PgEngine::open_node(url).map_err(|e| e.to_string())?;
    let node = Node::new(engine.node());
    let store = if engine.is_writer() {
        Store::with_engine(Box::new(engine))
    } else {
        let link = HttpLink::new(node.membership(), admin_key)?;
        Store::follower(Box::new(engine), Arc::new(link))
    }
    .map_err(|e| e.to_string())?;
    Ok((store, node))
}

/// A node: its membership and the heartbeat thread that keeps it.
pub struct Node {
    membership: Arc<Membership>,
    pg: PgNode,
}

impl Node {
    /// A node of the store opened with `PgEngine::open_node`, as its engine said (`pg.term()`
    /// is 0 for a follower).
    pub fn new(pg: PgNode) -> Node {
        let role = match pg.term() {
            0 => Role::Follower,
            term => Role::Leader { term },
        };
        Node {
            membership: Arc::new(Membership {
                id: pg.id().to_owned(),
                address: RwLock::new(String::new()),
                view: RwLock::new(ClusterView::default()),
                role: RwLock::new(role),
            }),
            pg,
        }
    }

    pub fn membership(&self) -> Arc<Membership> {
        self.membership.clone()
    }

    /// Starts the heartbeat over `store` (this node's; the thread ends when it is dropped).
    /// `exit` is called, once, when the node must stop serving (it lost the lease, or was
    /// away too long); it should end the process.
    pub fn start(self, store: &Arc<Store>, exit: Box<dyn Fn(String) + Send>) {
        let store = Arc::downgrade(store);
        let role = self.membership.role();
        tracing::info!(
            node = %self.membership.id,
            "this node starts as {}",
            role.name()
        );
        std::thread::Builder::new()
            .name("node".into())
            .spawn(move || self.run(store, exit))
            .expect("spawning the node thread");
    }

    fn run(self, store: std::sync::Weak<Store>, exit: Box<dyn Fn(String) + Send>) {
        let mut core = RoleCore::new(self.membership.role());
        loop {
            let Some(store) = store.upgrade() else { return };
            let report = NodeReport {
                address: self.membership.address(),
                role: core.role.name(),
                applied: store.latest_ts(),
                horizon: store.gc_horizon(),
            };
            let steps = match self.pg.heartbeat(&report) {
                Ok(view) => {
                    *self.membership.view.write() = view.clone();
                    core.on_heartbeat(&view, self.pg.lost())
                }
                Err(e) => {
                    if core.failures() == 0 {
                        tracing::warn!("node heartbeat: {e}; trying again");
                    }
                    core.on_heartbeat_failed(self.pg.lost())
                }
            };
            let mut queue: std::collections::VecDeque<Step> = steps.into();
            while let Some(step) = queue.pop_front() {
                match step {
                    Step::Announce(message) => tracing::info!("{message}"),
                    Step::TakeLease => match self.pg.try_take_lease() {
                        Ok(taken) => queue.extend(core.on_lease_attempt(taken)),
                        Err(e) => tracing::warn!("taking the writer lease: {e}"),
                    },
                    Step::Promote { term } => match store.promote() {
                        Ok(()) => {
                            *self.membership.role.write() = Role::Leader { term };
                            tracing::info!(
                                node = %self.membership.id,
                                "this node leads now (term {term}): it commits, and runs the scheduler"
                            );
                        }
                        Err(e) => {
                            exit(format!(
                                "this node took the writer lease (term {term}) but could not apply the commit log to its end: {e}"
                            ));
                            return;
                        }
                    },
                    Step::Exit(reason) => {
                        exit(reason);
                        return;
                    }
                }
            }
            drop(store);
            std::thread::sleep(HEARTBEAT_EVERY);
        }
    }
}
