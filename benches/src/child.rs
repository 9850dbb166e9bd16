//! Measurements that need a fresh process: bytes per entry and the expiry churn.
//!
//! The parent re-executes its own binary with a hidden subcommand per cache, so that
//! each cache's resident memory is measured against a clean heap; the child prints
//! one JSON line on stdout.

use std::io;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::adapters::{BenchCache, CacheKind, CacheSpec, CacheVisitor};
use crate::runner::new_histogram;

/// Page size assumed for `/proc/self/statm` (x86_64 and aarch64 Linux default).
pub const PAGE_SIZE: u64 = 4096;

/// Resident set size of this process in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    parse_statm_resident(&statm)
        .map(|pages| pages * PAGE_SIZE)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, statm))
}

/// The resident field (second number, in pages) of a statm line.
pub fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Bytes per entry of one cache, measured in a child.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemResult {
    /// Cache name.
    pub cache: String,
    /// Keys inserted (`u64` keys and values).
    pub inserted: u64,
    /// Entries the cache held afterwards.
    pub entries: u64,
    /// Resident memory grown while building and filling it.
    pub rss_delta: u64,
    /// `rss_delta / entries`.
    pub bytes_per_entry: f64,
}

struct Fill(u64);

impl CacheVisitor for Fill {
    type Output = io::Result<MemResult>;
    fn visit<C: BenchCache>(self, kind: CacheKind) -> io::Result<MemResult> {
        let n = self.0;
        let before = rss_bytes()?;
        // The read-only map is built from its keys; the key list is freed before the
        // second reading so that only the map is counted.
        let cache = if kind.read_only() {
            let keys: Vec<u64> = (0..n).collect();
            C::build(&CacheSpec::new(n as usize), &keys)
        } else {
            let c = C::build(&CacheSpec::new(n as usize), &[]);
            for k in 0..n {
                c.insert(k, k);
            }
            c
        };
        cache.sync();
        let after = rss_bytes()?;
        let entries = cache.len() as u64;
        std::hint::black_box(&cache);
        let rss_delta = after.saturating_sub(before);
        Ok(MemResult {
            cache: kind.name().to_string(),
            inserted: n,
            entries,
            rss_delta,
            bytes_per_entry: rss_delta as f64 / entries.max(1) as f64,
        })
    }
}

/// Child side: fills a `kind` cache of capacity `entries` with `entries` keys.
pub fn mem_child(kind: CacheKind, entries: u64) -> io::Result<MemResult> {
    kind.visit(Fill(entries))
}

/// Settings of the expiry churn.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct ExpiryParams {
    /// How long the churn lasts.
    pub duration: Duration,
    /// Time to live of every entry.
    pub ttl: Duration,
    /// Inserts per second per thread (paced).
    pub rate_per_thread: u64,
    /// Worker threads.
    pub threads: usize,
    /// Cache capacity: set well above rate x TTL, so expiry, not eviction, bounds it.
    pub capacity: usize,
}

impl ExpiryParams {
    /// Entries alive at any moment if expired ones are reclaimed promptly.
    pub fn expected_live(&self) -> u64 {
        (self.rate_per_thread as f64 * self.threads as f64 * self.ttl.as_secs_f64()) as u64
    }
}

/// What the expiry churn measured in one cache.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExpiryResult {
    /// Cache name.
    pub cache: String,
    /// Inserts plus gets performed.
    pub ops: u64,
    /// Gets of a key inserted 1,000 inserts earlier (well within its TTL).
    pub gets: u64,
    /// Those gets that hit.
    pub hits: u64,
    /// Most entries held at any sample (every 50 ms).
    pub max_len: u64,
    /// Entries held when the churn stopped.
    pub end_len: u64,
    /// Entries held after a further idle 2 x TTL without any operation.
    pub idle_len: u64,
    /// Most resident memory above the starting point, in bytes.
    pub max_rss_delta: u64,
    /// Latency of every op, nanoseconds: p50, p99, p99.9, p99.99, max.
    pub latency_ns: [u64; 5],
}

struct Churn(ExpiryParams);

