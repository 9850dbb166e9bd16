//! Weakly consistent iteration.

use crate::cache::Cache;
use crate::entry::NEVER;
use crate::raw::RawTable;
use crate::sync::epoch::{self, Guard};
use crate::sync::Ordering;
use std::hash::{BuildHasher, Hash};

/// Iterator over clones of a cache's live entries, from [`Cache::iter`].
///
/// It walks one shard's table at a time under an epoch guard (so it is not
/// `Send`), takes no lock, and never blocks writers.
pub struct Iter<'a, K, V, S> {
    cache: &'a Cache<K, V, S>,
    shard: usize,
    slot: usize,
    /// The table of the shard being walked, loaded under `guard`.
    table: *const RawTable<K, V>,
    guard: Option<Guard>,
}

impl<'a, K, V, S> Iter<'a, K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    pub(crate) fn new(cache: &'a Cache<K, V, S>) -> Self {
        Self {
            cache,
            shard: 0,
            slot: 0,
            table: std::ptr::null(),
            guard: None,
        }
    }
}

impl<K, V, S> Iterator for Iter<'_, K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        let shards = &self.cache.core.shards;
        loop {
            if self.guard.is_none() {
                let shard = shards.get(self.shard)?;
                let guard = epoch::pin();
                self.table = shard.table(&guard);
                self.guard = Some(guard);
                self.slot = 0;
            }
            // SAFETY: `table` was loaded under `self.guard`, which is still
            // pinned; a replaced table is retired through the collector, so
            // it stays allocated (and unchanged) while the guard lives.
            let table = unsafe { &*self.table };
            while let Some(n) = table.next_full_slot(self.slot) {
                let p = table.nth_entry_ptr(n);
                self.slot = n + 1;
                if p.is_null() {
                    continue;
                }
                // SAFETY: loaded from the table under the pinned guard:
                // entries are retired only after being unlinked, and freed
                // only once every guard pinned before that is gone.
                let e = unsafe { &*p };
                let d = e.deadline.load(Ordering::Relaxed);
                if d != NEVER && d <= self.cache.core.clock.now() {
                    continue;
                }
                return Some((e.key().clone(), e.value().clone()));
            }
            self.guard = None;
            self.table = std::ptr::null();
            self.shard += 1;
        }
    }
}
