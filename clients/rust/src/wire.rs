//! The frames of PROTOCOL.md section 3 as the client sees them: client messages serialized,
//! server messages parsed with errors that say what is wrong (a bad frame is a reason to
//! reconnect, never a panic).

use crate::error::FunctionError;
use ferrovex_model::json::{from_json, to_json};
use ferrovex_model::{Object, Value};
use serde_json::{json, Map, Value as Json};
use std::fmt;

/// A query-set version and the commit timestamp its results were computed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StateVersion {
    pub query_set: u64,
    pub ts: u64,
}

impl StateVersion {
    pub const INITIAL: StateVersion = StateVersion {
        query_set: 0,
        ts: 0,
    };
}

impl fmt::Display for StateVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{querySet: {}, ts: {}}}", self.query_set, self.ts)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum QueryModification {
    Updated { query_id: u64, value: Value },
    Failed { query_id: u64, error: FunctionError },
    Removed { query_id: u64 },
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ServerMessage {
    Transition {
        start: StateVersion,
        end: StateVersion,
        modifications: Vec<QueryModification>,
    },
    MutationResponse {
        request_id: u64,
        /// The result and the commit timestamp, or the function's error.
        outcome: Result<(Value, u64, Vec<String>), FunctionError>,
    },
    FatalError {
        error: String,
    },
    Ping,
}

/// Parses one text frame from the server.
pub(crate) fn parse_server_message(text: &str) -> Result<ServerMessage, String> {
    let json: Json =
        serde_json::from_str(text).map_err(|e| format!("malformed frame: not valid JSON ({e})"))?;
    let Json::Object(map) = &json else {
        return Err(format!(
            "malformed frame: expected a JSON object, got {}",
            ferrovex_model::json::json_kind(&json)
        ));
    };
    let kind = string(map, "type", "frame")?;
    let what = kind.as_str();
    Ok(match what {
        "Transition" => ServerMessage::Transition {
            start: version(field(map, "startVersion", what)?, "Transition.startVersion")?,
            end: version(field(map, "endVersion", what)?, "Transition.endVersion")?,
            modifications: array(map, "modifications", what)?
                .iter()
                .map(modification)
                .collect::<Result<_, _>>()?,
        },
        "MutationResponse" => {
            let request_id = uint(map, "requestId", what)?;
            let log_lines = log_lines(map, what)?;
            let success = match field(map, "success", what)? {
                Json::Bool(b) => *b,
                other => return Err(wrong_type("MutationResponse.success", "a boolean", other)),
            };
            let outcome = if success {
                let value = value(field(map, "result", what)?, "MutationResponse.result")?;
                let ts = ts(field(map, "ts", what)?, "MutationResponse.ts")?;
                Ok((value, ts, log_lines))
            } else {
                Err(function_error(map, what, log_lines)?)
            };
            ServerMessage::MutationResponse {
                request_id,
                outcome,
            }
        }
        "FatalError" => ServerMessage::FatalError {
            error: string(map, "error", what)?,
        },
        "Ping" => ServerMessage::Ping,
        other => {
            let shown: String = other.chars().take(64).collect();
            return Err(format!(
                "unknown message type {shown:?} (expected Transition, MutationResponse, FatalError or Ping)"
            ));
        }
    })
}

fn modification(json: &Json) -> Result<QueryModification, String> {
    let Json::Object(map) = json else {
        return Err(wrong_type("Transition.modifications[]", "an object", json));
    };
    let kind = string(map, "type", "query modification")?;
    let what = kind.as_str();
    let query_id = uint(map, "queryId", what)?;
    Ok(match what {
        "QueryUpdated" => QueryModification::Updated {
            query_id,
            value: value(field(map, "value", what)?, "QueryUpdated.value")?,
        },
        "QueryFailed" => {
            let log_lines = log_lines(map, what)?;
            QueryModification::Failed {
                query_id,
                error: function_error(map, what, log_lines)?,
            }
        }
        "QueryRemoved" => QueryModification::Removed { query_id },
        other => {
            let shown: String = other.chars().take(64).collect();
            return Err(format!(
                "unknown query modification {shown:?} (expected QueryUpdated, QueryFailed or QueryRemoved)"
            ));
        }
    })
}

fn function_error(
    map: &Map<String, Json>,
    what: &str,
    log_lines: Vec<String>,
) -> Result<FunctionError, String> {
    let data = match map.get("errorData") {
        None => None,
        Some(json) => Some(value(json, &format!("{what}.errorData"))?),
    };
    Ok(FunctionError {
        message: string(map, "errorMessage", what)?,
        data,
        log_lines,
    })
}

