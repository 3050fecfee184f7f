//! The WebSocket sync messages of docs/PROTOCOL.md section 3 (Convex's sync protocol), in
//! both directions: the one definition the server, the simulation, the fuzz targets, the
//! benchmark's clients and the tests share.
//!
//! The server parses client frames with [`parse_client_message`] and writes
//! [`ServerMessage::to_frames`]; a client written in Rust (the simulation's, the CLI's, the
//! benchmark's) writes [`ClientMessage::to_json`] and parses [`parse_server_message`].
//!
//! Unknown fields are ignored (a newer client may send more) and `null` counts as absent for
//! optional ones; an unknown message `type`, a missing field or a wrongly typed one is an
//! error, answered with `FatalError`. Function arguments are kept as JSON until the call:
//! arguments that are not valid values are the call's failure, never the connection's.

use ferrovex_model::json::{decode_u64, encode_u64, from_json, json_kind, to_json};
use ferrovex_model::Value;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use std::fmt;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

/// The longest `sessionId` accepted: it keys every stored mutation receipt of the session.
pub const MAX_SESSION_ID_BYTES: usize = 128;

/// A transition whose frame is longer than this goes to clients that take chunks as
/// `TransitionChunk` parts of at most this many bytes (Convex's figure: npm clients from
/// 1.28.0 reassemble them; other clients get the whole frame).
pub const MAX_TRANSITION_CHUNK_BYTES: usize = 5_000_000;

/// A commit timestamp: nanoseconds since the Unix epoch, below 2^63; on the wire, base64 of
/// its 8 little-endian bytes.
pub type Ts = u64;

#[derive(Clone, Debug, PartialEq)]
pub enum ClientMessage {
    Connect {
        session_id: String,
        connection_count: u64,
        last_close_reason: Option<String>,
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
        args: Args,
    },
    Action {
        request_id: u64,
        udf_path: String,
        args: Args,
    },
    Authenticate {
        base_version: u64,
        token: AuthToken,
    },
    /// Client telemetry: accepted and ignored.
    Event {
        event_type: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum QuerySetModification {
    Add {
        query_id: u64,
        udf_path: String,
        args: Args,
        /// What the server returned with the query's last result (pagination), sent back
        /// after a reconnect.
        journal: Option<String>,
    },
    Remove {
        query_id: u64,
    },
}

/// What an `Authenticate` carries. Its `Debug` leaves the secrets out.
#[derive(Clone, PartialEq)]
pub enum AuthToken {
    /// Log out: calls run without an identity.
    None,
    /// A user's token (a JWT).
    User(String),
    /// The deployment's admin key, possibly acting as a user identity.
    Admin {
        key: String,
        impersonating: Option<Json>,
    },
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthToken::None => f.write_str("None"),
            AuthToken::User(token) => write!(f, "User(<{} bytes>)", token.len()),
            AuthToken::Admin { impersonating, .. } => write!(
                f,
                "Admin(<key>, impersonating: {})",
                impersonating.is_some()
            ),
        }
    }
}

/// A call's arguments as sent: a JSON object, or an array holding one object (the form
/// every official client sends over the WebSocket).
#[derive(Clone, Debug, PartialEq)]
pub struct Args(pub Json);

impl Args {
    /// The arguments of a call as clients send them: `[{...}]`.
    pub fn from_value(value: &Value) -> Args {
        Args(Json::Array(vec![to_json(value)]))
    }

