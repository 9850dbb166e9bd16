//! `moka::sync::Cache` (TinyLFU admission, LRU eviction, deferred maintenance).

use super::{BenchCache, CacheSpec};

/// A `moka::sync::Cache<u64, u64>`, built with `max_capacity` in entries and, for the
/// expiry workload, a cache-wide `time_to_live` (moka's cheapest expiry path).
#[derive(Clone)]
pub struct MokaAdapter(moka::sync::Cache<u64, u64>);

impl BenchCache for MokaAdapter {
    fn build(spec: &CacheSpec, _prefill: &[u64]) -> Self {
        let mut b = moka::sync::Cache::builder().max_capacity(spec.capacity as u64);
        if let Some(ttl) = spec.ttl {
            b = b.time_to_live(ttl);
        }
        MokaAdapter(b.build())
    }
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key)
    }
    fn insert(&self, key: u64, value: u64) {
        self.0.insert(key, value);
    }
    fn remove(&self, key: u64) -> Option<u64> {
        self.0.remove(&key)
    }
    fn get_or_insert_with<F: FnOnce() -> u64>(&self, key: u64, f: F) -> u64 {
        self.0.get_with(key, f)
    }
    fn len(&self) -> usize {
        self.0.entry_count() as usize
    }
    fn sync(&self) {
        self.0.run_pending_tasks();
    }
}
