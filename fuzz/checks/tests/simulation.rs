//! A short run of the deterministic simulation of the sync engine (`ferrovex_fuzz_checks::sim`): every
//! guarantee of docs/PROTOCOL.md section 3 over the whole history of each seed. The long run is
//! `cargo run --release -p ferrovex-fuzz-checks --example simulate -- FIRST_SEED COUNT`.

use ferrovex_fuzz_checks::sim::{run_seed, SimConfig};

#[test]
fn simulation_seeds_keep_every_guarantee() {
    let mut totals = (0, 0, 0, 0);
    for seed in 0..60 {
        let stats =
            run_seed(seed, SimConfig::default()).unwrap_or_else(|violation| panic!("{violation}"));
        totals.0 += stats.transitions;
        totals.1 += stats.commits;
        totals.2 += stats.restarts;
        totals.3 += stats.fatal_errors;
    }
    // The seeds exercise what the checks are about: transitions, commits, restarts and bad
    // frames all happen.
    let (transitions, commits, restarts, fatal_errors) = totals;
    assert!(transitions > 300, "{transitions} transitions");
    assert!(commits > 300, "{commits} commits");
    assert!(restarts > 5, "{restarts} restarts");
    assert!(fatal_errors > 5, "{fatal_errors} fatal errors");
}

#[test]
fn a_seed_replays_exactly() {
    let first = run_seed(7, SimConfig::default()).expect("seed 7 keeps the guarantees");
    let second = run_seed(7, SimConfig::default()).expect("seed 7 keeps the guarantees");
    assert_eq!(first.digest, second.digest, "two runs of seed 7 differ");
    assert!(first.commits > 0 && first.transitions > 0, "{first:?}");
    let other = run_seed(8, SimConfig::default()).expect("seed 8 keeps the guarantees");
    assert_ne!(
        first.digest, other.digest,
        "the digest does not tell seeds apart"
    );
}
