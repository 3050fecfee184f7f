//! `GET /api/dashboard/events`: what the dashboard shows live, as JSON lines on one streamed
//! response (a page's `fetch` reads it with its `Authorization` header, which a browser's
//! WebSocket cannot send). The executions the host kept, then each commit's tables and each
//! execution as they happen (docs/PROTOCOL.md section 4.5).
//!
//! Nothing is queued per reader beyond the two broadcast channels' bounded buffers: a reader
//! that falls behind is told how much it missed, and re-reads what it shows.

use super::CommitEvent;
use crate::server::logs::execution;
use crate::server::Served;
use crate::store::catalog::TableNumber;
use crate::sync::engine::SyncEngine;
use crate::wasm::ExecutionRecord;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;

use crate::server::response::HttpResponse;

/// A line after this much silence, so that a reader (and any proxy between) sees the stream
/// is alive.
const PING_AFTER: Duration = Duration::from_secs(15);

/// Lines written ahead of a reader that has not read them yet.
const LINES_AHEAD: usize = 64;

pub fn stream(app: Arc<Served>, sync: &Arc<SyncEngine>) -> HttpResponse {
    let (sender, receiver) = mpsc::channel::<Bytes>(LINES_AHEAD);
    // Subscribed before the history is read, so that nothing falls between the two.
    let commits = app.dashboard.commits.subscribe();
    let (recent, executions) = sync.host.executions.follow();
    let hello =
        json!({"type": "hello", "ts": ferrovex_model::json::encode_u64(app.store.latest_ts())});
    tokio::spawn(feed(app, hello, recent, commits, executions, sender));
    let lines = stream::unfold(receiver, |mut receiver| async move {
        let line = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(Frame::data(line)), receiver))
    });
    let mut response = Response::new(StreamBody::new(lines).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn line(message: &Json) -> Bytes {
    let mut text = message.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// Writes the stream until the reader goes or the server stops (the body then ends, so a
/// graceful shutdown never waits on a dashboard).
async fn feed(
    app: Arc<Served>,
    hello: Json,
    recent: Vec<Arc<ExecutionRecord>>,
    mut commits: broadcast::Receiver<CommitEvent>,
    mut executions: broadcast::Receiver<Arc<ExecutionRecord>>,
    sender: mpsc::Sender<Bytes>,
) {
    let mut stopping = app.stopping.clone();
    let history = std::iter::once(hello)
        .chain(recent.iter().map(|record| execution_line(record)))
        .chain(std::iter::once(json!({"type": "caughtUp"})));
    for message in history {
        let sent = tokio::select! {
            sent = sender.send(line(&message)) => sent,
            // A reader that stops reading the history must not hold up shutdown either.
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        if sent.is_err() {
            return;
        }
    }
    let mut names = TableNames::default();
    loop {
        let message = tokio::select! {
            commit = commits.recv() => match commit {
                Ok(commit) => json!({
                    "type": "commit",
                    "ts": ferrovex_model::json::encode_u64(commit.ts),
                    "tables": names.of(&app, &commit.tables),
                }),
                Err(RecvError::Lagged(count)) => json!({"type": "skipped", "what": "commits", "count": count}),
                Err(RecvError::Closed) => return,
            },
            record = executions.recv() => match record {
                Ok(record) => execution_line(&record),
                Err(RecvError::Lagged(count)) => json!({"type": "skipped", "what": "executions", "count": count}),
                Err(RecvError::Closed) => return,
            },
            () = tokio::time::sleep(PING_AFTER) => json!({"type": "ping"}),
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        let sent = tokio::select! {
            sent = sender.send(line(&message)) => sent,
            // A reader that does not read must not hold up shutdown.
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        if sent.is_err() {
            return;
        }
    }
}

fn execution_line(record: &ExecutionRecord) -> Json {
    let mut message = execution(record);
    message["type"] = json!("execution");
    message
}

/// Table names by number, read again from the catalog when a commit names a new table.
#[derive(Default)]
struct TableNames(HashMap<TableNumber, String>);

impl TableNames {
    fn of(&mut self, app: &Served, tables: &[(TableNumber, i64)]) -> Vec<String> {
        if tables.iter().any(|(t, _)| !self.0.contains_key(t)) {
            self.0 = app
                .store
                .tables()
                .iter()
                .map(|t| (t.number, t.name.clone()))
                .collect();
        }
        tables
            .iter()
            .filter_map(|(t, _)| self.0.get(t).cloned())
            .collect()
    }
}
