//! Guest modules for tests: built with cargo, once per test process, into
//! `$CARGO_TARGET_DIR/guests` (a target folder of their own, so the nested cargo never waits
//! on the lock of the build running the tests). Shared by the test binaries through
//! `#[path = "../common/guests.rs"] mod guests;`.

use ferrovex_runtime::wasm::build_app;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ has a parent")
        .to_owned()
}

pub fn guest_target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    base.join("guests")
}

/// The wasm bytes of the guest crate at `relative_dir` (from the repository root).
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
