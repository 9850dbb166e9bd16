//! Memory growth: a long churn at constant live size must reach a plateau
//! of resident memory.
//!
//! Worker threads insert (with and without a ttl), read, remove and purge
//! over a fixed key range no larger than the capacity, while one of them
//! moves a [`MockClock`] forward so that entries expire all the time. The
//! live set is bounded by the key range, so everything else the run
//! allocates is garbage: replaced, removed and expired entries retired to
//! crossbeam-epoch, tables replaced by rehashing, stale deadline items.
//! If any of it were never freed (a thread's epoch bag never collected, a
//! heap never rebuilt), resident memory would grow with the work done. The
//! run samples resident memory (`/proc/self/statm`) after every round and
//! [`plateau`] compares the last rounds with the rounds after warm-up.

use clockcache::{Cache, EvictionPolicy, MockClock};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

/// One churn run.
#[derive(Clone, Copy, Debug)]
pub struct MemoryConfig {
    /// Worker threads.
    pub threads: usize,
    /// Rounds; resident memory is sampled after each.
    pub rounds: usize,
    /// Operations per worker per round.
    pub ops_per_round: u64,
    /// Capacity, and the number of keys.
    pub live: u64,
    /// The eviction policy.
    pub policy: EvictionPolicy,
}

/// What a run saw.
#[derive(Clone, Debug, Default)]
pub struct MemoryReport {
    /// Resident bytes before the first round.
    pub before: u64,
    /// Resident bytes after each round.
    pub rss: Vec<u64>,
    /// Bytes of values inserted over the run (what churned through).
    pub churned_bytes: u64,
    /// Entries live at the end.
    pub live_at_end: usize,
}

/// Resident memory of this process, in bytes (`/proc/self/statm`, 4 KiB
/// pages as on x86-64 Linux).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("resident pages in /proc/self/statm");
    pages * 4096
}

/// Runs the churn and samples resident memory after every round.
pub fn run(cfg: &MemoryConfig) -> MemoryReport {
    let clock = MockClock::new();
    let cache: Cache<u64, Arc<Vec<u8>>> = Cache::builder()
        .capacity(cfg.live)
        .eviction_policy(cfg.policy)
        .clock(clock.clone())
        .build();
    let barrier = Barrier::new(cfg.threads + 1);
    let mut report = MemoryReport {
        before: rss_bytes(),
        ..MemoryReport::default()
    };
    let churned = std::sync::atomic::AtomicU64::new(0);
    thread::scope(|s| {
        let mut workers = Vec::with_capacity(cfg.threads);
        for t in 0..cfg.threads as u64 {
            let (cache, clock, barrier, churned) = (&cache, &clock, &barrier, &churned);
            workers.push(s.spawn(move || {
                let mut x = (t + 7).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut bytes = 0;
                for _ in 0..cfg.rounds {
                    for i in 0..cfg.ops_per_round {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = (x >> 8) % cfg.live;
                        let len = 64 + (x >> 40) as usize % 192;
                        match x % 16 {
                            0..=4 => {
                                bytes += len as u64;
                                cache.insert(key, Arc::new(vec![t as u8; len]));
                            }
                            5..=8 => {
                                bytes += len as u64;
                                let ttl = Duration::from_millis(1 + (x >> 20) % 20);
                                cache.insert_with_ttl(key, Arc::new(vec![t as u8; len]), ttl);
                            }
                            9..=11 => {
                                cache.remove(&key);
                            }
                            12 => {
                                if i % 1024 == 0 {
                                    cache.purge_expired();
                                }
                            }
                            _ => {
                                cache.get(&key);
                            }
                        }
                        if t == 0 && i % 64 == 0 {
                            clock.advance(Duration::from_millis(1));
                        }
                    }
                    barrier.wait(); // round done
                    barrier.wait(); // sampled
                }
                churned.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
            }));
        }
        for _ in 0..cfg.rounds {
            barrier.wait();
            report.rss.push(rss_bytes());
            barrier.wait();
        }
        // Join explicitly (a real thread join, after TLS destructors).
        for w in workers {
            w.join().expect("a worker panicked");
        }
    });
    report.churned_bytes = churned.into_inner();
    report.live_at_end = cache.len();
    report
}

/// Checks that resident memory reached a plateau: the highest sample of the
/// last quarter of the rounds is at most the highest sample of the second
/// quarter (after warm-up) plus 10% and 8 MiB. Returns a description of the
/// figures, or why the check failed.
pub fn plateau(report: &MemoryReport) -> Result<String, String> {
    let n = report.rss.len();
    if n < 8 {
        return Err(format!("{n} samples: at least 8 rounds are needed"));
    }
    let q = n / 4;
    let warm = *report.rss[q..2 * q].iter().max().expect("non-empty");
    let last = *report.rss[n - q..].iter().max().expect("non-empty");
    let limit = warm + warm / 10 + 8 * 1024 * 1024;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let text = format!(
        "rss before {:.1} MiB, after warm-up (max of rounds {}..{}) {:.1} MiB, \
         last rounds (max of {}..{}) {:.1} MiB, limit {:.1} MiB, \
         {:.0} MiB of values churned, {} live at the end",
        mib(report.before),
        q,
        2 * q,
        mib(warm),
        n - q,
        n,
        mib(last),
        mib(limit),
        mib(report.churned_bytes),
        report.live_at_end
    );
    if last <= limit {
        Ok(text)
    } else {
        Err(format!("resident memory keeps growing: {text}"))
    }
}
