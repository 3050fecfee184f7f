use super::*;
use ferrovex_model::obj;

fn ts_text(ts: u64) -> String {
    encode_u64(ts)
}

#[test]
fn client_messages_parse_as_the_official_clients_write_them() {
    let ts = 1_796_230_657_000_000_123u64;
    let cases = [
        (
            // npm, a reconnect (captured shape).
            format!(
                r#"{{"connectionCount":1,"lastCloseReason":"InternalServerError","clientTs":1796230657282,"type":"Connect","sessionId":"fa2f3e90","maxObservedTimestamp":"{}"}}"#,
                ts_text(ts)
            ),
            ClientMessage::Connect {
                session_id: "fa2f3e90".into(),
                connection_count: 1,
                last_close_reason: Some("InternalServerError".into()),
                max_observed_timestamp: Some(ts),
            },
        ),
        (
            r#"{"type":"Connect","sessionId":"5f0c","connectionCount":0,"lastCloseReason":null,"maxObservedTimestamp":null,"clientTs":0}"#.into(),
            ClientMessage::Connect {
                session_id: "5f0c".into(),
                connection_count: 0,
                last_close_reason: None,
                max_observed_timestamp: None,
            },
        ),
        (
            r#"{"type":"ModifyQuerySet","baseVersion":0,"newVersion":1,"modifications":[
                {"type":"Add","queryId":7,"udfPath":"chat:get_messages","args":[{}],"journal":null},
                {"type":"Remove","queryId":3}]}"#.into(),
            ClientMessage::ModifyQuerySet {
                base_version: 0,
                new_version: 1,
                modifications: vec![
                    QuerySetModification::Add {
                        query_id: 7,
                        udf_path: "chat:get_messages".into(),
                        args: Args(serde_json::json!([{}])),
                        journal: None,
                    },
                    QuerySetModification::Remove { query_id: 3 },
                ],
            },
        ),
        (
            r#"{"type":"Mutation","requestId":1,"udfPath":"chat:send_message","args":[{"user":"ada"}]}"#.into(),
            ClientMessage::Mutation {
                request_id: 1,
                udf_path: "chat:send_message".into(),
                args: Args(serde_json::json!([{"user": "ada"}])),
            },
        ),
        (
            r#"{"type":"Action","requestId":2,"udfPath":"a:b","args":[{}]}"#.into(),
            ClientMessage::Action {
                request_id: 2,
                udf_path: "a:b".into(),
                args: Args(serde_json::json!([{}])),
            },
        ),
        (
            r#"{"type":"Authenticate","baseVersion":0,"tokenType":"None","unknownFutureField":1}"#.into(),
            ClientMessage::Authenticate {
                base_version: 0,
                token: AuthToken::None,
            },
        ),
        (
            r#"{"type":"Authenticate","baseVersion":1,"tokenType":"User","value":"jwt"}"#.into(),
            ClientMessage::Authenticate {
                base_version: 1,
                token: AuthToken::User("jwt".into()),
            },
        ),
        (
            r#"{"type":"Event","eventType":"ClientConnect","event":{"x":1}}"#.into(),
            ClientMessage::Event {
                event_type: "ClientConnect".into(),
            },
        ),
    ];
    for (text, expected) in cases {
        let parsed = parse_client_message(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed, expected, "{text}");
        // Read straight into its shape or through a tree, the frame is the same message.
        assert_eq!(parse_as_tree(&text).unwrap(), expected, "{text}");
        // What a Rust client writes parses back to the same message.
        let written = expected.to_json().to_string();
        assert_eq!(
            parse_client_message(&written).unwrap(),
            expected,
            "{written}"
        );
    }
}

/// A key given twice: serde's direct read refuses it, and the frame is read as a tree, where
/// the last one counts, as before the direct read.
#[test]
fn a_repeated_key_counts_once_the_last() {
    let text =
        r#"{"type":"Mutation","requestId":1,"udfPath":"chat:send","requestId":2,"args":[{}]}"#;
    assert!(serde_json::from_str::<Raw>(text).is_err());
    assert_eq!(
        parse_client_message(text).unwrap(),
        ClientMessage::Mutation {
            request_id: 2,
            udf_path: "chat:send".into(),
            args: Args(serde_json::json!([{}])),
        }
    );
}

