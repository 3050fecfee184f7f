//! The WebSocket sync messages of PROTOCOL.md section 3, as types, with parsing that turns
//! every malformed frame into an error saying what was wrong.
//!
//! Unknown fields are ignored (a newer client may send more); an unknown message `type`,
//! a missing field or a wrongly typed one is an error, answered with `FatalError`.

use ferrovex_model::json::{from_json, to_json};
use ferrovex_model::Value;
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};
use std::fmt;
use std::sync::Arc;

/// The longest `sessionId` accepted: it keys every stored mutation receipt of the session.
pub const MAX_SESSION_ID_BYTES: usize = 128;

/// A commit timestamp on the wire: a decimal string.
pub type Ts = u64;

#[derive(Clone, Debug, PartialEq)]
pub enum ClientMessage {
    Connect {
        session_id: String,
        connection_count: u64,
        max_observed_timestamp: Option<Ts>,
    },
    ModifyQuerySet {
        base_version: u64,
        new_version: u64,
        modifications: Vec<QuerySetModification>,
    },
    Mutation {
        request_id: u64,
        udf_path: String,
        args: Value,
    },
    Authenticate {
        base_version: u64,
        token_type: TokenType,
        value: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum QuerySetModification {
    Add {
        query_id: u64,
        udf_path: String,
        args: Value,
    },
    Remove {
        query_id: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum TokenType {
    Admin,
    User,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// The raw shapes, as serde reads them; converted and checked by `parse_client_message`.
#[derive(Deserialize)]
#[serde(tag = "type")]
enum Raw {
    Connect {
        #[serde(rename = "sessionId")]
        session_id: String,
        #[serde(rename = "connectionCount")]
        connection_count: u64,
        #[serde(rename = "maxObservedTimestamp", default)]
        max_observed_timestamp: Option<String>,
    },
    ModifyQuerySet {
        #[serde(rename = "baseVersion")]
        base_version: u64,
        #[serde(rename = "newVersion")]
        new_version: u64,
        modifications: Vec<RawModification>,
    },
    Mutation {
        #[serde(rename = "requestId")]
        request_id: u64,
        #[serde(rename = "udfPath")]
        udf_path: String,
        args: Json,
    },
    Authenticate {
        #[serde(rename = "baseVersion")]
        base_version: u64,
        #[serde(rename = "tokenType")]
        token_type: TokenType,
        #[serde(default)]
        value: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum RawModification {
    Add {
        #[serde(rename = "queryId")]
        query_id: u64,
        #[serde(rename = "udfPath")]
        udf_path: String,
        args: Json,
    },
    Remove {
        #[serde(rename = "queryId")]
        query_id: u64,
    },
}

const CLIENT_TYPES: &str = "Connect, ModifyQuerySet, Mutation, Authenticate";

/// Parses one text frame from a client.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    let json: Json = serde_json::from_str(text)
        .map_err(|e| ProtocolError(format!("malformed frame: not valid JSON ({e})")))?;
    let kind = match json.get("type") {
        Some(Json::String(kind)) => kind.clone(),
        Some(other) => {
            return Err(ProtocolError(format!(
                "malformed frame: \"type\" must be a string, got {other}"
            )))
        }
        None if json.is_object() => {
            return Err(ProtocolError("malformed frame: no \"type\" field".into()))
        }
        None => {
            return Err(ProtocolError(format!(
                "malformed frame: expected a JSON object, got {}",
                ferrovex_model::json::json_kind(&json)
            )))
        }
    };
    if !CLIENT_TYPES.split(", ").any(|t| t == kind) {
        let shown: String = kind.chars().take(64).collect();
        return Err(ProtocolError(format!(
            "unknown message type {shown:?} (expected one of {CLIENT_TYPES})"
        )));
    }
    let raw: Raw = serde_json::from_value(json)
        .map_err(|e| ProtocolError(format!("malformed {kind} message: {e}")))?;
    Ok(match raw {
        Raw::Connect { session_id, .. }
            if session_id.is_empty() || session_id.len() > MAX_SESSION_ID_BYTES =>
        {
            return Err(ProtocolError(format!(
                "Connect: sessionId must be 1 to {MAX_SESSION_ID_BYTES} bytes (a UUID is 36), got {} bytes",
                session_id.len()
            )));
        }
        Raw::Connect {
            session_id,
            connection_count,
            max_observed_timestamp,
        } => ClientMessage::Connect {
            session_id,
            connection_count,
            max_observed_timestamp: max_observed_timestamp
                .map(|t| parse_ts("maxObservedTimestamp", &t))
                .transpose()?,
        },
        Raw::ModifyQuerySet {
            base_version,
            new_version,
            modifications,
        } => ClientMessage::ModifyQuerySet {
            base_version,
            new_version,
            modifications: modifications
                .into_iter()
                .map(|m| match m {
                    RawModification::Add {
                        query_id,
                        udf_path,
                        args,
                    } => Ok(QuerySetModification::Add {
                        query_id,
                        args: parse_args(&format!("query {query_id} ({udf_path})"), &args)?,
                        udf_path,
                    }),
                    RawModification::Remove { query_id } => {
                        Ok(QuerySetModification::Remove { query_id })
                    }
                })
                .collect::<Result<_, ProtocolError>>()?,
        },
        Raw::Mutation {
            request_id,
            udf_path,
            args,
        } => ClientMessage::Mutation {
            request_id,
            args: parse_args(&format!("mutation {request_id} ({udf_path})"), &args)?,
            udf_path,
        },
        Raw::Authenticate {
            base_version,
            token_type,
            value,
        } => ClientMessage::Authenticate {
            base_version,
            token_type,
            value,
        },
    })
}

fn parse_ts(field: &str, text: &str) -> Result<Ts, ProtocolError> {
    text.parse::<u64>().map_err(|_| {
        ProtocolError(format!(
            "{field} must be a decimal timestamp string, got {text:?}"
        ))
    })
}

/// Function arguments: a JSON object in the wire form of section 1.
fn parse_args(what: &str, args: &Json) -> Result<Value, ProtocolError> {
    if !args.is_object() {
        return Err(ProtocolError(format!(
            "{what}: args must be a JSON object, got {}",
            ferrovex_model::json::json_kind(args)
        )));
    }
    from_json(args).map_err(|e| ProtocolError(format!("{what}: {e}")))
}

/// A query-set version and the timestamp its results were computed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateVersion {
    pub query_set: u64,
    pub ts: Ts,
}

impl StateVersion {
    pub const INITIAL: StateVersion = StateVersion {
        query_set: 0,
        ts: 0,
    };

    fn to_json(self) -> Json {
        json!({ "querySet": self.query_set, "ts": self.ts.to_string() })
    }
}

/// A function's failure as clients see it.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionError {
    pub message: String,
    pub data: Option<Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum QueryModification {
    Updated {
        query_id: u64,
        value: Value,
        log_lines: Vec<String>,
    },
    Failed {
        query_id: u64,
        error: FunctionError,
        log_lines: Vec<String>,
    },
    Removed {
        query_id: u64,
    },
    /// An `Updated` or `Failed` serialized once for every connection that receives the same
    /// result: `body` is its JSON object's members other than `queryId`, without braces.
    Prepared {
        query_id: u64,
        body: Arc<str>,
    },
}

impl QueryModification {
    /// The `body` of a [`QueryModification::Prepared`] for this `Updated` or `Failed`.
    pub fn prepare(&self) -> Arc<str> {
        let mut json = modification_json(self);
        if let Json::Object(map) = &mut json {
            map.remove("queryId");
        }
        let text = json.to_string();
        Arc::from(&text[1..text.len() - 1])
    }
}

fn modification_json(modification: &QueryModification) -> Json {
    match modification {
        QueryModification::Updated {
            query_id,
            value,
            log_lines,
        } => json!({
            "type": "QueryUpdated", "queryId": query_id, "value": to_json(value), "logLines": log_lines,
        }),
        QueryModification::Failed {
            query_id,
            error,
            log_lines,
        } => {
            let mut map = Map::new();
            map.insert("type".into(), "QueryFailed".into());
            map.insert("queryId".into(), (*query_id).into());
            error_fields(&mut map, error);
            map.insert("logLines".into(), json!(log_lines));
            Json::Object(map)
        }
        QueryModification::Removed { query_id } => {
            json!({ "type": "QueryRemoved", "queryId": query_id })
        }
        QueryModification::Prepared { query_id, body } => {
            let mut json: Json =
                serde_json::from_str(&format!("{{{body}}}")).expect("prepared from JSON");
            json["queryId"] = (*query_id).into();
            json
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    Transition {
        start: StateVersion,
        end: StateVersion,
        modifications: Vec<QueryModification>,
    },
    MutationResponse {
        request_id: u64,
        outcome: Result<(Value, Ts), FunctionError>,
        log_lines: Vec<String>,
    },
    FatalError {
        error: String,
    },
    Ping,
}

fn error_fields(map: &mut Map<String, Json>, error: &FunctionError) {
    map.insert("errorMessage".into(), Json::String(error.message.clone()));
    if let Some(data) = &error.data {
        map.insert("errorData".into(), to_json(data));
    }
}

impl ServerMessage {
    pub fn to_json(&self) -> Json {
        match self {
            ServerMessage::Transition {
                start,
                end,
                modifications,
            } => json!({
                "type": "Transition",
                "startVersion": start.to_json(),
                "endVersion": end.to_json(),
                "modifications": modifications.iter().map(modification_json).collect::<Vec<_>>(),
            }),
            ServerMessage::MutationResponse {
                request_id,
                outcome,
                log_lines,
            } => {
                let mut map = Map::new();
                map.insert("type".into(), "MutationResponse".into());
                map.insert("requestId".into(), (*request_id).into());
                match outcome {
                    Ok((value, ts)) => {
                        map.insert("success".into(), true.into());
                        map.insert("result".into(), to_json(value));
                        map.insert("ts".into(), ts.to_string().into());
                    }
                    Err(error) => {
                        map.insert("success".into(), false.into());
                        error_fields(&mut map, error);
                    }
                }
                map.insert("logLines".into(), json!(log_lines));
                Json::Object(map)
            }
            ServerMessage::FatalError { error } => json!({ "type": "FatalError", "error": error }),
            ServerMessage::Ping => json!({ "type": "Ping" }),
        }
    }

    /// The text frame. A transition is written by hand so that prepared results are copied
    /// in as they are, not parsed and serialized again for every connection.
    pub fn to_frame(&self) -> String {
        let ServerMessage::Transition {
            start,
            end,
            modifications,
        } = self
        else {
            return self.to_json().to_string();
        };
        let prepared: usize = modifications
            .iter()
            .map(|m| match m {
                QueryModification::Prepared { body, .. } => body.len() + 32,
                _ => 0,
            })
            .sum();
        let mut frame = String::with_capacity(128 + prepared);
        frame.push_str(r#"{"type":"Transition","startVersion":"#);
        frame.push_str(&start.to_json().to_string());
        frame.push_str(r#","endVersion":"#);
        frame.push_str(&end.to_json().to_string());
        frame.push_str(r#","modifications":["#);
        for (i, modification) in modifications.iter().enumerate() {
            if i > 0 {
                frame.push(',');
            }
            match modification {
                QueryModification::Prepared { query_id, body } => {
                    frame.push_str(&format!(r#"{{"queryId":{query_id},"#));
                    frame.push_str(body);
                    frame.push('}');
                }
                other => frame.push_str(&modification_json(other).to_string()),
            }
        }
        frame.push_str("]}");
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovex_model::obj;

    #[test]
    fn client_messages_parse_as_the_protocol_writes_them() {
        let cases = [
            (
                r#"{"type": "Connect", "sessionId": "5f0c", "connectionCount": 0, "maxObservedTimestamp": "1732406400000000123"}"#,
                ClientMessage::Connect {
                    session_id: "5f0c".into(),
                    connection_count: 0,
                    max_observed_timestamp: Some(1732406400000000123),
                },
            ),
            (
                r#"{"type": "Connect", "sessionId": "5f0c", "connectionCount": 3}"#,
                ClientMessage::Connect {
                    session_id: "5f0c".into(),
                    connection_count: 3,
                    max_observed_timestamp: None,
                },
            ),
            (
                r#"{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
                    {"type": "Add", "queryId": 7, "udfPath": "chat:get_messages", "args": {}},
                    {"type": "Remove", "queryId": 3}]}"#,
                ClientMessage::ModifyQuerySet {
                    base_version: 0,
                    new_version: 1,
                    modifications: vec![
                        QuerySetModification::Add {
                            query_id: 7,
                            udf_path: "chat:get_messages".into(),
                            args: Value::Object(obj! {}),
                        },
                        QuerySetModification::Remove { query_id: 3 },
                    ],
                },
            ),
            (
                r#"{"type": "Mutation", "requestId": 1, "udfPath": "chat:send_message", "args": {"user": "ada", "n": {"$integer": "5"}}}"#,
                ClientMessage::Mutation {
                    request_id: 1,
                    udf_path: "chat:send_message".into(),
                    args: Value::Object(obj! { "user" => "ada", "n" => 5i64 }),
                },
            ),
            (
                r#"{"type": "Authenticate", "baseVersion": 0, "tokenType": "None", "unknownFutureField": 1}"#,
                ClientMessage::Authenticate {
                    base_version: 0,
                    token_type: TokenType::None,
                    value: None,
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_client_message(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        for (text, needle) in [
            ("{not json", "not valid JSON"),
            ("[1, 2]", "expected a JSON object, got an array"),
            (r#"{"sessionId": "x"}"#, "no \"type\""),
            (
                r#"{"type": "Subscribe"}"#,
                "unknown message type \"Subscribe\"",
            ),
            (r#"{"type": "Connect", "connectionCount": 0}"#, "sessionId"),
            (
                r#"{"type": "Connect", "sessionId": "", "connectionCount": 0}"#,
                "sessionId must be 1 to 128 bytes (a UUID is 36), got 0 bytes",
            ),
            (
                r#"{"type": "Connect", "sessionId": "x", "connectionCount": 0, "maxObservedTimestamp": "soon"}"#,
                "maxObservedTimestamp",
            ),
            (
                r#"{"type": "Mutation", "requestId": 1, "udfPath": "a:b", "args": [1]}"#,
                "args must be a JSON object",
            ),
            (
                r#"{"type": "Mutation", "requestId": 1, "udfPath": "a:b", "args": {"$bad": 1}}"#,
                "$bad",
            ),
            (
                r#"{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [{"type": "Swap"}]}"#,
                "Swap",
            ),
        ] {
            let err = parse_client_message(text).unwrap_err();
            assert!(err.0.contains(needle), "{text}: {err}");
        }
        let long = format!(
            r#"{{"type": "Connect", "sessionId": "{}", "connectionCount": 0}}"#,
            "s".repeat(129)
        );
        let err = parse_client_message(&long).unwrap_err();
        assert!(err.0.contains("got 129 bytes"), "{err}");
    }

    #[test]
    fn a_prepared_modification_writes_the_same_frame() {
        let updated = QueryModification::Updated {
            query_id: 7,
            value: Value::Array(vec![Value::Int64(-42), Value::String("a\"b".into())]),
            log_lines: vec!["line".into()],
        };
        let failed = QueryModification::Failed {
            query_id: 8,
            error: FunctionError {
                message: "chat:get_messages failed".into(),
                data: Some(Value::Bytes(vec![1, 2])),
            },
            log_lines: vec![],
        };
        let frame = |modifications| {
            let transition = ServerMessage::Transition {
                start: StateVersion::INITIAL,
                end: StateVersion {
                    query_set: 1,
                    ts: 5,
                },
                modifications,
            };
            serde_json::from_str::<Json>(&transition.to_frame()).expect("a JSON frame")
        };
        let prepared: Vec<_> = [&updated, &failed]
            .iter()
            .map(|m| QueryModification::Prepared {
                query_id: match m {
                    QueryModification::Updated { query_id, .. }
                    | QueryModification::Failed { query_id, .. } => *query_id,
                    _ => unreachable!(),
                },
                body: m.prepare(),
            })
            .collect();
        let plain = frame(vec![updated.clone(), failed.clone()]);
        assert_eq!(frame(prepared), plain);
        assert_eq!(
            plain["modifications"][0]["value"][0],
            json!({"$integer": "-42"})
        );
        assert_eq!(
            plain["modifications"][1]["errorData"],
            json!({"$bytes": "AQI="})
        );
    }

    #[test]
    fn server_messages_serialize_as_the_protocol_writes_them() {
        let transition = ServerMessage::Transition {
            start: StateVersion::INITIAL,
            end: StateVersion {
                query_set: 1,
                ts: 1732406400000000123,
            },
            modifications: vec![
                QueryModification::Updated {
                    query_id: 7,
                    value: Value::Int64(-42),
                    log_lines: vec!["hi".into()],
                },
                QueryModification::Failed {
                    query_id: 8,
                    error: FunctionError {
                        message: "chat:get: boom".into(),
                        data: None,
                    },
                    log_lines: vec![],
                },
                QueryModification::Removed { query_id: 9 },
            ],
        };
        assert_eq!(
            transition.to_json(),
            json!({
                "type": "Transition",
                "startVersion": {"querySet": 0, "ts": "0"},
                "endVersion": {"querySet": 1, "ts": "1732406400000000123"},
                "modifications": [
                    {"type": "QueryUpdated", "queryId": 7, "value": {"$integer": "-42"}, "logLines": ["hi"]},
                    {"type": "QueryFailed", "queryId": 8, "errorMessage": "chat:get: boom", "logLines": []},
                    {"type": "QueryRemoved", "queryId": 9},
                ],
            })
        );
        let failed = ServerMessage::MutationResponse {
            request_id: 1,
            outcome: Err(FunctionError {
                message: "m".into(),
                data: Some(Value::from("why")),
            }),
            log_lines: vec![],
        };
        assert_eq!(
            failed.to_json(),
            json!({"type": "MutationResponse", "requestId": 1, "success": false, "errorMessage": "m", "errorData": "why", "logLines": []})
        );
        let ok = ServerMessage::MutationResponse {
            request_id: 2,
            outcome: Ok((Value::Null, 5)),
            log_lines: vec![],
        };
        assert_eq!(
            ok.to_json(),
            json!({"type": "MutationResponse", "requestId": 2, "success": true, "result": null, "ts": "5", "logLines": []})
        );
        assert_eq!(ServerMessage::Ping.to_frame(), r#"{"type":"Ping"}"#);
    }
}
