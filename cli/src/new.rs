//! `runtime new NAME`: a new app crate from the template in `cli/template/`, ready to serve.

use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct NewArgs {
    /// The folder to create; its last part names the crate.
    pub name: PathBuf,
}

/// The template's files: (path in the new app, contents with `{{name}}` and `{{ferrovex_sdk}}`).
const TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../template/Cargo.toml.tmpl")),
    (".gitignore", include_str!("../template/gitignore.tmpl")),
    // The examples' dependency versions (cargo drops what the app does not use), so a new
    // app builds with tested versions and without a registry lookup.
    ("Cargo.lock", include_str!("../../examples/Cargo.lock")),
    ("src/lib.rs", include_str!("../template/src/lib.rs")),
    (
        "src/messages.rs",
        include_str!("../template/src/messages.rs"),
    ),
    ("web/index.html", include_str!("../template/web/index.html")),
];

pub fn run(args: NewArgs) -> Result<(), String> {
    let dir = &args.name;
    let name = crate_name(dir)?;
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(true)
    {
        return Err(format!(
            "{} already exists and is not empty; choose a new name, or remove it first",
            dir.display()
        ));
    }
    let ferrovex_sdk = guest_sdk_path();
    for (path, contents) in TEMPLATE {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let contents = contents
            .replace("{{name}}", &name)
            .replace("{{ferrovex_sdk}}", &ferrovex_sdk.display().to_string());
        std::fs::write(&target, contents)
            .map_err(|e| format!("writing {}: {e}", target.display()))?;
    }
    println!(
        "created the app {name} in {}\n\nnext:\n  runtime dev {}     serve it on http://127.0.0.1:3210, rebuilding on every save\n\nits functions are in {}",
        dir.display(),
        dir.display(),
        dir.join("src/messages.rs").display()
    );
    Ok(())
}

/// A crate name from the folder's last part: lower case, `-` for anything else.
fn crate_name(dir: &Path) -> Result<String, String> {
    let last = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} does not end in a folder name", dir.display()))?;
    let name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!(
            "the app's name must start with a letter (it names a Rust crate), got {last:?}"
        ));
    }
    Ok(name)
}

/// The guest SDK of the checkout this command was built from.
fn guest_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .join("guest-sdk")
}
