//! Replays inputs through a target's check on stable: `replay TARGET FILE_OR_DIR...`, e.g. a
//! crash from `fuzz/artifacts/TARGET/` or a whole corpus. Set `FUZZ_CHECKS_VERBOSE=1` to see
//! what the `abi` and `modules` targets did with each input.

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("replay TARGET FILE_OR_DIR...");
    let check: fn(&[u8]) = match target.as_str() {
        "values" => ferrovex_fuzz_checks::values,
        "protocol" => ferrovex_fuzz_checks::protocol,
        "transactions" => ferrovex_fuzz_checks::transactions,
        "abi" => ferrovex_fuzz_checks::abi,
        "modules" => ferrovex_fuzz_checks::modules,
        other => panic!("unknown target {other}"),
    };
    let mut files = Vec::new();
    for arg in args {
        let path = std::path::PathBuf::from(arg);
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("reading the folder") {
                files.push(entry.expect("an entry").path());
            }
        } else {
            files.push(path);
        }
    }
    files.sort();
    for file in &files {
        check(&std::fs::read(file).expect("reading an input"));
    }
    println!("{target}: {} inputs replayed, all checks held", files.len());
}
