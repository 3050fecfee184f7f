//! The fan-out scenario's raw-broadcast baseline: a minimal tokio WebSocket server that
//! writes the frames it is given to every connection, with no store, no query and no
//! protocol. It measures what delivering a transition's bytes to N sockets costs on this
//! machine, the floor under `runtime serve`'s commit-to-delivery time.
//!
//! ```text
//! broadcast          prints `listening on http://127.0.0.1:PORT`, serves until killed
//! ```
//!
//! Every connection gets a text frame `ready` once it will receive broadcasts. A text frame
//! `BROADCAST <frame>` hands `<frame>` to every other connection's task, which writes it to
//! its socket, and answers `sent` to the sender. Other frames are ignored. The server is built
//! as `runtime serve`'s sync endpoint is: tokio's multi-threaded runtime with a worker per
//! core, a task per connection, tokio-tungstenite with the same 8 KiB read buffer, and one
//! frame's bytes shared by every connection (`Utf8Bytes` is reference counted).

use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Frames a slow connection may lag behind before it misses some (the bench sends one
/// frame at a time and waits for every delivery, so it never comes near).
const CHANNEL_FRAMES: usize = 64;

struct Hub {
    frames: broadcast::Sender<(u64, Utf8Bytes)>,
    /// The next broadcast's number (a sender skips its own).
    next: AtomicU64,
}

#[tokio::main]
async fn main() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    println!("listening on http://{}", listener.local_addr().unwrap());
    let hub = Arc::new(Hub {
        frames: broadcast::channel(CHANNEL_FRAMES).0,
        next: AtomicU64::new(0),
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connection(stream, hub.clone()));
    }
}

async fn connection(stream: TcpStream, hub: Arc<Hub>) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let mut frames = hub.frames.subscribe();
    if ws.send(Message::text("ready")).await.is_err() {
        return;
    }
    // The number of this connection's own last broadcast: it is not sent back to it.
    let mut own = None;
    loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(Message::Text(text))) = frame else {
                    match frame {
                        Some(Ok(_)) => continue,
                        _ => return,
                    }
                };
                if let Some(body) = text.as_str().strip_prefix("BROADCAST ") {
                    let number = hub.next.fetch_add(1, Ordering::Relaxed);
                    own = Some(number);
                    let _ = hub.frames.send((number, Utf8Bytes::from(body.to_owned())));
                    if ws.send(Message::text("sent")).await.is_err() {
                        return;
                    }
                }
            }
            received = frames.recv() => {
                match received {
                    Ok((number, _)) if Some(number) == own => {}
                    Ok((_, body)) => {
                        if ws.send(Message::Text(body)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }
}
