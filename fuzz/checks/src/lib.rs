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

pub use abi::{abi, guest_wat as abi_guest_wat};
pub use modules::modules;
pub use protocol::protocol;
pub use transactions::transactions;
pub use values::values;

/// A fresh folder for a store: in memory where the system has one (`/dev/shm`), since the
/// checks commit often and each commit is a synced write.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("fuzz-checks")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().expect("temp dir")
}
