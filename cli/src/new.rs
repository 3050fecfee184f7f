//! `runtime new NAME`: a new app crate from the template in `cli/template/`, ready to serve.
//! Everything is compiled into the command, and the app depends on the SDK by version, so it
//! builds wherever it is moved, with nothing from this repository.

use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct NewArgs {
    /// The folder to create; its last part names the crate.
    pub name: PathBuf,
}

/// The template's files: (path in the new app, contents with `{{name}}` and `{{ferrovex_sdk}}`,
/// the SDK requirement). `Cargo.lock` is made from the examples' lock by [`app_lock`].
const TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../template/Cargo.toml.tmpl")),
    (".gitignore", include_str!("../template/gitignore.tmpl")),
    ("README.md", include_str!("../template/README.md.tmpl")),
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
    let ferrovex_sdk = ferrovex_model::abi::sdk_requirement();
    for (path, contents) in TEMPLATE {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let mut contents = if *path == "Cargo.lock" {
            app_lock(contents)
        } else {
            contents
                .replace("{{name}}", &name)
                .replace("{{ferrovex_sdk}}", &ferrovex_sdk)
        };
        if *path == "Cargo.toml" {
            contents.push_str(&checkout_patch()?);
        }
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

/// Where `./scripts/runtime` says a checkout's SDK is (its `guest-sdk` folder): apps made
/// with it build against that checkout rather than the published crates, for working on the
/// SDK itself and for the tutorial before the crates are on crates.io. Unset for an installed
/// `runtime`, whose apps name nothing but the SDK's version.
pub const SDK_PATH_VARIABLE: &str = "FERROVEX_SDK_PATH";

/// The `[patch.crates-io]` section that points the app at the checkout [`SDK_PATH_VARIABLE`]
/// names, or nothing when it is unset.
fn checkout_patch() -> Result<String, String> {
    let Some(sdk) = std::env::var_os(SDK_PATH_VARIABLE) else {
        return Ok(String::new());
    };
    let sdk = PathBuf::from(sdk);
    let model = sdk.parent().map(|repo| repo.join("model"));
    let crates = [
        ("ferrovex-sdk", Some(sdk.clone())),
        ("ferrovex-sdk-macros", Some(sdk.join("macros"))),
        ("ferrovex-model", model),
    ];
    let mut section = format!(
        "\n# This checkout's SDK instead of the published crates ({SDK_PATH_VARIABLE}, set by\n# ./scripts/runtime): remove this section to build against crates.io.\n[patch.crates-io]\n"
    );
    for (name, path) in crates {
        let path = path
            .filter(|p| p.join("Cargo.toml").is_file())
            .ok_or_else(|| {
                format!(
                    "{SDK_PATH_VARIABLE}={} is not a checkout's guest-sdk folder (no {name} beside it); unset it to depend on the published SDK",
                    sdk.display()
                )
            })?;
        section.push_str(&format!(
            "{name} = {{ path = {:?} }}\n",
            path.display().to_string()
        ));
    }
    Ok(section)
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

/// The app's lock file: the examples' registry packages, so a new app builds with the
/// versions the examples are tested with (cargo drops what the app does not use). The
/// examples' own crates and the SDK's are path packages there, so they are left out: cargo
/// adds the SDK's from the registry, with their checksums, on the first build.
fn app_lock(examples_lock: &str) -> String {
    let mut blocks = examples_lock.split("\n[[package]]\n");
    let mut lock = blocks.next().unwrap_or_default().to_owned();
    for block in blocks.filter(|b| b.lines().any(|l| l.starts_with("source = "))) {
        lock.push_str("\n[[package]]\n");
        lock.push_str(block);
    }
    if !lock.ends_with('\n') {
        lock.push('\n');
    }
    lock
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_lock_keeps_registry_packages_only() {
        let examples = "# header\nversion = 4\n\n[[package]]\nname = \"chat\"\nversion = \"0.1.0\"\ndependencies = [\n \"ferrovex-sdk\",\n]\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.228\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"ab\"\n\n[[package]]\nname = \"ferrovex-sdk\"\nversion = \"0.1.0\"\n";
        assert_eq!(
            app_lock(examples),
            "# header\nversion = 4\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.228\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"ab\"\n"
        );
        let real = app_lock(include_str!("../../examples/Cargo.lock"));
        assert!(real.contains("name = \"serde\""), "{real}");
        for path_package in [
            "chat",
            "ferrovex-sdk",
            "ferrovex-model",
            "ferrovex-sdk-macros",
        ] {
            assert!(
                !real.contains(&format!("name = \"{path_package}\"\n")),
                "{path_package} is left out:\n{real}"
            );
        }
    }
}
