//! `runtime export` and `runtime import` between real servers: what comes out goes back in
//! with its ids, creation times and indexes; a renumbered table has its ids rewritten; bad
//! files and full tables are refused before anything changes.

use crate::{post, repo_root, run_to_end, runtime_bin, serve_command, Running};
use serde_json::{json, Value as Json};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

/// `runtime VERB FILE --url ... --data DATA`: the admin key found in the server's data folder.
fn transfer(verb: &str, file: &Path, server: &Running) -> Output {
    let mut command = Command::new(runtime_bin());
    command
        .arg(verb)
        .arg(file)
        .args(["--url", &format!("http://{}", server.addr)])
        .arg("--data")
        .arg(server.data.as_ref().unwrap());
    run_to_end(command)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The export file's lines, parsed.
fn lines(file: &Path) -> Vec<Json> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

/// The documents of `table` in an export, by position.
fn documents(lines: &[Json], table: &str) -> Vec<Json> {
    lines
        .iter()
        .filter(|l| l["type"] == "document" && l["table"] == table)
        .map(|l| l["value"].clone())
        .collect()
}

fn table_header<'a>(lines: &'a [Json], table: &str) -> &'a Json {
    lines[0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == table)
        .unwrap_or_else(|| panic!("table {table} in the header: {}", lines[0]))
}

fn mutation(addr: SocketAddr, path: &str, args: Json) -> Json {
    let (status, answer) = post(addr, "/api/mutation", &json!({"path": path, "args": args}));
    assert_eq!(status, 200, "{path}: {answer}");
    answer["value"].clone()
}

