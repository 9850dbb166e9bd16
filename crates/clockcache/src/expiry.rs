//! Per-entry expiry: the user-facing [`Expiry`] trait and the shard's
//! deadline index.
//!
//! Every entry with a deadline has an item `(deadline, hash)` in its shard's
//! [`DeadlineIndex`], a binary min-heap. Purging pops the items that are due
//! and looks each hash up in the table: the work is proportional to what
//! expired (times a log), never a scan of the cache, and it does not touch
//! the eviction queues, so reclaiming expired entries never disturbs recency.
//!
//! Items are not removed when their entry is removed or replaced; a stale
//! item is recognised when it comes due (no entry with that hash is due) and
//! dropped. So that stale items cannot pile up, the heap is rebuilt from the
//! live entries whenever it holds more than twice as many items as live
//! entries with a deadline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Computes the time to live of an entry from its key and value.
///
/// Set with [`CacheBuilder::expiry`](crate::CacheBuilder::expiry). It takes
/// precedence over the cache-wide time to live and time to idle; a ttl given
/// to [`Cache::insert_with_ttl`](crate::Cache::insert_with_ttl) takes
/// precedence over it.
///
/// ```
/// use clockcache::{Cache, Expiry};
/// use std::time::Duration;
///
/// struct ByKind;
/// impl Expiry<String, String> for ByKind {
///     fn expire_after_insert(&self, key: &String, _value: &String) -> Option<Duration> {
///         if key.starts_with("tmp:") { Some(Duration::from_secs(1)) } else { None }
///     }
/// }
///
/// let cache: Cache<String, String> = Cache::builder().capacity(100).expiry(ByKind).build();
/// cache.insert("tmp:a".into(), "x".into());
/// cache.insert("keep".into(), "y".into());
/// ```
pub trait Expiry<K, V>: Send + Sync + 'static {
    /// Time to live of an entry being inserted; `None` means it never
    /// expires.
    fn expire_after_insert(&self, key: &K, value: &V) -> Option<Duration>;
}

impl<K, V, F> Expiry<K, V> for F
where
    F: Fn(&K, &V) -> Option<Duration> + Send + Sync + 'static,
{
    fn expire_after_insert(&self, key: &K, value: &V) -> Option<Duration> {
        self(key, value)
    }
}

/// A shard's deadline-ordered index of entries that can expire (writer only).
#[derive(Default)]
pub(crate) struct DeadlineIndex {
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    /// Live entries with a deadline in the shard.
    live: usize,
}

impl DeadlineIndex {
    /// Files a newly published entry's deadline.
    pub(crate) fn file(&mut self, deadline: u64, hash: u64) {
        self.heap.push(Reverse((deadline, hash)));
        self.live += 1;
    }

    /// Re-files an entry whose deadline moved (time to idle); the old item
    /// stays until it comes due.
    pub(crate) fn refile(&mut self, deadline: u64, hash: u64) {
        self.heap.push(Reverse((deadline, hash)));
    }

    /// An entry with a deadline left the shard.
    pub(crate) fn forget(&mut self) {
        self.live -= 1;
    }

    /// Takes the next item due at `now`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<u64> {
        match self.heap.peek() {
            Some(Reverse((d, _))) if *d <= now => self.heap.pop().map(|Reverse((_, h))| h),
            _ => None,
        }
    }

    /// Whether anything is due at `now`.
    pub(crate) fn has_due(&self, now: u64) -> bool {
        matches!(self.heap.peek(), Some(Reverse((d, _))) if *d <= now)
    }

    /// Whether stale items outnumber live ones enough to rebuild.
    pub(crate) fn needs_rebuild(&self) -> bool {
        self.heap.len() > 2 * self.live + 64
    }

    /// Rebuilds from the live entries' `(deadline, hash)`.
    pub(crate) fn rebuild(&mut self, items: impl Iterator<Item = (u64, u64)>) {
        let v: Vec<_> = items.map(Reverse).collect();
        self.live = v.len();
        self.heap = BinaryHeap::from(v);
    }

    pub(crate) fn clear(&mut self) {
        self.heap = BinaryHeap::new();
        self.live = 0;
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.heap.capacity() * 16
    }
}
