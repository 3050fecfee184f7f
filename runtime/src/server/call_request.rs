//! The body of `POST /api/query` and `POST /api/mutation`: reading it within the size limit
//! and parsing `{"path": "module:function", "args": {...}}`.

use super::response::{api_error, HttpResponse};
use ferrovex_model::limits::MAX_ARGS_OR_RESULT_BYTES;
use ferrovex_model::{Object, Value};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_LENGTH;
use hyper::{Request, StatusCode};
use serde_json::Value as Json;

/// The largest request body accepted. Arguments may take up to `MAX_ARGS_OR_RESULT_BYTES`
/// in binary form; their JSON form is larger (base64 bytes are 4/3, int64 is a tagged
/// object), so the body gets half as much again as slack. The host checks the real limit.
pub const MAX_REQUEST_BODY_BYTES: usize = MAX_ARGS_OR_RESULT_BYTES + MAX_ARGS_OR_RESULT_BYTES / 2;

const EXPECTED_SHAPE: &str = r#"expected {"path": "module:function", "args": {...}}"#;

/// A parsed call: which function, with which arguments.
#[derive(Debug)]
pub struct CallRequest {
    pub path: String,
    pub args: Value,
}

/// Reads the whole body, or answers 413 once it is over [`MAX_REQUEST_BODY_BYTES`].
pub async fn read_body(request: Request<Incoming>) -> Result<Bytes, HttpResponse> {
    let too_large = |given: String| {
        api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body exceeds the limit MAX_REQUEST_BODY_BYTES ({MAX_REQUEST_BODY_BYTES} bytes): got {given}"
            ),
            None,
            &[],
        )
    };
    // A declared length over the limit is refused before reading anything.
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared {
        if length > MAX_REQUEST_BODY_BYTES as u64 {
            return Err(too_large(format!("{length} bytes")));
        }
    }
    match Limited::new(request.into_body(), MAX_REQUEST_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(too_large("more than that".into()))
        }
        Err(e) => Err(api_error(
            StatusCode::BAD_REQUEST,
            format!("reading the request body failed: {e}"),
            None,
            &[],
        )),
    }
}

impl CallRequest {
    /// Parses a call body. `args` may be left out for a function without parameters; any
    /// other field is refused, so a misspelt `"arg"` is not silently ignored.
    pub fn parse(body: &[u8]) -> Result<CallRequest, String> {
        let json: Json = serde_json::from_slice(body)
            .map_err(|e| format!("the request body is not valid JSON ({e}); {EXPECTED_SHAPE}"))?;
        let Json::Object(fields) = json else {
            return Err(format!(
                "the request body must be a JSON object, got {}; {EXPECTED_SHAPE}",
                ferrovex_model::json::json_kind(&json)
            ));
        };
        if let Some(unexpected) = fields.keys().find(|k| *k != "path" && *k != "args") {
            return Err(format!(
                "unexpected field {unexpected:?} in the request body; {EXPECTED_SHAPE}"
            ));
        }
        let path = match fields.get("path") {
            Some(Json::String(path)) => path.clone(),
            Some(other) => {
                return Err(format!(
                    "\"path\" must be a string, got {}; {EXPECTED_SHAPE}",
                    ferrovex_model::json::json_kind(other)
                ))
            }
            None => return Err(format!("missing field \"path\"; {EXPECTED_SHAPE}")),
        };
        let args = match fields.get("args") {
            Some(args) => ferrovex_model::json::from_json(args)
                .map_err(|e| format!("{path}: invalid arguments: {e}"))?,
            None => Value::Object(Object::new()),
        };
        Ok(CallRequest { path, args })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(body: &str) -> String {
        CallRequest::parse(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn parses_path_and_args_and_defaults_args_to_an_empty_object() {
        let call = CallRequest::parse(
            br#"{"path": "chat:send_message", "args": {"n": {"$integer": "3"}}}"#,
        )
        .unwrap();
        assert_eq!(call.path, "chat:send_message");
        assert_eq!(call.args.as_object().unwrap()["n"], Value::Int64(3));
        let call = CallRequest::parse(br#"{"path": "chat:get_messages"}"#).unwrap();
        assert_eq!(call.args, Value::Object(Object::new()));
    }

    #[test]
    fn says_what_is_wrong_with_a_bad_body() {
        let cases = [
            ("{", "not valid JSON"),
            ("[1]", "must be a JSON object, got an array"),
            (r#"{"args": {}}"#, "missing field \"path\""),
            (r#"{"path": 3}"#, "\"path\" must be a string, got a number"),
            (r#"{"path": "a:b", "arg": {}}"#, "unexpected field \"arg\""),
            (
                r#"{"path": "a:b", "args": {"$x": 1}}"#,
                "a:b: invalid arguments: invalid value at $",
            ),
        ];
        for (body, expected) in cases {
            let message = error_of(body);
            assert!(message.contains(expected), "{body}: {message}");
        }
    }
}
