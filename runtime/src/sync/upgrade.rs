//! `GET /api/sync` and `GET /api/{client version}/sync`: checks the WebSocket handshake (RFC 6455), answers 101 and hands the
//! upgraded connection to a session task.

use super::engine::SyncEngine;
use super::session::{self, MAX_CLIENT_FRAME_BYTES};
use crate::server::response::{full, HttpResponse};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderMap, HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// Frames up to this size are read whole, so that a frame over [`MAX_CLIENT_FRAME_BYTES`]
/// (but under this) is answered with a `FatalError` naming the limit rather than a reset.
const READ_LIMIT_BYTES: usize = 2 * MAX_CLIENT_FRAME_BYTES;

/// The read buffer each connection allocates up front. Client frames are mostly small (a
/// query-set change, a mutation's arguments) and a larger one grows the buffer as it comes,
/// so the default 128 KiB would be memory that most of 10,000 idle connections never use.
/// tungstenite also zeroes this whole buffer before every read attempt, and the session polls
/// its socket each time it wakes to write a transition: at 8 KiB that `memset` was 5% of the
/// server's samples in the fan-out to 1,000 subscribers. At 4 KiB the server grew by 15.5 KiB
/// per idle subscribed connection (10,000 of them, `bench --only scale`), 18.9 KiB at 8.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Answers the upgrade request with 101; the session runs in its own task once hyper has
/// switched protocols. A request that is not a WebSocket handshake gets its status and the
/// reason.
pub fn upgrade(
    engine: &Arc<SyncEngine>,
    request: Request<Incoming>,
) -> Result<HttpResponse, (StatusCode, String)> {
    let session_engine = engine.clone();
    let takes_chunks = takes_transition_chunks(request.headers(), request.uri().path());
    upgrade_to(engine, "/api/sync", request, move |socket| {
        session::run(session_engine, socket, takes_chunks)
    })
}

/// Whether the client reassembles `TransitionChunk`s: npm clients from 1.28.0 do. The
/// version comes from the `Convex-Client` header (`npm-1.48.0`, `rust-0.10.4`, ...) or, from
/// browsers, which cannot set headers, the path (`/api/1.48.0/sync` is an npm client).
pub fn takes_transition_chunks(headers: &HeaderMap, path: &str) -> bool {
    let client = headers
        .get("convex-client")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            let version = path.strip_prefix("/api/")?.strip_suffix("/sync")?;
            Some(format!("npm-{version}"))
        });
    let Some(version) = client.as_deref().and_then(|c| c.strip_prefix("npm-")) else {
        return false;
    };
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (1, 28),
        _ => false,
    }
}

/// The upgrade of any WebSocket endpoint of the server (`endpoint` names it in errors):
/// answers 101, then runs `serve` on the socket in its own task. Shutdown waits for it, so
/// `serve` must end when [`SyncEngine::stopping`] says so.
pub fn upgrade_to<F, Fut>(
    engine: &Arc<SyncEngine>,
    endpoint: &'static str,
    mut request: Request<Incoming>,
    serve: F,
) -> Result<HttpResponse, (StatusCode, String)>
where
    F: FnOnce(session::Socket) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let key = check_handshake(endpoint, request.method(), request.headers())?;
    let on_upgrade = hyper::upgrade::on(&mut request);
    // Counted from now, so that shutdown waits for a session whose upgrade is in progress.
    let guard = engine.session_guard();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!("{endpoint}: the WebSocket upgrade failed: {e}");
                return;
            }
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .max_message_size(Some(READ_LIMIT_BYTES))
            .max_frame_size(Some(READ_LIMIT_BYTES));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        serve(socket).await;
        drop(guard);
    });
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 is a header"),
    );
    Ok(response)
}

/// The client's `Sec-WebSocket-Key` if the request is a WebSocket handshake we accept.
fn check_handshake(
    endpoint: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<String, (StatusCode, String)> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let has_token = |name, token: &str| {
        header(name).is_some_and(|v: &str| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    };
    if method != Method::GET {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{endpoint} is a WebSocket endpoint: it accepts GET with a WebSocket upgrade, not {method}"),
        ));
    }
    if !has_token(UPGRADE, "websocket") || !has_token(CONNECTION, "upgrade") {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            format!("{endpoint} is a WebSocket endpoint: the request needs `Upgrade: websocket` and `Connection: Upgrade`"),
        ));
    }
    if header(SEC_WEBSOCKET_VERSION) != Some("13") {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            format!(
                "{endpoint}: Sec-WebSocket-Version must be 13, got {:?}",
                header(SEC_WEBSOCKET_VERSION)
            ),
        ));
    }
    header(SEC_WEBSOCKET_KEY).map(str::to_owned).ok_or_else(|| {
        (
            StatusCode::BAD_REQUEST,
            format!("{endpoint}: the handshake has no Sec-WebSocket-Key"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_npm_clients_from_1_28_take_chunks() {
        let cases = [
            (None, "/api/1.48.0/sync", true),
            (None, "/api/1.28.0/sync", true),
            (None, "/api/1.27.9/sync", false),
            (None, "/api/sync", false),
            (None, "/api/garbage/sync", false),
            (Some("npm-1.48.0"), "/api/sync", true),
            (Some("rust-0.10.4"), "/api/sync", false),
            (Some("python-0.8.1"), "/api/1.48.0/sync", false),
            (Some("npm-2.0.0-beta"), "/api/sync", true),
        ];
        for (header, path, expected) in cases {
            let mut headers = HeaderMap::new();
            if let Some(value) = header {
                headers.insert("convex-client", HeaderValue::from_static(value));
            }
            assert_eq!(
                takes_transition_chunks(&headers, path),
                expected,
                "{header:?} {path}"
            );
        }
    }
}
