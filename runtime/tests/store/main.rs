//! Store tests: one binary, one module per concern.

mod bad_input;
mod basics;
mod concurrency;
mod import;
mod model_check;

use ferrovex_runtime::store::Store;
use tempfile::TempDir;

/// A store in a fresh temporary folder; the folder lives as long as the returned guard.
pub fn temp_store() -> (Store, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("data")).expect("open store");
    (store, dir)
}
