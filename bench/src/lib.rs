//! The product benchmark (`target/release/bench [--quick], built by cargo test --release --workspace --no-run`): every
//! scenario against a real `runtime serve` over loopback, beside the baselines that say how
//! close it is to the machine's limit, with one table, a JSON file and SVG plots.
//!
//! - [`server`]: the `runtime` binary in a child process, started and stopped as a user would.
//! - [`ws`], [`http`]: the clients (docs/PROTOCOL.md sections 3 and 4).
//! - [`scenarios`]: chat-send, bank-transfer, fanout, calls, scale, scheduler, actions,
//!   dashboard, nodes (several servers over one PostgreSQL database), and the baselines
//!   (RocksDB alone, PostgreSQL).
//! - [`report`], [`svg`]: the table, the JSON file and the plots.

pub mod http;
pub mod report;
pub mod scenarios;
pub mod server;
pub mod stats;
pub mod svg;
pub mod ws;

use std::time::{Duration, Instant};

/// Runs `work` on `threads` threads until `duration` has passed; returns operations done and
/// the time taken.
pub fn run_for<F>(threads: usize, duration: Duration, work: F) -> (u64, Duration)
where
    F: Fn(usize, &mut Rng) + Sync,
{
    let start = Instant::now();
    let total = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (work, total) = (&work, &total);
            scope.spawn(move || {
                let mut rng = Rng::new(t as u64 + 1);
                let mut done = 0;
                while start.elapsed() < duration {
                    work(t, &mut rng);
                    done += 1;
                }
                total.fetch_add(done, std::sync::atomic::Ordering::Relaxed);
            });
        }
    });
    (total.into_inner(), start.elapsed())
}

/// xorshift64*: fast and good enough to pick keys.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws ranks `0..n` with probability proportional to `1 / (rank + 1)^s`.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }

    /// The probability of drawing `rank`.
    pub fn probability(&self, rank: usize) -> f64 {
        self.cdf[rank] - if rank == 0 { 0.0 } else { self.cdf[rank - 1] }
    }
}

/// How accounts are picked for a transfer: uniformly, or by Zipf rank (hot accounts).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Skew {
    Uniform,
    Zipf(f64),
}

impl Skew {
    pub fn name(self) -> String {
        match self {
            Skew::Uniform => "uniform".into(),
            Skew::Zipf(s) => format!("zipf-{s}"),
        }
    }

    /// The sampler of hot accounts among `n`, for a skewed workload.
    pub fn sampler(self, n: usize) -> Option<Zipf> {
        match self {
            Skew::Uniform => None,
            Skew::Zipf(s) => Some(Zipf::new(n, s)),
        }
    }
}

/// Picks the two distinct accounts of a transfer among `n`.
pub fn pick_pair(rng: &mut Rng, n: usize, zipf: Option<&Zipf>) -> (usize, usize) {
    let pick = |rng: &mut Rng| match zipf {
        Some(z) => z.sample(rng),
        None => rng.below(n),
    };
    let from = pick(rng);
    let mut to = pick(rng);
    if to == from {
        to = (from + 1) % n;
    }
    (from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_draws_ranks_at_their_probability() {
        let zipf = Zipf::new(100_000, 1.5);
        // 1 / sum_{k<=n} k^-1.5, with the sum close to zeta(1.5) = 2.612.
        assert!(
            (zipf.probability(0) - 0.3839).abs() < 0.002,
            "{}",
            zipf.probability(0)
        );
        let mut rng = Rng::new(9);
        let mut counts = [0u32; 4];
        let draws = 200_000;
        for _ in 0..draws {
            let rank = zipf.sample(&mut rng);
            assert!(rank < 100_000);
            if rank < 4 {
                counts[rank] += 1;
            }
        }
        for (rank, &count) in counts.iter().enumerate() {
            let seen = f64::from(count) / f64::from(draws);
            let expected = zipf.probability(rank);
            assert!(
                (seen - expected).abs() < 0.01,
                "rank {rank}: drawn {seen}, expected {expected}"
            );
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[2] && counts[2] > counts[3]);
    }

    #[test]
    fn uniform_draws_cover_the_range_evenly() {
        let mut rng = Rng::new(3);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[rng.below(10)] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn a_transfer_never_pairs_an_account_with_itself() {
        let zipf = Zipf::new(1_000, 1.5);
        let mut rng = Rng::new(5);
        for _ in 0..10_000 {
            let (a, b) = pick_pair(&mut rng, 1_000, Some(&zipf));
            assert_ne!(a, b);
            assert!(a < 1_000 && b < 1_000);
            let (a, b) = pick_pair(&mut rng, 2, None);
            assert_ne!(a, b);
        }
    }
}
