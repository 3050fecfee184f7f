//! Shared pieces of the benchmarks: load drivers, samplers and figure printing.

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
}

/// Prints one row of a figures table.
pub fn row(name: &str, value: f64, unit: &str, note: &str) {
    println!("{name:<48} {value:>14.1} {unit:<10} {note}");
}
