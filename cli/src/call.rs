//! `runtime run PATH 'JSON_ARGS' [--watch]`: calls a function of a running server and prints
//! its result; with `--watch`, subscribes to a query and prints each new result.

use crate::remote::ServerUrl;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use hyper::Method;
use serde_json::{json, Value as Json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Args)]
pub struct RunArgs {
    /// The function, as `module:function` (e.g. `chat:get_messages`).
    pub path: String,
    /// Its arguments as a JSON object, in the wire form of PROTOCOL.md (an int64 is
    /// `{"$integer": "42"}`).
    #[arg(default_value = "{}")]
    pub args: String,
    /// Keep a query subscribed and print every new result (Ctrl-C to stop).
    #[arg(long)]
    pub watch: bool,
    /// The server, as `runtime serve` printed it.
    #[arg(long, default_value = "http://127.0.0.1:3210")]
    pub url: String,
}

pub fn run(args: RunArgs) -> Result<(), String> {
    let call_args: Json = serde_json::from_str(&args.args).map_err(|e| {
        format!(
            "the arguments must be a JSON object, like '{{\"user\": \"ada\"}}'; {:?} is not JSON ({e})",
            args.args
        )
    })?;
    if !call_args.is_object() {
        return Err(format!(
            "the arguments must be a JSON object, like '{{\"user\": \"ada\"}}', got {}",
            args.args
        ));
    }
    let url = ServerUrl::parse(&args.url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime.block_on(async move {
        let kind = function_kind(&url, &args.path).await?;
        if args.watch {
            if kind != "query" {
                return Err(format!(
                    "--watch subscribes to a query, and {} is a {kind}; run it without --watch",
                    args.path
                ));
            }
            return watch(&url, &args.path, call_args).await;
        }
        let (status, answer) = url
            .request(
                Method::POST,
                &format!("/api/{kind}"),
                Some(&json!({"path": args.path, "args": call_args})),
            )
            .await?;
        print_log_lines(&answer["logLines"]);
        if status == 200 {
            println!("{}", pretty(&answer["value"]));
            Ok(())
        } else {
            Err(error_of(&answer, status))
        }
    })
}

/// `query` or `mutation`, from the server's list of functions.
async fn function_kind(url: &ServerUrl, path: &str) -> Result<String, String> {
    let (_, functions) = url.request(Method::GET, "/api/functions", None).await?;
    let listed = functions["functions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(function) = listed.iter().find(|f| f["path"] == path) {
        return Ok(function["kind"].as_str().unwrap_or("query").to_owned());
    }
    let names: Vec<&str> = listed.iter().filter_map(|f| f["path"].as_str()).collect();
    Err(format!(
        "the server has no function {path:?}; it has: {}",
        names.join(", ")
    ))
}

async fn watch(url: &ServerUrl, path: &str, args: Json) -> Result<(), String> {
    let mut socket = url.websocket("/api/sync").await?;
    let session = format!("runtime-run-{}", std::process::id());
    for message in [
        json!({"type": "Connect", "sessionId": session, "connectionCount": 0}),
        json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
               "modifications": [{"type": "Add", "queryId": 1, "udfPath": path, "args": args}]}),
    ] {
        socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|e| format!("subscribing: {e}"))?;
    }
    while let Some(frame) = socket.next().await {
        let frame = frame.map_err(|e| format!("the subscription ended: {e}"))?;
        let Message::Text(text) = frame else { continue };
        let message: Json =
            serde_json::from_str(text.as_str()).map_err(|e| format!("a bad frame: {e}"))?;
        match message["type"].as_str() {
            Some("Transition") => {
                for modification in message["modifications"].as_array().into_iter().flatten() {
                    print_log_lines(&modification["logLines"]);
                    match modification["type"].as_str() {
                        Some("QueryUpdated") => println!("{}", pretty(&modification["value"])),
                        Some("QueryFailed") => {
                            eprintln!(
                                "error: {}",
                                modification["errorMessage"].as_str().unwrap_or("?")
                            )
                        }
                        _ => {}
                    }
                }
            }
            Some("FatalError") => {
                return Err(format!(
                    "the server closed the subscription: {}",
                    message["error"].as_str().unwrap_or("?")
                ))
            }
            _ => {}
        }
    }
    Err("the server closed the connection".into())
}

fn print_log_lines(lines: &Json) {
    for line in lines.as_array().into_iter().flatten() {
        eprintln!("[log] {}", line.as_str().unwrap_or_default());
    }
}

fn error_of(answer: &Json, status: u16) -> String {
    let message = answer["errorMessage"].as_str().unwrap_or("no message");
    match answer.get("errorData") {
        Some(data) if !data.is_null() => format!("{message} (HTTP {status}; data: {data})"),
        _ => format!("{message} (HTTP {status})"),
    }
}

fn pretty(value: &Json) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
