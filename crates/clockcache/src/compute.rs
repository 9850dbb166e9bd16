//! Read-modify-write of one key, atomic with respect to every other writer:
//! [`Cache::compute`], [`Cache::upsert`] and the [`Cache::entry`] builder.
//!
//! Each runs its function under the key's shard lock, between the lookup
//! and the write, so no write of the key can land in between (readers go on
//! reading the old value until the new one is published). The function must
//! therefore be short, and must not call into the same cache.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc as StdArc;

use crate::cache::Cache;
use crate::sync::epoch;

/// What a [`compute`](Cache::compute) function decides for its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op<V> {
    /// Store this value (inserted, or replacing the current one).
    Put(V),
    /// Remove the current entry, if there is one.
    Remove,
    /// Leave the key as it is.
    Nop,
}

/// What a [`compute`](Cache::compute) call did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompResult<V> {
    /// The key had no live entry; this value was inserted.
    Inserted(V),
    /// The key's value was replaced by this one (the old value is reported to
    /// the listener as [`Replaced`](crate::RemovalCause::Replaced)).
    ReplacedWith(V),
    /// The key's entry, with this value, was removed (reported as
    /// [`Removed`](crate::RemovalCause::Removed)).
    Removed(V),
    /// The key had this live value and keeps it.
    Unchanged(V),
    /// The key had no live entry and still has none.
    StillNone,
}

impl<V> CompResult<V> {
    /// The value the key holds after the call, if any.
    pub fn into_value(self) -> Option<V> {
        match self {
            CompResult::Inserted(v) | CompResult::ReplacedWith(v) | CompResult::Unchanged(v) => {
                Some(v)
            }
            CompResult::Removed(_) | CompResult::StillNone => None,
        }
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Reads the key's live value (`None` if absent or expired) and applies
    /// what `f` decides, in one step: no write of the key by another caller
    /// lands between the read and the write. A value put here gets its
    /// deadline as with [`insert`](Self::insert); a put or a remove made
    /// while a load of the key runs wins over that load, as an `insert` or a
    /// `remove` does.
    ///
    /// `f` runs under the shard lock: keep it short, and do not call into
    /// this cache from it. A compute is a write: it counts no hit or miss.
    ///
    /// ```
    /// use clockcache::{Cache, CompResult, Op};
    ///
    /// let cache: Cache<&str, u32> = Cache::new(10);
    /// // Count, and drop the counter at 3.
    /// let bump = |old: Option<&u32>| match old {
    ///     None => Op::Put(1),
    ///     Some(&2) => Op::Remove,
    ///     Some(n) => Op::Put(n + 1),
    /// };
    /// assert_eq!(cache.compute("n", bump), CompResult::Inserted(1));
    /// assert_eq!(cache.compute("n", bump), CompResult::ReplacedWith(2));
    /// assert_eq!(cache.compute("n", bump), CompResult::Removed(2));
    /// assert_eq!(cache.compute("n", |_| Op::Nop), CompResult::StillNone);
    /// ```
    pub fn compute<F>(&self, key: K, f: F) -> CompResult<V>
    where
        F: FnOnce(Option<&V>) -> Op<V>,
    {
        let now = self.writer_now(false);
        let hash = self.hash(&key);
        let shard = self.shard(hash);
        let guard = epoch::pin();
        let mut retired = self.retired();
        let mut inner = shard.inner.lock();
        let found = shard
            .table(&guard)
            .find(hash, &key, &guard)
            .filter(|e| !self.is_expired_now(e));
        let old = found.map(|e| e.value());
        let result = match f(old) {
            Op::Nop => {
                let r = old.map_or(CompResult::StillNone, |v| CompResult::Unchanged(v.clone()));
                drop(inner);
                r
            }
            Op::Remove => match old {
                None => {
                    drop(inner);
                    CompResult::StillNone
                }
                Some(v) => {
                    let v = v.clone();
                    inner.supersede_load(hash, &key);
                    shard.remove_locked(
                        &mut inner,
                        hash,
                        &key,
                        |_| true,
                        now,
                        &mut retired,
                        &guard,
                    );
                    let change = shard.publish_locked(&mut inner);
                    drop(inner);
                    self.count_over(change);
                    CompResult::Removed(v)
                }
            },
            Op::Put(v) => {
                let was = old.is_some();
                inner.supersede_load(hash, &key);
                let (change, new) = self.insert_built(
                    &mut inner,
                    hash,
                    key,
                    v.clone(),
                    None,
                    now,
                    &mut retired,
                    &guard,
                );
                drop(inner);
                self.settle(change, new, now, &mut retired, &guard);
                if was {
                    CompResult::ReplacedWith(v)
                } else {
                    CompResult::Inserted(v)
                }
            }
        };
        self.release(retired, guard);
        result
    }

    /// Stores `f(current value)`, `f(None)` if the key has no live entry, in
    /// one step (as [`compute`](Self::compute)), and returns the stored
    /// value.
    ///
    /// ```
    /// use clockcache::Cache;
    ///
    /// let cache: Cache<&str, u32> = Cache::new(10);
    /// assert_eq!(cache.upsert("hits", |n| n.map_or(1, |n| n + 1)), 1);
    /// assert_eq!(cache.upsert("hits", |n| n.map_or(1, |n| n + 1)), 2);
    /// ```
    pub fn upsert<F>(&self, key: K, f: F) -> V
    where
        F: FnOnce(Option<&V>) -> V,
    {
        match self.compute(key, |old| Op::Put(f(old))) {
            CompResult::Inserted(v) | CompResult::ReplacedWith(v) => v,
            _ => unreachable!("a put inserts or replaces"),
        }
    }

    /// The entry for `key`, to read, insert or update in one step:
    ///
    /// ```
    /// use clockcache::Cache;
    ///
    /// let cache: Cache<&str, u32> = Cache::new(10);
    /// assert_eq!(cache.entry("a").or_insert(1), 1);
    /// assert_eq!(cache.entry("a").or_insert(5), 1); // present: kept
    /// assert_eq!(cache.entry("a").and_modify(|n| n * 10).or_insert(0), 10);
    /// assert_eq!(cache.entry("b").or_insert_with(|| 2), 2); // single flight
    /// ```
    pub fn entry(&self, key: K) -> EntryRef<'_, K, V, S> {
        EntryRef { cache: self, key }
    }
}

