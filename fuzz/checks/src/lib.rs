//! The checks behind the fuzz targets of `fuzz/` and the deterministic simulation of the sync
//! engine. Each target is a plain function of bytes, so the same code runs under libFuzzer
//! (`cargo +nightly fuzz run TARGET`) and, over the seed corpora in `fuzz/corpus/TARGET/`,
//! under `cargo test` on stable.

mod abi;
mod gen;
mod modules;
mod protocol;
pub mod server;
pub mod sim;
mod transactions;
mod values;

pub use abi::abi;
pub use modules::modules;
pub use protocol::protocol;
pub use transactions::transactions;
pub use values::values;

/// A fresh folder for a store: in memory where the system has one (`/dev/shm`), since the
/// checks commit often and each commit is a synced write.
///
/// Folders are named after the process, and the first call removes those of processes that
/// are gone: the fixtures that live in `static`s are never dropped, and libFuzzer exits
/// without running destructors, so every run would otherwise leave a store behind (about
/// 75 MB of memory each under `/dev/shm`).
pub fn scratch_dir() -> tempfile::TempDir {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    let shm = std::path::Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    SWEEP.call_once(|| remove_abandoned(&parent));
    tempfile::Builder::new()
        .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
        .tempdir_in(&parent)
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir")
}

const SCRATCH_PREFIX: &str = "fuzz-checks-";

/// Removes the scratch folders in `parent` whose process no longer runs.
fn remove_abandoned(parent: &std::path::Path) {
    // Without /proc (not Linux) a live process cannot be told from a gone one.
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(SCRATCH_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
