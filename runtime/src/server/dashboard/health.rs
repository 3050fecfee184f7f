//! `GET /api/dashboard/health`: commits per second, each function's calls, errors and
//! latency percentiles, connections, live queries, the data's size, and the deployment's
//! nodes (as `GET /api/cluster/nodes` gives them).

use crate::metrics::{now_s, percentile_ms, LATENCY_WINDOW};
use crate::server::response::{json, HttpResponse};
use crate::server::Served;
use crate::sync::engine::SyncEngine;
use hyper::StatusCode;
use serde_json::json;
use std::sync::atomic::Ordering;

pub async fn health(app: &Served, sync: &SyncEngine) -> HttpResponse {
    let now = now_s();
    // Copied under the execution log's lock, which every execution takes; sorted after.
    let measured = sync.host.executions.with_metrics(|metrics| {
        metrics
            .iter()
            .map(|(path, stats)| {
                let head = json!({
                    "path": path,
                    "kind": stats.kind,
                    "calls": stats.calls,
                    "errors": stats.errors,
                    "errorRate": if stats.calls == 0 { 0.0 } else { stats.errors as f64 / stats.calls as f64 },
                    "perSecond": stats.per_second.last_minute(now),
                });
                (head, stats.durations_us())
            })
            .collect::<Vec<_>>()
    });
    let functions: Vec<_> = measured
        .into_iter()
        .map(|(mut function, mut durations)| {
            durations.sort_unstable();
            for (name, p) in [("p50Ms", 50.0), ("p95Ms", 95.0), ("p99Ms", 99.0)] {
                function[name] = json!(percentile_ms(&durations, p));
            }
            function
        })
        .collect();
    let dashboard = &app.dashboard;
    // The engine's lock is held by a refresh round while queries re-run: this waits for the
    // round, never for a client.
    let live_queries = sync.state.lock().await.subscriptions.len();
    json(
        StatusCode::OK,
        &json!({
            "nowMs": now as f64 * 1000.0,
            "commits": {
                "total": dashboard.commits_total.load(Ordering::Relaxed),
                "perSecond": dashboard.commits_per_second.lock().last_minute(now),
            },
            "connections": sync.connections(),
            "liveQueries": live_queries,
            "dataBytes": app.store.engine().size_bytes(),
            "latencyWindow": LATENCY_WINDOW,
            "functions": functions,
            "cluster": crate::server::cluster::nodes_json(app),
        }),
    )
}
