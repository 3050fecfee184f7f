//! `runtime export [FILE]` and `runtime import FILE`: every table of a running server as
//! JSON Lines (the format of `ferrovex_runtime::transfer`), out and back in, with a progress bar on a
//! terminal.

use crate::admin::AdminKeyArgs;
use crate::remote::{client_runtime, ServerUrl};
use clap::Args;
use ferrovex_model::{DocumentId, Object, Value};
use ferrovex_runtime::store::catalog::check_name;
use ferrovex_runtime::store::document::validate_fields;
use ferrovex_runtime::transfer::{parse_line, IdRemap, ImportedDocument, Line, TableHeader};
use http_body_util::BodyExt;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value as Json};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// An import sends documents in batches of at most this many, each one transaction...
const BATCH_DOCUMENTS: usize = 1_000;
/// ...and of about this many bytes of JSON, well inside the request and write limits.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

#[derive(Args)]
pub struct ExportArgs {
    /// The file to write (`-`: standard output). It appears only once the export is whole.
    #[arg(default_value = "-")]
    pub file: String,
    /// The server, as `runtime serve` printed it.
    #[arg(long, default_value = "http://127.0.0.1:3210")]
    pub url: String,
    #[command(flatten)]
    pub admin: AdminKeyArgs,
}

#[derive(Args)]
pub struct ImportArgs {
    /// A file written by `runtime export` (or, with `--table`, one JSON object per line).
    pub file: PathBuf,
    /// Read FILE as plain JSON Lines, one document per line (values in the wire form of
    /// docs/PROTOCOL.md: `{"$integer": "KgAAAAAAAAA="}` for the int64 42), and insert each into this table as a
    /// new document, with a new `_id` and `_creationTime` (those in the file are replaced).
    /// The table may already hold documents.
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,
    /// The server, as `runtime serve` printed it.
    #[arg(long, default_value = "http://127.0.0.1:3210")]
    pub url: String,
    #[command(flatten)]
    pub admin: AdminKeyArgs,
}

fn progress_bar(total: u64, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{verb} {{bar:40}} {{human_pos}}/{{human_len}} documents, {{eta}} left"
        ))
        .expect("a valid template"),
    );
    bar
}

pub fn export(args: ExportArgs) -> Result<(), String> {
    let url = ServerUrl::parse(&args.url)?;
    let key = args.admin.require("runtime export", &url)?;
    let url = url.with_admin_key(Some(key));
    // Written beside the target and renamed at the end, so a file named FILE is always whole.
    let (mut out, partial): (Box<dyn Write>, Option<PathBuf>) = if args.file == "-" {
        (Box::new(BufWriter::new(std::io::stdout().lock())), None)
    } else {
        let partial = PathBuf::from(format!("{}.partial", args.file));
        let file = File::create(&partial)
            .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
        (Box::new(BufWriter::new(file)), Some(partial))
    };
    let result = client_runtime()?.block_on(stream_export(&url, &mut out));
    let result = result.and_then(|summary| {
        out.flush()
            .map_err(|e| format!("writing the export: {e}"))?;
        Ok(summary)
    });
    drop(out);
    match (result, partial) {
        (Ok((tables, documents)), partial) => {
            if let Some(partial) = partial {
                std::fs::rename(&partial, &args.file)
                    .map_err(|e| format!("renaming {} to {}: {e}", partial.display(), args.file))?;
            }
            eprintln!(
                "exported {documents} documents from {tables} tables{}",
                if args.file == "-" {
                    String::new()
                } else {
                    format!(" to {}", args.file)
                }
            );
            Ok(())
        }
        (Err(message), partial) => {
            if let Some(partial) = partial {
                let _ = std::fs::remove_file(partial);
            }
            Err(message)
        }
    }
}