    /// The argument object as a value, or why it is not one (the message for the caller).
    pub fn to_value(&self) -> Result<Value, String> {
        let object = match &self.0 {
            Json::Array(items) if items.len() == 1 => &items[0],
            Json::Array(items) => {
                return Err(format!(
                    "arguments must be an object, or an array holding one object; got an array of {} elements",
                    items.len()
                ))
            }
            other => other,
        };
        if !object.is_object() {
            return Err(format!(
                "arguments must be an object, got {}",
                json_kind(object)
            ));
        }
        from_json(object).map_err(|e| e.to_string())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
enum RawTokenType {
    Admin,
    User,
    None,
}

/// The raw shapes, as serde reads them; converted and checked by `parse_client_message`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
enum Raw {
    Connect {
        session_id: String,
        connection_count: u64,
        #[serde(default)]
        last_close_reason: Option<String>,
        #[serde(default)]
        max_observed_timestamp: Option<String>,
    },
    ModifyQuerySet {
        base_version: u64,
        new_version: u64,
        modifications: Vec<RawModification>,
    },
    Mutation {
        request_id: u64,
        udf_path: String,
        args: Json,
    },
    Action {
        request_id: u64,
        udf_path: String,
        args: Json,
    },
    Authenticate {
        base_version: u64,
        token_type: RawTokenType,
        #[serde(default)]
        value: Option<String>,
        #[serde(default, alias = "actingAs")]
        impersonating: Option<Json>,
    },
    Event {
        event_type: String,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
enum RawModification {
    Add {
        query_id: u64,
        udf_path: String,
        args: Json,
        #[serde(default)]
        journal: Option<String>,
    },
    Remove {
        query_id: u64,
    },
}

/// A `Mutation` frame read straight into its fields: serde reads an internally tagged enum
/// such as [`Raw`] by buffering the whole frame first (1.3% of the server's samples in
/// `bench --only chat-send`, and as much again reading the buffer), and mutations are most
/// frames. The same fields as `Raw::Mutation`, with the tag checked as one more field.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MutationFrame {
    #[serde(rename = "type")]
    _type: OnlyMutation,
    request_id: u64,
    udf_path: String,
    args: Json,
}

#[derive(Deserialize)]
enum OnlyMutation {
    Mutation,
}

const CLIENT_TYPES: &str = "Connect, ModifyQuerySet, Mutation, Action, Authenticate, Event";

/// The `type` of a JSON frame, or why it has none.
fn frame_type(json: &Json) -> Result<&str, ProtocolError> {
    match json.get("type") {
        Some(Json::String(kind)) => Ok(kind),
        Some(other) => Err(ProtocolError(format!(
            "malformed frame: \"type\" must be a string, got {other}"
        ))),
        None if json.is_object() => Err(ProtocolError("malformed frame: no \"type\" field".into())),
        None => Err(ProtocolError(format!(
            "malformed frame: expected a JSON object, got {}",
            json_kind(json)
        ))),
    }
}

fn parse_json(text: &str) -> Result<Json, ProtocolError> {
    serde_json::from_str(text)
        .map_err(|e| ProtocolError(format!("malformed frame: not valid JSON ({e})")))
}

/// Parses one text frame from a client.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    // Read straight into the message's shape; building a JSON tree first, for every frame,
    // was 2.3% of the server's CPU in `bench --only chat-send`. What that refuses is read
    // again as a tree: to say why, or to accept what a tree accepts (a repeated key: the
    // last one counts).
    if let Ok(frame) = serde_json::from_str::<MutationFrame>(text) {
        return Ok(ClientMessage::Mutation {
            request_id: frame.request_id,
            udf_path: frame.udf_path,
            args: Args(frame.args),
        });
    }
    match serde_json::from_str::<Raw>(text) {
        Ok(raw) => checked(raw),
        Err(_) => parse_as_tree(text),
    }
}

/// [`parse_client_message`] through a JSON tree, whose errors name what is wrong.
fn parse_as_tree(text: &str) -> Result<ClientMessage, ProtocolError> {
    let json = parse_json(text)?;
    let kind = frame_type(&json)?.to_owned();
    if !CLIENT_TYPES.split(", ").any(|t| t == kind) {
        let shown: String = kind.chars().take(64).collect();
        return Err(ProtocolError(format!(
            "unknown message type {shown:?} (expected one of {CLIENT_TYPES})"
        )));
    }
    let raw: Raw = serde_json::from_value(json)
        .map_err(|e| ProtocolError(format!("malformed {kind} message: {e}")))?;
    checked(raw)
}

/// The message a well-formed frame carries, once its values pass the checks serde does not
/// make.
fn checked(raw: Raw) -> Result<ClientMessage, ProtocolError> {
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
            last_close_reason,
            max_observed_timestamp,
        } => ClientMessage::Connect {
            session_id,
            connection_count,
            last_close_reason,
            max_observed_timestamp: max_observed_timestamp
                .map(|t| parse_ts("Connect: maxObservedTimestamp", &t))
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
                        journal,
                    } => QuerySetModification::Add {
                        query_id,
                        udf_path,
                        args: Args(args),
                        journal,
                    },
                    RawModification::Remove { query_id } => {
                        QuerySetModification::Remove { query_id }
                    }
                })
                .collect(),
        },
        Raw::Mutation {
            request_id,
            udf_path,
            args,
        } => ClientMessage::Mutation {
            request_id,
            udf_path,
            args: Args(args),
        },
        Raw::Action {
            request_id,
            udf_path,
            args,
        } => ClientMessage::Action {
            request_id,
            udf_path,
            args: Args(args),
        },
        Raw::Authenticate {
            base_version,
            token_type,
            value,
            impersonating,
        } => {
            let value = |kind: &str| {
                value.clone().ok_or_else(|| {
                    ProtocolError(format!(
                        "malformed Authenticate message: tokenType {kind} needs a \"value\""
                    ))
                })
            };
            let token = match token_type {
                RawTokenType::None => AuthToken::None,
                RawTokenType::User => AuthToken::User(value("User")?),
                RawTokenType::Admin => AuthToken::Admin {
                    key: value("Admin")?,
                    impersonating,
                },
            };
            ClientMessage::Authenticate {
                base_version,
                token,
            }
        }
        Raw::Event { event_type } => ClientMessage::Event { event_type },
    })
}

