//! Talking to a running server, for the commands that do (`run`, `logs`, `export`, `import`): its HTTP API and
//! its WebSocket endpoints (docs/PROTOCOL.md sections 3 and 4).

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value as Json;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;

/// The async runtime a command that talks to a server runs on: one thread is plenty.
pub fn client_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
}

/// Where the server is: `http://HOST:PORT` (what `runtime serve` prints).
#[derive(Clone)]
pub struct ServerUrl {
    /// `HOST:PORT`.
    authority: String,
    /// Sent as `Authorization: Convex <key>` with every request.
    admin_key: Option<String>,
}

impl ServerUrl {
    pub fn parse(url: &str) -> Result<ServerUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .ok_or_else(|| {
                format!("--url must look like http://127.0.0.1:3210 (what `runtime serve` prints), got {url:?}")
            })?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!(
                "--url must be the server's address only, like http://127.0.0.1:3210, got {url:?}"
            ));
        }
        Ok(ServerUrl {
            authority: authority.to_owned(),
            admin_key: None,
        })
    }

    /// Sends `key` as the admin key with every request.
    pub fn with_admin_key(mut self, key: Option<String>) -> ServerUrl {
        self.admin_key = key;
        self
    }

    /// Whether the server is on this machine's loopback interface (`localhost`, 127.0.0.0/8,
    /// `::1`): the only servers a local data folder's admin key is sent to unasked.
    pub fn is_loopback(&self) -> bool {
        let host = match self.authority.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => self.authority.as_str(),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    pub fn admin_key(&self) -> Option<&str> {
        self.admin_key.as_deref()
    }

    fn authorize(&self, request: hyper::http::request::Builder) -> hyper::http::request::Builder {
        match &self.admin_key {
            Some(key) => request.header("authorization", format!("Convex {key}")),
            None => request,
        }
    }

    async fn connect(&self) -> Result<TcpStream, String> {
        TcpStream::connect(&self.authority).await.map_err(|e| {
            format!(
                "no server at http://{} ({e}). Start one with `runtime serve APP_DIR`, or pass its address with --url",
                self.authority
            )
        })
    }

    /// One HTTP request with a JSON body (or none); the status and the JSON answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> Result<(u16, Json), String> {
        let stream = self.connect().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("talking to http://{}: {e}", self.authority))?;
        tokio::spawn(connection);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = self
            .authorize(Request::builder())
            .method(method)
            .uri(path)
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("calling http://{}{path}: {e}", self.authority))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer of {path}: {e}"))?
            .to_bytes();
        let json = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{path} answered {status} with a body that is not JSON ({e})"))?;
        Ok((status, json))
    }

    /// A `GET` whose body is read as it arrives: the status and the body.
    pub async fn get_streaming(&self, path: &str) -> Result<(u16, Incoming), String> {
        let stream = self.connect().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("talking to http://{}: {e}", self.authority))?;
        tokio::spawn(connection);
        let request = self
            .authorize(Request::builder())
            .method(Method::GET)
            .uri(path)
            .header("host", &self.authority)
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("calling http://{}{path}: {e}", self.authority))?;
        Ok((response.status().as_u16(), response.into_body()))
    }

    /// A WebSocket on `path` (e.g. `/api/sync`).
    /// The server's URL as clients take it (`http://HOST:PORT`).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.authority)
    }

    pub async fn websocket(&self, path: &str) -> Result<WebSocketStream<TcpStream>, String> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let stream = self.connect().await?;
        let url = format!("ws://{}{path}", self.authority);
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("opening {url}: {e}"))?;
        if let Some(key) = &self.admin_key {
            let value = format!("Convex {key}")
                .parse()
                .map_err(|_| "the admin key is not a valid header value".to_owned())?;
            request.headers_mut().insert("authorization", value);
        }
        let (socket, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(|e| format!("opening {url}: {e}"))?;
        Ok(socket)
    }
}

#[cfg(test)]
mod tests {
    use super::ServerUrl;

    #[test]
    fn only_loopback_servers_are_local() {
        for (url, local) in [
            ("http://127.0.0.1:3210", true),
            ("http://127.8.0.1:3210", true),
            ("http://localhost:3210", true),
            ("http://[::1]:3210", true),
            ("http://10.0.0.5:3210", false),
            ("http://192.168.1.2:3210", false),
            ("http://example.com:3210", false),
            ("http://[fe80::1]:3210", false),
        ] {
            assert_eq!(ServerUrl::parse(url).unwrap().is_loopback(), local, "{url}");
        }
    }
}
