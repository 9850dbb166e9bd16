//! Workloads: which keys each thread touches, in which order, and with which op.
//!
//! Every thread's op sequence is generated before timing starts (in parallel with
//! rayon) and then replayed, cyclically, by the timed loop. An op is a `u64`: the low
//! 63 bits are the key and the top bit ([`WRITE`]) marks an unconditional insert; a
//! read is a `get` that, when the workload says so, inserts the key on a miss.

use std::fmt;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::Zipf;
use rayon::prelude::*;

/// Top bit of an op: insert instead of get.
pub const WRITE: u64 = 1 << 63;

/// First key of the one-time keys of the scan-polluted mix (each thread has its own
/// range above it), far above any Zipf key.
pub const SCAN_BASE: u64 = 1 << 48;

/// Ops per scan-polluted period: `SCAN_PERIOD - SCAN_RUN` Zipf reads, then a run of
/// `SCAN_RUN` sequential keys that are never seen again.
pub const SCAN_PERIOD: usize = 10_000;
/// Length of one sequential scan in the scan-polluted mix.
pub const SCAN_RUN: usize = 2_000;

/// The op mix of a workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mix {
    /// 90% get (insert on miss), 10% insert, Zipf keys.
    ReadHeavy,
    /// 50% get (insert on miss), 50% insert, Zipf keys.
    WriteHeavy,
    /// Gets only, on a cache prefilled with `capacity` keys; Zipf over those keys.
    GetOnly,
    /// Inserts only, Zipf keys.
    InsertOnly,
    /// Zipf gets (insert on miss) interleaved with sequential one-time keys.
    ScanPolluted,
    /// Gets (insert on miss) cycling over a loop 10% larger than the cache.
    Loop,
}

/// A workload: a mix and the Zipf exponent of its keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Workload {
    /// The op mix.
    pub mix: Mix,
    /// Zipf exponent of the keys (unused by [`Mix::Loop`]).
    pub zipf: f64,
}

impl Workload {
    /// Stable short name, e.g. `read-heavy z0.99`.
    pub fn name(&self) -> String {
        let mix = match self.mix {
            Mix::ReadHeavy => "read-heavy 90/10",
            Mix::WriteHeavy => "write-heavy 50/50",
            Mix::GetOnly => "get-only (full)",
            Mix::InsertOnly => "insert-only",
            Mix::ScanPolluted => "scan-polluted",
            Mix::Loop => "loop 1.1x",
        };
        match self.mix {
            Mix::Loop => mix.to_string(),
            _ => format!("{mix} z{}", self.zipf),
        }
    }

    /// Whether a get that misses inserts the key.
    pub fn insert_on_miss(&self) -> bool {
        !matches!(self.mix, Mix::GetOnly)
    }

    /// Whether the workload only reads (so the read-only HashMap can run it).
    pub fn read_only(&self) -> bool {
        matches!(self.mix, Mix::GetOnly)
    }

    /// Keys inserted before timing: for get-only the `capacity` keys its gets draw
    /// from, coldest first, so that a cache that has to evict a few while filling
    /// (sharded caches fill unevenly) loses cold keys rather than the hottest ones;
    /// none otherwise.
    pub fn prefill(&self, capacity: usize) -> Vec<u64> {
        match self.mix {
            Mix::GetOnly => (0..capacity as u64).rev().collect(),
            _ => Vec::new(),
        }
    }