/// A timestamp field: base64 of 8 little-endian bytes, below 2^63.
fn parse_ts(field: &str, text: &str) -> Result<Ts, ProtocolError> {
    let ts = decode_u64(text).map_err(|e| ProtocolError(format!("{field}: {e}")))?;
    if ts >= 1 << 63 {
        return Err(ProtocolError(format!(
            "{field}: {ts} is not below 2^63, the largest timestamp clients can compare"
        )));
    }
    Ok(ts)
}

impl ClientMessage {
    /// The message as a client sends it.
    pub fn to_json(&self) -> Json {
        match self {
            ClientMessage::Connect {
                session_id,
                connection_count,
                last_close_reason,
                max_observed_timestamp,
            } => {
                let mut frame = json!({
                    "type": "Connect",
                    "sessionId": session_id,
                    "connectionCount": connection_count,
                    "lastCloseReason": last_close_reason,
                    "clientTs": 0,
                });
                if let Some(ts) = max_observed_timestamp {
                    frame["maxObservedTimestamp"] = encode_u64(*ts).into();
                }
                frame
            }
            ClientMessage::ModifyQuerySet {
                base_version,
                new_version,
                modifications,
            } => json!({
                "type": "ModifyQuerySet",
                "baseVersion": base_version,
                "newVersion": new_version,
                "modifications": modifications.iter().map(|m| match m {
                    QuerySetModification::Add { query_id, udf_path, args, journal } => json!({
                        "type": "Add", "queryId": query_id, "udfPath": udf_path,
                        "args": args.0, "journal": journal,
                    }),
                    QuerySetModification::Remove { query_id } => {
                        json!({ "type": "Remove", "queryId": query_id })
                    }
                }).collect::<Vec<_>>(),
            }),
            ClientMessage::Mutation {
                request_id,
                udf_path,
                args,
            } => json!({
                "type": "Mutation", "requestId": request_id, "udfPath": udf_path, "args": args.0,
            }),
            ClientMessage::Action {
                request_id,
                udf_path,
                args,
            } => json!({
                "type": "Action", "requestId": request_id, "udfPath": udf_path, "args": args.0,
            }),
            ClientMessage::Authenticate {
                base_version,
                token,
            } => match token {
                AuthToken::None => {
                    json!({ "type": "Authenticate", "baseVersion": base_version, "tokenType": "None" })
                }
                AuthToken::User(value) => json!({
                    "type": "Authenticate", "baseVersion": base_version, "tokenType": "User", "value": value,
                }),
                AuthToken::Admin { key, impersonating } => {
                    let mut frame = json!({
                        "type": "Authenticate", "baseVersion": base_version, "tokenType": "Admin", "value": key,
                    });
                    if let Some(identity) = impersonating {
                        frame["impersonating"] = identity.clone();
                    }
                    frame
                }
            },
            ClientMessage::Event { event_type } => {
                json!({ "type": "Event", "eventType": event_type, "event": null })
            }
        }
    }
}