/// Copies the server's export into `out` line by line; the number of tables and documents.
async fn stream_export(url: &ServerUrl, out: &mut dyn Write) -> Result<(usize, u64), String> {
    let (status, mut body) = url.get_streaming("/api/export").await?;
    if status != 200 {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<Json>(&bytes)
            .ok()
            .and_then(|j| j["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(format!(
            "the server refused the export ({status}): {message}"
        ));
    }
    let cut_short = || {
        "the export ended early (did the server stop?); nothing was written, run it again"
            .to_owned()
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut bar: Option<ProgressBar> = None;
    let mut tables = 0;
    let mut documents = 0u64;
    let mut end: Option<u64> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| cut_short())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        out.write_all(&data)
            .map_err(|e| format!("writing the export: {e}"))?;
        pending.extend_from_slice(&data);
        // Only whole lines are looked at: the header for the total, `end` for the check.
        while let Some(newline) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=newline).collect();
            let text = std::str::from_utf8(&line[..line.len() - 1])
                .map_err(|_| "the server sent an export that is not UTF-8".to_owned())?;
            if bar.is_none() {
                let Ok(Line::Header { tables: listed, .. }) = parse_line(text) else {
                    return Err(format!(
                        "the server's export does not start with its header: {text:.200}"
                    ));
                };
                tables = listed.len();
                bar = Some(progress_bar(
                    listed.iter().map(|t| t.documents).sum(),
                    "exporting",
                ));
                continue;
            }
            // Every line after the header is a document but the last, `end`.
            match text
                .starts_with("{\"type\":\"end\"")
                .then(|| parse_line(text))
            {
                Some(Ok(Line::End { documents })) => end = Some(documents),
                _ => {
                    documents += 1;
                    bar.as_ref().expect("set by the header").inc(1);
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match end {
        Some(count) if count == documents && pending.is_empty() => Ok((tables, documents)),
        _ => Err(cut_short()),
    }
}

/// What the first reading of an import file found.
struct Checked {
    tables: Vec<TableHeader>,
    ids: Vec<DocumentId>,
    documents: u64,
}

pub fn import(args: ImportArgs) -> Result<(), String> {
    let url = ServerUrl::parse(&args.url)?;
    let key = args.admin.require("runtime import", &url)?;
    let url = url.with_admin_key(Some(key));
    // Everything that can be checked without the server is, before anything is sent, so a
    // bad file changes nothing.
    if let Some(table) = &args.table {
        let checked = check_plain_file(&args.file, table)?;
        return client_runtime()?.block_on(send_plain_import(&url, &args.file, table, checked));
    }
    let checked = check_file(&args.file)?;
    client_runtime()?.block_on(send_import(&url, &args.file, checked))
}

fn open_lines(
    path: &Path,
) -> Result<impl Iterator<Item = (usize, Result<String, String>)>, String> {
    let file = File::open(path).map_err(|e| {
        format!(
            "cannot read {}: {e}; pass a file written by `runtime export`",
            path.display()
        )
    })?;
    let shown = path.display().to_string();
    Ok(BufReader::new(file)
        .lines()
        .enumerate()
        .map(move |(i, line)| {
            (
                i + 1,
                line.map_err(|e| format!("{shown}: reading line {}: {e}", i + 1)),
            )
        }))
}

fn check_file(path: &Path) -> Result<Checked, String> {
    let shown = path.display();
    let at = |line: usize, message: String| format!("{shown}, line {line}: {message}");
    let mut tables: Option<Vec<TableHeader>> = None;
    let mut numbers: HashMap<String, u32> = HashMap::new();
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    let mut end = None;
    let mut last_line = 0;
    for (number, line) in open_lines(path)? {
        let line = line?;
        last_line = number;
        if end.is_some() {
            return Err(at(number, "a line after the end line".into()));
        }
        let parsed = parse_line(&line).map_err(|e| at(number, e))?;
        match (parsed, tables.is_some()) {
            (Line::Header { tables: listed, .. }, false) => {
                for table in &listed {
                    if numbers.insert(table.name.clone(), table.number).is_some() {
                        return Err(at(number, format!("table {:?} is listed twice", table.name)));
                    }
                }
                tables = Some(listed);
            }
            (_, false) => {
                return Err(at(
                    number,
                    "an export starts with its header line ({\"type\":\"export\", ...}); is this a file from `runtime export`?".into(),
                ))
            }
            (Line::Header { .. }, true) => return Err(at(number, "a second header line".into())),
            (Line::Document { table, value }, true) => {
                let Some(&table_number) = numbers.get(&table) else {
                    return Err(at(number, format!("table {table:?} is not in the header")));
                };
                let document =
                    ImportedDocument::from_value(&table, value).map_err(|e| at(number, e))?;
                if document.id.table_number() != table_number {
                    return Err(at(
                        number,
                        format!(
                            "document {} has table number {}, but the header numbers table {table:?} {table_number}",
                            document.id,
                            document.id.table_number()
                        ),
                    ));
                }
                if !seen.insert(document.id) {
                    return Err(at(number, format!("document {} appears twice", document.id)));
                }
                validate_fields(&table, &document.fields).map_err(|e| at(number, e.to_string()))?;
                ids.push(document.id);
            }
            (Line::End { documents }, true) => end = Some((number, documents)),
        }
    }
    let Some(tables) = tables else {
        return Err(format!(
            "{shown} is empty; pass a file written by `runtime export`"
        ));
    };
    match end {
        Some((_, documents)) if documents == ids.len() as u64 => Ok(Checked {
            tables,
            documents,
            ids,
        }),
        Some((number, documents)) => Err(at(
            number,
            format!(
                "the end line counts {documents} documents, but the file has {}",
                ids.len()
            ),
        )),
        None => Err(format!(
            "{shown} has no end line after line {last_line}: the export was cut short; export again"
        )),
    }
}

async fn send_import(url: &ServerUrl, path: &Path, checked: Checked) -> Result<(), String> {
    let (status, answer) = url
        .request(
            Method::POST,
            "/api/import/tables",
            Some(&json!({"tables": checked.tables.iter().map(TableHeader::to_json).collect::<Vec<_>>()})),
        )
        .await?;
    if status != 200 {
        return Err(format!(
            "the server refused the import, nothing was imported: {}",
            message_of(&answer, status)
        ));
    }
    let here: HashMap<&str, u32> = answer["tables"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| {
            Some((
                t["name"].as_str()?,
                u32::try_from(t["number"].as_u64()?).ok()?,
            ))
        })
        .collect();
    let mut renumbered = Vec::new();
    let mut pairs = Vec::new();
    for table in &checked.tables {
        let number = *here
            .get(table.name.as_str())
            .ok_or_else(|| format!("the server did not prepare table {:?}", table.name))?;
        if number != table.number {
            renumbered.push(format!("{} ({} → {})", table.name, table.number, number));
        }
        pairs.push((table.number, number));
    }
    let mut remap = IdRemap::new(pairs);
    for id in &checked.ids {
        remap.note_exported(*id);
    }

    let mut batches = Batches::new(url, checked.documents);
    for (number, line) in open_lines(path)? {
        let Line::Document { table, value } =
            parse_line(&line?).map_err(|e| format!("line {number}: {e}"))?
        else {
            continue;
        };
        let mut document = ImportedDocument::from_value(&table, value)
            .map_err(|e| format!("line {number}: {e}"))?;
        remap.apply(&mut document);
        let value = document.to_value();
        batches.push(&table, &value, number).await?;
    }
    let imported = batches.finish().await?;
    eprintln!(
        "imported {imported} documents into {} tables{}",
        checked.tables.len(),
        if renumbered.is_empty() {
            "; every id kept".to_owned()
        } else {
            format!(
                "; renumbered because the number was taken here, with their ids and the references to them rewritten: {}",
                renumbered.join(", ")
            )
        }
    );
    Ok(())
}

/// What the first reading of a plain JSON Lines file found.
struct CheckedPlain {
    documents: u64,
    /// Lines whose `_id` or `_creationTime` is replaced.
    with_system_fields: u64,
}

/// A plain line's document: its user fields, and whether it carried system fields.
fn plain_document(table: &str, line: &str) -> Result<(Object, bool), String> {
    let json: Json = serde_json::from_str(line).map_err(|e| format!("not a JSON object ({e})"))?;
    let Value::Object(mut fields) =
        ferrovex_model::json::from_json(&json).map_err(|e| e.to_string())?
    else {
        return Err(format!(
            "each line is one document, a JSON object; got {}",
            ferrovex_model::json::json_kind(&json)
        ));
    };
    let had_id = fields.remove("_id").is_some();
    let had_time = fields.remove("_creationTime").is_some();
    validate_fields(table, &fields).map_err(|e| e.to_string())?;
    Ok((fields, had_id || had_time))
}

fn check_plain_file(path: &Path, table: &str) -> Result<CheckedPlain, String> {
    check_name("table", table).map_err(|e| format!("--table: {e}"))?;
    let mut checked = CheckedPlain {
        documents: 0,
        with_system_fields: 0,
    };
    for (number, line) in open_lines(path)? {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let (_, replaced) = plain_document(table, &line)
            .map_err(|e| format!("{}, line {number}: {e}", path.display()))?;
        checked.documents += 1;
        checked.with_system_fields += replaced as u64;
    }
    Ok(checked)
}

async fn send_plain_import(
    url: &ServerUrl,
    path: &Path,
    table: &str,
    checked: CheckedPlain,
) -> Result<(), String> {
    let mut batches = Batches::new(url, checked.documents);
    for (number, line) in open_lines(path)? {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let (fields, _) =
            plain_document(table, &line).map_err(|e| format!("line {number}: {e}"))?;
        batches.push(table, &Value::Object(fields), number).await?;
    }
    let imported = batches.finish().await?;
    eprintln!(
        "imported {imported} new documents into table {table:?}{}",
        match checked.with_system_fields {
            0 => String::new(),
            n => format!("; {n} of them had _id or _creationTime in the file, which were replaced"),
        }
    );
    Ok(())
}

/// Documents on their way to `POST /api/import/documents`, a batch at a time, each batch one
/// transaction; the progress bar follows what the server has taken.
struct Batches<'a> {
    url: &'a ServerUrl,
    batch: Vec<Json>,
    bytes: usize,
    first_line: usize,
    imported: u64,
    bar: ProgressBar,
}

