//! `quick_cache::sync::Cache` (sharded S3-FIFO-like CLOCK-Pro variant).

use std::convert::Infallible;
use std::sync::Arc;

use super::{BenchCache, CacheSpec};

/// A `quick_cache::sync::Cache<u64, u64>` with its default hasher and shard count.
#[derive(Clone)]
pub struct QuickCacheAdapter(Arc<quick_cache::sync::Cache<u64, u64>>);

impl BenchCache for QuickCacheAdapter {
    fn build(spec: &CacheSpec, _prefill: &[u64]) -> Self {
        QuickCacheAdapter(Arc::new(quick_cache::sync::Cache::new(spec.capacity)))
    }
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key)
    }
    fn insert(&self, key: u64, value: u64) {
        self.0.insert(key, value);
    }
    fn remove(&self, key: u64) -> Option<u64> {
        self.0.remove(&key).map(|(_, v)| v)
    }
    fn get_or_insert_with<F: FnOnce() -> u64>(&self, key: u64, f: F) -> u64 {
        match self
            .0
            .get_or_insert_with(&key, || Ok::<u64, Infallible>(f()))
        {
            Ok(v) => v,
            Err(e) => match e {},
        }
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}
