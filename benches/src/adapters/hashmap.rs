//! The upper bound for a read: a `HashMap` with ahash behind an `Arc`, no lock, no
//! eviction, no recency bookkeeping. It is built once from the prefill keys and never
//! written; the harness runs it on read-only workloads only.

use std::collections::HashMap;
use std::sync::Arc;

use super::{BenchCache, CacheSpec};

/// A read-only `Arc<HashMap<u64, u64, ahash::RandomState>>`.
#[derive(Clone)]
pub struct ReadOnlyHashMap(Arc<HashMap<u64, u64, ahash::RandomState>>);

impl BenchCache for ReadOnlyHashMap {
    fn build(_spec: &CacheSpec, prefill: &[u64]) -> Self {
        let mut m = HashMap::with_capacity_and_hasher(prefill.len(), ahash::RandomState::new());
        m.extend(prefill.iter().map(|&k| (k, k)));
        ReadOnlyHashMap(Arc::new(m))
    }
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key).copied()
    }
    /// Read-only: writes are ignored (the harness never issues them).
    fn insert(&self, _key: u64, _value: u64) {}
    /// Read-only: nothing is removed.
    fn remove(&self, key: u64) -> Option<u64> {
        self.0.get(&key).copied()
    }
    fn get_or_insert_with<F: FnOnce() -> u64>(&self, key: u64, f: F) -> u64 {
        self.get(key).unwrap_or_else(f)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}
