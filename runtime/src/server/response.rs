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

/// `{"status": "error", "errorMessage": ..., "errorData": ..., "logLines": [...]}`, the shape
/// of every API error, whether the function failed or the request never reached it.
pub fn api_error(
    status: StatusCode,
    message: impl Into<String>,
    data: Option<&Value>,
    log_lines: &[String],
) -> HttpResponse {
    let mut body = json!({
        "status": "error",
        "errorMessage": message.into(),
        "logLines": log_lines,
    });
    if let Some(data) = data {
        body["errorData"] = ferrovex_model::json::to_json(data);
    }
    json(status, &body)
}

/// 405 with the `Allow` header naming the methods the path accepts.
pub fn method_not_allowed(
    path: &str,
    given: &hyper::Method,
    allowed: &'static str,
) -> HttpResponse {
    let mut response = api_error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{path} accepts {allowed}, not {given}"),
        None,
        &[],
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    response
}
