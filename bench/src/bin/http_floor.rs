//! The `calls` scenario's HTTP baseline: a minimal hyper server on tokio that answers every
//! request with the bytes `runtime serve` answers an empty query with, without reading the
//! request's body, running anything or parsing anything. It measures what one kept-alive
//! HTTP/1.1 round trip costs on this machine with the bench's own client, the floor under
//! `POST /api/query` of `bank:ping`.
//!
//! ```text
//! http_floor          prints `listening on http://127.0.0.1:PORT`, serves until killed
//! ```
//!
//! Built like `runtime serve`'s listener: tokio's multi-threaded runtime with a worker per
//! core, hyper 1's HTTP/1 server with keep-alive, a task per connection.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

/// `bank:ping`'s answer as the runtime writes it (the query returns nothing).
const BODY: &str = r#"{"status":"success","value":null}"#;

#[tokio::main]
async fn main() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    println!("listening on http://{}", listener.local_addr().unwrap());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_request: Request<hyper::body::Incoming>| async {
                let response = Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                    .expect("a valid response");
                Ok::<_, Infallible>(response)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