impl CacheVisitor for Churn {
    type Output = io::Result<ExpiryResult>;
    fn visit<C: BenchCache>(self, kind: CacheKind) -> io::Result<ExpiryResult> {
        let p = self.0;
        let base_rss = rss_bytes()?;
        let cache = C::build(
            &CacheSpec {
                capacity: p.capacity,
                ttl: Some(p.ttl),
            },
            &[],
        );
        const BATCH: u64 = 1_000;
        const LAG: u64 = 1_000;
        let stop = AtomicBool::new(false);
        let max_len = AtomicU64::new(0);
        let max_rss = AtomicU64::new(base_rss);
        let barrier = Barrier::new(p.threads + 1);
        let results = std::thread::scope(|s| {
            let workers: Vec<_> = (0..p.threads)
                .map(|t| {
                    let c = cache.clone();
                    let (stop, barrier) = (&stop, &barrier);
                    s.spawn(move || {
                        let mut h = new_histogram();
                        let base = (t as u64) << 40;
                        let (mut i, mut gets, mut hits) = (0u64, 0u64, 0u64);
                        barrier.wait();
                        let start = Instant::now();
                        while !stop.load(Ordering::Relaxed) {
                            for _ in 0..BATCH {
                                let k = base + i;
                                let t0 = Instant::now();
                                c.insert(k, i);
                                h.saturating_record((t0.elapsed().as_nanos() as u64).max(1));
                                if i >= LAG {
                                    let t0 = Instant::now();
                                    let hit = c.get(k - LAG).is_some();
                                    h.saturating_record((t0.elapsed().as_nanos() as u64).max(1));
                                    gets += 1;
                                    hits += hit as u64;
                                }
                                i += 1;
                            }
                            // Pace to the target rate.
                            let due = Duration::from_secs_f64(i as f64 / p.rate_per_thread as f64);
                            if let Some(ahead) = due.checked_sub(start.elapsed()) {
                                std::thread::sleep(ahead);
                            }
                        }
                        (h, i + gets, gets, hits)
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            while start.elapsed() < p.duration {
                std::thread::sleep(Duration::from_millis(50));
                max_len.fetch_max(cache.len() as u64, Ordering::Relaxed);
                if let Ok(r) = rss_bytes() {
                    max_rss.fetch_max(r, Ordering::Relaxed);
                }
            }
            stop.store(true, Ordering::Relaxed);
            workers
                .into_iter()
                .map(|w| w.join().expect("churn worker panicked"))
                .collect::<Vec<_>>()
        });
        let end_len = cache.len() as u64;
        std::thread::sleep(p.ttl * 2);
        let idle_len = cache.len() as u64;
        let mut h = new_histogram();
        let (mut ops, mut gets, mut hits) = (0, 0, 0);
        for (wh, o, g, ht) in &results {
            h.add(wh).expect("same bounds");
            ops += o;
            gets += g;
            hits += ht;
        }
        Ok(ExpiryResult {
            cache: kind.name().to_string(),
            ops,
            gets,
            hits,
            max_len: max_len.load(Ordering::Relaxed).max(end_len),
            end_len,
            idle_len,
            max_rss_delta: max_rss.load(Ordering::Relaxed).saturating_sub(base_rss),
            latency_ns: [
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.value_at_quantile(0.9999),
                h.max(),
            ],
        })
    }
}

/// Child side: runs the expiry churn on a `kind` cache.
pub fn expiry_child(kind: CacheKind, p: ExpiryParams) -> io::Result<ExpiryResult> {
    kind.visit(Churn(p))
}

/// Parent side: runs this binary with `args` and parses the JSON line it prints.
pub fn run_child<T: for<'de> Deserialize<'de>>(exe: &Path, args: &[String]) -> io::Result<T> {
    let out = Command::new(exe).args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "child {:?} failed: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line).map_err(|e| io::Error::other(format!("{e}: {line:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_resident_is_the_second_field() {
        assert_eq!(parse_statm_resident("1000 250 30 4 0 80 0\n"), Some(250));
        assert_eq!(parse_statm_resident("1000"), None);
        assert!(rss_bytes().unwrap() > 0);
    }

    #[test]
    fn filling_a_cache_counts_its_entries() {
        let r = mem_child(CacheKind::MutexLru, 20_000).unwrap();
        assert_eq!(r.inserted, 20_000);
        assert_eq!(r.entries, 20_000);
        assert_eq!(r.cache, "mutex-lru");
        assert!(
            (r.bytes_per_entry - r.rss_delta as f64 / 20_000.0).abs() < 1e-9,
            "{r:?}"
        );
    }

    #[test]
    fn expiry_churn_reports_its_ops() {
        let p = ExpiryParams {
            duration: Duration::from_millis(120),
            ttl: Duration::from_millis(20),
            rate_per_thread: 100_000,
            threads: 2,
            capacity: 100_000,
        };
        assert_eq!(p.expected_live(), 4_000);
        let r = expiry_child(CacheKind::Moka, p).unwrap();
        assert!(r.ops > 2_000);
        assert!(r.gets > 0 && r.hits <= r.gets);
        assert!(r.latency_ns.windows(2).all(|w| w[0] <= w[1]));
        assert!(r.max_len >= r.end_len);
    }
}
