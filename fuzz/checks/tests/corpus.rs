//! Every file of every seed corpus (`fuzz/corpus/TARGET/`) and of the regression inputs
//! (`fuzz/regressions/TARGET/`) through its target's check, on stable: what the fuzz targets
//! found once stays fixed, and the seeds stay valid input.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/checks has a parent")
        .to_owned()
}

/// Runs `check` on every file of the target's corpus and regressions; returns how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut files = Vec::new();
    for folder in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(folder).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            files.push(entry.expect("a directory entry").path());
        }
    }
    files.sort();
    for file in &files {
        let data = std::fs::read(file).expect("reading a corpus file");
        eprintln!("{target}: {}", file.display());
        check(&data);
    }
    files.len()
}

#[test]
fn values_corpus() {
    assert!(
        replay("values", ferrovex_fuzz_checks::values) >= 5,
        "the values seed corpus is missing"
    );
}

#[test]
fn transactions_corpus() {
    assert!(
        replay("transactions", ferrovex_fuzz_checks::transactions) >= 5,
        "the transactions seed corpus is missing"
    );
}

#[test]
fn protocol_corpus() {
    assert!(
        replay("protocol", ferrovex_fuzz_checks::protocol) >= 5,
        "the protocol seed corpus is missing"
    );
}

#[test]
fn abi_corpus() {
    assert!(
        replay("abi", ferrovex_fuzz_checks::abi) >= 5,
        "the abi seed corpus is missing"
    );
}

#[test]
fn modules_corpus() {
    assert!(
        replay("modules", ferrovex_fuzz_checks::modules) >= 5,
        "the modules seed corpus is missing"
    );
}
