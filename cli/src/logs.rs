//! `runtime logs [-f]`: the function executions of a running server, one line each (time,
//! path, duration, outcome), with their log lines beneath.

use crate::admin::AdminKeyArgs;
use crate::remote::{client_runtime, ServerUrl};
use clap::Args;
use futures_util::StreamExt;
use serde_json::Value as Json;
use tokio_tungstenite::tungstenite::Message;

#[derive(Args)]
pub struct LogsArgs {
    /// Keep following: print each execution as it ends (Ctrl-C to stop).
    #[arg(short, long)]
    pub follow: bool,
    /// The server, as `runtime serve` printed it.
    #[arg(long, default_value = "http://127.0.0.1:3210")]
    pub url: String,
    #[command(flatten)]
    pub admin: AdminKeyArgs,
}

pub fn run(args: LogsArgs) -> Result<(), String> {
    let url = ServerUrl::parse(&args.url)?;
    let key = args.admin.require("runtime logs", &url)?;
    let url = url.with_admin_key(Some(key));
    let runtime = client_runtime()?;
    runtime.block_on(async move {
        let mut socket = url.websocket("/api/logs").await?;
        while let Some(frame) = socket.next().await {
            let frame = frame.map_err(|e| format!("the log stream ended: {e}"))?;
            let Message::Text(text) = frame else { continue };
            let message: Json = serde_json::from_str(text.as_str())
                .map_err(|e| format!("a bad frame from the server: {e}"))?;
            match message["type"].as_str() {
                Some("Execution") => print_execution(&message),
                Some("Skipped") => println!(
                    "... {} executions skipped (this reader fell behind)",
                    message["count"]
                ),
                Some("CaughtUp") if !args.follow => return Ok(()),
                _ => {}
            }
        }
        if args.follow {
            Err("the server closed the log stream".into())
        } else {
            Ok(())
        }
    })
}

fn print_execution(message: &Json) {
    let started_ms = message["startedMs"].as_f64().unwrap_or(0.0);
    let outcome = match message["outcome"].as_str() {
        Some("error") => format!("error: {}", message["error"].as_str().unwrap_or("?")),
        _ => "ok".into(),
    };
    println!(
        "{} {:<8} {} {:.2} ms {}",
        time_of_day(started_ms),
        message["kind"].as_str().unwrap_or("?"),
        message["path"].as_str().unwrap_or("?"),
        message["durationMs"].as_f64().unwrap_or(0.0),
        outcome
    );
    for line in message["logLines"].as_array().into_iter().flatten() {
        println!("    {}", line.as_str().unwrap_or_default());
    }
}

/// `HH:MM:SS.mmm` in UTC.
fn time_of_day(ms_since_epoch: f64) -> String {
    let ms = ms_since_epoch as u64 % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}
