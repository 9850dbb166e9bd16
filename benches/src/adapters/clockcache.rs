//! This project's engine: `clockcache::Cache`, with its default eviction
//! policy and, as rows of their own, each other policy.

use std::marker::PhantomData;
use std::time::Duration;

use clockcache::{Cache, EvictionPolicy};

use super::{BenchCache, CacheSpec};

/// Which eviction policy an adapter asks the builder for.
pub trait PolicyChoice: Clone + Send + Sync + 'static {
    /// `None`: the engine's default.
    const POLICY: Option<EvictionPolicy>;
}

/// The engine's default policy (adaptive S3-FIFO).
#[derive(Clone)]
pub struct DefaultPolicy;
impl PolicyChoice for DefaultPolicy {
    const POLICY: Option<EvictionPolicy> = None;
}

/// Plain CLOCK (second chance, an LRU approximation).
#[derive(Clone)]
pub struct ClockPolicy;
impl PolicyChoice for ClockPolicy {
    const POLICY: Option<EvictionPolicy> = Some(EvictionPolicy::Clock);
}

/// S3-FIFO with its fixed 10% probationary queue.
#[derive(Clone)]
pub struct S3FifoPolicy;
impl PolicyChoice for S3FifoPolicy {
    const POLICY: Option<EvictionPolicy> = Some(EvictionPolicy::S3Fifo);
}

/// A `clockcache::Cache<u64, u64>` with the engine's defaults (shards, hasher)
/// and the eviction policy `P`. For the expiry workload the spec's TTL is the
/// cache-wide time to live, as for moka, and a maintenance thread (period a
/// quarter of the TTL, between 10 ms and 1 s) reclaims expired entries while
/// the cache is idle, as moka's housekeeper does.
pub struct ClockCacheAdapter<P: PolicyChoice = DefaultPolicy> {
    cache: Cache<u64, u64>,
    policy: PhantomData<P>,
}

impl<P: PolicyChoice> Clone for ClockCacheAdapter<P> {
    fn clone(&self) -> Self {
        ClockCacheAdapter {
            cache: self.cache.clone(),
            policy: PhantomData,
        }
    }
}

/// `CLOCKCACHE_SHARDS=n` in the environment overrides the engine's default
/// shard count, for experiments on the sharding (docs/benchmarks.md); the
/// reported runs leave it unset.
fn shards_override() -> Option<usize> {
    std::env::var("CLOCKCACHE_SHARDS").ok()?.parse().ok()
}

impl<P: PolicyChoice> BenchCache for ClockCacheAdapter<P> {
    fn build(spec: &CacheSpec, _prefill: &[u64]) -> Self {
        let mut b = Cache::<u64, u64>::builder().capacity(spec.capacity as u64);
        if let Some(policy) = P::POLICY {
            b = b.eviction_policy(policy);
        }
        if let Some(n) = shards_override() {
            b = b.shards(n);
        }
        if let Some(ttl) = spec.ttl {
            let period = (ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
            b = b.time_to_live(ttl).maintenance_thread(period);
        }
        ClockCacheAdapter {
            cache: b.build(),
            policy: PhantomData,
        }
    }
    fn get(&self, key: u64) -> Option<u64> {
        self.cache.get(&key)
    }
    fn insert(&self, key: u64, value: u64) {
        self.cache.insert(key, value)
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
