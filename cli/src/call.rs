//! `runtime run PATH 'JSON_ARGS' [--watch]`: calls a function of a running server and prints
//! its result; with `--watch`, subscribes to a query and prints each new result.

use crate::admin::AdminKeyArgs;
use crate::remote::{client_runtime, ServerUrl};
use clap::Args;
use futures_util::StreamExt;
use hyper::Method;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

#[derive(Args)]
pub struct RunArgs {
    /// The function, as `module:function` (e.g. `chat:get_messages`).
    pub path: String,
    /// Its arguments as a JSON object, in the wire form of docs/PROTOCOL.md section 1 (a
    /// plain number is a float64; an int64 is `{"$integer": base64 of 8 little-endian bytes}`).
    /// Results print as plain JSON, an int64 as a decimal string.
    #[arg(default_value = "{}")]
    pub args: String,
    /// Keep a query subscribed and print every new result (Ctrl-C to stop).
    #[arg(long)]
    pub watch: bool,
    /// The server, as `runtime serve` printed it.
    #[arg(long, default_value = "http://127.0.0.1:3210")]
    pub url: String,
    /// Calls with the admin key when one is found (internal functions need it).
    #[command(flatten)]
    pub admin: AdminKeyArgs,
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
    let key = args.admin.find(&url)?;
    let url = url.with_admin_key(key);
    let runtime = client_runtime()?;
    runtime.block_on(async move {
        if args.watch {
            let kind = function_kind(&url, &args.path).await?;
            if kind != "query" {
                return Err(format!(
                    "--watch subscribes to a query, and {} is a {kind}; run it without --watch",
                    args.path
                ));
            }
            return watch(&url, &args.path, call_args).await;
        }
        // `/api/function` runs a query, a mutation or an action alike; results come back as plain JSON
        // (an int64 as a decimal string), which is what a person reads.
        let (status, answer) = url
            .request(
                Method::POST,
                "/api/function",
                Some(&json!({"path": args.path, "args": call_args, "format": "json"})),
            )
            .await?;
        print_log_lines(&answer["logLines"]);
        match (status, answer["status"].as_str()) {
            (200, Some("success")) => {
                println!("{}", pretty(&answer["value"]));
                Ok(())
            }
            (200, _) => Err(error_of(&answer)),
            _ => Err(format!(
                "{} (HTTP {status}, {})",
                answer["message"].as_str().unwrap_or("no message"),
                answer["code"].as_str().unwrap_or("no code")
            )),
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

/// Subscribes with the official Convex client and prints each new result (as plain JSON:
/// an int64 as a decimal string) or error, until the server goes away for good.
async fn watch(url: &ServerUrl, path: &str, args: Json) -> Result<(), String> {
    let Json::Object(fields) = args else {
        unreachable!("checked to be an object by run")
    };
    let args = fields
        .into_iter()
        .map(|(name, value)| {
            convex::Value::try_from(value)
                .map(|value| (name.clone(), value))
                .map_err(|e| format!("argument {name:?} is not a value: {e}"))
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let mut client = convex::ConvexClient::new(&url.http_url())
        .await
        .map_err(|e| format!("connecting to {}: {e}", url.http_url()))?;
    if let Some(key) = url.admin_key() {
        client.set_admin_auth(key.to_owned(), None).await;
    }
    let mut results = client
        .subscribe(path, args)
        .await
        .map_err(|e| format!("subscribing to {path}: {e}"))?;
    while let Some(result) = results.next().await {
        match result {
            convex::FunctionResult::Value(value) => println!("{}", pretty(&value.export())),
            convex::FunctionResult::ErrorMessage(message) => eprintln!("error: {message}"),
            convex::FunctionResult::ConvexError(error) => {
                eprintln!("error: {} (data: {})", error.message, error.data.export())
            }
        }
    }
    Err("the subscription ended".into())
}

/// Log lines as HTTP answers carry them (`[LOG] text`), to stderr.
fn print_log_lines(lines: &Json) {
    for line in lines.as_array().into_iter().flatten() {
        eprintln!("{}", line.as_str().unwrap_or_default());
    }
}

/// A failed call's message, with its data when it has some.
fn error_of(answer: &Json) -> String {
    let message = answer["errorMessage"].as_str().unwrap_or("no message");
    match answer.get("errorData") {
        Some(data) if !data.is_null() => format!("{message} (data: {data})"),
        _ => message.to_owned(),
    }
}

fn pretty(value: &Json) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