fn field<'a>(map: &'a Map<String, Json>, name: &str, what: &str) -> Result<&'a Json, String> {
    map.get(name)
        .ok_or_else(|| format!("malformed {what}: no {name:?} field"))
}

fn string(map: &Map<String, Json>, name: &str, what: &str) -> Result<String, String> {
    match field(map, name, what)? {
        Json::String(s) => Ok(s.clone()),
        other => Err(wrong_type(&format!("{what}.{name}"), "a string", other)),
    }
}

fn uint(map: &Map<String, Json>, name: &str, what: &str) -> Result<u64, String> {
    let json = field(map, name, what)?;
    json.as_u64()
        .ok_or_else(|| wrong_type(&format!("{what}.{name}"), "an unsigned integer", json))
}

fn array<'a>(map: &'a Map<String, Json>, name: &str, what: &str) -> Result<&'a [Json], String> {
    match field(map, name, what)? {
        Json::Array(items) => Ok(items),
        other => Err(wrong_type(&format!("{what}.{name}"), "an array", other)),
    }
}

/// `logLines` is optional: a missing list means no lines.
fn log_lines(map: &Map<String, Json>, what: &str) -> Result<Vec<String>, String> {
    match map.get("logLines") {
        None => Ok(Vec::new()),
        Some(Json::Array(items)) => items
            .iter()
            .map(|line| match line {
                Json::String(s) => Ok(s.clone()),
                other => Err(wrong_type(&format!("{what}.logLines[]"), "a string", other)),
            })
            .collect(),
        Some(other) => Err(wrong_type(&format!("{what}.logLines"), "an array", other)),
    }
}

fn version(json: &Json, what: &str) -> Result<StateVersion, String> {
    let Json::Object(map) = json else {
        return Err(wrong_type(what, "an object", json));
    };
    Ok(StateVersion {
        query_set: uint(map, "querySet", what)?,
        ts: ts(field(map, "ts", what)?, &format!("{what}.ts"))?,
    })
}

fn ts(json: &Json, what: &str) -> Result<u64, String> {
    match json {
        Json::String(text) => text
            .parse()
            .map_err(|_| format!("{what} must be a decimal timestamp string, got {text:?}")),
        other => Err(wrong_type(what, "a decimal timestamp string", other)),
    }
}

fn value(json: &Json, what: &str) -> Result<Value, String> {
    from_json(json).map_err(|e| format!("{what}: {e}"))
}

fn wrong_type(what: &str, expected: &str, got: &Json) -> String {
    format!(
        "malformed frame: {what} must be {expected}, got {}",
        ferrovex_model::json::json_kind(got)
    )
}

/// `Connect`: the first message on every connection.
pub(crate) fn connect(
    session_id: &str,
    connection_count: u64,
    max_observed_timestamp: Option<u64>,
) -> String {
    let mut map = Map::new();
    map.insert("type".into(), "Connect".into());
    map.insert("sessionId".into(), session_id.into());
    map.insert("connectionCount".into(), connection_count.into());
    if let Some(ts) = max_observed_timestamp {
        map.insert("maxObservedTimestamp".into(), ts.to_string().into());
    }
    Json::Object(map).to_string()
}

/// One entry of a `ModifyQuerySet`.
pub(crate) enum QuerySetChange<'a> {
    Add {
        query_id: u64,
        udf_path: &'a str,
        args: &'a Object,
    },
    Remove {
        query_id: u64,
    },
}

