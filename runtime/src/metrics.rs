//! Figures the dashboard's Health page shows, kept as they happen: counts per second over the
//! last minute, and each function's calls, errors and recent latencies. Plain data: the
//! caller gives the time, so the rules are tested with a clock the test controls.

use ferrovex_model::limits::MAX_MEASURED_FUNCTIONS;
use std::collections::{BTreeMap, VecDeque};

/// Whole seconds a [`PerSecond`] keeps.
pub const SECONDS_KEPT: usize = 60;

/// Executions per function whose durations the percentiles are taken over.
pub const LATENCY_WINDOW: usize = 1024;

/// Counts per whole second (Unix time), for the last [`SECONDS_KEPT`] seconds.
#[derive(Clone, Debug, Default)]
pub struct PerSecond {
    /// `(second, count)`, oldest first, seconds strictly increasing.
    seconds: VecDeque<(u64, u64)>,
}

impl PerSecond {
    pub fn add(&mut self, now_s: u64, count: u64) {
        match self.seconds.back_mut() {
            Some((second, total)) if *second == now_s => *total += count,
            // A clock that stepped back counts into the newest second it has.
            Some((second, total)) if *second > now_s => *total += count,
            _ => self.seconds.push_back((now_s, count)),
        }
        while self
            .seconds
            .front()
            .is_some_and(|(second, _)| second + SECONDS_KEPT as u64 <= now_s)
        {
            self.seconds.pop_front();
        }
    }

    /// The counts of the [`SECONDS_KEPT`] whole seconds before `now_s`, oldest first (the
    /// current second is still filling, so it is left out).
    pub fn last_minute(&self, now_s: u64) -> Vec<u64> {
        (0..SECONDS_KEPT as u64)
            .map(|back| {
                // Seconds before the epoch (a clock that says so) counted nothing.
                let Some(s) = now_s.checked_sub(SECONDS_KEPT as u64 - back) else {
                    return 0;
                };
                self.seconds
                    .iter()
                    .find(|(second, _)| *second == s)
                    .map_or(0, |(_, count)| *count)
            })
            .collect()
    }
}

/// One function's figures since the server started.
#[derive(Clone, Debug)]
pub struct FunctionStats {
    pub kind: &'static str,
    pub calls: u64,
    pub errors: u64,
    /// The last [`LATENCY_WINDOW`] durations, in microseconds, oldest first.
    recent_us: VecDeque<u64>,
    pub per_second: PerSecond,
}

impl FunctionStats {
    fn new(kind: &'static str) -> FunctionStats {
        FunctionStats {
            kind,
            calls: 0,
            errors: 0,
            // Grows as calls come: a function called once holds one duration, not a window.
            recent_us: VecDeque::new(),
            per_second: PerSecond::default(),
        }
    }

    /// A copy of the recent durations in microseconds, oldest first: copied out so that the
    /// caller sorts them outside the lock every execution takes.
    pub fn durations_us(&self) -> Vec<u64> {
        self.recent_us.iter().copied().collect()
    }
}

/// The `p`-th percentile (0 to 100) of durations sorted ascending, in milliseconds, by the
/// nearest-rank rule; 0 with none.
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

/// Every function's [`FunctionStats`], by path.
#[derive(Debug, Default)]
pub struct FunctionMetrics {
    functions: BTreeMap<String, FunctionStats>,
}

/// Where calls of paths beyond `MAX_MEASURED_FUNCTIONS` are counted.
pub const OTHER_FUNCTIONS: &str = "(other paths)";

impl FunctionMetrics {
    pub fn record(&mut self, now_s: u64, path: &str, kind: &'static str, us: u64, failed: bool) {
        let path = if self.functions.contains_key(path)
            || self.functions.len() < MAX_MEASURED_FUNCTIONS - 1
        {
            path
        } else {
            OTHER_FUNCTIONS
        };
        let stats = match self.functions.get_mut(path) {
            Some(stats) => stats,
            None => self
                .functions
                .entry(path.to_owned())
                .or_insert_with(|| FunctionStats::new(kind)),
        };
        stats.kind = kind;
        stats.calls += 1;
        stats.errors += u64::from(failed);
        if stats.recent_us.len() == LATENCY_WINDOW {
            stats.recent_us.pop_front();
        }
        stats.recent_us.push_back(us);
        stats.per_second.add(now_s, 1);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &FunctionStats)> {
        self.functions.iter()
    }
}

/// Milliseconds since the Unix epoch, now (0 on a clock set before it).
pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Seconds since the Unix epoch, now.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_second_keeps_a_minute_of_whole_seconds() {
        let mut counts = PerSecond::default();
        counts.add(1000, 2);
        counts.add(1000, 3);
        counts.add(1002, 7);
        let minute = counts.last_minute(1003);
        assert_eq!(minute.len(), SECONDS_KEPT);
        assert_eq!(&minute[SECONDS_KEPT - 3..], &[5, 0, 7]);
        // The current second is not shown until it has ended.
        counts.add(1003, 1);
        assert_eq!(counts.last_minute(1003)[SECONDS_KEPT - 1], 7);
        // A minute later the old seconds are gone, from the figures and from memory.
        counts.add(1062, 4);
        assert_eq!(counts.seconds.len(), 2, "{:?}", counts.seconds);
        let minute = counts.last_minute(1063);
        assert_eq!(minute.iter().sum::<u64>(), 4 + 1, "{minute:?}");
        // A clock that steps back never loses a count.
        counts.add(1050, 1);
        assert_eq!(counts.last_minute(1063)[SECONDS_KEPT - 1], 5);
    }

    #[test]
    fn percentiles_are_over_the_last_window_by_nearest_rank() {
        let mut metrics = FunctionMetrics::default();
        for us in 1..=100 {
            metrics.record(10, "m:f", "query", us * 1000, us % 10 == 0);
        }
        let (_, stats) = metrics.iter().next().unwrap();
        assert_eq!((stats.calls, stats.errors), (100, 10));
        let mut sorted = stats.durations_us();
        sorted.sort_unstable();
        assert_eq!(percentile_ms(&sorted, 50.0), 50.0);
        assert_eq!(percentile_ms(&sorted, 99.0), 99.0);
        assert_eq!(percentile_ms(&sorted, 100.0), 100.0);
        // Older durations leave the window: after LATENCY_WINDOW fast calls, all is fast.
        for _ in 0..LATENCY_WINDOW {
            metrics.record(11, "m:f", "query", 10, false);
        }
        let (_, stats) = metrics.iter().next().unwrap();
        assert_eq!(percentile_ms(&stats.durations_us(), 99.0), 0.01);
        assert_eq!(stats.calls, 100 + LATENCY_WINDOW as u64);
        assert_eq!(
            stats.per_second.last_minute(12)[SECONDS_KEPT - 2..],
            [100, 1024]
        );
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }

    #[test]
    fn made_up_paths_share_one_entry_beyond_the_limit() {
        let mut metrics = FunctionMetrics::default();
        for i in 0..MAX_MEASURED_FUNCTIONS * 3 {
            metrics.record(1, &format!("m:f{i}"), "query", 5, true);
        }
        assert_eq!(metrics.functions.len(), MAX_MEASURED_FUNCTIONS);
        let other = &metrics.functions[OTHER_FUNCTIONS];
        assert_eq!(other.calls, (MAX_MEASURED_FUNCTIONS * 2 + 1) as u64);
        // A path measured before the limit was reached keeps its own entry.
        metrics.record(2, "m:f0", "query", 5, false);
        assert_eq!(metrics.functions["m:f0"].calls, 2);
    }
}
