//! The long run of the sync simulation: `simulate FIRST_SEED COUNT [STEPS]`. Prints each
//! failing seed with the guarantee it broke and its last events, and a summary; exits 1 if
//! any seed failed. A failing seed replays exactly: `simulate SEED 1`.

use ferrovex_fuzz_checks::sim::{run_seed, SimConfig};
use std::time::Instant;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: FIRST_SEED COUNT [STEPS]"))
        .collect();
    let first = args.first().copied().unwrap_or(0);
    let count = args.get(1).copied().unwrap_or(1000);
    let mut config = SimConfig::default();
    if let Some(steps) = args.get(2) {
        config.steps = *steps as usize;
    }
    let started = Instant::now();
    let (mut failed, mut transitions, mut commits, mut restarts) = (0u64, 0, 0, 0);
    for seed in first..first + count {
        match run_seed(seed, config) {
            Ok(stats) => {
                transitions += stats.transitions;
                commits += stats.commits;
                restarts += stats.restarts;
            }
            Err(violation) => {
                failed += 1;
                println!("FAILED {violation}\n");
            }
        }
        let done = seed - first + 1;
        if done % 500 == 0 {
            println!("{done} seeds, {failed} failed, {:.0?}", started.elapsed());
        }
    }
    println!(
        "seeds {first}..{}: {failed} failed; {transitions} transitions, {commits} commits, {restarts} restarts checked in {:.1?}",
        first + count,
        started.elapsed()
    );
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
