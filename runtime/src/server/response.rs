//! Building responses: JSON bodies for the API, plain text for the rest.

use ferrovex_model::Value;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Value as Json};

/// A response body: built in memory for API results (bounded by the result limit) and web
/// files, streamed for exports, which may be larger than memory should hold. A streamed
/// body that fails ends the response early, so the client sees it incomplete.
pub type HttpBody = UnsyncBoxBody<Bytes, std::io::Error>;
pub type HttpResponse = Response<HttpBody>;

/// A body held whole in memory.
pub fn full(bytes: impl Into<Bytes>) -> HttpBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn json(status: StatusCode, body: &Json) -> HttpResponse {
    with_body(status, "application/json", body.to_string().into_bytes())
}

pub fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> HttpResponse {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A request the server refused before any function ran (malformed, too large, unknown
/// endpoint, wrong method, not allowed): `{"code": ..., "message": ...}` with a 4xx or 5xx
/// status, the shape Convex uses. `code` is a stable name a program can match on.
pub fn request_error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    json(status, &json!({ "code": code, "message": message.into() }))
}

/// How values are written in an HTTP answer, as the request's `format` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueFormat {
    /// `convex_encoded_json`: the wire encoding, lossless (what the official clients send).
    Encoded,
    /// `json`: plain JSON, lossy (int64 as a decimal string, bytes as base64).
    Clean,
}

impl ValueFormat {
    /// The `format` field of a request: absent means clean JSON, as Convex answers curl.
    pub fn parse(format: Option<&str>) -> Result<ValueFormat, String> {
        match format {
            None | Some("json") | Some("convex_clean_json") => Ok(ValueFormat::Clean),
            Some("convex_encoded_json") | Some("convex_json") => Ok(ValueFormat::Encoded),
            Some(other) => Err(format!(
                "format {other:?} is not one of \"convex_encoded_json\" (lossless) and \"json\" (plain)"
            )),
        }
    }

    pub fn encode(self, value: &Value) -> Json {
        match self {
            ValueFormat::Encoded => ferrovex_model::json::to_json(value),
            ValueFormat::Clean => ferrovex_model::json::to_clean_json(value),
        }
    }

    /// Writes `value` in this format to `out` as it is walked, without a JSON tree: a result
    /// reaches the response as one copy, its bytes.
    pub fn write(self, value: &Value, out: &mut Vec<u8>) {
        let written = match self {
            ValueFormat::Encoded => {
                serde_json::to_writer(&mut *out, &ferrovex_model::json::Encoded(value))
            }
            ValueFormat::Clean => {
                serde_json::to_writer(&mut *out, &ferrovex_model::json::Clean(value))
            }
        };
        written.expect("a value always serializes to memory");
    }
}

/// 405 with the `Allow` header naming the methods the path accepts.
pub fn method_not_allowed(
    path: &str,
    given: &hyper::Method,
    allowed: &'static str,
) -> HttpResponse {
    let mut response = request_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("{path} accepts {allowed}, not {given}"),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    response
}
