//! Building an app crate to wasm: `cargo build --target wasm32-unknown-unknown --release`,
//! with cargo's own output shown, then finding the `.wasm` cargo produced.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Initial linear memory of built modules: the 1 MiB stack (rustc's default for wasm32, first
/// in memory so an overflow traps), data, and about 1 MiB of heap.
///
/// Every call pays for this size: when an instance's slot is reset, the kernel walks the page
/// table entries of the whole memory to find the pages the call dirtied (`PAGEMAP_SCAN`), so
/// the walk grows with the memory, not with what the call used. 2 MiB is one page-table page;
/// 4 MiB cost the empty query about 0.5 µs more on an idle machine and several µs on a busy
/// one. A call that needs more heap grows memory as usual, up to `HostConfig::memory_limit`.
pub const INITIAL_MEMORY_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug)]
pub enum BuildError {
    /// cargo could not be started.
    Spawn(std::io::Error),
    /// cargo failed; its diagnostics were printed on stderr.
    Failed { app_dir: PathBuf },
    /// cargo succeeded but produced no `.wasm` (is the crate a `cdylib`?).
    NoArtifact { app_dir: PathBuf },
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Spawn(e) => write!(f, "could not run cargo: {e}"),
            BuildError::Failed { app_dir } => write!(f, "building {} failed (see cargo's output above)", app_dir.display()),
            BuildError::NoArtifact { app_dir } => write!(
                f,
                "building {} produced no .wasm: the app crate needs `[lib] crate-type = [\"cdylib\"]`",
                app_dir.display()
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// Builds the app crate in `app_dir` (its `Cargo.toml`) into `target_dir` and returns the
/// path of its `.wasm`. Cargo's progress and diagnostics go to this process's stderr.
pub fn build_app(app_dir: &Path, target_dir: &Path) -> Result<PathBuf, BuildError> {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-unknown-unknown", "--message-format=json-render-diagnostics"])
        // Initial memory with room for the heap: ferrovex-sdk's allocator uses it before growing
        // memory, and growing costs every call two page-protection changes in the host.
        .args(["--config", &format!(r#"target.wasm32-unknown-unknown.rustflags=["-C", "link-arg=--initial-memory={INITIAL_MEMORY_BYTES}"]"#)])
        .arg("--manifest-path")
        .arg(app_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(BuildError::Spawn)?;
    if !output.status.success() {
        return Err(BuildError::Failed {
            app_dir: app_dir.to_owned(),
        });
    }
    let manifest = std::fs::canonicalize(app_dir.join("Cargo.toml"))
        .unwrap_or_else(|_| app_dir.join("Cargo.toml"));
    let mut artifact = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let same_crate =
            message["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path());
        if let (true, Some(files)) = (same_crate, message["filenames"].as_array()) {
            artifact = files
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from);
        }
    }
    artifact.ok_or_else(|| BuildError::NoArtifact {
        app_dir: app_dir.to_owned(),
    })
}