/// A mutation frame read straight into its fields (`MutationFrame`) gives what reading it
/// as a tree gives, whatever its keys' order; what that read refuses, or reads as another
/// message, goes the longer way.
#[test]
fn a_mutation_read_straight_reads_as_through_a_tree() {
    let frames = [
        (
            r#"{"type":"Mutation","requestId":7,"udfPath":"chat:send","args":[{"n":1}]}"#,
            true,
        ),
        (
            r#"{"args":[{}],"requestId":7,"type":"Mutation","udfPath":"chat:send"}"#,
            true,
        ),
        (
            r#"{"type":"Mutation","requestId":7,"udfPath":"chat:send","args":{},"extra":1}"#,
            true,
        ),
        (
            r#"{"type":"Action","requestId":7,"udfPath":"a:b","args":[{}]}"#,
            false,
        ),
        (
            r#"{"type":"Mutation","requestId":7,"udfPath":"a:b","args":[{}],"type":"Action"}"#,
            false,
        ),
        (
            r#"{"type":"Mutation","requestId":-1,"udfPath":"a:b","args":[{}]}"#,
            false,
        ),
        (r#"{"type":"Mutation","udfPath":"a:b","args":[{}]}"#, false),
    ];
    for (text, direct) in frames {
        assert_eq!(
            serde_json::from_str::<MutationFrame>(text).is_ok(),
            direct,
            "{text}"
        );
        assert_eq!(
            parse_client_message(text).map_err(|e| e.0),
            parse_as_tree(text).map_err(|e| e.0),
            "{text}"
        );
    }
}

#[test]
fn arguments_are_one_object_or_an_array_holding_one() {
    let good = [
        (
            serde_json::json!({"n": {"$integer": "BQAAAAAAAAA="}}),
            obj! { "n" => 5i64 },
        ),
        (
            serde_json::json!([{"user": "ada"}]),
            obj! { "user" => "ada" },
        ),
    ];
    for (json, expected) in good {
        assert_eq!(Args(json).to_value().unwrap(), Value::Object(expected));
    }
    let bad = [
        (
            serde_json::json!([1]),
            "arguments must be an object, got a number",
        ),
        (serde_json::json!([{}, {}]), "an array of 2 elements"),
        (
            serde_json::json!("x"),
            "arguments must be an object, got a string",
        ),
        (serde_json::json!([{"$bad": 1}]), "\"$bad\" starts with '$'"),
        (
            serde_json::json!([{"n": {"$integer": "AQI="}}]),
            "decodes to 2 bytes",
        ),
        (
            serde_json::json!([{"f": {"$float": "AAAAAAAA8D8="}}]),
            "plain JSON number",
        ),
        (
            serde_json::json!([{"caf\u{e9}": 1}]),
            "printable ASCII only",
        ),
    ];
    for (json, needle) in bad {
        let err = Args(json.clone()).to_value().unwrap_err();
        assert!(err.contains(needle), "{json}: {err}");
    }
    let value = Value::Object(obj! { "n" => 5i64 });
    assert_eq!(Args::from_value(&value).to_value().unwrap(), value);
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
            r#"{"type": "Connect", "sessionId": "x", "connectionCount": 0, "maxObservedTimestamp": "5"}"#,
            "maxObservedTimestamp: \"5\" is not standard padded base64",
        ),
        (
            r#"{"type": "Connect", "sessionId": "x", "connectionCount": 0, "maxObservedTimestamp": "AAAAAA=="}"#,
            "decodes to 4 bytes, not the 8",
        ),
        (
            r#"{"type": "Connect", "sessionId": "x", "connectionCount": 0, "maxObservedTimestamp": "//////////8="}"#,
            "is not below 2^63",
        ),
        (
            r#"{"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [{"type": "Swap"}]}"#,
            "Swap",
        ),
        (
            r#"{"type": "Authenticate", "baseVersion": 0, "tokenType": "User"}"#,
            "tokenType User needs a \"value\"",
        ),
        (
            r#"{"type": "Authenticate", "baseVersion": 0, "tokenType": "Cookie"}"#,
            "Cookie",
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
fn function_paths_are_canonicalised_and_checked() {
    let good = [
        ("chat:send_message", "chat:send_message"),
        ("admin/users:list", "admin/users:list"),
        ("chat.js:get_messages", "chat:get_messages"),
        ("admin/users", "admin/users:default"),
        ("a_1/b.c:_x9", "a_1/b.c:_x9"),
    ];
    for (given, canonical) in good {
        assert_eq!(canonical_udf_path(given).unwrap(), canonical, "{given}");
    }
    let bad = [
        ("", "has no module"),
        (":f", "has no module"),
        ("chat:", "function name \"\""),
        ("chat:9lives", "not start with a digit"),
        ("chat:___", "not be all underscores"),
        ("chat:send-message", "function name \"send-message\""),
        ("a//b:f", "module path component \"\""),
        ("a/-/b:f", "module path component \"-\""),
        ("./x:f", "module path component \".\""),
        ("chat:a:b", "function name \"a:b\""),
    ];
    for (given, needle) in bad {
        let err = canonical_udf_path(given).unwrap_err();
        assert!(err.contains(needle), "{given:?}: {err}");
    }
    let long = format!("chat:{}", "f".repeat(65));
    assert!(canonical_udf_path(&long).unwrap_err().contains("1 to 64"));
}

fn sample_transition(modifications: Vec<QueryModification>) -> ServerMessage {
    ServerMessage::Transition {
        start: StateVersion::INITIAL,
        end: StateVersion {
            query_set: 1,
            identity: 2,
            ts: 1_796_230_657_000_000_000,
        },
        modifications,
    }
}

#[test]
fn server_messages_serialize_as_convex_writes_them() {
    let transition = sample_transition(vec![
        QueryModification::Updated {
            query_id: 7,
            value: Value::Int64(-42),
            log_lines: vec!["hi".into()],
            journal: None,
        },
        QueryModification::Failed {
            query_id: 8,
            error: FunctionError {
                message: "chat:get: boom".into(),
                data: None,
            },
            log_lines: vec![],
            journal: None,
        },
        QueryModification::Removed { query_id: 9 },
    ]);
    assert_eq!(
        transition.to_json(),
        serde_json::json!({
            "type": "Transition",
            "startVersion": {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="},
            "endVersion": {"querySet": 1, "identity": 2, "ts": ts_text(1_796_230_657_000_000_000)},
            "modifications": [
                {"type": "QueryUpdated", "queryId": 7, "value": {"$integer": "1v////////8="}, "logLines": ["[LOG] hi"], "journal": null},
                {"type": "QueryFailed", "queryId": 8, "errorMessage": "chat:get: boom", "logLines": [], "journal": null},
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
        serde_json::json!({"type": "MutationResponse", "requestId": 1, "success": false, "result": "m", "errorData": "why", "ts": null, "logLines": []})
    );
    let ok = ServerMessage::MutationResponse {
        request_id: 2,
        outcome: Ok((Value::Null, 5)),
        log_lines: vec![],
    };
    assert_eq!(
        ok.to_json(),
        serde_json::json!({"type": "MutationResponse", "requestId": 2, "success": true, "result": null, "ts": "BQAAAAAAAAA=", "logLines": []})
    );
    let action = ServerMessage::ActionResponse {
        request_id: 3,
        outcome: Err(FunctionError {
            message: "no".into(),
            data: None,
        }),
        log_lines: vec![],
    };
    assert_eq!(
        action.to_json(),
        serde_json::json!({"type": "ActionResponse", "requestId": 3, "success": false, "result": "no", "logLines": []})
    );
    let auth = ServerMessage::AuthError {
        error: "no provider".into(),
        base_version: 0,
        auth_update_attempted: true,
    };
    assert_eq!(
        auth.to_json(),
        serde_json::json!({"type": "AuthError", "error": "no provider", "baseVersion": 0, "authUpdateAttempted": true})
    );
    assert_eq!(ServerMessage::Ping.to_frame(), r#"{"type":"Ping"}"#);
    // Every message reads back as itself.
    for message in [transition, failed, ok, action, auth, ServerMessage::Ping] {
        assert_eq!(parse_server_message(&message.to_frame()).unwrap(), message);
    }
}

#[test]
fn a_prepared_modification_writes_the_same_frame() {
    let updated = QueryModification::Updated {
        query_id: 7,
        value: Value::Array(vec![Value::Int64(-42), Value::String("a\"b".into())]),
        log_lines: vec!["line".into()],
        journal: Some("j".into()),
    };
    let failed = QueryModification::Failed {
        query_id: 8,
        error: FunctionError {
            message: "chat:get_messages failed".into(),
            data: Some(Value::Bytes(vec![1, 2])),
        },
        log_lines: vec![],
        journal: None,
    };
    let frame = |modifications| {
        serde_json::from_str::<Json>(&sample_transition(modifications).to_frame())
            .expect("a JSON frame")
    };
    let prepared = vec![
        QueryModification::Prepared {
            query_id: 7,
            body: updated.prepare(),
        },
        QueryModification::Prepared {
            query_id: 8,
            body: failed.prepare(),
        },
    ];
    // Through serde, a prepared modification is read back: the same object.
    for (modification, plain) in prepared.iter().zip([&updated, &failed]) {
        let written = |modification| {
            serde_json::to_value(wire::Modification {
                modification,
                with_id: true,
            })
            .unwrap()
        };
        assert_eq!(written(modification), written(plain));
    }
    let plain = frame(vec![updated, failed]);
    assert_eq!(frame(prepared), plain);
    assert_eq!(
        plain["modifications"][1]["errorData"],
        serde_json::json!({"$bytes": "AQI="})
    );
}

#[test]
fn long_transitions_go_in_chunks_to_clients_that_take_them() {
    // A result just over the chunk size, with multi-byte characters across the cut.
    let text = "é".repeat(MAX_TRANSITION_CHUNK_BYTES / 2 + 10);
    let transition = sample_transition(vec![QueryModification::Updated {
        query_id: 1,
        value: Value::String(text),
        log_lines: vec![],
        journal: None,
    }]);
    let whole = transition.to_frame();
    assert_eq!(transition.to_frames(false), vec![whole.clone()]);
    let frames = transition.to_frames(true);
    assert_eq!(frames.len(), 2);
    let mut joined = String::new();
    for (i, frame) in frames.iter().enumerate() {
        let part: Json = serde_json::from_str(frame).unwrap();
        assert_eq!(part["type"], "TransitionChunk");
        assert_eq!(part["partNumber"], i);
        assert_eq!(part["totalParts"], 2);
        assert_eq!(part["transitionId"], whole.len().to_string());
        let chunk = part["chunk"].as_str().unwrap();
        assert!(chunk.len() <= MAX_TRANSITION_CHUNK_BYTES);
        joined.push_str(chunk);
    }
    assert_eq!(joined, whole);
    // Short transitions and other messages are never chunked.
    assert_eq!(sample_transition(vec![]).to_frames(true).len(), 1);
}

#[test]
fn journals_round_trip_and_foreign_ones_are_invalid_cursors() {
    assert_eq!(
        encode_journal(&[]),
        None,
        "a query that paginated nothing has no journal"
    );
    let ends = vec![vec![1, 2, 3], Vec::new()];
    let journal = encode_journal(&ends).unwrap();
    assert_eq!(decode_journal(&journal).unwrap(), ends);
    for foreign in ["", "!!", "bm90IG91cnM=", "AQ=="] {
        let error = decode_journal(foreign).unwrap_err();
        assert!(error.starts_with("InvalidCursor:"), "{foreign:?}: {error}");
    }
}
