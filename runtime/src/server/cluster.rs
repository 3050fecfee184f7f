//! The endpoints of a deployment's nodes (docs/PROTOCOL.md section 4.6), both behind the
//! admin key: `POST /api/cluster/commit`, where the leader takes its followers' commits, and
//! `GET /api/cluster/nodes`, the nodes with their roles and how far each is behind.

use super::call_request::read_body_up_to;
use super::response::{json, with_body, HttpResponse};
use super::Served;
use ferrovex_model::limits::MAX_FORWARDED_COMMIT_BYTES;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// A node whose heartbeat is older than this is shown as gone (it writes one every
/// `HEARTBEAT_EVERY`).
const GONE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Commits a follower's transaction (`store::commit_wire`'s bytes) and answers with the
/// encoded outcome; a node that is not the leader answers that it is not.
pub async fn commit(app: Arc<Served>, request: Request<Incoming>) -> HttpResponse {
    let body = match read_body_up_to(
        request,
        MAX_FORWARDED_COMMIT_BYTES,
        "MAX_FORWARDED_COMMIT_BYTES",
    )
    .await
    {
        Ok(body) => body,
        Err(response) => return response,
    };
    let store = app.store.clone();
    let reply = tokio::task::spawn_blocking(move || store.commit_forwarded(&body))
        .await
        .expect("committing does not panic");
    with_body(StatusCode::OK, "application/octet-stream", reply)
}

/// The nodes of the deployment as this node's last heartbeat read them (each one's lag as
/// its own last heartbeat measured it against the log); a server on RocksDB is one node.
pub fn nodes(app: &Served) -> HttpResponse {
    json(StatusCode::OK, &nodes_json(app))
}

/// The body of `GET /api/cluster/nodes`, which the dashboard's Health page shows too.
pub fn nodes_json(app: &Served) -> serde_json::Value {
    let latest = app.store.latest_ts();
    let Some(membership) = &app.cluster else {
        return json!({
            "self": null,
            "leader": null,
            "nodes": [{
                "id": null, "address": null, "role": "single", "appliedTs": latest.to_string(),
                "lagMs": 0.0, "seenSecondsAgo": 0.0, "self": true,
            }],
        });
    };
    let view = membership.view();
    let holder = view.lease.as_ref().map(|(holder, _, _)| holder.as_str());
    let nodes: Vec<_> = view
        .nodes
        .iter()
        .map(|n| {
            let own = n.id == membership.id();
            let role = if n.seen_seconds_ago > GONE_AFTER.as_secs_f64() && !own {
                // Killed, or cut off: its row stays until it is forgotten.
                "gone"
            } else if Some(n.id.as_str()) == holder {
                "leader"
            } else if n.role == "leader" {
                // Its lease was taken; it stops as soon as it notices.
                "fenced"
            } else {
                "follower"
            };
            json!({
                "id": n.id,
                "address": n.address,
                "role": role,
                "appliedTs": n.applied.to_string(),
                "lagMs": n.behind as f64 / 1e6,
                "seenSecondsAgo": n.seen_seconds_ago,
                "startedSecondsAgo": n.started_seconds_ago,
                "self": own,
            })
        })
        .collect();
    json!({
        "self": membership.id(),
        "leader": view.lease.as_ref().map(|(holder, term, expires_in)| json!({
            "id": holder, "term": term, "leaseSecondsLeft": expires_in,
        })),
        "nodes": nodes,
    })
}
