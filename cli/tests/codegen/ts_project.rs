//! A TypeScript project around a generated `api`, checked with the pinned `tsc` of
//! `tests/js/`. Shared by the unit tests of `cli/src/codegen.rs` and the tests of
//! `cli/tests/cli/codegen.rs` (each includes this file with `#[path]`).
//!
//! Fixtures are the `.ts` files beside this one. A correct one must compile under `strict`
//! without a diagnostic; in a `*_errors.ts` one, each line that ends with `// error` must be
//! rejected, and no other line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's root (the parent of `cli/`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_owned()
}

/// This folder: the fixtures and their `tsconfig.json`.
pub fn fixtures() -> PathBuf {
    repo_root().join("cli/tests/codegen")
}

/// `tests/js/node_modules`, installed from its lock file once per test process if missing.
pub fn node_modules() -> &'static Path {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let js = repo_root().join("tests/js");
        let modules = js.join("node_modules");
        if !modules.join(".bin/tsc").exists() || !modules.join("convex/package.json").exists() {
            assert!(
                js.join("package-lock.json").is_file(),
                "{} has no package-lock.json: the TypeScript checks need its pinned convex and typescript",
                js.display()
            );
            let status = Command::new("npm")
                .arg("ci")
                .current_dir(&js)
                .status()
                .unwrap_or_else(|e| {
                    panic!(
                        "running `npm ci` in {} failed: {e}; install Node.js and npm (scripts/setup), or run `npm ci` there",
                        js.display()
                    )
                });
            assert!(
                status.success(),
                "`npm ci` in {} exited with {status}",
                js.display()
            );
        }
        modules
    })
}

/// A folder laid out like an app's web project, so that `./_generated/api` and `convex/...`
/// resolve as they would there: `_generated/`, the fixtures, and `node_modules` linked to
/// tests/js's.
pub struct TsProject {
    pub dir: tempfile::TempDir,
}

impl TsProject {
    pub fn new() -> TsProject {
        let dir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink(node_modules(), dir.path().join("node_modules"))
            .expect("linking node_modules");
        std::fs::copy(
            fixtures().join("tsconfig.json"),
            dir.path().join("tsconfig.base.json"),
        )
        .expect("copying tsconfig.json");
        TsProject { dir }
    }

    /// Where the generated files go.
    pub fn generated_dir(&self) -> PathBuf {
        self.dir.path().join("_generated")
    }

    pub fn generated(&self, name: &str) -> String {
        std::fs::read_to_string(self.generated_dir().join(name))
            .unwrap_or_else(|e| panic!("reading the generated {name}: {e}"))
    }

    /// `tsc` on one fixture with the generated api: whether it succeeded, and its output.
    fn tsc(&self, fixture: &str) -> (bool, String) {
        std::fs::copy(fixtures().join(fixture), self.dir.path().join(fixture))
            .unwrap_or_else(|e| panic!("copying the fixture {fixture}: {e}"));
        let config = self.dir.path().join(format!("tsconfig.{fixture}.json"));
        let text = format!(r#"{{"extends": "./tsconfig.base.json", "files": ["{fixture}"]}}"#);
        std::fs::write(&config, text).expect("writing a tsconfig");
        let output = Command::new(node_modules().join(".bin/tsc"))
            .arg("-p")
            .arg(&config)
            .args(["--pretty", "false"])
            .current_dir(self.dir.path())
            .output()
            .expect("running tsc");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// The fixture must compile without a single diagnostic.
    pub fn assert_compiles(&self, fixture: &str) {
        let (ok, output) = self.tsc(fixture);
        assert!(
            ok && output.trim().is_empty(),
            "tsc rejected {fixture}, which uses the generated api correctly:\n{output}\n--- api.d.ts:\n{}",
            self.generated("api.d.ts")
        );
    }

    /// tsc must fail, with errors on exactly the lines marked `// error`.
    pub fn assert_rejects_marked_lines(&self, fixture: &str) {
        let source = std::fs::read_to_string(fixtures().join(fixture)).expect("the fixture");
        let marked: BTreeSet<usize> = source
            .lines()
            .enumerate()
            .filter(|(_, line)| line.trim_end().ends_with("// error"))
            .map(|(i, _)| i + 1)
            .collect();
        assert!(!marked.is_empty(), "{fixture} marks no line");
        let (ok, output) = self.tsc(fixture);
        assert!(!ok, "tsc accepted {fixture}:\n{output}");
        // `--pretty false` prints `FILE(LINE,COL): error TSnnnn: message`.
        let prefix = format!("{fixture}(");
        let mut rejected = BTreeSet::new();
        for line in output.lines().filter(|l| l.contains(": error TS")) {
            let at = line
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("a tsc error outside {fixture}: {line}\n{output}"));
            rejected.insert(at);
        }
        assert_eq!(
            rejected,
            marked,
            "tsc's errors are on other lines than those marked `// error` in {fixture}:\n{output}\n--- api.d.ts:\n{}",
            self.generated("api.d.ts")
        );
    }

    /// `node ARGS` in the project, as an ES module project (`api.js` is one): its stdout,
    /// trimmed.
    pub fn node(&self, args: &[&str]) -> String {
        node_in(self.dir.path(), args)
    }
}

/// `node ARGS` in `dir`, made an ES module project first; its stdout, trimmed.
pub fn node_in(dir: &Path, args: &[&str]) -> String {
    std::fs::write(dir.join("package.json"), r#"{"type": "module"}"#).expect("package.json");
    let output = Command::new("node")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running node failed: {e}; install Node.js (scripts/setup)"));
    assert!(
        output.status.success(),
        "node {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