/// A function path as the server looks it up: `module:function`, with `module` a
/// `/`-separated path. Canonicalised as Convex does (a bare `module` means
/// `module:default`, a `.js` suffix on the module is dropped) and checked against the
/// identifier rules; the error names the rule and the path given.
pub fn canonical_udf_path(path: &str) -> Result<String, String> {
    let shown = || path.chars().take(200).collect::<String>();
    let (module, function) = path.split_once(':').unwrap_or((path, "default"));
    let module = module.strip_suffix(".js").unwrap_or(module);
    if module.is_empty() {
        return Err(format!(
            "{}: not a function path: it has no module; write module:function, e.g. chat:send_message",
            shown()
        ));
    }
    for part in module.split('/') {
        let valid = !part.is_empty()
            && part.len() <= 64
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && part.chars().any(|c| c.is_ascii_alphanumeric());
        if !valid {
            return Err(format!(
                "{}: not a function path: module path component {part:?} must be 1 to 64 characters of A-Z, a-z, 0-9, _ and ., with at least one letter or digit",
                shown()
            ));
        }
    }
    let valid_function = !function.is_empty()
        && function.len() <= 64
        && function
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && function
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !function.chars().all(|c| c == '_');
    if !valid_function {
        return Err(format!(
            "{}: not a function path: function name {function:?} must be 1 to 64 characters of A-Z, a-z, 0-9 and _, not start with a digit and not be all underscores",
            shown()
        ));
    }
    // Already canonical (what clients send): copied as it is.
    if path.len() == module.len() + 1 + function.len() {
        return Ok(path.to_owned());
    }
    Ok(format!("{module}:{function}"))
}

/// A function's log lines as clients read them: `"[LOG] text"` (the official clients print
/// lines by their level tag and complain about any other shape), serialized as they are
/// walked.
pub fn wire_log_lines(lines: &[String]) -> wire::LogLines<'_> {
    wire::LogLines(lines)
}

const LOG_TAG: &str = "[LOG] ";

/// The inverse of [`wire_log_lines`], for Rust clients: the text as the function logged it.
fn function_log_lines(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|line| match line.strip_prefix(LOG_TAG) {
            Some(text) => text.to_owned(),
            None => line,
        })
        .collect()
}

/// A query's journal as clients hold it: where each of its paginated reads ended, in the
/// order they ran (the empty cursor is the end of the range). Self-contained (index keys, no
/// server state), so a restarted server accepts the journals it issued. `None` when the query
/// paginated nothing.
pub fn encode_journal(page_ends: &[Vec<u8>]) -> Option<String> {
    if page_ends.is_empty() {
        return None;
    }
    let ends = Value::Array(page_ends.iter().cloned().map(Value::Bytes).collect());
    Some(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        ferrovex_model::binary::encode(&ends),
    ))
}

/// The inverse of [`encode_journal`]; the error says why a journal is not one of ours (a
/// paginated query with such a journal fails with `InvalidCursor`, so clients start over).
pub fn decode_journal(journal: &str) -> Result<Vec<Vec<u8>>, String> {
    let invalid = || {
        let shown: String = journal.chars().take(64).collect();
        format!("InvalidCursor: the journal {shown:?} is not one this server issued")
    };
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, journal)
        .map_err(|_| invalid())?;
    match ferrovex_model::binary::decode(&bytes) {
        Ok(Value::Array(ends)) => ends
            .into_iter()
            .map(|end| match end {
                Value::Bytes(end) => Ok(end),
                _ => Err(invalid()),
            })
            .collect(),
        _ => Err(invalid()),
    }
}

/// A state version: the query set, the identity (how many `Authenticate` messages the
/// connection has had accepted), and the timestamp its results were computed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateVersion {
    pub query_set: u64,
    pub identity: u64,
    pub ts: Ts,
}

impl StateVersion {
    pub const INITIAL: StateVersion = StateVersion {
        query_set: 0,
        identity: 0,
        ts: 0,
    };