impl<'a> Batches<'a> {
    fn new(url: &'a ServerUrl, total: u64) -> Self {
        Batches {
            url,
            batch: Vec::new(),
            bytes: 0,
            first_line: 0,
            imported: 0,
            bar: progress_bar(total, "importing"),
        }
    }

    /// Adds the document of line `line`; sends the batch once it is full.
    async fn push(&mut self, table: &str, value: &Value, line: usize) -> Result<(), String> {
        let entry = json!({"table": table, "value": ferrovex_model::json::to_json(value)});
        if self.batch.is_empty() {
            self.first_line = line;
        }
        self.bytes += entry.to_string().len();
        self.batch.push(entry);
        if self.batch.len() >= BATCH_DOCUMENTS || self.bytes >= BATCH_BYTES {
            self.send(Some(line)).await?;
        }
        Ok(())
    }

    /// Sends what is left; how many documents the server took in all.
    async fn finish(mut self) -> Result<u64, String> {
        if !self.batch.is_empty() {
            self.send(None).await?;
        }
        self.bar.finish_and_clear();
        Ok(self.imported)
    }

    async fn send(&mut self, last_line: Option<usize>) -> Result<(), String> {
        let documents = std::mem::take(&mut self.batch);
        let count = documents.len() as u64;
        self.bytes = 0;
        let (status, answer) = self
            .url
            .request(
                Method::POST,
                "/api/import/documents",
                Some(&json!({"documents": documents})),
            )
            .await?;
        if status != 200 {
            self.bar.finish_and_clear();
            let lines = match last_line {
                Some(last) => format!("lines {} to {last}", self.first_line),
                None => format!("from line {} on", self.first_line),
            };
            return Err(format!(
                "the server refused the documents of {lines} ({}); the {} documents before them were imported",
                message_of(&answer, status),
                self.imported
            ));
        }
        self.imported += count;
        self.bar.set_position(self.imported);
        Ok(())
    }
}

fn message_of(answer: &Json, status: u16) -> String {
    answer["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("status {status}: {answer}"))
}
