//! `dashboard`: what the dashboard's Data page waits for on a table of 10^6 documents (10^5
//! with `--quick`): the chat example's `messages`, loaded with `runtime import` (1,000
//! users, 48-byte bodies), then each request the page makes, timed from the bench over one
//! kept-alive HTTP connection (the page's rendering is not included):
//!
//! - *tables, first*: the table list with exact counts, the first time (a scan counts each
//!   table once), then *tables*: as the page reloads it after each commit (counts kept).
//! - *first page*: 50 documents, newest first (`by_creation_time`).
//! - *scrolling*: each next page of 50, following the cursors, 40 pages deep.
//! - *sorted by index*: the first page in the order of the declared index `by_user`, both
//!   ways.
//! - *filtered*: the first page of one user's messages (1 in 1,000 documents match, so a page
//!   reads up to `MAX_DASHBOARD_SCAN` documents).

use super::{Context, BODY_BYTES};
use crate::http::Http;
use crate::report::Row;
use crate::stats::{ms, Latency};
use serde_json::{json, Value as Json};
use std::io::Write;
use std::time::{Duration, Instant};

const USERS: usize = 1_000;
const PAGE: usize = 50;
const SCROLL_PAGES: usize = 40;

fn url(pairs: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("/api/dashboard/documents?{query}")
}

pub fn run(ctx: &mut Context) -> Result<(), String> {
    let documents = if ctx.quick { 100_000 } else { 1_000_000 };
    let samples = if ctx.quick { 50 } else { 200 };
    let server = ctx.serve("examples/chat", "dashboard")?;

    // The rows, as `runtime import --table` takes them: one JSON object per line.
    let rows = ctx.data.join("dashboard-rows.jsonl");
    {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(&rows).map_err(|e| format!("{}: {e}", rows.display()))?,
        );
        let body = "x".repeat(BODY_BYTES);
        for i in 0..documents {
            writeln!(
                file,
                "{}",
                json!({"user": format!("u{:04}", i % USERS), "body": body})
            )
            .map_err(|e| e.to_string())?;
        }
        file.flush().map_err(|e| e.to_string())?;
    }
    let loading = Instant::now();
    let output = std::process::Command::new(&ctx.runtime)
        .arg("import")
        .arg(&rows)
        .args([
            "--table",
            "messages",
            "--url",
            &format!("http://{}", server.addr),
        ])
        .env("FERROVEX_ADMIN_KEY", &server.admin_key)
        .output()
        .map_err(|e| format!("runtime import: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "runtime import: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let loaded_in = loading.elapsed();
    let _ = std::fs::remove_file(&rows);

    let key = server.admin_key.clone();
    let mut http = Http::connect(server.addr).map_err(|e| e.to_string())?;
    let mut get = |path: &str| http.get_admin(path, &key);
    let t0 = Instant::now();
    let tables = get("/api/dashboard/tables")?;
    let first_tables = t0.elapsed();
    let counted = tables["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "messages"))
        .and_then(|t| t["documents"].as_u64());
    if counted != Some(documents as u64) {
        return Err(format!(
            "the dashboard counted {counted:?} messages of {documents}: {tables}"
        ));
    }
    let timed = |what: &str, get: &mut dyn FnMut(&str) -> Result<Json, String>, path: &str| {
        let mut taken = Vec::with_capacity(samples);
        for _ in 0..samples {
            let t0 = Instant::now();
            let page = get(path)?;
            taken.push(t0.elapsed());
            if page.get("tables").is_none()
                && page["documents"].as_array().is_none_or(Vec::is_empty)
            {
                return Err(format!("{what}: an empty page: {page}"));
            }
        }
        Ok::<_, String>(Latency::of(taken))
    };
    let tables = timed("tables", &mut get, "/api/dashboard/tables")?;
    let limit = PAGE.to_string();
    let first = timed(
        "first page",
        &mut get,
        &url(&[("table", "messages"), ("limit", &limit)]),
    )?;
    let by_user_asc = timed(
        "by_user asc",
        &mut get,
        &url(&[
            ("table", "messages"),
            ("index", "by_user"),
            ("order", "asc"),
            ("limit", &limit),
        ]),
    )?;
    let by_user_desc = timed(
        "by_user desc",
        &mut get,
        &url(&[
            ("table", "messages"),
            ("index", "by_user"),
            ("order", "desc"),
            ("limit", &limit),
        ]),
    )?;
    let filtered = timed(
        "filtered",
        &mut get,
        &url(&[
            ("table", "messages"),
            ("limit", &limit),
            ("filter", r#"{"user": "u0007"}"#),
        ]),
    )?;
    // Scrolling: page after page from the top, as the grid loads them.
    let mut scrolls: Vec<Duration> = Vec::new();
    for _ in 0..(samples / SCROLL_PAGES).max(2) {
        let mut cursor = String::new();
        for _ in 0..SCROLL_PAGES {
            let path = url(&[
                ("table", "messages"),
                ("limit", &limit),
                ("cursor", &cursor),
            ]);
            let t0 = Instant::now();
            let page = get(&path)?;
            scrolls.push(t0.elapsed());
            cursor = page["cursor"].as_str().unwrap_or_default().to_owned();
        }
    }
    drop(http);
    server.stop()?;

    let note = format!(
        "{documents} messages of {USERS} users, loaded with runtime import in {:.1} s; one HTTP connection, one request after another",
        loaded_in.as_secs_f64()
    );
    ctx.push(
        Row::new(
            "dashboard",
            format!("{documents} docs, tables with counts, first time"),
        )
        .value(ms(first_tables), "ms")
        .note(format!(
            "{note}; counting scans each table once, later counts follow the commits"
        )),
    );
    for (case, latency) in [
        ("tables with counts", tables),
        ("first page of 50", first),
        (
            &format!(
                "scrolling, next page of 50 (to {} deep)",
                SCROLL_PAGES * PAGE
            ) as &str,
            Latency::of(scrolls),
        ),
        ("sorted by index by_user, first page", by_user_asc),
        ("sorted by index by_user desc, first page", by_user_desc),
        ("filtered, 1 in 1,000 match, first page", filtered),
    ] {
        ctx.push(Row::new("dashboard", format!("{documents} docs, {case}")).latency(latency));
    }
    Ok(())
}