#[test]
fn export_and_import_keep_ids_times_and_indexes_and_renumber_when_taken() {
    let work = tempfile::tempdir().unwrap();
    let tasks_app = repo_root().join("examples/tasks");
    let source = Running::start(serve_command(&tasks_app, &work.path().join("a")));
    let first = mutation(
        source.addr,
        "tasks:add",
        json!({"title": "write", "priority": {"$integer": "AgAAAAAAAAA="}}),
    );
    mutation(
        source.addr,
        "tasks:add",
        json!({"title": "test", "priority": {"$integer": "BQAAAAAAAAA="}}),
    );
    mutation(source.addr, "tasks:add", json!({"title": "ship"}));
    mutation(source.addr, "tasks:complete", json!({"id": first}));

    let exported = work.path().join("tasks.jsonl");
    let output = transfer("export", &exported, &source);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("exported 3 documents from 1 tables"),
        "{}",
        stderr(&output)
    );
    let original = lines(&exported);
    assert_eq!(original[0]["type"], "export");
    let header = table_header(&original, "tasks");
    assert_eq!(header["documents"], 3);
    assert_eq!(
        header["indexes"],
        json!([{"name": "by_done", "fields": ["done", "priority"]}])
    );
    let original_tasks = documents(&original, "tasks");
    assert_eq!(original_tasks.len(), 3);
    assert_eq!(original_tasks[0]["_id"], first);
    assert_eq!(original_tasks[0]["done"], true);
    assert_eq!(
        original_tasks[1]["priority"],
        json!({"$integer": "BQAAAAAAAAA="})
    );
    assert_eq!(
        original.last().unwrap(),
        &json!({"type": "end", "documents": 3})
    );
    source.stop();

    // Into a fresh tasks app: the table (made empty by the deploy) takes every id as it is,
    // and the declared index serves queries over the imported documents.
    let same_app = Running::start(serve_command(&tasks_app, &work.path().join("b")));
    let output = transfer("import", &exported, &same_app);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("imported 3 documents into 1 tables; every id kept"),
        "{}",
        stderr(&output)
    );
    let (status, open) = post(
        same_app.addr,
        "/api/query",
        &json!({"path": "tasks:list_open", "args": {}}),
    );
    assert_eq!(status, 200, "{open}");
    let titles: Vec<&str> = open["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["test", "ship"],
        "open tasks by priority, highest first: {open}"
    );
    let round_trip = work.path().join("again.jsonl");
    assert!(transfer("export", &round_trip, &same_app).status.success());
    assert_eq!(documents(&lines(&round_trip), "tasks"), original_tasks);

    // Importing into a table that has documents is refused, and changes nothing.
    let output = transfer("import", &exported, &same_app);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("table \"tasks\" already has documents"),
        "{}",
        stderr(&output)
    );
    assert!(transfer("export", &round_trip, &same_app).status.success());
    assert_eq!(documents(&lines(&round_trip), "tasks").len(), 3);
    same_app.stop();

    // Into the chat app whose first message took table number 1: the tasks table is
    // renumbered, and its ids with it, keeping their other bytes and the creation times.
    let chat = Running::start(serve_command(
        &repo_root().join("examples/chat"),
        &work.path().join("c"),
    ));
    mutation(
        chat.addr,
        "chat:send_message",
        json!({"user": "ada", "body": "hi"}),
    );
    let output = transfer("import", &exported, &chat);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("renumbered"),
        "{}",
        stderr(&output)
    );
    let moved_file = work.path().join("moved.jsonl");
    assert!(transfer("export", &moved_file, &chat).status.success());
    let moved = lines(&moved_file);
    assert_ne!(table_header(&moved, "tasks")["number"], header["number"]);
    assert_eq!(documents(&moved, "messages").len(), 1);
    let moved_tasks = documents(&moved, "tasks");
    assert_eq!(moved_tasks.len(), 3);
    for (before, after) in original_tasks.iter().zip(&moved_tasks) {
        assert_ne!(before["_id"], after["_id"]);
        assert_eq!(before["_creationTime"], after["_creationTime"]);
        assert_eq!(before["title"], after["title"]);
        let (before_id, after_id) = (
            before["_id"].as_str().unwrap(),
            after["_id"].as_str().unwrap(),
        );
        let (before_id, after_id) = (
            ferrovex_model::DocumentId::parse(before_id).unwrap(),
            ferrovex_model::DocumentId::parse(after_id).unwrap(),
        );
        assert_eq!(before_id.as_bytes()[4..], after_id.as_bytes()[4..]);
    }

    // A bad line anywhere: the error names it, and nothing at all is imported.
    let text = std::fs::read_to_string(&exported)
        .unwrap()
        .replace("\"tasks\"", "\"notes\"");
    let mut broken: Vec<&str> = text.lines().collect();
    broken[2] = "{\"type\":\"document\",\"table\":\"notes\",\"value\":{\"_id\":\"nope\"}}";
    let broken_file = work.path().join("broken.jsonl");
    std::fs::write(&broken_file, broken.join("\n")).unwrap();
    let output = transfer("import", &broken_file, &chat);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("broken.jsonl, line 3: malformed document id \"nope\""),
        "{}",
        stderr(&output)
    );
    // A file that was cut short is refused too.
    let cut_file = work.path().join("cut.jsonl");
    std::fs::write(
        &cut_file,
        text.lines().take(3).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let output = transfer("import", &cut_file, &chat);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("has no end line after line 3"),
        "{}",
        stderr(&output)
    );
    assert!(transfer("export", &moved_file, &chat).status.success());
    let after = lines(&moved_file);
    assert!(
        after[0]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"] != "notes"),
        "no table was created: {}",
        after[0]
    );

    // No admin key: refused before anything is sent, saying where keys come from.
    let mut keyless = Command::new(runtime_bin());
    keyless
        .current_dir(work.path())
        .args([
            "export",
            "none.jsonl",
            "--url",
            &format!("http://{}", chat.addr),
        ])
        .env_remove("FERROVEX_ADMIN_KEY");
    let output = run_to_end(keyless);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("runtime export needs the deployment's admin key: pass --admin-key KEY or set FERROVEX_ADMIN_KEY"),
        "{}",
        stderr(&output)
    );

    // No server there: a message that says what to do.
    let mut nowhere = Command::new(runtime_bin());
    nowhere
        .arg("export")
        .arg(work.path().join("none.jsonl"))
        .args([
            "--url",
            "http://127.0.0.1:9",
            "--admin-key",
            "fvx_admin_any",
        ]);
    let output = run_to_end(nowhere);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("Start one with `runtime serve APP_DIR`"),
        "{}",
        stderr(&output)
    );
    assert!(
        !work.path().join("none.jsonl").exists()
            && !work.path().join("none.jsonl.partial").exists()
    );
    chat.stop();
}

