//! What a call can make the host spend on its behalf is bounded by named limits: the hostile
//! guest (`runtime/tests/guests/hostile`) served by a real `runtime serve`, each attack made
//! several times at once beside ordinary traffic. Each is refused naming its limit; nothing a
//! failed call wrote is visible; the server's peak memory (`VmHWM` of its /proc status) stays
//! under a stated bound; ordinary calls succeed throughout.

use crate::{post, repo_root, runtime_bin, serve_command, Running};
use serde_json::{json, Value as Json};
use std::process::Command;

/// The server's peak resident memory may not pass this while it is attacked. Each attack
/// alone cost 0.9 to 1.6 GiB before its limit existed.
const PEAK_MEMORY_BOUND_KIB: u64 = 768 * 1024;

fn int(n: i64) -> Json {
    use base64::Engine as _;
    json!({"$integer": base64::engine::general_purpose::STANDARD.encode(n.to_le_bytes())})
}

fn peak_memory_kib(server: &Running) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn every_amplification_is_refused_by_its_limit_while_others_are_served() {
    let work = tempfile::tempdir().unwrap();
    let server = Running::start(serve_command(
        &repo_root().join("runtime/tests/guests/hostile"),
        &work.path().join("data"),
    ));
    let addr = server.addr;
    let call = move |kind: &str, path: &str, args: Json| -> Json {
        let (status, answer) = post(
            addr,
            &format!("/api/{kind}"),
            &json!({"path": path, "args": args}),
        );
        assert_eq!(status, 200, "{path}: {answer}");
        answer
    };
    assert_eq!(
        call("mutation", "hostile:add", json!({"body": "before"}))["status"],
        "success"
    );
    let before = peak_memory_kib(&server);

    // (endpoint, path, args, what the error must say)
    let attacks: Vec<(&str, &str, Json, &str)> = vec![
        (
            "mutation",
            "hostile:unread_handles",
            json!({"kib": int(900), "times": int(1000)}),
            "over the limit MAX_UNREAD_HANDLE_BYTES (8388608 bytes)",
        ),
        (
            "mutation",
            "hostile:reread_own_write",
            json!({"kib": int(900), "times": int(40)}),
            "MAX_BYTES_READ",
        ),
        (
            "query",
            "hostile:big_request",
            json!({"mib": int(20)}),
            "db_get: a request of 20971530 bytes exceeds the limit MAX_IMPORT_REQUEST_BYTES (1114112 bytes)",
        ),
        (
            "query",
            "hostile:null_array",
            json!({"n": int(16_000_000)}),
            "MAX_DECODED_VALUE_BYTES",
        ),
        (
            "mutation",
            "hostile:many_tables",
            json!({"n": int(200)}),
            "MAX_NEW_TABLES_PER_TRANSACTION",
        ),
        (
            "query",
            "hostile:dollar_key",
            json!({}),
            "the result is not a value clients can read: at $, field name \"$integer\" starts with '$'",
        ),
    ];
    std::thread::scope(|scope| {
        // Ordinary traffic all along: every call succeeds.
        let ordinary = scope.spawn(|| {
            for i in 0..40 {
                let answer = call(
                    "mutation",
                    "hostile:add",
                    json!({"body": format!("ok {i}")}),
                );
                assert_eq!(answer["status"], "success", "{answer}");
                assert_eq!(call("query", "hostile:ok", json!({}))["value"], "ok");
            }
        });
        let mut handles = Vec::new();
        for _round in 0..3 {
            for (kind, path, args, expected) in &attacks {
                handles.push(scope.spawn(move || {
                    let answer = call(kind, path, args.clone());
                    assert_eq!(answer["status"], "error", "{path}: {answer}");
                    let message = answer["errorMessage"].as_str().unwrap();
                    assert!(message.contains(path), "{message}");
                    assert!(
                        message.contains(expected),
                        "{path}: {message:?} should say {expected:?}"
                    );
                }));
            }
        }
        for handle in handles {
            handle.join().expect("an attack's checks");
        }
        ordinary.join().expect("ordinary traffic");
    });

    // Errors are kept short: a 12 MiB message comes back cut, saying how much was cut.
    for _ in 0..40 {
        let answer = call("query", "hostile:huge_error", json!({"mib": int(12)}));
        let message = answer["errorMessage"].as_str().unwrap();
        assert!(message.len() < 70 * 1024, "{}", message.len());
        assert!(
            message.contains("[cut: 12517376 of 12582912 bytes left out, MAX_ERROR_MESSAGE_BYTES]"),
            "{}",
            &message[message.len() - 200..]
        );
    }
    // ...and so is what the execution log keeps of them.
    let logs = Command::new(runtime_bin())
        .args([
            "logs",
            "--url",
            &format!("http://{addr}"),
            "--admin-key",
            &server.admin_key(),
        ])
        .output()
        .unwrap();
    assert!(logs.status.success(), "{logs:?}");
    assert!(
        logs.stdout.len() < 8 * 1024 * 1024,
        "runtime logs printed {} bytes",
        logs.stdout.len()
    );

    // A cursor from another query is a status the function handles, not a trap.
    let written = call("mutation", "hostile:write_strict", json!({"value": int(1)}));
    assert_eq!(written["status"], "success", "{written}");
    let answer = call("query", "hostile:foreign_cursor", json!({}));
    let refused = answer["value"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(
        refused.starts_with("refused: ") && refused.contains("InvalidCursor"),
        "{refused}"
    );

    // Nothing a failed call wrote is visible: the notes are the ordinary ones, and no table
    // of many_tables exists.
    assert_eq!(call("query", "hostile:count", json!({}))["value"], "41");
    let (status, export) = {
        let key = server.admin_key();
        let output = Command::new(runtime_bin())
            .args([
                "export",
                "-",
                "--url",
                &format!("http://{addr}"),
                "--admin-key",
                &key,
            ])
            .output()
            .unwrap();
        (output.status, String::from_utf8(output.stdout).unwrap())
    };
    assert!(status.success());
    let header: Json = serde_json::from_str(export.lines().next().unwrap()).unwrap();
    let tables: Vec<&str> = header["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(!tables.contains(&"t0"), "{tables:?}");

    // One large answer read at once is not hoarding: a page of about 9 MiB, over
    // MAX_UNREAD_HANDLE_BYTES, is read whole.
    for i in 0..10 {
        let body = format!("{i}{}", "b".repeat(900 * 1024));
        assert_eq!(
            call("mutation", "hostile:add", json!({"body": body}))["status"],
            "success"
        );
    }
    assert_eq!(call("query", "hostile:count", json!({}))["value"], "51");

    let peak = peak_memory_kib(&server);
    eprintln!("server peak memory: {before} KiB before the attacks, {peak} KiB after");
    assert!(
        peak < PEAK_MEMORY_BOUND_KIB,
        "the server's peak memory reached {peak} KiB under attack (bound {PEAK_MEMORY_BOUND_KIB} KiB)"
    );
    server.stop();
}
