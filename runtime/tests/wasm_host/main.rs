//! The wasm host against real guest modules: the example apps, a hostile guest compiled
//! from Rust (`tests/guests/hostile`), and WAT modules for what Rust cannot express.
//!
//! Guests are built once per test run with cargo into `$CARGO_TARGET_DIR/guests`.

#![allow(clippy::result_large_err)]

mod abi_mismatch;
mod determinism;
mod examples;
#[path = "../common/guests.rs"]
mod guests;
mod hostile;
#[path = "../common/pg_cluster.rs"]
mod pg_cluster;
mod subscriptions;

use ferrovex_model::Value;
use ferrovex_runtime::store::Store;
use ferrovex_runtime::wasm::{CallOptions, DeployedModule, HostConfig, WasmHost};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

pub use guests::{guest_target_dir, guest_wasm, repo_root};

/// A host with short limits so hostile cases end quickly, and a small pool so a leaked slot
/// would soon make instantiation fail.
pub fn test_host(max_instances: u32) -> WasmHost {
    WasmHost::new(HostConfig {
        max_instances,
        ..test_config()
    })
    .expect("creating the wasm host")
}

/// The configuration of `test_host`, for tests that change more of it.
pub fn test_config() -> HostConfig {
    HostConfig {
        timeout: Duration::from_millis(300),
        max_instances: 8,
        cache_dir: Some(guest_target_dir().join("compiled")),
        ..HostConfig::default()
    }
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
    ) -> Result<ferrovex_runtime::wasm::QueryOutcome, ferrovex_runtime::wasm::CallFailure> {
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
    ) -> Result<ferrovex_runtime::wasm::MutationOutcome, ferrovex_runtime::wasm::CallFailure> {
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
    ferrovex_model::json::from_json_str(json).expect("test arguments are valid JSON")
}