pub(crate) fn modify_query_set(base_version: u64, changes: &[QuerySetChange<'_>]) -> String {
    let modifications: Vec<Json> = changes
        .iter()
        .map(|change| match change {
            QuerySetChange::Add {
                query_id,
                udf_path,
                args,
            } => json!({
                "type": "Add",
                "queryId": query_id,
                "udfPath": udf_path,
                "args": object_json(args),
            }),
            QuerySetChange::Remove { query_id } => json!({"type": "Remove", "queryId": query_id}),
        })
        .collect();
    json!({
        "type": "ModifyQuerySet",
        "baseVersion": base_version,
        "newVersion": base_version + 1,
        "modifications": modifications,
    })
    .to_string()
}

pub(crate) fn mutation(request_id: u64, udf_path: &str, args: &Object) -> String {
    json!({
        "type": "Mutation",
        "requestId": request_id,
        "udfPath": udf_path,
        "args": object_json(args),
    })
    .to_string()
}

fn object_json(args: &Object) -> Json {
    Json::Object(args.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovex_model::obj;

    #[test]
    fn server_messages_parse_as_the_protocol_writes_them() {
        let transition = r#"{"type": "Transition", "startVersion": {"querySet": 0, "ts": "0"},
            "endVersion": {"querySet": 1, "ts": "1732406400000000123"}, "modifications": [
            {"type": "QueryUpdated", "queryId": 7, "value": {"$integer": "-42"}, "logLines": ["hi"]},
            {"type": "QueryFailed", "queryId": 8, "errorMessage": "boom", "errorData": "why", "logLines": []},
            {"type": "QueryRemoved", "queryId": 9}]}"#;
        assert_eq!(
            parse_server_message(transition).unwrap(),
            ServerMessage::Transition {
                start: StateVersion::INITIAL,
                end: StateVersion {
                    query_set: 1,
                    ts: 1732406400000000123
                },
                modifications: vec![
                    QueryModification::Updated {
                        query_id: 7,
                        value: Value::Int64(-42)
                    },
                    QueryModification::Failed {
                        query_id: 8,
                        error: FunctionError {
                            message: "boom".into(),
                            data: Some("why".into()),
                            log_lines: vec![],
                        }
                    },
                    QueryModification::Removed { query_id: 9 },
                ],
            }
        );
        let ok = r#"{"type": "MutationResponse", "requestId": 2, "success": true, "result": null, "ts": "5", "logLines": ["x"]}"#;
        assert_eq!(
            parse_server_message(ok).unwrap(),
            ServerMessage::MutationResponse {
                request_id: 2,
                outcome: Ok((Value::Null, 5, vec!["x".into()])),
            }
        );
        let failed = r#"{"type": "MutationResponse", "requestId": 1, "success": false, "errorMessage": "m", "logLines": []}"#;
        assert_eq!(
            parse_server_message(failed).unwrap(),
            ServerMessage::MutationResponse {
                request_id: 1,
                outcome: Err(FunctionError {
                    message: "m".into(),
                    data: None,
                    log_lines: vec![],
                }),
            }
        );
        assert_eq!(
            parse_server_message(r#"{"type": "Ping"}"#).unwrap(),
            ServerMessage::Ping
        );
    }

    #[test]
    fn bad_server_frames_say_what_is_wrong() {
        for (text, needle) in [
            ("{not json", "not valid JSON"),
            ("[1]", "expected a JSON object, got an array"),
            (r#"{"type": "Hello"}"#, "unknown message type \"Hello\""),
            (r#"{"type": 3}"#, "must be a string"),
            (
                r#"{"type": "Transition", "startVersion": {"querySet": 0, "ts": 0}, "endVersion": {"querySet": 1, "ts": "1"}, "modifications": []}"#,
                "startVersion.ts",
            ),
            (
                r#"{"type": "Transition", "startVersion": {"querySet": 0, "ts": "0"}, "endVersion": {"querySet": 1, "ts": "1"}, "modifications": [{"type": "QueryUpdated", "queryId": 1, "value": {"$bad": 1}}]}"#,
                "$bad",
            ),
            (
                r#"{"type": "MutationResponse", "requestId": 1, "success": true, "result": null}"#,
                "\"ts\"",
            ),
            (
                r#"{"type": "MutationResponse", "requestId": -1, "success": false, "errorMessage": "m"}"#,
                "requestId",
            ),
        ] {
            let err = parse_server_message(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn client_messages_serialize_as_the_protocol_writes_them() {
        let parse = |s: String| serde_json::from_str::<Json>(&s).unwrap();
        assert_eq!(
            parse(connect("s", 2, Some(17))),
            json!({"type": "Connect", "sessionId": "s", "connectionCount": 2, "maxObservedTimestamp": "17"})
        );
        assert_eq!(
            parse(connect("s", 0, None)),
            json!({"type": "Connect", "sessionId": "s", "connectionCount": 0})
        );
        let args = obj! { "n" => 5i64, "b" => vec![1u8] };
        assert_eq!(
            parse(modify_query_set(
                3,
                &[
                    QuerySetChange::Add {
                        query_id: 7,
                        udf_path: "chat:get_messages",
                        args: &args
                    },
                    QuerySetChange::Remove { query_id: 2 },
                ]
            )),
            json!({"type": "ModifyQuerySet", "baseVersion": 3, "newVersion": 4, "modifications": [
                {"type": "Add", "queryId": 7, "udfPath": "chat:get_messages", "args": {"n": {"$integer": "5"}, "b": {"$bytes": "AQ=="}}},
                {"type": "Remove", "queryId": 2},
            ]})
        );
        assert_eq!(
            parse(mutation(1, "chat:send_message", &obj! { "user" => "ada" })),
            json!({"type": "Mutation", "requestId": 1, "udfPath": "chat:send_message", "args": {"user": "ada"}})
        );
    }
}