/// One key of a cache, from [`Cache::entry`].
pub struct EntryRef<'a, K, V, S> {
    cache: &'a Cache<K, V, S>,
    key: K,
}

impl<'a, K, V, S> EntryRef<'a, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// The key's live value, else `default`, inserted, in one step.
    pub fn or_insert(self, default: V) -> V {
        self.cache
            .compute(self.key, |old| match old {
                Some(_) => Op::Nop,
                None => Op::Put(default),
            })
            .into_value()
            .expect("kept or inserted")
    }

    /// The key's live value, else the value `init` computes, inserted: the
    /// single-flight [`get_or_insert_with`](Cache::get_or_insert_with)
    /// (`init` runs outside any lock, once for concurrent callers).
    pub fn or_insert_with<F: FnOnce() -> V>(self, init: F) -> V {
        self.cache.get_or_insert_with(self.key, init)
    }

    /// The fallible [`or_insert_with`](Self::or_insert_with):
    /// [`get_or_try_insert_with`](Cache::get_or_try_insert_with).
    pub fn or_try_insert_with<E, F>(self, init: F) -> Result<V, StdArc<E>>
    where
        F: FnOnce() -> Result<V, E>,
        E: Send + Sync + 'static,
    {
        self.cache.get_or_try_insert_with(self.key, init)
    }

    /// Updates a live value with `f` when the entry is then finished with
    /// [`or_insert`](AndModify::or_insert) (which inserts its default
    /// instead when there is none), both in one step.
    pub fn and_modify<F: FnOnce(&V) -> V>(self, f: F) -> AndModify<'a, K, V, S, F> {
        AndModify { entry: self, f }
    }

    /// [`compute`](Cache::compute) on this key.
    pub fn and_compute_with<F>(self, f: F) -> CompResult<V>
    where
        F: FnOnce(Option<&V>) -> Op<V>,
    {
        self.cache.compute(self.key, f)
    }
}

/// An entry with an update to apply if it has a value, from
/// [`EntryRef::and_modify`].
pub struct AndModify<'a, K, V, S, F> {
    entry: EntryRef<'a, K, V, S>,
    f: F,
}

impl<K, V, S, F> AndModify<'_, K, V, S, F>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
    F: FnOnce(&V) -> V,
{
    /// Stores the updated value if the key has a live one, else `default`,
    /// in one step; returns what is stored.
    pub fn or_insert(self, default: V) -> V {
        let f = self.f;
        self.entry
            .cache
            .upsert(self.entry.key, |old| old.map_or(default, f))
    }
}

impl<K: std::fmt::Debug, V, S> std::fmt::Debug for EntryRef<'_, K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryRef")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<K: std::fmt::Debug, V, S, F> std::fmt::Debug for AndModify<'_, K, V, S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AndModify")
            .field("key", &self.entry.key)
            .finish_non_exhaustive()
    }
}
