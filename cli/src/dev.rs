//! `runtime dev`: `serve`, plus a watcher that rebuilds the app on every save and deploys
//! the new version into the running server. Connections stay open and subscriptions re-run
//! on the new code, so open pages update without a reload. A build that fails leaves the
//! previous version serving.

use crate::app::AppDir;
use crate::serve::{serve_with, ServeArgs};
use ferrovex_runtime::server::Deployer;
use notify::{RecursiveMode, Watcher};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Saves arrive as bursts of events (an editor writes, renames, touches); wait this long for
/// quiet before building, so one save is one build.
const SETTLE: Duration = Duration::from_millis(150);

pub fn run(args: ServeArgs) -> Result<(), String> {
    serve_with(args, |app, deployer| async move {
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
        Ok(module) => eprintln!(
            "deployed version {} in {} ms",
            &module.hash[..12],
            started.elapsed().as_millis()
        ),
        Err(e) => eprintln!("error: deploying: {e}; still serving the previous version"),
    }
}

/// Rust sources and the manifest; not editor swap files or cargo's output.
fn is_source(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !path.components().any(|c| c.as_os_str() == "target")
        && (name.ends_with(".rs") || name == "Cargo.toml")
}
