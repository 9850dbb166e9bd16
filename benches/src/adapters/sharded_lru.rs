//! The mutex-LRU sharded 16 ways: each shard an exact LRU of capacity / 16.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::{BenchCache, CacheSpec};

/// Number of shards.
pub const SHARDS: usize = 16;

/// Sixteen `lru::LruCache`s, each behind its own `parking_lot::Mutex`, picked by an
/// ahash of the key.
#[derive(Clone)]
pub struct ShardedLru(Arc<Inner>);

struct Inner {
    hasher: ahash::RandomState,
    shards: Vec<Mutex<LruCache<u64, u64>>>,
}

impl ShardedLru {
    fn shard(&self, key: u64) -> &Mutex<LruCache<u64, u64>> {
        // High bits: the shard's own HashMap uses the low ones.
        let h = self.0.hasher.hash_one(key);
        &self.0.shards[(h >> 60) as usize % SHARDS]
    }
}

impl BenchCache for ShardedLru {
    fn build(spec: &CacheSpec, _prefill: &[u64]) -> Self {
        let per = NonZeroUsize::new(spec.capacity.div_ceil(SHARDS).max(1)).expect("non-zero");
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(LruCache::new(per)))
            .collect();
        ShardedLru(Arc::new(Inner {
            hasher: ahash::RandomState::new(),
            shards,
        }))
    }
    fn get(&self, key: u64) -> Option<u64> {
        self.shard(key).lock().get(&key).copied()
    }
    fn insert(&self, key: u64, value: u64) {
        self.shard(key).lock().put(key, value);
    }
    fn remove(&self, key: u64) -> Option<u64> {
        self.shard(key).lock().pop(&key)
    }
    fn get_or_insert_with<F: FnOnce() -> u64>(&self, key: u64, f: F) -> u64 {
        *self.shard(key).lock().get_or_insert(key, f)
    }
    fn len(&self) -> usize {
        self.0.shards.iter().map(|s| s.lock().len()).sum()
    }
}
