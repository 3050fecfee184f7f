//! `runtime env list | set NAME VALUE | unset NAME`: the deployment's environment variables,
//! through the admin endpoints `GET /api/env` and `POST /api/env` of a running server.

use crate::admin::AdminKeyArgs;
use crate::remote::{client_runtime, ServerUrl};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::json;

#[derive(Args)]
pub struct EnvArgs {
    #[command(subcommand)]
    pub action: EnvAction,
    /// The server, as `runtime serve` printed it.
    #[arg(long, default_value = "http://127.0.0.1:3210", global = true)]
    pub url: String,
    #[command(flatten)]
    pub admin: AdminKeyArgs,
}

#[derive(Subcommand)]
pub enum EnvAction {
    /// Print every variable as NAME=value.
    List,
    /// Set a variable (the app's auth config reads it at once).
    Set { name: String, value: String },
    /// Remove a variable.
    Unset { name: String },
}

pub fn run(args: EnvArgs) -> Result<(), String> {
    let url = ServerUrl::parse(&args.url)?;
    let key = args.admin.require("runtime env", &url)?;
    let url = url.with_admin_key(Some(key));
    let runtime = client_runtime()?;
    runtime.block_on(async move {
        let (status, answer) = match &args.action {
            EnvAction::List => url.request(Method::GET, "/api/env", None).await?,
            EnvAction::Set { name, value } => {
                let body = json!({ "set": { name: value } });
                url.request(Method::POST, "/api/env", Some(&body)).await?
            }
            EnvAction::Unset { name } => {
                let body = json!({ "set": { name: null } });
                url.request(Method::POST, "/api/env", Some(&body)).await?
            }
        };
        if status != 200 {
            return Err(format!(
                "{} (HTTP {status}, {})",
                answer["message"].as_str().unwrap_or("no message"),
                answer["code"].as_str().unwrap_or("no code")
            ));
        }
        if let EnvAction::List = args.action {
            if let Some(vars) = answer["variables"].as_object() {
                for (name, value) in vars {
                    println!("{name}={}", value.as_str().unwrap_or_default());
                }
            }
        }
        Ok(())
    })
}