    fn from_json(json: &Json, field: &str) -> Result<StateVersion, ProtocolError> {
        let number = |name: &str| {
            json.get(name).and_then(Json::as_u64).ok_or_else(|| {
                ProtocolError(format!("{field}.{name} must be a non-negative integer"))
            })
        };
        let ts = json
            .get("ts")
            .and_then(Json::as_str)
            .ok_or_else(|| ProtocolError(format!("{field}.ts must be a string")))?;
        Ok(StateVersion {
            query_set: number("querySet")?,
            identity: number("identity")?,
            ts: parse_ts(&format!("{field}.ts"), ts)?,
        })
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
        journal: Option<String>,
    },
    Failed {
        query_id: u64,
        error: FunctionError,
        log_lines: Vec<String>,
        journal: Option<String>,
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
    /// The `body` of a [`QueryModification::Prepared`] for this `Updated` or `Failed`. A
    /// result's value is written as it is walked (no JSON tree of it is built), since it may
    /// be up to the result limit.
    pub fn prepare(&self) -> Arc<str> {
        let modification = match self {
            QueryModification::Prepared { body, .. } => return body.clone(),
            other => wire::Modification {
                modification: other,
                with_id: false,
            },
        };
        let text = json_text(&modification);
        Arc::from(&text[1..text.len() - 1])
    }

    /// Appends the modification's JSON object to `frame`.
    fn write_to(&self, frame: &mut String) {
        match self {
            QueryModification::Prepared { query_id, body } => {
                // Writing to a `String` cannot fail.
                let _ = write!(frame, r#"{{"queryId":{query_id},"#);
                frame.push_str(body);
                frame.push('}');
            }
            other => frame.push_str(&json_text(&wire::Modification {
                modification: other,
                with_id: true,
            })),
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
    ActionResponse {
        request_id: u64,
        outcome: Result<Value, FunctionError>,
        log_lines: Vec<String>,
    },
    /// A token was refused (`auth_update_attempted`: it was just sent) or one in use stopped
    /// being valid. `base_version` is the identity version of the last transition sent.
    AuthError {
        error: String,
        base_version: u64,
        auth_update_attempted: bool,
    },
    FatalError {
        error: String,
    },
    Ping,
}

impl ServerMessage {
    /// The message as a JSON tree: its frame, read back.
    pub fn to_json(&self) -> Json {
        serde_json::from_str(&self.to_frame()).expect("a frame is JSON")
    }

    /// The text frame, written as the message is walked: no JSON tree is built (one built
    /// and then printed was 4.6% of the server's CPU in `bench --only chat-send`), and a
    /// transition's prepared results are copied in as they are, not parsed and serialized
    /// again for every connection.
    pub fn to_frame(&self) -> String {
        if let Some(message) = wire::Message::of(self) {
            return json_text(&message);
        }
        let ServerMessage::Transition {
            start,
            end,
            modifications,
        } = self
        else {
            unreachable!("every message but a transition is a wire::Message");
        };
        let prepared: usize = modifications
            .iter()
            .map(|m| match m {
                QueryModification::Prepared { body, .. } => body.len() + 32,
                _ => 0,
            })
            .sum();
        let mut frame = String::with_capacity(192 + prepared);
        frame.push_str(r#"{"type":"Transition","startVersion":"#);
        frame.push_str(&json_text(&wire::Version::of(*start)));
        frame.push_str(r#","endVersion":"#);
        frame.push_str(&json_text(&wire::Version::of(*end)));
        frame.push_str(r#","modifications":["#);
        for (i, modification) in modifications.iter().enumerate() {
            if i > 0 {
                frame.push(',');
            }
            modification.write_to(&mut frame);
        }
        frame.push_str("]}");
        frame
    }

    /// The frames that carry this message: one, or for a transition longer than
    /// [`MAX_TRANSITION_CHUNK_BYTES`] sent to a client that `takes_chunks`, `TransitionChunk`
    /// parts split at character boundaries, numbered from 0, all with the same
    /// `transitionId` (the whole frame's length, as Convex does).
    pub fn to_frames(&self, takes_chunks: bool) -> Vec<String> {
        let frame = self.to_frame();
        let is_transition = matches!(self, ServerMessage::Transition { .. });
        if !takes_chunks || !is_transition || frame.len() <= MAX_TRANSITION_CHUNK_BYTES {
            return vec![frame];
        }
        let mut parts = Vec::new();
        let mut rest = frame.as_str();
        while !rest.is_empty() {
            let mut end = rest.len().min(MAX_TRANSITION_CHUNK_BYTES);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            parts.push(&rest[..end]);
            rest = &rest[end..];
        }
        let total = parts.len();
        let id = frame.len().to_string();
        parts
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| {
                json!({
                    "type": "TransitionChunk", "chunk": chunk, "partNumber": i,
                    "totalParts": total, "transitionId": id,
                })
                .to_string()
            })
            .collect()
    }
}

/// `value` as JSON text.
fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("the server's messages always serialize")
}

/// The server's messages as serde writes them: borrowed views of [`ServerMessage`] and its
/// parts, the one definition of their wire shape (docs/PROTOCOL.md section 3). Fields are
/// written in the order declared.
mod wire {
    use super::{FunctionError, Json, QueryModification, ServerMessage, StateVersion, LOG_TAG};
    use ferrovex_model::json::{encode_u64, Encoded};
    use ferrovex_model::Value;
    use serde::ser::SerializeMap;
    use serde::{Serialize, Serializer};

    #[derive(Serialize)]
    #[serde(tag = "type", rename_all_fields = "camelCase")]
    pub(super) enum Message<'a> {
        MutationResponse {
            request_id: u64,
            #[serde(flatten)]
            answer: Answer<'a>,
            ts: Option<Ts>,
        },
        ActionResponse {
            request_id: u64,
            #[serde(flatten)]
            answer: Answer<'a>,
        },
        AuthError {
            error: &'a str,
            base_version: u64,
            auth_update_attempted: bool,
        },
        FatalError {
            error: &'a str,
        },
        Ping,
    }

    impl<'a> Message<'a> {
        /// Every message but a transition (written by hand, to copy prepared results in).
        pub(super) fn of(message: &'a ServerMessage) -> Option<Message<'a>> {
            Some(match message {
                ServerMessage::Transition { .. } => return None,
                ServerMessage::MutationResponse {
                    request_id,
                    outcome,
                    log_lines,
                } => Message::MutationResponse {
                    request_id: *request_id,
                    answer: Answer::of(outcome.as_ref().map(|(value, _)| value), log_lines),
                    ts: outcome.as_ref().ok().map(|(_, ts)| Ts(*ts)),
                },
                ServerMessage::ActionResponse {
                    request_id,
                    outcome,
                    log_lines,
                } => Message::ActionResponse {
                    request_id: *request_id,
                    answer: Answer::of(outcome.as_ref(), log_lines),
                },
                ServerMessage::AuthError {
                    error,
                    base_version,
                    auth_update_attempted,
                } => Message::AuthError {
                    error,
                    base_version: *base_version,
                    auth_update_attempted: *auth_update_attempted,
                },
                ServerMessage::FatalError { error } => Message::FatalError { error },
                ServerMessage::Ping => Message::Ping,
            })
        }
    }

    /// A call's answer: `success`, then `result` (the value, or the error's message),
    /// `errorData` when the error carries data, and the lines the call logged.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Answer<'a> {
        success: bool,
        result: CallResult<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_data: Option<Encoded<'a>>,
        log_lines: LogLines<'a>,
    }

    impl<'a> Answer<'a> {
        fn of(outcome: Result<&'a Value, &'a FunctionError>, log_lines: &'a [String]) -> Self {
            let (success, result, error_data) = match outcome {
                Ok(value) => (true, CallResult::Value(Encoded(value)), None),
                Err(error) => (
                    false,
                    CallResult::Message(&error.message),
                    error.data.as_ref().map(Encoded),
                ),
            };
            Answer {
                success,
                result,
                error_data,
                log_lines: LogLines(log_lines),
            }
        }
    }

    #[derive(Serialize)]
    #[serde(untagged)]
    pub(super) enum CallResult<'a> {
        Value(Encoded<'a>),
        Message(&'a str),
    }

    /// A timestamp in its wire form ([`encode_u64`]).
    pub(super) struct Ts(pub super::Ts);

    impl Serialize for Ts {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&encode_u64(self.0))
        }
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Version {
        query_set: u64,
        identity: u64,
        ts: Ts,
    }

    impl Version {
        pub(super) fn of(version: StateVersion) -> Version {
            Version {
                query_set: version.query_set,
                identity: version.identity,
                ts: Ts(version.ts),
            }
        }
    }

    /// A function's log lines as clients read them (see [`super::wire_log_lines`]).
    pub struct LogLines<'a>(pub &'a [String]);

    impl Serialize for LogLines<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(|line| Tagged(line)))
        }
    }

