//! The body of a function call over HTTP: reading it within the size limit and parsing
//! `{"path": "module:function", "args": {...} or [{...}], "format": ...}`.

use super::response::{request_error, HttpResponse, ValueFormat};
use crate::sync::protocol::{canonical_udf_path, Args};
use ferrovex_model::limits::MAX_ARGS_OR_RESULT_BYTES;
use ferrovex_model::{Object, Value};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_LENGTH;
use hyper::{Request, StatusCode};
use serde_json::{Map, Value as Json};

/// The largest request body accepted. Arguments may take up to `MAX_ARGS_OR_RESULT_BYTES`
/// in binary form; their JSON form is larger (base64 bytes are 4/3, int64 is a tagged
/// object), so the body gets half as much again as slack. The host checks the real limit.
pub const MAX_REQUEST_BODY_BYTES: usize = MAX_ARGS_OR_RESULT_BYTES + MAX_ARGS_OR_RESULT_BYTES / 2;

const EXPECTED_SHAPE: &str = r#"expected {"path": "module:function", "args": {...} or [{...}], "format": "convex_encoded_json" or "json"}"#;

/// A parsed call: which function, with which arguments, answered in which format.
#[derive(Debug)]
pub struct CallRequest {
    /// The canonical path (`module:function`).
    pub path: String,
    /// The argument object, or why the arguments are not valid values: that is the call's
    /// failure (status 200, `CallError::InvalidArguments`), not the request's.
    pub args: Result<Value, String>,
    pub format: ValueFormat,
    /// `/api/query_at_ts`: the timestamp to read at.
    pub ts: Option<u64>,
}

/// A request refused before any function runs: its status, code and message.
#[derive(Debug, PartialEq)]
pub struct BadRequest {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl BadRequest {
    fn new(code: &'static str, message: String) -> BadRequest {
        BadRequest {
            status: StatusCode::BAD_REQUEST,
            code,
            message,
        }
    }

    pub fn response(&self) -> HttpResponse {
        request_error(self.status, self.code, self.message.clone())
    }
}

/// Reads the whole body, or answers 413 once it is over [`MAX_REQUEST_BODY_BYTES`].
pub async fn read_body(request: Request<Incoming>) -> Result<Bytes, HttpResponse> {
    read_body_up_to(request, MAX_REQUEST_BODY_BYTES, "MAX_REQUEST_BODY_BYTES").await
}

/// The whole body, if it holds at most `max` bytes (the limit called `limit`); else 413.
pub async fn read_body_up_to(
    request: Request<Incoming>,
    max: usize,
    limit: &str,
) -> Result<Bytes, HttpResponse> {
    let too_large = |given: String| {
        request_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLarge",
            format!("the request body exceeds the limit {limit} ({max} bytes): got {given}"),
        )
    };
    // A declared length over the limit is refused before reading anything.
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared {
        if length > max as u64 {
            return Err(too_large(format!("{length} bytes")));
        }
    }
    match Limited::new(request.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(too_large("more than that".into()))
        }
        Err(e) => Err(request_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("reading the request body failed: {e}"),
        )),
    }
}

impl CallRequest {
    /// Parses a call body: `path` (unless `path_from_url` gives it, as `/api/run/...` does),
    /// `args` (left out for a function without parameters), `format`, and the fields in
    /// `extra` (`ts`, `componentPath`). Any other field is refused, so a misspelt `"arg"` is
    /// not silently ignored.
    pub fn parse(
        body: &[u8],
        path_from_url: Option<&str>,
        extra: &[&str],
    ) -> Result<CallRequest, BadRequest> {
        let json: Json = serde_json::from_slice(body).map_err(|e| {
            BadRequest::new(
                "BadJsonBody",
                format!("the request body is not valid JSON ({e}); {EXPECTED_SHAPE}"),
            )
        })?;
        let Json::Object(fields) = json else {
            return Err(BadRequest::new(
                "BadJsonBody",
                format!(
                    "the request body must be a JSON object, got {}; {EXPECTED_SHAPE}",
                    ferrovex_model::json::json_kind(&json)
                ),
            ));
        };
        CallRequest::from_fields(&fields, path_from_url, extra)
    }

