//! One small trait, [`BenchCache`], and one file per cache behind it.
//!
//! Adding a cache to the harness is one new file here plus one arm in
//! [`CacheKind::visit`]. The runner is generic over the trait, so every adapter is
//! monomorphised: no dynamic dispatch sits between the timer and the cache.

use std::time::Duration;

mod clockcache;
mod hashmap;
mod moka;
mod mutex_lru;
mod quick_cache;
mod sharded_lru;

pub use self::clockcache::{
    ClockCacheAdapter, ClockPolicy, DefaultPolicy, PolicyChoice, S3FifoPolicy,
};
pub use self::hashmap::ReadOnlyHashMap;
pub use self::moka::MokaAdapter;
pub use self::mutex_lru::MutexLru;
pub use self::quick_cache::QuickCacheAdapter;
pub use self::sharded_lru::ShardedLru;

/// How a cache under test is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSpec {
    /// Maximum number of entries.
    pub capacity: usize,
    /// Time to live of every entry, for the expiry workload (`None`: no expiry).
    pub ttl: Option<Duration>,
}

impl CacheSpec {
    /// A cache of `capacity` entries without expiry.
    pub fn new(capacity: usize) -> Self {
        CacheSpec {
            capacity,
            ttl: None,
        }
    }
}

/// The operations the harness needs from a cache of `u64` keys and values.
///
/// Implementations must be cheap handles (`Clone` shares the same cache), as each
/// worker thread gets its own clone.
pub trait BenchCache: Clone + Send + Sync + 'static {
    /// Builds the cache. `prefill` is the set of keys a read-only cache is built from;
    /// real caches ignore it.
    fn build(spec: &CacheSpec, prefill: &[u64]) -> Self;
    /// Looks `key` up, marking it as recently used.
    fn get(&self, key: u64) -> Option<u64>;
    /// Inserts or replaces `key`. When the cache was built with a TTL, the entry
    /// expires after it.
    fn insert(&self, key: u64, value: u64);
    /// Removes `key`, returning its value.
    fn remove(&self, key: u64) -> Option<u64>;
    /// Returns the value of `key`, computing and inserting it with `f` on a miss.
    fn get_or_insert_with<F: FnOnce() -> u64>(&self, key: u64, f: F) -> u64;
    /// Number of entries held now.
    fn len(&self) -> usize;
    /// Whether the cache holds no entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Runs pending maintenance (moka's deferred writes); a no-op elsewhere.
    fn sync(&self) {}
}

/// The caches the harness knows, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CacheKind {
    /// This project's engine, `clockcache::Cache`, with its default policy.
    ClockCache,
    /// The engine with plain CLOCK eviction.
    ClockCacheClock,
    /// The engine with fixed (non-adaptive) S3-FIFO eviction.
    ClockCacheS3Fifo,
    /// `quick_cache::sync::Cache`.
    QuickCache,
    /// `moka::sync::Cache`.
    Moka,
    /// The `lru` crate behind one `parking_lot::Mutex`.
    MutexLru,
    /// The same, sharded 16 ways by key hash.
    ShardedLru,
    /// A read-only `HashMap` (ahash) behind an `Arc`: the upper bound for a read.
    HashMap,
}

/// A generic function of a cache type, called by [`CacheKind::visit`].
pub trait CacheVisitor {
    /// What the visit returns.
    type Output;
    /// Runs with the concrete adapter type `C`.
    fn visit<C: BenchCache>(self, kind: CacheKind) -> Self::Output;
}

impl CacheKind {
    /// Every cache, in report order.
    pub const ALL: [CacheKind; 8] = [
        CacheKind::ClockCache,
        CacheKind::ClockCacheClock,
        CacheKind::ClockCacheS3Fifo,
        CacheKind::QuickCache,
        CacheKind::Moka,
        CacheKind::MutexLru,
        CacheKind::ShardedLru,
        CacheKind::HashMap,
    ];

