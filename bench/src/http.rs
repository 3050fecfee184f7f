//! A minimal HTTP/1.1 client over one kept-alive loopback connection, for `POST /api/query`,
//! `POST /api/mutation`, `GET /api/metrics` and the dashboard's `GET /api/dashboard/...` (docs/PROTOCOL.md section 4). The server answers
//! every API request with a `Content-Length` body.

use serde_json::{json, Value as Json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Http {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Http {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Http> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Http {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Sends a request and reads the whole response: (status, body).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        self.request_with(method, path, body, "")
    }

    /// [`Http::request`] with more header lines (each ending in `\r\n`).
    fn request_with(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
        headers: &str,
    ) -> std::io::Result<(u16, String)> {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        self.writer.write_all(request.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = None;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other(
                    "the connection closed in the headers",
                ));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length =
            length.ok_or_else(|| std::io::Error::other("a response without content-length"))?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Calls a function (`kind` is `query` or `mutation`); its value, or the error body.
    pub fn call(&mut self, kind: &str, path: &str, args: Json) -> Result<Json, String> {
        let body =
            json!({"path": path, "args": [args], "format": "convex_encoded_json"}).to_string();
        let (status, text) = self
            .request("POST", &format!("/api/{kind}"), &body)
            .map_err(|e| format!("{kind} {path}: {e}"))?;
        let response: Json =
            serde_json::from_str(&text).map_err(|e| format!("{kind} {path}: {e}: {text}"))?;
        if status != 200 || response["status"] != "success" {
            return Err(format!("{kind} {path}: {status} {text}"));
        }
        Ok(response["value"].clone())
    }

    /// `GET path` of an admin endpoint; the JSON answer, or the error with its body.
    pub fn get_admin(&mut self, path: &str, admin_key: &str) -> Result<Json, String> {
        let (status, text) = self
            .request_with(
                "GET",
                path,
                "",
                &format!("authorization: Convex {admin_key}\r\n"),
            )
            .map_err(|e| format!("GET {path}: {e}"))?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("GET {path}: {e}: {text}"))
    }

    /// The server's mutation counters (`GET /api/metrics`, an admin endpoint): committed,
    /// conflict retries, serial-lane runs and inline attempts that ran long since it started.
    pub fn metrics(&mut self, admin_key: &str) -> Result<Metrics, String> {
        let (status, text) = self
            .request_with(
                "GET",
                "/api/metrics",
                "",
                &format!("authorization: Convex {admin_key}\r\n"),
            )
            .map_err(|e| format!("metrics: {e}"))?;
        if status != 200 {
            return Err(format!("GET /api/metrics: {status} {text}"));
        }
        let json: Json = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let count = |name: &str| {
            json[name]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("GET /api/metrics: no {name} in {text}"))
        };
        Ok(Metrics {
            committed: count("committed")?,
            conflict_retries: count("conflictRetries")?,
            serial_runs: count("serialRuns")?,
            inline_overruns: count("inlineOverruns")?,
            inline_network_reads: count("inlineNetworkReads")?,
        })
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Metrics {
    pub committed: u64,
    pub conflict_retries: u64,
    pub serial_runs: u64,
    /// Attempts run inline that ran long and were made again on the blocking pool.
    pub inline_overruns: u64,
    /// Attempts run inline that came to a read waiting on the network (PostgreSQL) and were
    /// made again on the blocking pool.
    pub inline_network_reads: u64,
}

/// An int64 argument in the wire form (docs/PROTOCOL.md section 1).
pub fn int(v: i64) -> Json {
    ferrovex_model::json::to_json(&ferrovex_model::Value::Int64(v))
}
