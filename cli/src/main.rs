//! `runtime`: the command a developer meets first. Each subcommand lives in its own module;
//! this file only parses the command line and turns errors into a message and an exit code.

mod admin;
mod app;
mod call;
mod codegen;
mod dashboard;
mod dev;
mod env;
mod logs;
mod new;
mod nodes;
mod remote;
mod serve;
mod transfer;

use clap::{Parser, Subcommand};
use ferrovex_model::abi::{ABI_VERSION, SDK_VERSION};
use std::process::ExitCode;
use std::sync::LazyLock;

/// What `runtime --version` prints after the name: this command's version and what apps it
/// runs, the SDK release and ABI version their modules must be built with.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (apps: ferrovex-sdk {SDK_VERSION}, ABI version {ABI_VERSION})",
        env!("CARGO_PKG_VERSION")
    )
});

#[derive(Parser)]
#[command(
    name = "runtime",
    version = VERSION.as_str(),
    about = "A reactive backend: Rust functions in a WebAssembly sandbox over a document database, with live queries.",
    after_help = "Examples:\n  runtime serve examples/chat          build the chat example and serve it on http://127.0.0.1:3210\n  runtime serve . --port 0             serve the app in this folder on a free port\n  runtime dev examples/chat            the same, rebuilding and redeploying on every save\n  runtime new my-app                   a new app crate, ready to serve"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an app (when its sources changed), deploy its functions, and serve the API and
    /// its web files.
    #[command(
        after_help = "Examples:\n  runtime serve examples/chat\n  runtime serve my-app --port 8080 --data /var/lib/my-app\n  runtime serve --host 0.0.0.0 --port 0"
    )]
    Serve(serve::ServeArgs),
    /// `serve`, plus a watcher: every save rebuilds the app (compiler errors shown at once)
    /// and deploys it into the running server without dropping a connection.
    #[command(
        after_help = "Examples:\n  runtime dev examples/chat\n  runtime dev my-app --port 0"
    )]
    Dev(serve::ServeArgs),
    /// Write a typed `api` for TypeScript users of the npm `convex` client: `api.js` and
    /// `api.d.ts` with every function's argument and return types (building the app first if
    /// its sources changed).
    #[command(
        after_help = "Examples:\n  runtime codegen examples/chat                  writes examples/chat/_generated/api.js and api.d.ts\n  runtime codegen my-app --out my-app/web/src/_generated\n\nIn TypeScript:\n  import { api } from \"./_generated/api\";\n  await client.mutation(api.chat.send_message, { user: \"ada\", body: \"hi\" });\n\nAn int64 is a bigint (write 10n), bytes an ArrayBuffer. `runtime dev` writes the files again\nafter every build."
    )]
    Codegen(codegen::CodegenArgs),
    /// Create a new app crate from a template, ready to serve.
    #[command(after_help = "Examples:\n  runtime new my-app && runtime dev my-app")]
    New(new::NewArgs),
    /// Call a query or mutation of a running server and print its result (`--watch`: every
    /// new result of a query).
    #[command(
        after_help = "Examples:\n  runtime run chat:send_message '{\"user\": \"ada\", \"body\": \"hi\"}'\n  runtime run chat:get_messages\n  runtime run chat:get_messages --watch\n  runtime run tasks:page '{\"cursor\": null, \"size\": {\"$integer\": \"CgAAAAAAAAA=\"}}' --url http://127.0.0.1:4000"
    )]
    Run(call::RunArgs),
    /// Print the function executions of a running server: time (UTC), kind, path, duration,
    /// outcome, and the lines each logged (`-f`: keep following).
    #[command(
        after_help = "Examples:\n  runtime logs\n  runtime logs -f\n  runtime logs -f --url http://127.0.0.1:4000"
    )]
    Logs(logs::LogsArgs),
    /// Write every table of a running server to a file as JSON Lines (ids, creation times and
    /// indexes included), read at one snapshot.
    #[command(
        after_help = "Examples:\n  runtime export backup.jsonl\n  runtime export - --url http://127.0.0.1:4000 | gzip > backup.jsonl.gz\n\nThe file starts with a header line listing the tables, then one line per document\n({\"type\":\"document\",\"table\":...,\"value\":{...}}), then an end line with the count."
    )]
    Export(transfer::ExportArgs),
    /// Load a file written by `runtime export` into a running server: into new or empty
    /// tables, keeping ids and creation times.
    #[command(
        after_help = "Examples:\n  runtime import backup.jsonl\n  runtime import backup.jsonl --url http://127.0.0.1:4000\n  runtime import rows.jsonl --table messages   one JSON object per line, as new documents\n\nThe whole file is checked before anything is sent. A table whose number is taken on the\nserver gets a new one; its ids, and every reference to them, are rewritten to match."
    )]
    Import(transfer::ImportArgs),
    /// Print the admin key of a local data folder (made when `runtime serve` first starts
    /// with it), or replace it with `--rotate`. The logs, export and import commands and
    /// internal functions need it.
    #[command(
        after_help = "Examples:\n  runtime admin-key                    the key of ./data\n  runtime admin-key examples/chat\n  runtime admin-key --data /var/lib/my-app --rotate\n\nOver HTTP it goes in the header `Authorization: Convex <key>`."
    )]
    AdminKey(admin::AdminKeyCommand),
    /// List, set or unset the deployment's environment variables (secrets such as API keys,
    /// a sign-in provider's issuer), kept in its data folder; needs the admin key.
    #[command(
        after_help = "Examples:\n  runtime env list\n  runtime env set AUTH_ISSUER https://my-tenant.us.auth0.com/\n  runtime env unset AUTH_ISSUER --url http://127.0.0.1:4000\n\nThe app's #[auth_config] reads them (over the server's own environment) as soon as they change."
    )]
    Env(env::EnvArgs),
    /// Print the URL of a running server's dashboard that signs a browser in (data, functions,
    /// logs, schedules, health and settings, live); needs the admin key.
    #[command(
        after_help = "Examples:\n  runtime dashboard\n  runtime dashboard --open\n  runtime dashboard --url http://127.0.0.1:4000 --data my-app/data"
    )]
    Dashboard(dashboard::DashboardArgs),
    /// Show the nodes of a deployment (several servers over one PostgreSQL store): each one's
    /// role, address and lag behind the newest commit; needs the admin key.
    #[command(
        after_help = "Examples:\n  runtime nodes --url http://127.0.0.1:3210 --data my-app/data\n  runtime nodes --json"
    )]
    Nodes(nodes::NodesArgs),
}

/// jemalloc, not glibc's `malloc`: every call allocates and frees many small blocks and a
/// few over 1 KiB (wasmtime's store, 1,488 bytes, and instance). glibc serves those past
/// its per-thread cache (1,032 bytes at most), and first merges the small chunks freed
/// since (`malloc_consolidate`). The allocator's own functions were 14.4% of the server's
/// CPU samples in `bench --only chat-send` and 16.9% in bank transfers (uniform) with glibc,
/// 4.9% and 4.0% with jemalloc; BENCHMARKS.md has the rounds. mimalloc, tried earlier, did
/// not show a gain in its end-to-end rounds.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Dev(args) => dev::run(args),
        Command::Codegen(args) => codegen::run(args),
        Command::New(args) => new::run(args),
        Command::Run(args) => call::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Export(args) => transfer::export(args),
        Command::Import(args) => transfer::import(args),
        Command::AdminKey(args) => admin::run(args),
        Command::Env(args) => env::run(args),
        Command::Dashboard(args) => dashboard::run(args),
        Command::Nodes(args) => nodes::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
