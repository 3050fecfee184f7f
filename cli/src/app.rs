//! An app folder: its crate, where its data and build output go, and building it.

use ferrovex_runtime::auth::AdminKeyFile;
use ferrovex_runtime::cluster::Membership;
use ferrovex_runtime::store::Store;
use ferrovex_runtime::wasm::{build_app, HostConfig, WasmHost};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An app crate on disk, checked to exist.
pub struct AppDir {
    pub dir: PathBuf,
}

impl AppDir {
    pub fn open(dir: &Path) -> Result<AppDir, String> {
        if !dir.is_dir() {
            return Err(format!(
                "no app folder at {}: the folder does not exist. Pass the folder of an app crate (e.g. `runtime serve examples/chat`), or create one with `runtime new NAME`",
                dir.display()
            ));
        }
        if !dir.join("Cargo.toml").is_file() {
            return Err(format!(
                "{} is not an app: it has no Cargo.toml. An app is a Rust crate that depends on ferrovex-sdk (see README.md)",
                dir.display()
            ));
        }
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("reading {}: {e}", dir.display()))?;
        Ok(AppDir { dir })
    }

    /// Where the data lives unless `--data` says otherwise.
    pub fn default_data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Cargo's output for the wasm build, and the compiled-module cache.
    pub fn target_dir(&self) -> PathBuf {
        self.dir.join("target")
    }

    /// The app's static web files, if it has a `web/` folder.
    pub fn web_dir(&self) -> Option<PathBuf> {
        Some(self.dir.join("web")).filter(|d| d.is_dir())
    }

    /// Builds the crate to wasm with cargo (its progress and errors go to the terminal; an
    /// unchanged crate is a no-op) and returns the module's bytes.
    pub fn build(&self) -> Result<Vec<u8>, String> {
        let wasm = build_app(&self.dir, &self.target_dir()).map_err(|e| e.to_string())?;
        std::fs::read(&wasm).map_err(|e| format!("reading {}: {e}", wasm.display()))
    }
}

/// The store in `data_dir`, or in the PostgreSQL database at `url` (`--store`).
/// The data folder's admin key, and the key itself when it was made just now.
pub type AdminKey = (AdminKeyFile, Option<String>);

/// Opens the store and the admin key: RocksDB in the data folder (opened first: the key file
/// then goes into a folder the store has claimed), or the PostgreSQL database at `url` as a
/// node of its deployment (leader or follower; the admin key, made first, is how a follower
/// reaches the leader), whose heartbeat starts at once (before a long build), ending the
/// process if the node must stop serving.
pub fn open_store(
    data_dir: &Path,
    url: Option<&str>,
) -> Result<(Arc<Store>, Option<Arc<Membership>>, AdminKey), String> {
    let admin_key = || {
        AdminKeyFile::open_or_create(data_dir)
            .map_err(|e| format!("making the admin key in {}: {e}", data_dir.display()))
    };
    let Some(url) = url else {
        let store = Store::open(data_dir).map_err(|e| {
            format!(
                "opening the data folder {}: {e}. Pass another folder with --data",
                data_dir.display()
            )
        })?;
        return Ok((Arc::new(store), None, admin_key()?));
    };
    // It still keeps the admin key and the environment variables.
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("making the data folder {}: {e}", data_dir.display()))?;
    let key = admin_key()?;
    let shown = ferrovex_runtime::store::postgres::redacted(url);
    let (store, node) = ferrovex_runtime::cluster::open(url, key.0.clone())
        .map_err(|e| format!("opening the store in {shown}: {e}"))?;
    let store = Arc::new(store);
    let role = if store.is_leader() {
        "leader: it commits"
    } else {
        "follower: it forwards commits to the leader"
    };
    eprintln!(
        "store: PostgreSQL at {shown}, as node {} ({role})",
        node.membership().id()
    );
    let membership = node.membership();
    node.start(
        &store,
        Box::new(|reason| {
            eprintln!("error: {reason}");
            tracing::error!("{reason}");
            std::process::exit(EXIT_NODE_STOPPED);
        }),
    );
    Ok((store, Some(membership), key))
}

/// The exit status of a node that stopped because going on would be wrong (it lost the
/// writer lease, or was away from the database too long): a supervisor restarts it.
pub const EXIT_NODE_STOPPED: i32 = 75;

pub fn new_host(app: &AppDir) -> Result<WasmHost, String> {
    WasmHost::new(HostConfig {
        cache_dir: Some(app.target_dir().join("runtime-compiled")),
        ..HostConfig::default()
    })
    .map_err(|e| format!("starting the WebAssembly host: {e}"))
}
