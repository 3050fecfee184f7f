//! Figures the dashboard's Health page shows, kept as they happen: counts per second over the
//! last minute, and each function's calls, errors and recent latencies. Plain data: the
//! caller gives the time, so the rules are tested with a clock the test controls.

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
            recent_us: VecDeque::with_capacity(LATENCY_WINDOW),
            per_second: PerSecond::default(),
        }
    }

    /// The `p`-th percentile (0 to 100) of the recent durations in milliseconds, by the
    /// nearest-rank rule; 0 with none yet.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.recent_us.is_empty() {
            return 0.0;
        }
        let mut sorted: Vec<u64> = self.recent_us.iter().copied().collect();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
    }
}

/// Every function's [`FunctionStats`], by path.
#[derive(Debug, Default)]
pub struct FunctionMetrics {
    functions: BTreeMap<String, FunctionStats>,
}

impl FunctionMetrics {
    pub fn record(&mut self, now_s: u64, path: &str, kind: &'static str, us: u64, failed: bool) {
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
        assert_eq!(stats.percentile_ms(50.0), 50.0);
        assert_eq!(stats.percentile_ms(99.0), 99.0);
        assert_eq!(stats.percentile_ms(100.0), 100.0);
        // Older durations leave the window: after LATENCY_WINDOW fast calls, all is fast.
        for _ in 0..LATENCY_WINDOW {
            metrics.record(11, "m:f", "query", 10, false);
        }
        let (_, stats) = metrics.iter().next().unwrap();
        assert_eq!(stats.percentile_ms(99.0), 0.01);
        assert_eq!(stats.calls, 100 + LATENCY_WINDOW as u64);
        assert_eq!(
            stats.per_second.last_minute(12)[SECONDS_KEPT - 2..],
            [100, 1024]
        );
        assert_eq!(FunctionStats::new("query").percentile_ms(50.0), 0.0);
    }
}
