//! Snapshots: a cache's entries, most valuable first, with the time each had
//! left, to save (with serde, feature `serde`) and to warm a new cache from,
//! so that a restarted service comes back with its hot entries hot and
//! without the ones that expired.

use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use crate::cache::{Cache, Life};
use crate::entry::NEVER;
use crate::sync::epoch;
use crate::sync::Ordering;

/// One entry of a [`Cache::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SnapshotEntry<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// The time it had left when the snapshot was taken (`None`: it never
    /// expires).
    pub time_to_live: Option<Duration>,
    /// How often it was used recently, as the eviction policy counts it
    /// (0 to 3).
    pub frequency: u8,
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// The live entries, in the order in which the eviction policy would
    /// keep them (most valuable first: most used, then furthest from the
    /// clock hand), each with the time it has left. Each shard's order is
    /// read under its lock, one shard at a time, and the values are cloned
    /// after the lock is released; writes in between may or may not show.
    /// Expired entries are left out.
    ///
    /// [`CacheBuilder::warm`](crate::CacheBuilder::warm) builds a cache from
    /// it; with the `serde` feature it can be saved in any serde format.
    ///
    /// ```
    /// use clockcache::Cache;
    ///
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// cache.insert(1, "cold".into());
    /// cache.insert(2, "hot".into());
    /// for _ in 0..3 {
    ///     cache.get(&2);
    /// }
    /// let snapshot = cache.snapshot();
    /// assert_eq!(snapshot[0].key, 2);
    /// assert_eq!(snapshot.len(), 2);
    ///
    /// let restored: Cache<u32, String> = Cache::builder().capacity(100).warm(snapshot).build();
    /// assert_eq!(restored.get(&2).as_deref(), Some("hot"));
    /// ```
    pub fn snapshot(&self) -> Vec<SnapshotEntry<K, V>> {
        let mut ranked = Vec::new();
        // Held until the values are cloned: see below.
        let _guard = epoch::pin();
        for shard in self.core.shards.iter() {
            // Under the lock: the order. The entries stay allocated while
            // `_guard` is pinned, even if removed once the lock is released.
            ranked.extend(shard.inner.lock().ranked());
        }
        ranked.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        let now = self.core.clock.now();
        ranked
            .into_iter()
            .filter_map(|(p, _)| {
                // SAFETY: read from a ring under its shard lock while
                // `_guard` was pinned, as it still is: allocated until then.
                let e = unsafe { p.as_ref() };
                let d = e.deadline.load(Ordering::Relaxed);
                if d != NEVER && d <= now {
                    return None;
                }
                Some(SnapshotEntry {
                    key: e.key().clone(),
                    value: e.value().clone(),
                    time_to_live: (d != NEVER).then(|| Duration::from_nanos(d - now)),
                    frequency: e.freq.load(Ordering::Relaxed),
                })
            })
            .collect()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Inserts snapshot entries, least valuable first (so that, if they do
    /// not all fit, the policy evicts those), each expiring no later than
    /// the time it had left and with its use count restored.
    pub(crate) fn warm(&self, entries: Vec<SnapshotEntry<K, V>>) {
        for e in entries.into_iter().rev() {
            if e.time_to_live == Some(Duration::ZERO) {
                continue;
            }
            let now = self.writer_now(e.time_to_live.is_some());
            let hash = self.hash(&e.key);
            let shard = self.shard(hash);
            let guard = epoch::pin();
            let mut retired = self.retired();
            let life = Life::Warm {
                left: e.time_to_live,
                used: e.frequency,
            };
            let (change, new) = {
                let mut inner = shard.inner.lock();
                self.insert_life(
                    &mut inner,
                    hash,
                    e.key,
                    e.value,
                    life,
                    now,
                    &mut retired,
                    &guard,
                )
            };
            self.settle(change, new, now, &mut retired, &guard);
            self.release(retired, guard);
        }
    }
}