    struct Tagged<'a>(&'a str);

    impl Serialize for Tagged<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(&format_args!("{LOG_TAG}{}", self.0))
        }
    }

    /// A query's modification; without its `queryId` for the body of a prepared one.
    pub(super) struct Modification<'a> {
        pub modification: &'a QueryModification,
        pub with_id: bool,
    }

    impl Serialize for Modification<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(None)?;
            let id = |map: &mut S::SerializeMap, query_id: &u64| {
                if self.with_id {
                    map.serialize_entry("queryId", query_id)?;
                }
                Ok(())
            };
            match self.modification {
                QueryModification::Updated {
                    query_id,
                    value,
                    log_lines,
                    journal,
                } => {
                    map.serialize_entry("type", "QueryUpdated")?;
                    id(&mut map, query_id)?;
                    map.serialize_entry("value", &Encoded(value))?;
                    map.serialize_entry("logLines", &LogLines(log_lines))?;
                    map.serialize_entry("journal", journal)?;
                }
                QueryModification::Failed {
                    query_id,
                    error,
                    log_lines,
                    journal,
                } => {
                    map.serialize_entry("type", "QueryFailed")?;
                    id(&mut map, query_id)?;
                    map.serialize_entry("errorMessage", &error.message)?;
                    if let Some(data) = &error.data {
                        map.serialize_entry("errorData", &Encoded(data))?;
                    }
                    map.serialize_entry("logLines", &LogLines(log_lines))?;
                    map.serialize_entry("journal", journal)?;
                }
                QueryModification::Removed { query_id } => {
                    map.serialize_entry("type", "QueryRemoved")?;
                    id(&mut map, query_id)?;
                }
                // Already text: frames copy it in (`QueryModification::write_to`); serde
                // has no way to, so it is read back here.
                QueryModification::Prepared { query_id, body } => {
                    id(&mut map, query_id)?;
                    let members: serde_json::Map<String, Json> =
                        serde_json::from_str(&format!("{{{body}}}"))
                            .map_err(serde::ser::Error::custom)?;
                    for (key, value) in &members {
                        map.serialize_entry(key, value)?;
                    }
                }
            }
            map.end()
        }
    }
}

