//! The wasm host against real guest modules: the example apps, a hostile guest compiled
//! from Rust (`tests/guests/hostile`), and WAT modules for what Rust cannot express.
//!
//! Guests are built once per test run with cargo into `$CARGO_TARGET_DIR/guests`.

#![allow(clippy::result_large_err)]

mod abi_mismatch;
mod determinism;
mod examples;
mod hostile;
mod subscriptions;

use model::Value;
use runtime::store::Store;
use runtime::wasm::{build_app, CallOptions, DeployedModule, HostConfig, WasmHost};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tempfile::TempDir;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ has a parent")
        .to_owned()
}

fn guest_target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    base.join("guests")
}

/// The wasm bytes of a guest crate, built once per test process.
pub fn guest_wasm(relative_dir: &str) -> Vec<u8> {
    static BUILT: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    built
        .entry(relative_dir.to_owned())
        .or_insert_with(|| {
            let path = build_app(&repo_root().join(relative_dir), &guest_target_dir())
                .unwrap_or_else(|e| panic!("building {relative_dir}: {e}"));
            std::fs::read(&path).expect("reading the built module")
        })
        .clone()
}

/// A host with short limits so hostile cases end quickly, and a small pool so a leaked slot
/// would soon make instantiation fail.
pub fn test_host(max_instances: u32) -> WasmHost {
    WasmHost::new(HostConfig {
        timeout: Duration::from_millis(300),
        max_instances,
        cache_dir: Some(guest_target_dir().join("compiled")),
        ..HostConfig::default()
    })
    .expect("creating the wasm host")
}

pub struct App {
    pub store: Arc<Store>,
    pub host: WasmHost,
    pub module: DeployedModule,
    _dir: TempDir,
}

impl App {
    pub fn new(guest_dir: &str) -> App {
        Self::with_host(guest_dir, test_host(8))
    }

    pub fn with_host(guest_dir: &str, host: WasmHost) -> App {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open(&dir.path().join("data")).expect("open store"));
        let module = host
            .deploy(&store, &guest_wasm(guest_dir))
            .unwrap_or_else(|e| panic!("deploying {guest_dir}: {e}"));
        App {
            store,
            host,
            module,
            _dir: dir,
        }
    }

    pub fn query(
        &self,
        path: &str,
        args: Value,
    ) -> Result<runtime::wasm::QueryOutcome, runtime::wasm::CallFailure> {
        self.host.run_query(
            &self.store,
            &self.module,
            path,
            &args,
            CallOptions::default(),
        )
    }

    pub fn mutation(
        &self,
        path: &str,
        args: Value,
    ) -> Result<runtime::wasm::MutationOutcome, runtime::wasm::CallFailure> {
        self.host.run_mutation(
            &self.store,
            &self.module,
            path,
            &args,
            CallOptions::default(),
        )
    }
}

/// Arguments from wire JSON.
pub fn args(json: &str) -> Value {
    model::json::from_json_str(json).expect("test arguments are valid JSON")
}