    /// A call from already parsed fields (a body, one entry of `/api/query_batch`, or the
    /// query string of `GET /api/query`).
    pub fn from_fields(
        fields: &Map<String, Json>,
        path_from_url: Option<&str>,
        extra: &[&str],
    ) -> Result<CallRequest, BadRequest> {
        let known = |k: &str| {
            k == "args"
                || k == "format"
                || (k == "path" && path_from_url.is_none())
                || extra.contains(&k)
        };
        if let Some(unexpected) = fields.keys().find(|k| !known(k)) {
            return Err(BadRequest::new(
                "BadRequest",
                format!("unexpected field {unexpected:?} in the request body; {EXPECTED_SHAPE}"),
            ));
        }
        let string = |name: &str| match fields.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(BadRequest::new(
                "BadRequest",
                format!(
                    "{name:?} must be a string, got {}; {EXPECTED_SHAPE}",
                    ferrovex_model::json::json_kind(other)
                ),
            )),
        };
        let given_path = match path_from_url {
            Some(path) => path,
            None => string("path")?.ok_or_else(|| {
                BadRequest::new(
                    "BadRequest",
                    format!("missing field \"path\"; {EXPECTED_SHAPE}"),
                )
            })?,
        };
        let path = canonical_udf_path(given_path)
            .map_err(|message| BadRequest::new("BadConvexFunctionIdentifier", message))?;
        let format = ValueFormat::parse(string("format")?)
            .map_err(|message| BadRequest::new("BadFormat", message))?;
        let ts = string("ts")?
            .map(|ts| {
                ferrovex_model::json::decode_u64(ts)
                    .map_err(|e| BadRequest::new("BadRequest", format!("\"ts\": {e}")))
            })
            .transpose()?;
        let args = match fields.get("args") {
            Some(args) => Args(args.clone()).to_value(),
            None => Ok(Value::Object(Object::new())),
        };
        Ok(CallRequest {
            path,
            args,
            format,
            ts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<CallRequest, BadRequest> {
        CallRequest::parse(body.as_bytes(), None, &[])
    }

    #[test]
    fn parses_the_official_clients_bodies() {
        // npm's ConvexHttpClient: args as [object], the encoded format.
        let call = parse(
            r#"{"path": "chat:send_message", "format": "convex_encoded_json", "args": [{"n": {"$integer": "AwAAAAAAAAA="}}]}"#,
        )
        .unwrap();
        assert_eq!(call.path, "chat:send_message");
        assert_eq!(call.format, ValueFormat::Encoded);
        assert_eq!(
            call.args.unwrap().as_object().unwrap()["n"],
            Value::Int64(3)
        );
        // Python's legacy client: a bare object; curl: no format, no args.
        let call = parse(r#"{"path": "chat.js:get_messages", "args": {}}"#).unwrap();
        assert_eq!(call.path, "chat:get_messages");
        assert_eq!(call.format, ValueFormat::Clean);
        let call = parse(r#"{"path": "chat:get_messages"}"#).unwrap();
        assert_eq!(call.args.unwrap(), Value::Object(Object::new()));
        let call = CallRequest::parse(br#"{"args": {}}"#, Some("admin/users:list"), &[]).unwrap();
        assert_eq!(call.path, "admin/users:list");
    }

    #[test]
    fn says_what_is_wrong_with_a_bad_request() {
        let cases = [
            ("{", "BadJsonBody", "not valid JSON"),
            ("[1]", "BadJsonBody", "must be a JSON object, got an array"),
            (r#"{"args": {}}"#, "BadRequest", "missing field \"path\""),
            (
                r#"{"path": 3}"#,
                "BadRequest",
                "\"path\" must be a string, got a number",
            ),
            (
                r#"{"path": "a:b", "arg": {}}"#,
                "BadRequest",
                "unexpected field \"arg\"",
            ),
            (
                r#"{"path": "a:b-c"}"#,
                "BadConvexFunctionIdentifier",
                "function name \"b-c\"",
            ),
            (
                r#"{"path": "a:b", "format": "xml"}"#,
                "BadFormat",
                "format \"xml\"",
            ),
            (
                r#"{"path": "a:b", "ts": "5"}"#,
                "BadRequest",
                "unexpected field \"ts\"",
            ),
        ];
        for (body, code, needle) in cases {
            let error = parse(body).unwrap_err();
            assert_eq!(error.code, code, "{body}: {error:?}");
            assert!(error.message.contains(needle), "{body}: {error:?}");
        }
    }

    #[test]
    fn invalid_arguments_fail_the_call_not_the_request() {
        for (args, needle) in [
            (
                r#"{"$x": 1}"#,
                "invalid value at $: field name \"$x\" starts with '$'",
            ),
            (r#"[{"n": {"$integer": "AQ=="}}]"#, "decodes to 1 bytes"),
            (r#"[1, 2]"#, "an array of 2 elements"),
        ] {
            let call = parse(&format!(r#"{{"path": "a:b", "args": {args}}}"#)).unwrap();
            let message = call.args.unwrap_err();
            assert!(message.contains(needle), "{args}: {message}");
        }
    }
}