    /// Length of the loop of [`Mix::Loop`] for a cache of `capacity` entries.
    pub fn loop_len(capacity: usize) -> usize {
        capacity + capacity.div_ceil(10)
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Parameters of op generation.
#[derive(Clone, Copy, Debug)]
pub struct GenParams {
    /// Number of distinct Zipf keys (1,000,000 by default).
    pub keys: u64,
    /// Cache capacity in entries.
    pub capacity: usize,
    /// Ops per thread (the loop mix rounds it up to whole loops).
    pub ops_per_thread: usize,
    /// Base seed; thread `t` uses `seed + t`.
    pub seed: u64,
}

/// Generates the op sequences of `threads` threads, in parallel.
pub fn generate(w: &Workload, p: &GenParams, threads: usize) -> Vec<Vec<u64>> {
    (0..threads)
        .into_par_iter()
        .map(|t| generate_thread(w, p, t, threads))
        .collect()
}

/// Generates the op sequence of thread `t` of `threads`.
pub fn generate_thread(w: &Workload, p: &GenParams, t: usize, threads: usize) -> Vec<u64> {
    let mut rng = SmallRng::seed_from_u64(p.seed.wrapping_add(t as u64).wrapping_mul(0x9E37_79B9));
    let n = p.ops_per_thread.max(1);
    match w.mix {
        Mix::Loop => {
            let len = Workload::loop_len(p.capacity) as u64;
            let total = (n as u64).div_ceil(len) * len;
            let offset = t as u64 * len / threads as u64;
            (0..total).map(|i| (offset + i) % len).collect()
        }
        Mix::GetOnly => {
            let zipf = Zipf::new(p.capacity.max(1) as f64, w.zipf).expect("valid zipf");
            (0..n).map(|_| zipf_key(&mut rng, &zipf)).collect()
        }
        Mix::ReadHeavy | Mix::WriteHeavy | Mix::InsertOnly => {
            let write_share = match w.mix {
                Mix::ReadHeavy => 0.1,
                Mix::WriteHeavy => 0.5,
                _ => 1.0,
            };
            let zipf = Zipf::new(p.keys as f64, w.zipf).expect("valid zipf");
            (0..n)
                .map(|_| {
                    let k = zipf_key(&mut rng, &zipf);
                    if rng.random::<f64>() < write_share {
                        k | WRITE
                    } else {
                        k
                    }
                })
                .collect()
        }
        Mix::ScanPolluted => {
            let zipf = Zipf::new(p.keys as f64, w.zipf).expect("valid zipf");
            let mut next_scan = SCAN_BASE + ((t as u64) << 40);
            (0..n)
                .map(|i| {
                    if i % SCAN_PERIOD >= SCAN_PERIOD - SCAN_RUN {
                        next_scan += 1;
                        next_scan
                    } else {
                        zipf_key(&mut rng, &zipf)
                    }
                })
                .collect()
        }
    }
}

/// A Zipf rank (1..=n) as a key (0..n): key 0 is the hottest.
fn zipf_key(rng: &mut SmallRng, zipf: &Zipf<f64>) -> u64 {
    let r: f64 = rng.sample(zipf);
    (r as u64).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> GenParams {
        GenParams {
            keys: 10_000,
            capacity: 1_000,
            ops_per_thread: 50_000,
            seed: 7,
        }
    }

    fn write_share(ops: &[u64]) -> f64 {
        ops.iter().filter(|&&o| o & WRITE != 0).count() as f64 / ops.len() as f64
    }

    #[test]
    fn mixes_have_their_write_share() {
        let p = params();
        let rh = generate_thread(
            &Workload {
                mix: Mix::ReadHeavy,
                zipf: 0.99,
            },
            &p,
            0,
            1,
        );
        let wh = generate_thread(
            &Workload {
                mix: Mix::WriteHeavy,
                zipf: 0.99,
            },
            &p,
            0,
            1,
        );
        let io = generate_thread(
            &Workload {
                mix: Mix::InsertOnly,
                zipf: 0.99,
            },
            &p,
            0,
            1,
        );
        let go = generate_thread(
            &Workload {
                mix: Mix::GetOnly,
                zipf: 0.99,
            },
            &p,
            0,
            1,
        );
        assert!(
            (write_share(&rh) - 0.1).abs() < 0.01,
            "{}",
            write_share(&rh)
        );
        assert!(
            (write_share(&wh) - 0.5).abs() < 0.01,
            "{}",
            write_share(&wh)
        );
        assert_eq!(write_share(&io), 1.0);
        assert_eq!(write_share(&go), 0.0);
        assert_eq!(rh.len(), p.ops_per_thread);
    }

    #[test]
    fn zipf_keys_are_in_range_and_skewed() {
        let p = params();
        let ops = generate_thread(
            &Workload {
                mix: Mix::ReadHeavy,
                zipf: 0.99,
            },
            &p,
            0,
            1,
        );
        let keys: Vec<u64> = ops.iter().map(|o| o & !WRITE).collect();
        assert!(keys.iter().all(|&k| k < p.keys));
        let hot = keys.iter().filter(|&&k| k == 0).count();
        let cold = keys.iter().filter(|&&k| k == 5_000).count();
        // Rank 1 against rank 5001 at s = 0.99: about 4,600 times as likely.
        assert!(hot > 100 * cold.max(1), "hot {hot} cold {cold}");
        // Higher exponent, more skew.
        let steep = generate_thread(
            &Workload {
                mix: Mix::ReadHeavy,
                zipf: 1.2,
            },
            &p,
            0,
            1,
        );
        let steep_hot = steep.iter().filter(|&&o| o & !WRITE == 0).count();
        assert!(steep_hot > hot);
    }

    #[test]
    fn get_only_stays_within_the_prefilled_keys() {
        let p = params();
        let w = Workload {
            mix: Mix::GetOnly,
            zipf: 0.99,
        };
        let ops = generate_thread(&w, &p, 1, 2);
        assert!(ops.iter().all(|&k| k < p.capacity as u64));
        let prefill = w.prefill(p.capacity);
        assert_eq!(prefill.len(), p.capacity);
        // Coldest (highest rank) first, hottest (key 0) last.
        assert_eq!(
            (prefill[0], prefill[p.capacity - 1]),
            (p.capacity as u64 - 1, 0)
        );
        assert!(!w.insert_on_miss());
    }

    #[test]
    fn threads_get_different_streams_and_generation_is_repeatable() {
        let p = params();
        let w = Workload {
            mix: Mix::ReadHeavy,
            zipf: 0.9,
        };
        let a = generate(&w, &p, 2);
        let b = generate(&w, &p, 2);
        assert_eq!(a, b);
        assert_ne!(a[0], a[1]);
    }

    #[test]
    fn scan_keys_are_sequential_and_never_repeat() {
        let p = params();
        let w = Workload {
            mix: Mix::ScanPolluted,
            zipf: 0.99,
        };
        let t0 = generate_thread(&w, &p, 0, 2);
        let t1 = generate_thread(&w, &p, 1, 2);
        let scans0: Vec<u64> = t0.iter().copied().filter(|&k| k >= SCAN_BASE).collect();
        let scans1: Vec<u64> = t1.iter().copied().filter(|&k| k >= SCAN_BASE).collect();
        assert_eq!(scans0.len(), p.ops_per_thread / SCAN_PERIOD * SCAN_RUN);
        assert!(scans0.windows(2).all(|w| w[1] == w[0] + 1));
        assert!(scans0.iter().all(|k| !scans1.contains(k)));
    }

    #[test]
    fn loop_covers_whole_loops_slightly_larger_than_the_cache() {
        let p = params();
        let w = Workload {
            mix: Mix::Loop,
            zipf: 0.0,
        };
        let len = Workload::loop_len(p.capacity);
        assert_eq!(len, 1_100);
        let ops = generate_thread(&w, &p, 1, 2);
        assert_eq!(ops.len() % len, 0);
        assert_eq!(ops[0], 550);
        assert!(ops.windows(2).all(|w| w[1] == (w[0] + 1) % len as u64));
    }
}
