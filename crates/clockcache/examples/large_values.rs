//! Memory of a cache of large values: 20,000 distinct 1 MiB values through a
//! cache bounded to 64 MiB by a weigher, from one and then two threads. Prints
//! the most values alive at once (counted by the values themselves) and the
//! process's peak resident memory (`VmHWM`, Linux), against the capacity.
//!
//! `cargo run --release -p clockcache --example large_values`

use clockcache::Cache;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const MIB: usize = 1 << 20;
const CAPACITY: usize = 64 * MIB;
const VALUES: u64 = 20_000;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// 1 MiB that counts itself while alive (clones share it).
#[derive(Clone)]
struct Blob(Arc<Payload>);

struct Payload(Vec<u8>);

impl Blob {
    fn new(seed: u8) -> Self {
        let live = LIVE.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(live, Ordering::SeqCst);
        // Written, not just allocated, so that it is resident.
        Blob(Arc::new(Payload(vec![seed | 1; MIB])))
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Peak resident set of this process, in MiB (0 where /proc is missing).
fn peak_rss_mib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kib| kib / 1024)
}

fn main() {
    for threads in [1u64, 2] {
        PEAK.store(0, Ordering::SeqCst);
        let cache: Cache<u64, Blob> = Cache::builder()
            .capacity(CAPACITY as u64)
            .weigher(|_, v: &Blob| v.0 .0.len() as u32)
            .build();
        std::thread::scope(|s| {
            for t in 0..threads {
                let cache = &cache;
                s.spawn(move || {
                    let per = VALUES / threads;
                    for i in 0..per {
                        cache.insert(t * per + i, Blob::new(i as u8));
                    }
                });
            }
        });
        let peak = PEAK.load(Ordering::SeqCst);
        println!(
            "{threads} thread(s): capacity {} MiB, weighted_size {} MiB, at most {peak} values \
             ({:.2}x the capacity) alive at once, {} alive at the end; peak RSS of the process \
             so far {} MiB",
            CAPACITY / MIB,
            cache.weighted_size() / MIB as u64,
            peak as f64 * MIB as f64 / CAPACITY as f64,
            LIVE.load(Ordering::SeqCst),
            peak_rss_mib()
        );
        drop(cache);
        assert_eq!(
            LIVE.load(Ordering::SeqCst),
            0,
            "dropping the cache drops its values"
        );
    }
}