#[test]
fn plain_json_lines_go_into_a_table_as_new_documents() {
    let work = tempfile::tempdir().unwrap();
    let chat = Running::start(serve_command(
        &repo_root().join("examples/chat"),
        &work.path().join("data"),
    ));
    mutation(
        chat.addr,
        "chat:send_message",
        json!({"user": "ada", "body": "already here"}),
    );
    let url = format!("http://{}", chat.addr);
    let import = |file: &Path| {
        let mut command = Command::new(runtime_bin());
        command
            .arg("import")
            .arg(file)
            .args(["--table", "messages", "--url", &url])
            .env("FERROVEX_ADMIN_KEY", chat.admin_key());
        run_to_end(command)
    };

    // Rows from elsewhere: system fields from another system are replaced, blank lines skipped.
    let rows = work.path().join("rows.jsonl");
    std::fs::write(
        &rows,
        "{\"user\": \"bob\", \"body\": \"from a dump\"}\n\n{\"_id\": \"jd7abc\", \"_creationTime\": 1, \"user\": \"cy\", \"body\": \"with an old id\"}\n",
    )
    .unwrap();
    let output = import(&rows);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(
            "imported 2 new documents into table \"messages\"; 1 of them had _id or _creationTime"
        ),
        "{}",
        stderr(&output)
    );
    // The table already had a document; the new ones come after it, and queries see them.
    assert_eq!(
        crate::message_bodies(chat.addr),
        ["already here", "from a dump", "with an old id"]
    );

    // A bad line: named, and nothing of the file goes in.
    let bad = work.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"user\": \"dee\", \"body\": \"fine\"}\n{\"user\": \"eve\", \"$body\": \"no\"}\n",
    )
    .unwrap();
    let output = import(&bad);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("bad.jsonl, line 2:"),
        "{}",
        stderr(&output)
    );
    assert_eq!(crate::message_bodies(chat.addr).len(), 3);
    chat.stop();
}

/// From the RocksDB engine to the PostgreSQL engine and back: every id, creation time and
/// field the same on both, and the indexes filled (the app's queries see the data).
#[test]
fn export_and_import_move_data_between_engines_keeping_ids_and_times() {
    let cluster = crate::pg_cluster::Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let app = repo_root().join("examples/tasks");
    let rocks = Running::start(serve_command(&app, &work.path().join("rocks")));
    for (title, priority) in [("write", 1), ("test", 2), ("ship", 3)] {
        mutation(
            rocks.addr,
            "tasks:add",
            json!({"title": title, "priority": {"$integer": base64_i64(priority)}}),
        );
    }
    let from_rocks = work.path().join("from-rocks.jsonl");
    assert!(transfer("export", &from_rocks, &rocks).status.success());
    rocks.stop();

    let url = cluster.database();
    let mut command = serve_command(&app, &work.path().join("pg"));
    command.args(["--store", &url]);
    let postgres = Running::start(command);
    let output = transfer("import", &from_rocks, &postgres);
    assert!(output.status.success(), "{}", stderr(&output));
    let from_postgres = work.path().join("from-postgres.jsonl");
    assert!(transfer("export", &from_postgres, &postgres)
        .status
        .success());
    let (before, after) = (lines(&from_rocks), lines(&from_postgres));
    assert_eq!(documents(&before, "tasks").len(), 3);
    assert_eq!(documents(&after, "tasks"), documents(&before, "tasks"));
    assert_eq!(
        table_header(&after, "tasks")["number"],
        table_header(&before, "tasks")["number"]
    );
    // The declared index was filled: the app's query over it answers on PostgreSQL.
    let (status, open) = post(
        postgres.addr,
        "/api/query",
        &json!({"path": "tasks:list_open", "args": {}, "format": "json"}),
    );
    assert_eq!(status, 200);
    assert_eq!(open["value"].as_array().map(Vec::len), Some(3), "{open}");
    postgres.stop();

    // And back into a fresh RocksDB folder: the same again.
    let back = Running::start(serve_command(&app, &work.path().join("back")));
    let output = transfer("import", &from_postgres, &back);
    assert!(output.status.success(), "{}", stderr(&output));
    let round_trip = work.path().join("round-trip.jsonl");
    assert!(transfer("export", &round_trip, &back).status.success());
    assert_eq!(
        documents(&lines(&round_trip), "tasks"),
        documents(&before, "tasks")
    );
    back.stop();
}

/// An int64 in the wire form's base64 (8 little-endian bytes).
fn base64_i64(n: i64) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, n.to_le_bytes())
}
