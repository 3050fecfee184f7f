//! Per function, how its recent attempts of one kind ended, and so how its next mutation
//! starts. Two records use it: contention (an optimistic commit that conflicted, see
//! `serial`) and overruns (an attempt run inline on an async worker that ran long, see
//! `Store::run_mutation_async`). In both, a function whose recent attempts mostly went badly
//! skips that kind of attempt, and a few of its mutations still make one, so the record
//! notices when the cause is gone.

use std::sync::atomic::{AtomicU64, Ordering};

/// Records kept per kind: functions are hashed onto this many, so memory stays fixed however
/// many a module has (two functions sharing one record share their outcomes).
pub const OUTCOME_RECORDS: usize = 256;

/// Attempts each record remembers: the bits of one `u64`.
pub const REMEMBERED_ATTEMPTS: u32 = u64::BITS;

pub(crate) struct RecentOutcomes {
    /// Per record, the outcomes of its last `REMEMBERED_ATTEMPTS` attempts, newest in bit 0:
    /// 1 for one that went badly.
    recent: [AtomicU64; OUTCOME_RECORDS],
    /// Mutations that asked, for choosing the probes.
    asked: AtomicU64,
    /// Bad outcomes among the remembered ones from which a function's mutations skip the
    /// attempt.
    threshold: u32,
    /// While they skip it, one in this many still makes it.
    probe_every: u64,
}

impl RecentOutcomes {
    pub fn new(threshold: u32, probe_every: u64) -> Self {
        assert!(
            (1..=REMEMBERED_ATTEMPTS).contains(&threshold),
            "a threshold of {threshold} bad outcomes cannot be met in {REMEMBERED_ATTEMPTS}"
        );
        assert!(probe_every >= 1, "probe_every must be at least 1");
        RecentOutcomes {
            recent: std::array::from_fn(|_| AtomicU64::new(0)),
            asked: AtomicU64::new(0),
            threshold,
            probe_every,
        }
    }

    /// The record of `function` (a function's path).
    pub fn record_of(function: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        function.hash(&mut hasher);
        (hasher.finish() % OUTCOME_RECORDS as u64) as usize
    }

    /// Records how an attempt ended.
    pub fn record(&self, record: usize, bad: bool) {
        let _ = self.recent[record].fetch_update(Ordering::AcqRel, Ordering::Acquire, |outcomes| {
            Some(outcomes << 1 | u64::from(bad))
        });
    }

    /// Whether the next mutation of `record` skips the attempt.
    pub fn skip(&self, record: usize) -> bool {
        let bad = self.recent[record].load(Ordering::Acquire).count_ones() >= self.threshold;
        bad && !self
            .asked
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(self.probe_every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLD: u32 = 16;
    const PROBE_EVERY: u64 = 8;

    /// After attempts ending as given (true: badly), how many of the next `PROBE_EVERY`
    /// mutations skip the attempt.
    fn skips(outcomes: &[bool]) -> u64 {
        let recent = RecentOutcomes::new(THRESHOLD, PROBE_EVERY);
        let record = RecentOutcomes::record_of("bank:transfer");
        for &bad in outcomes {
            recent.record(record, bad);
        }
        (0..PROBE_EVERY).filter(|_| recent.skip(record)).count() as u64
    }

    #[test]
    fn mutations_skip_the_attempt_only_while_recent_ones_went_badly() {
        let threshold = THRESHOLD as usize;
        let cases: Vec<(&str, Vec<bool>, u64)> = vec![
            ("nothing yet", vec![], 0),
            ("nothing bad", vec![false; 200], 0),
            ("one short of the threshold", vec![true; threshold - 1], 0),
            ("at the threshold", vec![true; threshold], PROBE_EVERY - 1),
            ("all bad", vec![true; 64], PROBE_EVERY - 1),
            (
                "bad outcomes older than the last 64 attempts",
                [vec![true; 64], vec![false; 64]].concat(),
                0,
            ),
            (
                "bad outcomes spread among good ones",
                (0..64).map(|i| i % 4 == 0).collect(),
                PROBE_EVERY - 1,
            ),
        ];
        for (case, outcomes, expected) in cases {
            assert_eq!(skips(&outcomes), expected, "{case}");
        }
    }

    /// One function's bad outcomes change only its own mutations.
    #[test]
    fn outcomes_are_recorded_per_function() {
        let recent = RecentOutcomes::new(THRESHOLD, PROBE_EVERY);
        let hot = RecentOutcomes::record_of("bank:transfer");
        let cold = (0..)
            .map(|i| format!("chat:send_{i}"))
            .map(|f| RecentOutcomes::record_of(&f))
            .find(|&r| r != hot)
            .unwrap();
        for _ in 0..64 {
            recent.record(hot, true);
        }
        assert!((0..PROBE_EVERY).any(|_| recent.skip(hot)));
        assert!(!(0..PROBE_EVERY).any(|_| recent.skip(cold)));
    }

    /// The probes keep the record current: once they go well, mutations make the attempt
    /// again.
    #[test]
    fn probes_end_the_skipping_once_the_cause_is_gone() {
        let recent = RecentOutcomes::new(THRESHOLD, PROBE_EVERY);
        let record = RecentOutcomes::record_of("bank:transfer");
        for _ in 0..64 {
            recent.record(record, true);
        }
        let mut attempted = 0;
        for _ in 0..(64 * PROBE_EVERY) {
            if !recent.skip(record) {
                attempted += 1;
                // A probe (or, once the record has cooled, any mutation) goes well.
                recent.record(record, false);
            }
        }
        assert!(!recent.skip(record), "still skipping");
        assert!(attempted >= 64 - u64::from(THRESHOLD));
    }

    #[test]
    fn thresholds_that_cannot_be_met_are_refused() {
        for threshold in [0, REMEMBERED_ATTEMPTS + 1] {
            let made = std::panic::catch_unwind(|| RecentOutcomes::new(threshold, 8));
            assert!(made.is_err(), "threshold {threshold} accepted");
        }
    }
}
