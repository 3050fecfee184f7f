//! `GET /api/logs`: a WebSocket that streams function executions as JSON text frames, for
//! `runtime logs`. First the executions the host kept (the newest
//! `wasm::execution_log::RECENT_EXECUTIONS`), then `{"type": "CaughtUp"}`, then each
//! execution as it ends, until the client or the server closes:
//!
//! `{"type": "Execution", "startedMs": 1.7e12, "path": "chat:send_message", "kind": "mutation",
//! "durationMs": 0.42, "outcome": "success" | "error", "error": "...", "logLines": [...]}`
//!
//! A reader that falls behind is sent `{"type": "Skipped", "count": N}` for the executions it
//! lost. The client sends nothing (any frame it sends is ignored).

use crate::sync::engine::SyncEngine;
use crate::sync::session::Socket;
use crate::wasm::{ExecutionRecord, WasmHost};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value as Json};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::Message;

pub async fn stream(engine: Arc<SyncEngine>, host: Arc<WasmHost>, mut socket: Socket) {
    let (recent, mut live) = host.executions.follow();
    let mut stopping = engine.stopping();
    for record in recent {
        if send(&mut socket, execution(&record)).await.is_err() {
            return;
        }
    }
    if send(&mut socket, json!({"type": "CaughtUp"}))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let next = tokio::select! {
            next = live.recv() => next,
            // The client's frames are ignored; its close ends the stream.
            frame = socket.next() => match frame {
                Some(Ok(_)) => continue,
                _ => return,
            },
            _ = stopping.wait_for(|stop| *stop) => break,
        };
        let message = match next {
            Ok(record) => execution(&record),
            Err(RecvError::Lagged(count)) => json!({"type": "Skipped", "count": count}),
            Err(RecvError::Closed) => break,
        };
        let sent = tokio::select! {
            sent = send(&mut socket, message) => sent,
            // A reader that does not read must not hold up shutdown.
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        if sent.is_err() {
            return;
        }
    }
    let _ = socket.close(None).await;
}

pub(crate) fn execution(record: &ExecutionRecord) -> Json {
    let mut message = json!({
        "type": "Execution",
        "startedMs": record.started_ms,
        "path": record.path,
        "kind": record.kind,
        "durationMs": record.duration_us as f64 / 1000.0,
        "outcome": if record.error.is_some() { "error" } else { "success" },
        "logLines": record.log_lines,
    });
    if let Some(error) = &record.error {
        message["error"] = json!(error);
    }
    message
}

async fn send(
    socket: &mut Socket,
    message: Json,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    socket.send(Message::text(message.to_string())).await
}