    /// Short name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            CacheKind::ClockCache => "clockcache",
            CacheKind::ClockCacheClock => "clockcache-clock",
            CacheKind::ClockCacheS3Fifo => "clockcache-s3fifo",
            CacheKind::QuickCache => "quick_cache",
            CacheKind::Moka => "moka",
            CacheKind::MutexLru => "mutex-lru",
            CacheKind::ShardedLru => "sharded-lru",
            CacheKind::HashMap => "hashmap",
        }
    }

    /// Parses a name as printed by [`CacheKind::name`].
    pub fn from_name(name: &str) -> Option<CacheKind> {
        CacheKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the cache only serves reads (the HashMap upper bound).
    pub fn read_only(self) -> bool {
        self == CacheKind::HashMap
    }

    /// Whether this row is the engine with a non-default eviction policy: it
    /// shares the default's memory layout and expiry, so the memory and
    /// expiry children skip it.
    pub fn policy_variant(self) -> bool {
        matches!(
            self,
            CacheKind::ClockCacheClock | CacheKind::ClockCacheS3Fifo
        )
    }

    /// Whether the cache can expire entries after a TTL.
    pub fn supports_ttl(self) -> bool {
        matches!(self, CacheKind::ClockCache | CacheKind::Moka)
    }

    /// Calls `v.visit::<C>()` with the adapter type of this cache.
    pub fn visit<V: CacheVisitor>(self, v: V) -> V::Output {
        match self {
            CacheKind::ClockCache => v.visit::<ClockCacheAdapter>(self),
            CacheKind::ClockCacheClock => v.visit::<ClockCacheAdapter<ClockPolicy>>(self),
            CacheKind::ClockCacheS3Fifo => v.visit::<ClockCacheAdapter<S3FifoPolicy>>(self),
            CacheKind::QuickCache => v.visit::<QuickCacheAdapter>(self),
            CacheKind::Moka => v.visit::<MokaAdapter>(self),
            CacheKind::MutexLru => v.visit::<MutexLru>(self),
            CacheKind::ShardedLru => v.visit::<ShardedLru>(self),
            CacheKind::HashMap => v.visit::<ReadOnlyHashMap>(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Exercise;

    impl CacheVisitor for Exercise {
        type Output = ();
        fn visit<C: BenchCache>(self, kind: CacheKind) {
            let prefill: Vec<u64> = (0..100).collect();
            let c = C::build(&CacheSpec::new(1000), &prefill);
            if kind.read_only() {
                assert_eq!(c.get(7), Some(7), "{}", kind.name());
                assert_eq!(c.get(1000), None, "{}", kind.name());
                assert_eq!(c.len(), 100);
                return;
            }
            assert!(c.is_empty(), "{}", kind.name());
            assert_eq!(c.get(1), None);
            c.insert(1, 10);
            assert_eq!(c.get(1), Some(10), "{}", kind.name());
            assert_eq!(c.get_or_insert_with(2, || 20), 20);
            assert_eq!(c.get_or_insert_with(2, || 99), 20, "{}", kind.name());
            c.sync();
            assert_eq!(c.len(), 2, "{}", kind.name());
            assert_eq!(c.remove(1), Some(10), "{}", kind.name());
            assert_eq!(c.get(1), None, "{}", kind.name());
            // Capacity is respected (moka and quick_cache may admit a little
            // differently, but never hold far more).
            let clone = c.clone();
            for k in 0..10_000 {
                clone.insert(k, k);
            }
            c.sync();
            assert!(c.len() <= 1100, "{} holds {}", kind.name(), c.len());
            assert!(c.len() >= 500, "{} holds {}", kind.name(), c.len());
        }
    }

    #[test]
    fn every_adapter_behaves_like_a_cache() {
        for kind in CacheKind::ALL {
            kind.visit(Exercise);
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in CacheKind::ALL {
            assert_eq!(CacheKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(CacheKind::from_name("nope"), None);
    }
}