/// A text frame as the socket writes it: reference counted, so one transition's bytes are
/// shared by every connection it goes to.
pub type Frame = tokio_tungstenite::tungstenite::Utf8Bytes;

/// A message with its frames, serialized at most once per form (whole, or in parts for a
/// client that takes chunks) however many connections are sent it: the refresh gives every
/// connection with the same transition (same versions, same results) one `Outgoing`.
#[derive(Debug)]
pub struct Outgoing {
    pub message: ServerMessage,
    whole: OnceLock<Vec<Frame>>,
    chunked: OnceLock<Vec<Frame>>,
}

impl Outgoing {
    pub fn new(message: ServerMessage) -> Outgoing {
        Outgoing {
            message,
            whole: OnceLock::new(),
            chunked: OnceLock::new(),
        }
    }

    /// The frames that carry the message (see [`ServerMessage::to_frames`]).
    pub fn frames(&self, takes_chunks: bool) -> &[Frame] {
        let whole = self.whole.get_or_init(|| {
            let frames = self.message.to_frames(false);
            frames.into_iter().map(Frame::from).collect()
        });
        let short = whole
            .iter()
            .all(|frame| frame.len() <= MAX_TRANSITION_CHUNK_BYTES);
        if !takes_chunks || short {
            return whole;
        }
        self.chunked.get_or_init(|| {
            let frames = self.message.to_frames(true);
            frames.into_iter().map(Frame::from).collect()
        })
    }
}

