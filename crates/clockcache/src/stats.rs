//! Statistics without shared writes on the read path.
//!
//! Hits and misses are counted by readers in striped counters: each thread
//! writes its own cache-line-padded stripe with a plain load and store (no
//! read-modify-write, no shared cache line). With more threads than stripes
//! two threads can share a stripe and an increment can then be lost: the
//! figures are exact up to that many concurrent threads and never
//! over-count. Writer-side events (inserts, evictions, ...) are counted
//! under the shard lock.

use crate::sync::{thread_stripe, AtomicU32, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

/// A snapshot of a cache's counters, from [`Cache::stats`](crate::Cache::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// `get` calls that found a live entry.
    pub hits: u64,
    /// `get` calls that found nothing (or only an expired entry).
    pub misses: u64,
    /// Entries inserted for a key that had none.
    pub inserts: u64,
    /// Inserts that replaced a live entry of the same key.
    pub updates: u64,
    /// Entries evicted to respect the capacity.
    pub evictions: u64,
    /// Entries removed because their deadline passed.
    pub expirations: u64,
    /// Entries removed by `remove`, `retain` or `clear`.
    pub removals: u64,
    /// Loads (loading calls, placeholders, refreshes) that ended with a
    /// value.
    pub loads: u64,
    /// Loads that ended without one: an error, a panic, a cancelled future,
    /// a placeholder dropped unfilled.
    pub load_failures: u64,
    /// Total time from the start to the end of every load counted above
    /// (wall time, whatever clock the cache runs on).
    pub total_load_time: std::time::Duration,
}

impl CacheStats {
    /// Mean time of a load, or zero before the first load ended.
    pub fn average_load_time(&self) -> std::time::Duration {
        match u32::try_from(self.loads + self.load_failures) {
            Ok(0) => std::time::Duration::ZERO,
            Ok(n) => self.total_load_time / n,
            Err(_) => {
                let n = (self.loads + self.load_failures) as f64;
                std::time::Duration::from_secs_f64(self.total_load_time.as_secs_f64() / n)
            }
        }
    }

    /// `hits / (hits + misses)`, or 0 before the first `get`.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// A cache's settings, from [`Cache::policy`](crate::Cache::policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CachePolicy {
    /// The most entries, or with a weigher the most total weight.
    pub capacity: u64,
    /// Whether a weigher sets the entries' weights.
    pub weighted: bool,
    /// The time to live, if set.
    pub time_to_live: Option<std::time::Duration>,
    /// The time to idle, if set.
    pub time_to_idle: Option<std::time::Duration>,
    /// Whether an [`Expiry`](crate::Expiry) computes entries' deadlines.
    pub expiry: bool,
    /// The refresh-ahead period, if set.
    pub refresh_after: Option<std::time::Duration>,
    /// The eviction policy.
    pub eviction_policy: crate::EvictionPolicy,
    /// The number of shards.
    pub shards: usize,
}

/// One thread's hit and miss counters, and how it has been finding keys
/// lately (see [`Stripe::scouts`]).
#[derive(Default)]
pub(crate) struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
    /// Raised by [`MISS_WEIGHT`] on each miss (up to [`SCOUT_MAX`]) and
    /// lowered by one on each hit: above zero while more than about one
    /// lookup in nine misses.
    recent_misses: AtomicU32,
}

/// How much a miss raises a stripe's recent-miss score.
const MISS_WEIGHT: u32 = 8;

/// The most the score holds: a thread whose misses stop goes back to
/// pinning first within this many hits.
const SCOUT_MAX: u32 = 64;

impl Stripe {
    /// Whether this thread's lookups should scout the home bucket before
    /// they pin (see `Cache::lookup`): worth it when misses are frequent
    /// (a miss then skips the pin), not when nearly every lookup hits (a
    /// hit then waits for the bucket before the pin instead of overlapping
    /// the two).
    #[inline]
    pub(crate) fn scouts(&self) -> bool {
        self.recent_misses.load(Ordering::Relaxed) != 0
    }

    /// Counts a hit.
    #[inline]
    pub(crate) fn hit(&self) {
        bump(&self.hits);
        let r = self.recent_misses.load(Ordering::Relaxed);
        if r != 0 {
            self.recent_misses.store(r - 1, Ordering::Relaxed);
        }
    }

    /// Notes a miss, and counts it if `count` (a loading call counts its
    /// miss where it decides to load or wait).
    #[inline]
    pub(crate) fn miss(&self, count: bool) {
        if count {
            bump(&self.misses);
        }
        let r = self.recent_misses.load(Ordering::Relaxed);
        self.recent_misses
            .store((r + MISS_WEIGHT).min(SCOUT_MAX), Ordering::Relaxed);
    }
}

/// Per-thread striped hit and miss counters.
pub(crate) struct ReadCounters {
    stripes: Box<[CachePadded<Stripe>]>,
}

#[inline]
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

impl ReadCounters {
    pub(crate) fn new(stripes: usize) -> Self {
        let n = stripes.next_power_of_two().max(1);
        Self {
            stripes: (0..n)
                .map(|_| CachePadded::new(Stripe::default()))
                .collect(),
        }
    }

    /// This thread's stripe.
    #[inline]
    pub(crate) fn stripe(&self) -> &Stripe {
        &self.stripes[thread_stripe() & (self.stripes.len() - 1)]
    }

    #[inline]
    pub(crate) fn hit(&self) {
        self.stripe().hit();
    }

    #[inline]
    pub(crate) fn miss(&self) {
        self.stripe().miss(true);
    }

    pub(crate) fn sum(&self) -> (u64, u64) {
        self.stripes.iter().fold((0, 0), |(h, m), s| {
            (
                h + s.hits.load(Ordering::Relaxed),
                m + s.misses.load(Ordering::Relaxed),
            )
        })
    }
}

/// Writer-side counters of one shard (updated under its lock, read by
/// `stats()` without it).
#[derive(Default)]
pub(crate) struct WriteCounters {
    pub(crate) inserts: AtomicU64,
    pub(crate) updates: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) expirations: AtomicU64,
    pub(crate) removals: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) load_failures: AtomicU64,
    pub(crate) load_nanos: AtomicU64,
}

impl WriteCounters {
    /// Adds one (lock held, so a load and a store suffice).
    #[inline]
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}
