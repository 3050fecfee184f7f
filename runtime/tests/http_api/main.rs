//! The HTTP API (docs/PROTOCOL.md section 4) over real sockets, against the example apps.
//!
//! Each test starts its own server on port 0 over a fresh store, and talks to it with hyper's
//! client, or with raw bytes where the request must be exactly what a hostile client sends.

mod auth;
mod calls;
mod convex;
mod dashboard;
#[path = "../common/guests.rs"]
mod guests;
#[path = "../common/http_target.rs"]
mod http_target;
#[path = "../common/issuer.rs"]
mod issuer;
mod jobs;
mod shutdown;
mod static_files;
#[path = "../common/test_server.rs"]
mod test_server;

use ferrovex_runtime::auth::AuthSettings;
use ferrovex_runtime::fetch::OutboundPolicy;
use ferrovex_runtime::store::Store;
use ferrovex_runtime::wasm::{DeployedModule, WasmHost};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value as Json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tempfile::TempDir;
use test_server::{serve_with_policy, Serving};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running server over a fresh store, and handles to what it serves.
pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    pub host: Arc<WasmHost>,
    pub module: Arc<DeployedModule>,
    /// The data folder's admin key.
    pub admin_key: String,
    serving: Option<Serving>,
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
        Self::start_full(example, with_web, AuthSettings::default()).await
    }

    /// Serves `example` with the environment its auth config reads.
    pub async fn start_with_auth(example: &str, settings: AuthSettings) -> TestServer {
        Self::start_full(example, false, settings).await
    }

    /// Serves `example` with this outbound policy (the others allow loopback).
    pub async fn start_with_policy(example: &str, outbound: OutboundPolicy) -> TestServer {
        Self::start_outbound(example, false, AuthSettings::default(), outbound).await
    }

    async fn start_full(example: &str, with_web: bool, settings: AuthSettings) -> TestServer {
        let loopback = OutboundPolicy {
            allow_private: true,
        };
        Self::start_outbound(example, with_web, settings, loopback).await
    }

    async fn start_outbound(
        example: &str,
        with_web: bool,
        settings: AuthSettings,
        outbound: OutboundPolicy,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let wasm = tokio::task::block_in_place(|| guests::guest_wasm(example));
        let web_dir = with_web.then(|| {
            let web = dir.path().join("web");
            std::fs::create_dir(&web).expect("creating the web folder");
            web
        });
        let serving = serve_with_policy(
            &dir.path().join("data"),
            &wasm,
            "127.0.0.1:0".parse().unwrap(),
            web_dir,
            settings,
            outbound,
        )
        .await;
        assert_ne!(
            serving.addr.port(),
            0,
            "port 0 is replaced by the bound port"
        );
        TestServer {
            addr: serving.addr,
            store: serving.store(),
            host: serving.host.clone(),
            module: serving.module.clone(),
            admin_key: serving.admin_key.clone(),
            serving: Some(serving),
            dir,
        }
    }

    pub fn web_dir(&self) -> PathBuf {
        self.dir.path().join("web")
    }

    /// Asks the server to shut down, without waiting.
    pub fn signal_shutdown(&mut self) {
        self.serving.as_mut().expect("running").signal_shutdown();
    }

    /// Shuts down and waits until the server has closed every connection.
    pub async fn shutdown(mut self) {
        self.serving
            .take()
            .expect("shut down once")
            .shutdown()
            .await;
    }

    /// `POST path` with a JSON body; the status and the JSON answer.
    pub async fn post(&self, path: &str, body: &str) -> (StatusCode, Json) {
        self.post_with(path, body, None).await
    }

    /// `POST path` with the admin key.
    pub async fn post_admin(&self, path: &str, body: &str) -> (StatusCode, Json) {
        let authorization = format!("Convex {}", self.admin_key);
        self.post_with(path, body, Some(&authorization)).await
    }

    /// `POST path` with a JSON body and this `Authorization` header.
    pub async fn post_with(
        &self,
        path: &str,
        body: &str,
        authorization: Option<&str>,
    ) -> (StatusCode, Json) {
        let mut request = Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json");
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, parse_json(&body))
    }

    /// `GET path`; the status, headers and body.
    pub async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        self.request("GET", path).await
    }

    /// `GET path` with the admin key.
    pub async fn get_admin(&self, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        let authorization = format!("Convex {}", self.admin_key);
        self.request_with("GET", path, Some(&authorization)).await
    }

    pub async fn request(&self, method: &str, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        self.request_with(method, path, None).await
    }

    /// A request without a body, with this `Authorization` header.
    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        self.send(request.body(Full::new(Bytes::new())).unwrap())
            .await
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

/// The `errorMessage` of a failed call's answer, checking the answer's shape on the way.
pub fn error_message(answer: &Json) -> &str {
    assert_eq!(answer["status"], "error", "{answer}");
    assert!(
        answer.get("code").is_none(),
        "a call's failure, not a refused request: {answer}"
    );
    answer["errorMessage"]
        .as_str()
        .unwrap_or_else(|| panic!("no errorMessage in {answer}"))
}

/// The `message` of a refused request's answer (`{"code", "message"}`).
pub fn request_message(answer: &Json) -> &str {
    assert!(
        answer["code"].is_string(),
        "a refused request has a code: {answer}"
    );
    answer["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {answer}"))
}