/// Parses one text frame from the server (for clients written in Rust). A `TransitionChunk`
/// is an error here: clients that take chunks reassemble them first.
pub fn parse_server_message(text: &str) -> Result<ServerMessage, ProtocolError> {
    let json = parse_json(text)?;
    let kind = frame_type(&json)?.to_owned();
    let bad = |what: &str| ProtocolError(format!("malformed {kind} message: {what}"));
    let field = |name: &str| json.get(name).filter(|v| !v.is_null());
    let number = |name: &str| {
        field(name)
            .and_then(Json::as_u64)
            .ok_or_else(|| bad(&format!("{name} must be a non-negative integer")))
    };
    let string = |name: &str| {
        field(name)
            .and_then(Json::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad(&format!("{name} must be a string")))
    };
    let value = |json: &Json| from_json(json).map_err(|e| bad(&e.to_string()));
    let log_lines = |json: &Json| -> Result<Vec<String>, ProtocolError> {
        serde_json::from_value(json.get("logLines").cloned().unwrap_or(Json::Null))
            .map(function_log_lines)
            .map_err(|_| bad("logLines must be an array of strings"))
    };
    let outcome = |json: &Json| -> Result<Result<Value, FunctionError>, ProtocolError> {
        let result = json.get("result").unwrap_or(&Json::Null);
        match json.get("success").and_then(Json::as_bool) {
            Some(true) => Ok(Ok(value(result)?)),
            Some(false) => Ok(Err(FunctionError {
                message: result
                    .as_str()
                    .ok_or_else(|| bad("a failure's result must be its message"))?
                    .to_owned(),
                data: json
                    .get("errorData")
                    .filter(|d| !d.is_null())
                    .map(value)
                    .transpose()?,
            })),
            None => Err(bad("success must be a boolean")),
        }
    };
    Ok(match kind.as_str() {
        "Transition" => {
            let version =
                |name: &str| StateVersion::from_json(field(name).ok_or_else(|| bad(name))?, name);
            let modifications = field("modifications")
                .and_then(Json::as_array)
                .ok_or_else(|| bad("modifications must be an array"))?
                .iter()
                .map(|m| {
                    let query_id = m
                        .get("queryId")
                        .and_then(Json::as_u64)
                        .ok_or_else(|| bad("queryId must be a non-negative integer"))?;
                    let journal = m.get("journal").and_then(Json::as_str).map(str::to_owned);
                    Ok(match m.get("type").and_then(Json::as_str) {
                        Some("QueryUpdated") => QueryModification::Updated {
                            query_id,
                            value: value(m.get("value").unwrap_or(&Json::Null))?,
                            log_lines: log_lines(m)?,
                            journal,
                        },
                        Some("QueryFailed") => QueryModification::Failed {
                            query_id,
                            error: FunctionError {
                                message: m
                                    .get("errorMessage")
                                    .and_then(Json::as_str)
                                    .ok_or_else(|| bad("errorMessage must be a string"))?
                                    .to_owned(),
                                data: m
                                    .get("errorData")
                                    .filter(|d| !d.is_null())
                                    .map(value)
                                    .transpose()?,
                            },
                            log_lines: log_lines(m)?,
                            journal,
                        },
                        Some("QueryRemoved") => QueryModification::Removed { query_id },
                        other => return Err(bad(&format!("unknown modification {other:?}"))),
                    })
                })
                .collect::<Result<_, ProtocolError>>()?;
            ServerMessage::Transition {
                start: version("startVersion")?,
                end: version("endVersion")?,
                modifications,
            }
        }
        "MutationResponse" => ServerMessage::MutationResponse {
            request_id: number("requestId")?,
            outcome: match outcome(&json)? {
                Ok(value) => Ok((value, parse_ts("ts", &string("ts")?)?)),
                Err(error) => Err(error),
            },
            log_lines: log_lines(&json)?,
        },
        "ActionResponse" => ServerMessage::ActionResponse {
            request_id: number("requestId")?,
            outcome: outcome(&json)?,
            log_lines: log_lines(&json)?,
        },
        "AuthError" => ServerMessage::AuthError {
            error: string("error")?,
            base_version: number("baseVersion")?,
            auth_update_attempted: field("authUpdateAttempted")
                .and_then(Json::as_bool)
                .unwrap_or(false),
        },
        "FatalError" => ServerMessage::FatalError {
            error: string("error")?,
        },
        "Ping" => ServerMessage::Ping,
        other => {
            return Err(ProtocolError(format!(
                "unknown server message type {other:?}"
            )))
        }
    })
}

#[cfg(test)]
mod tests;
