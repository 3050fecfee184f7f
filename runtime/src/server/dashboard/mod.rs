//! The dashboard: its files under `/_dashboard/` (`assets.rs`, compiled in from
//! `clients/dashboard/`), and the operator endpoints it reads and writes through,
//! `/api/dashboard/...` (docs/PROTOCOL.md section 4.5), each behind the admin key:
//! tables, documents and their writes (`data.rs`), the live stream of commits and executions
//! (`events.rs`), health figures (`health.rs`), scheduled jobs and crons (`jobs.rs`).
//!
//! What the dashboard needs kept as the server runs lives in [`Dashboard`]: exact document
//! counts, commits per second, and a channel of every commit's tables for the live stream,
//! all fed by one commit listener.

mod assets;
mod data;
mod events;
mod health;
mod jobs;

use super::response::{json, method_not_allowed, request_error, HttpResponse};
use super::Served;
use crate::metrics::PerSecond;
use crate::store::catalog::TableNumber;
use crate::store::counts::DocumentCounts;
use crate::store::{Store, Timestamp};
use crate::sync::engine::SyncEngine;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use parking_lot::Mutex;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

pub use assets::PREFIX as ASSETS_PREFIX;

/// Commits the live stream's channel holds for a reader that is behind; one that falls
/// further behind is told so and re-reads what it shows.
const COMMITS_BUFFERED: usize = 1024;

/// One commit as the live stream announces it.
#[derive(Clone, Debug)]
pub struct CommitEvent {
    pub ts: Timestamp,
    pub tables: Arc<Vec<(TableNumber, i64)>>,
}

/// What the dashboard keeps while the server runs.
pub struct Dashboard {
    pub counts: Arc<DocumentCounts>,
    commits_per_second: Mutex<PerSecond>,
    commits_total: AtomicU64,
    commits: broadcast::Sender<CommitEvent>,
    started_at_ms: f64,
}

impl Dashboard {
    /// Starts following `store`'s commits.
    pub fn attach(store: &Store) -> Arc<Dashboard> {
        let dashboard = Arc::new(Dashboard {
            counts: DocumentCounts::attach(store),
            commits_per_second: Mutex::new(PerSecond::default()),
            commits_total: AtomicU64::new(0),
            commits: broadcast::channel(COMMITS_BUFFERED).0,
            started_at_ms: crate::metrics::now_ms(),
        });
        // A weak handle: the store holds its listeners, and the dashboard need not outlive
        // the server that made it.
        let weak = Arc::downgrade(&dashboard);
        store.on_commit(Box::new(move |commits| {
            let Some(dashboard) = weak.upgrade() else {
                return;
            };
            dashboard
                .commits_total
                .fetch_add(commits.len() as u64, Ordering::Relaxed);
            dashboard
                .commits_per_second
                .lock()
                .add(crate::metrics::now_s(), commits.len() as u64);
            for commit in commits {
                // No reader is not an error.
                let _ = dashboard.commits.send(CommitEvent {
                    ts: commit.ts,
                    tables: commit.tables.clone(),
                });
            }
        }));
        dashboard
    }
}

/// A refused request: 400 with `code`.
fn bad(code: &str, message: String) -> HttpResponse {
    request_error(StatusCode::BAD_REQUEST, code, message)
}

/// The store failed under a request: 500, naming the endpoint.
fn internal(endpoint: &str, error: impl std::fmt::Display) -> HttpResponse {
    request_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        format!("{endpoint}: {error}"),
    )
}

/// The endpoints this module answers, for the list an unknown endpoint's error gives.
pub const ENDPOINTS: &str = "GET /api/dashboard/deployment, /api/dashboard/tables, /api/dashboard/documents, /api/dashboard/events, /api/dashboard/health, /api/dashboard/jobs, /api/dashboard/crons; POST /api/dashboard/documents/insert, /api/dashboard/documents/replace, /api/dashboard/documents/patch, /api/dashboard/documents/delete, /api/dashboard/jobs/cancel";

/// Answers `/api/dashboard/...`; the caller has checked the admin key.
pub async fn api(
    app: Arc<Served>,
    sync: &Arc<SyncEngine>,
    request: Request<Incoming>,
    path: &str,
) -> HttpResponse {
    let method = request.method().clone();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let get = method == Method::GET;
    let post = method == Method::POST;
    match path {
        "/api/dashboard/deployment" if get => deployment(&app, sync),
        "/api/dashboard/tables" if get => data::tables(app, sync.module()).await,
        "/api/dashboard/documents" if get => data::documents(app, &query).await,
        "/api/dashboard/documents/insert" if post => {
            data::write(app, sync.module(), data::Write::Insert, request).await
        }
        "/api/dashboard/documents/replace" if post => {
            data::write(app, sync.module(), data::Write::Replace, request).await
        }
        "/api/dashboard/documents/patch" if post => {
            data::write(app, sync.module(), data::Write::Patch, request).await
        }
        "/api/dashboard/documents/delete" if post => {
            data::write(app, sync.module(), data::Write::Delete, request).await
        }
        "/api/dashboard/events" if get => events::stream(app, sync),
        "/api/dashboard/health" if get => health::health(&app, sync).await,
        "/api/dashboard/jobs" if get => jobs::jobs(app, &query).await,
        "/api/dashboard/jobs/cancel" if post => jobs::cancel(app, request).await,
        "/api/dashboard/crons" if get => jobs::crons(app, sync.module()).await,
        "/api/dashboard/deployment"
        | "/api/dashboard/tables"
        | "/api/dashboard/documents"
        | "/api/dashboard/events"
        | "/api/dashboard/health"
        | "/api/dashboard/jobs"
        | "/api/dashboard/crons" => method_not_allowed(path, &method, "GET"),
        "/api/dashboard/documents/insert"
        | "/api/dashboard/documents/replace"
        | "/api/dashboard/documents/patch"
        | "/api/dashboard/documents/delete"
        | "/api/dashboard/jobs/cancel" => method_not_allowed(path, &method, "POST"),
        _ => request_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{method} {path}: no such API endpoint; the dashboard's are {ENDPOINTS}"),
        ),
    }
}

/// The dashboard's own files, which hold no data: served to anyone, like the app's web files.
pub fn asset(method: &Method, path: &str) -> HttpResponse {
    assets::serve(method, path)
}

fn deployment(app: &Served, sync: &SyncEngine) -> HttpResponse {
    let module = sync.module();
    json(
        StatusCode::OK,
        &json!({
            "version": module.hash,
            "deployedAtMs": module.deployed_at_ms,
            "startedAtMs": app.dashboard.started_at_ms,
            "runtimeVersion": env!("CARGO_PKG_VERSION"),
            "functions": module.functions().count(),
            "dataBytes": app.store.engine().size_bytes(),
        }),
    )
}
