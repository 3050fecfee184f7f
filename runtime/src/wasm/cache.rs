//! Compiled modules cached on disk, keyed by the module's SHA-256 and the engine's
//! compatibility hash. Only artifacts this runtime wrote are ever loaded: they live in its
//! own directory, are written to a temporary name and renamed into place once complete.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// The module's SHA-256, in hex: also its version identity.
pub fn module_hash(wasm: &[u8]) -> String {
    Sha256::digest(wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn engine_hash(engine: &Engine) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

fn artifact_path(dir: &Path, engine: &Engine, hash: &str) -> PathBuf {
    dir.join(format!("{hash}-{:016x}.cwasm", engine_hash(engine)))
}

/// Loads the module from the cache, or compiles it and stores the artifact.
pub fn load_or_compile(
    engine: &Engine,
    dir: Option<&Path>,
    wasm: &[u8],
    hash: &str,
) -> Result<Module, String> {
    let Some(dir) = dir else {
        return Module::new(engine, wasm).map_err(|e| format!("{e:#}"));
    };
    let path = artifact_path(dir, engine, hash);
    if path.exists() {
        // SAFETY: wasmtime requires that deserialized artifacts be trusted. This file is in the
        // runtime's own cache directory, named by the module's hash and the engine's
        // compatibility hash, and was written (then atomically renamed) by `store` below from
        // `Module::serialize`; wasmtime additionally checks its header against this engine.
        match unsafe { Module::deserialize_file(engine, &path) } {
            Ok(module) => return Ok(module),
            Err(e) => tracing::warn!("ignoring unusable cached module {}: {e:#}", path.display()),
        }
    }
    let module = Module::new(engine, wasm).map_err(|e| format!("{e:#}"))?;
    if let Err(e) = store(&module, dir, &path) {
        tracing::warn!("could not cache compiled module at {}: {e}", path.display());
    }
    Ok(module)
}

fn store(module: &Module, dir: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = module
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}
