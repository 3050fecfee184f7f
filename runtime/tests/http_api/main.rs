//! The HTTP API (PROTOCOL.md section 4) over real sockets, against the example apps.
//!
//! Each test starts its own server on port 0 over a fresh store, and talks to it with hyper's
//! client, or with raw bytes where the request must be exactly what a hostile client sends.

mod calls;
#[path = "../common/guests.rs"]
mod guests;
mod shutdown;
mod static_files;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use runtime::server::{App, Server};
use runtime::store::Store;
use runtime::wasm::{DeployedModule, HostConfig, WasmHost};
use serde_json::Value as Json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server over a fresh store, and handles to what it serves.
pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    pub host: Arc<WasmHost>,
    pub module: Arc<DeployedModule>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    /// Holds the store's data and the web folder's parent (see [`TestServer::outside_web`]).
    pub dir: TempDir,
}

impl TestServer {
    /// Serves `example` (a folder under the repository root) with no web files.
    pub async fn start(example: &str) -> TestServer {
        Self::start_with_web(example, false).await
    }

    /// Serves `example`, and with `with_web` the web folder `dir/web` (empty until a test
    /// writes files there).
    pub async fn start_with_web(example: &str, with_web: bool) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open(&dir.path().join("data")).expect("open store"));
        let host = Arc::new(
            WasmHost::new(HostConfig {
                max_instances: 16,
                cache_dir: Some(guests::guest_target_dir().join("compiled")),
                ..HostConfig::default()
            })
            .expect("creating the wasm host"),
        );
        let wasm = tokio::task::block_in_place(|| guests::guest_wasm(example));
        let module = Arc::new(
            host.deploy(&store, &wasm)
                .unwrap_or_else(|e| panic!("deploying {example}: {e}")),
        );
        let web_dir = with_web.then(|| {
            let web = dir.path().join("web");
            std::fs::create_dir(&web).expect("creating the web folder");
            web
        });
        let app = App {
            store: store.clone(),
            host: host.clone(),
            module: module.clone(),
            web_dir,
        };
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), app)
            .await
            .expect("binding port 0");
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0, "port 0 is replaced by the bound port");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            store,
            host,
            module,
            stop: Some(stop),
            task: Some(task),
            dir,
        }
    }

    pub fn web_dir(&self) -> PathBuf {
        self.dir.path().join("web")
    }

    /// Asks the server to shut down, without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits until the server has closed every connection.
    pub async fn shutdown(mut self) {
        self.signal_shutdown();
        let task = self.task.take().expect("shut down once");
        task.await
            .expect("the server task panicked")
            .expect("serving failed");
    }

    /// `POST path` with a JSON body; the status and the JSON answer.
    pub async fn post(&self, path: &str, body: &str) -> (StatusCode, Json) {
        let request = Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, parse_json(&body))
    }

    /// `GET path`; the status, headers and body.
    pub async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        self.request("GET", path).await
    }

    pub async fn request(&self, method: &str, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(request).await
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let stream = TcpStream::connect(self.addr).await.expect("connecting");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .expect("sending the request");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("reading the body");
        (status, headers, body.to_bytes().to_vec())
    }

    /// Sends `request` as raw bytes (it should say `Connection: close`) and returns everything
    /// the server answered, as text.
    pub async fn raw(&self, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(self.addr).await.expect("connecting");
        stream.write_all(request).await.expect("writing");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("reading");
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// A raw `GET` of `target`, exactly as given (no client-side normalisation).
    pub async fn raw_get(&self, target: &str) -> String {
        self.raw(
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
    }
}

pub fn parse_json(body: &[u8]) -> Json {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "expected a JSON body ({e}), got: {}",
            String::from_utf8_lossy(body)
        )
    })
}

/// The `errorMessage` of an error answer, checking the answer's shape on the way.
pub fn error_message(answer: &Json) -> &str {
    assert_eq!(answer["status"], "error", "{answer}");
    assert!(answer["logLines"].is_array(), "{answer}");
    answer["errorMessage"]
        .as_str()
        .unwrap_or_else(|| panic!("no errorMessage in {answer}"))
}
