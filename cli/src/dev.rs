//! `runtime dev`: `serve`, plus a watcher that rebuilds the app on every save and deploys
//! the new version into the running server. Connections stay open and subscriptions re-run
//! on the new code, so open pages update without a reload. A build that fails leaves the
//! previous version serving. After every deploy it writes the typed TypeScript `api` into
//! `APP_DIR/_generated` again (`runtime codegen`), so editors see the new signatures.

use crate::app::AppDir;
use crate::codegen::{write_api, GENERATED_DIR};
use crate::serve::{serve_with, ServeArgs};
use ferrovex_runtime::server::Deployer;
use ferrovex_runtime::wasm::DeployedModule;
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Saves arrive as bursts of events (an editor writes, renames, touches); wait this long for
/// quiet before building, so one save is one build.
const SETTLE: Duration = Duration::from_millis(150);

pub fn run(args: ServeArgs) -> Result<(), String> {
    serve_with(args, |app, deployer| async move {
        // The first build was deployed before serving started.
        for path in regenerate_api(&app, &deployer.current()) {
            eprintln!("wrote {}", path.display());
        }
        if let Err(e) = watch(app, deployer).await {
            eprintln!("error: watching for changes stopped: {e}");
        }
    })
}

async fn watch(app: Arc<AppDir>, deployer: Deployer) -> Result<(), String> {
    let (changed, mut changes) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if event.paths.iter().any(|p| is_source(p)) && !event.kind.is_access() {
                let _ = changed.send(());
            }
        }
    })
    .map_err(|e| format!("starting the file watcher: {e}"))?;
    for watched in [app.dir.join("src"), app.dir.join("Cargo.toml")] {
        let mode = if watched.is_dir() {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        watcher
            .watch(&watched, mode)
            .map_err(|e| format!("watching {}: {e}", watched.display()))?;
    }
    eprintln!(
        "watching {} for changes: each save rebuilds and deploys",
        app.dir.join("src").display()
    );
    while changes.recv().await.is_some() {
        // Fold the rest of the burst (and saves made while building) into one build.
        loop {
            match tokio::time::timeout(SETTLE, changes.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return Ok(()),
                Err(_) => break,
            }
        }
        rebuild_and_deploy(&app, &deployer).await;
    }
    Ok(())
}

async fn rebuild_and_deploy(app: &Arc<AppDir>, deployer: &Deployer) {
    let started = Instant::now();
    eprintln!("change detected: rebuilding");
    let building = app.clone();
    let built = tokio::task::spawn_blocking(move || building.build())
        .await
        .unwrap_or_else(|e| Err(format!("the build task failed: {e}")));
    let wasm = match built {
        Ok(wasm) => wasm,
        Err(e) => {
            eprintln!("error: {e}; still serving the previous version");
            return;
        }
    };
    match deployer.deploy(wasm).await {
        Ok(module) => {
            // Before the line that says the deploy is done, so whoever waits for that line
            // finds the types of this version in place.
            let written = regenerate_api(app, &module);
            eprintln!(
                "deployed version {} in {} ms{}",
                &module.hash[..12],
                started.elapsed().as_millis(),
                wrote(&written)
            );
        }
        Err(e) => eprintln!("error: deploying: {e}; still serving the previous version"),
    }
}

/// Writes `APP_DIR/_generated/api.{js,d.ts}` for the deployed module, touching only files whose
/// content changed (a bundler watching them rebuilds only then), and returns those it wrote.
/// A failure is reported and serving goes on: the server does not depend on these files.
fn regenerate_api(app: &AppDir, module: &DeployedModule) -> Vec<PathBuf> {
    write_api(&app.dir.join(GENERATED_DIR), module).unwrap_or_else(|e| {
        eprintln!("error: writing the TypeScript api: {e}; serving goes on");
        Vec::new()
    })
}

/// `; wrote A, B` for the files written, or nothing.
fn wrote(files: &[PathBuf]) -> String {
    if files.is_empty() {
        return String::new();
    }
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    format!("; wrote {}", names.join(", "))
}

/// Rust sources and the manifest; not editor swap files or cargo's output.
fn is_source(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !path.components().any(|c| c.as_os_str() == "target")
        && (name.ends_with(".rs") || name == "Cargo.toml")
}
