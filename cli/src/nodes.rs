//! `runtime nodes`: the nodes of a deployment (several `runtime serve --store postgres://…`
//! over one database), their roles and how far each is behind, from any one of them.

use crate::admin::AdminKeyArgs;
use crate::remote::{client_runtime, ServerUrl};
use clap::Args;
use hyper::Method;
use serde_json::Value as Json;

#[derive(Args)]
pub struct NodesArgs {
    /// Any node of the deployment, as `runtime serve` printed it.
    #[arg(long, default_value = "http://127.0.0.1:3210")]
    pub url: String,
    /// Print the server's answer as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub admin: AdminKeyArgs,
}

pub fn run(args: NodesArgs) -> Result<(), String> {
    let url = ServerUrl::parse(&args.url)?;
    let key = args.admin.require("runtime nodes", &url)?;
    let url = url.with_admin_key(Some(key));
    let (status, answer) =
        client_runtime()?.block_on(url.request(Method::GET, "/api/cluster/nodes", None))?;
    if status != 200 {
        let message = answer["message"].as_str().unwrap_or_default();
        return Err(format!(
            "GET /api/cluster/nodes answered {status}: {message}"
        ));
    }
    if args.json {
        println!("{answer:#}");
        return Ok(());
    }
    print!("{}", table(&answer));
    Ok(())
}

/// The nodes as a table: id, role, address, lag behind the newest commit, last heartbeat.
fn table(answer: &Json) -> String {
    let mut rows = vec![[
        "NODE".to_owned(),
        "ROLE".to_owned(),
        "ADDRESS".to_owned(),
        "LAG".to_owned(),
        "SEEN".to_owned(),
    ]];
    for node in answer["nodes"].as_array().into_iter().flatten() {
        let text = |field: &str| node[field].as_str().unwrap_or("-").to_owned();
        let mut id = text("id");
        if node["self"] == true {
            id.push_str(" (this)");
        }
        rows.push([
            id,
            text("role"),
            text("address"),
            format!("{:.1} ms", node["lagMs"].as_f64().unwrap_or(0.0)),
            format!(
                "{:.1} s ago",
                node["seenSecondsAgo"].as_f64().unwrap_or(0.0)
            ),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if let Some(leader) = answer["leader"].as_object() {
        out.push_str(&format!(
            "leader: {} (term {}), lease renewed for {:.1} s more\n",
            leader["id"].as_str().unwrap_or("?"),
            leader["term"],
            leader["leaseSecondsLeft"].as_f64().unwrap_or(0.0)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_table_shows_each_node_and_the_leader() {
        let answer = serde_json::json!({
            "self": "b",
            "leader": {"id": "a", "term": 3, "leaseSecondsLeft": 8.5},
            "nodes": [
                {"id": "a", "address": "http://10.0.0.1:3210", "role": "leader", "lagMs": 0.0, "seenSecondsAgo": 0.4, "self": false},
                {"id": "b", "address": "http://10.0.0.2:3210", "role": "follower", "lagMs": 1.25, "seenSecondsAgo": 0.1, "self": true},
            ],
        });
        let table = super::table(&answer);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NODE"), "{table}");
        assert!(
            lines[1].starts_with("a ") && lines[1].contains(" leader "),
            "{table}"
        );
        assert!(
            lines[2].starts_with("b (this)") && lines[2].contains("1.2 ms"),
            "{table}"
        );
        assert!(lines[3].contains("leader: a (term 3)"), "{table}");
    }
}
