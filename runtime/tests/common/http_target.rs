//! An HTTP server of the test's own on loopback, for actions' outbound requests to reach:
//! started by the test, stopped when dropped. Shared through `#[path]` like `guests.rs`.
//!
//! | path | answer |
//! |---|---|
//! | `/echo` | 200, `x-target: yes`, `x-got-custom` repeating the request's `x-custom`, body `METHOD BODY` |
//! | `/status/N` | status N, body `status N` |
//! | `/slow` | never answers |
//! | `/big` | a body one byte over `MAX_FETCH_RESPONSE_BYTES` |
//! | `/loop` | 302 to itself |
//! | `/redirect` | 302 to `/echo` |
//! | `/wiki/TOPIC` | JSON `{"title": TOPIC, "extract": "TOPIC is a summary from the test's server."}` (a page summary; `_` read as a space), or 404 for `Nowhere` |

#![allow(dead_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A request the target received: method, path and query, body.
#[derive(Clone, Debug)]
pub struct Hit {
    pub method: String,
    pub target: String,
    pub body: String,
}

pub struct Target {
    pub addr: SocketAddr,
    pub hits: Arc<Mutex<Vec<Hit>>>,
    task: JoinHandle<()>,
}

impl Target {
    pub async fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let seen = seen.clone();
                        async move { Ok::<_, Infallible>(answer(request, &seen).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Target { addr, hits, task }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

async fn answer(request: Request<Incoming>, seen: &Mutex<Vec<Hit>>) -> Response<Full<Bytes>> {
    let method = request.method().as_str().to_owned();
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let path = request.uri().path().to_owned();
    let custom = request
        .headers()
        .get("x-custom")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    seen.lock().unwrap().push(Hit {
        method: method.clone(),
        target: target.clone(),
        body: body.clone(),
    });
    if path == "/echo" {
        let mut response = reply(200, format!("{method} {body}"));
        response
            .headers_mut()
            .insert("x-target", "yes".parse().unwrap());
        if let Some(custom) = custom {
            response
                .headers_mut()
                .insert("x-got-custom", custom.parse().unwrap());
        }
        return response;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().unwrap();
        return reply(code, format!("status {code}"));
    }
    if let Some(topic) = path.strip_prefix("/wiki/") {
        let topic = topic.replace("%20", " ").replace('_', " ");
        if topic == "Nowhere" {
            return reply(404, "no such page");
        }
        let body = serde_json::json!({
            "title": topic,
            "extract": format!("{topic} is a summary from the test's server."),
        });
        let mut response = reply(200, body.to_string());
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        return response;
    }
    match path.as_str() {
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            reply(200, "too late")
        }
        "/big" => reply(
            200,
            vec![b'x'; ferrovex_model::limits::MAX_FETCH_RESPONSE_BYTES + 1],
        ),
        "/loop" | "/redirect" => {
            let mut response = reply(302, "");
            let to = if path == "/loop" { "/loop" } else { "/echo" };
            response
                .headers_mut()
                .insert("location", to.parse().unwrap());
            response
        }
        _ => reply(404, "no such path"),
    }
}
