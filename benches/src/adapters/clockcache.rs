//! This project's engine: `clockcache::Cache`.

use std::time::Duration;

use clockcache::Cache;

use super::{BenchCache, CacheSpec};

/// A `clockcache::Cache<u64, u64>` with the engine's defaults (shards, hasher,
/// eviction policy). For the expiry workload every insert carries the spec's TTL
/// through `insert_with_ttl`.
#[derive(Clone)]
pub struct ClockCacheAdapter {
    cache: Cache<u64, u64>,
    ttl: Option<Duration>,
}

impl BenchCache for ClockCacheAdapter {
    fn build(spec: &CacheSpec, _prefill: &[u64]) -> Self {
        ClockCacheAdapter {
            cache: Cache::<u64, u64>::builder()
                .capacity(spec.capacity as u64)
                .build(),
            ttl: spec.ttl,
        }
    }
    fn get(&self, key: u64) -> Option<u64> {
        self.cache.get(&key)
    }
    fn insert(&self, key: u64, value: u64) {
        match self.ttl {
            None => self.cache.insert(key, value),
            Some(ttl) => self.cache.insert_with_ttl(key, value, ttl),
        }
    }
    fn remove(&self, key: u64) -> Option<u64> {
        self.cache.remove(&key)
    }
    fn get_or_insert_with<F: FnOnce() -> u64>(&self, key: u64, f: F) -> u64 {
        self.cache.get_or_insert_with(key, f)
    }
    fn len(&self) -> usize {
        self.cache.len()
    }
}
