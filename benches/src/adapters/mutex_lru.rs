//! The classic mutex-LRU: the `lru` crate inside one `parking_lot::Mutex`.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::{BenchCache, CacheSpec};

/// `lru::LruCache` behind a single lock: exact LRU, every operation serialised.
#[derive(Clone)]
pub struct MutexLru(Arc<Mutex<LruCache<u64, u64>>>);

impl BenchCache for MutexLru {
    fn build(spec: &CacheSpec, _prefill: &[u64]) -> Self {
        let cap = NonZeroUsize::new(spec.capacity.max(1)).expect("non-zero");
        MutexLru(Arc::new(Mutex::new(LruCache::new(cap))))
    }
    fn get(&self, key: u64) -> Option<u64> {
        self.0.lock().get(&key).copied()
    }
    fn insert(&self, key: u64, value: u64) {
        self.0.lock().put(key, value);
    }
    fn remove(&self, key: u64) -> Option<u64> {
        self.0.lock().pop(&key)
    }
    fn get_or_insert_with<F: FnOnce() -> u64>(&self, key: u64, f: F) -> u64 {
        *self.0.lock().get_or_insert(key, f)
    }
    fn len(&self) -> usize {
        self.0.lock().len()
    }
}
