//! Graceful shutdown: a request in flight when shutdown begins still gets its answer, new
//! connections are refused, and `serve` returns once every connection is done.

use crate::TestServer;
use ferrovex_runtime::wasm::CallOptions;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_after_shutdown_begins() {
    let mut server = TestServer::start("examples/chat").await;
    let body = r#"{"path": "chat:send_message", "args": {"user": "ada", "body": "in flight"}}"#;

    // `Expect: 100-continue` makes the server say when the handler starts reading the body:
    // from then on the request is in flight, and the test holds it there.
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut stream = BufReader::new(stream);
    let head = format!(
        "POST /api/mutation HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.get_mut().write_all(head.as_bytes()).await.unwrap();
    let mut status_line = String::new();
    stream.read_line(&mut status_line).await.unwrap();
    assert!(status_line.starts_with("HTTP/1.1 100"), "{status_line}");
    let mut blank = String::new();
    stream.read_line(&mut blank).await.unwrap();
    assert_eq!(blank, "\r\n");

    server.signal_shutdown();
    // Shutdown has begun once the listener is closed: connecting is refused from then on.
    // (Each refused or accepted attempt is a real event, not a timed wait.)
    while TcpStream::connect(server.addr).await.is_ok() {
        tokio::task::yield_now().await;
    }

    stream.get_mut().write_all(body.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""status":"success""#), "{answer}");

    let (store, host, module) = (
        server.store.clone(),
        server.host.clone(),
        server.module.clone(),
    );
    server.shutdown().await;
    let messages = host
        .run_query(
            &store,
            &module,
            "chat:get_messages",
            &ferrovex_model::json::from_json_str("{}").unwrap(),
            CallOptions::default(),
        )
        .unwrap();
    assert_eq!(
        ferrovex_model::json::to_json(&messages.value)[0]["body"],
        "in flight",
        "the in-flight mutation committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_do_not_hold_up_shutdown() {
    let server = TestServer::start("examples/chat").await;
    // A keep-alive connection that has finished its request and stays open.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /api/functions HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    server.shutdown().await;
    // The server closed the idle connection: reading reaches the end.
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).await.unwrap();
}
