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
use std::hash::{BuildHasher, Hash};
use std::ptr::NonNull;
use std::time::Duration;

use crate::cache::Cache;
use crate::clock::duration_nanos;
use crate::entry::{Entry, HOOKED, IDLE, NEVER};
use crate::slab::trailer;
use crate::sync::Ordering;

/// Trailer word of an entry's write time (refresh-ahead, and the time to
/// live of an entry whose deadline reads may move).
pub(crate) const WRITTEN: usize = 0;
/// Trailer word of an entry's `Expiry` deadline, in a cache that combines
/// an `Expiry` with a time to live or to idle.
pub(crate) const CUSTOM: usize = 1;

/// Trailer words a cache's entries need (see `slab.rs`).
pub(crate) fn trailer_words(ttl: bool, tti: bool, expiry: bool, refresh: bool) -> usize {
    if expiry && (ttl || tti) {
        2
    } else if refresh || (ttl && tti) {
        1
    } else {
        0
    }
}

/// The deadline `life` after `now` (`NEVER` for none or too far).
pub(crate) fn after(now: u64, life: Option<u64>) -> u64 {
    life.and_then(|n| now.checked_add(n))
        .filter(|&d| d < NEVER)
        .unwrap_or(NEVER)
}

/// Time left until `deadline` (`None` for never).
fn remaining(now: u64, deadline: u64) -> Option<Duration> {
    (deadline != NEVER).then(|| Duration::from_nanos(deadline.saturating_sub(now)))
}

/// What a write gives an entry: its deadline, the flags that say what its
/// reads do, and its `Expiry` deadline (`NEVER` without an `Expiry`).
pub(crate) struct Deadlines {
    pub(crate) deadline: u64,
    pub(crate) flags: u8,
    pub(crate) custom: u64,
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// The deadlines of an entry written at `now`: `explicit` (from
    /// `insert_with_ttl`) alone, else the earliest of the time to live, the
    /// time to idle and the `Expiry`'s answer (for an update, given the
    /// `Expiry` deadline of the live entry it replaces, `old_custom`).
    pub(crate) fn write_deadlines(
        &self,
        key: &K,
        value: &V,
        explicit: Option<Duration>,
        old_custom: Option<u64>,
        now: u64,
    ) -> Deadlines {
        if let Some(t) = explicit {
            let d = after(now, Some(duration_nanos(t)));
            return Deadlines {
                deadline: d,
                flags: 0,
                custom: NEVER,
            };
        }
        let core = &*self.core;
        let mut flags = 0;
        let custom = match &core.expiry {
            None => NEVER,
            Some(x) => {
                flags |= HOOKED;
                let life = match old_custom {
                    Some(old) => x.expire_after_update(key, value, remaining(now, old)),
                    None => x.expire_after_insert(key, value),
                };
                after(now, life.map(duration_nanos))
            }
        };
        let mut deadline = custom.min(after(now, core.ttl));
        if core.tti.is_some() {
            flags |= IDLE;
            deadline = deadline.min(after(now, core.tti));
        }
        Deadlines {
            deadline,
            flags,
            custom,
        }
    }

    /// The `Expiry` deadline of live entry `p` (under its shard lock, or
    /// pinned).
    pub(crate) fn custom_deadline(&self, p: NonNull<Entry<K, V>>) -> u64 {
        // SAFETY: the caller's contract: `p` is reachable.
        let e = unsafe { p.as_ref() };
        if self.core.trailer_words > CUSTOM {
            // SAFETY: the cache's blocks carry this word; `p` is the
            // table's pointer, reachable (see above).
            unsafe { trailer(p, CUSTOM) }.load(Ordering::Relaxed)
        } else if e.flags & HOOKED != 0 {
            // An `Expiry` and no other expiry setting: it is the deadline.
            e.deadline.load(Ordering::Relaxed)
        } else {
            NEVER
        }
    }

    /// After a hit at `now` on live entry `p` (deadline `d`, flags set):
    /// asks the `Expiry` for its new deadline and moves the time-to-idle
    /// deadline, keeping the entry's deadline the earliest of the three.
    #[inline(never)]
    pub(crate) fn on_read(&self, p: NonNull<Entry<K, V>>, d: u64, now: u64) {
        let core = &*self.core;
        // SAFETY: found by a pinned reader: reachable until it unpins.
        let e = unsafe { p.as_ref() };
        let mut custom = self.custom_deadline(p);
        if e.flags & HOOKED != 0 {
            if let Some(x) = &core.expiry {
                let life = x.expire_after_read(e.key(), e.value(), remaining(now, custom));
                let new = after(now, life.map(duration_nanos));
                if new != custom && core.trailer_words > CUSTOM {
                    // SAFETY: as in `custom_deadline`.
                    unsafe { trailer(p, CUSTOM) }.store(new, Ordering::Relaxed);
                }
                custom = new;
            }
        }
        let mut next = custom;
        if core.ttl.is_some() && core.trailer_words > WRITTEN {
            // SAFETY: as in `custom_deadline`: the cache's blocks carry the
            // write time whenever a time to live combines with another
            // setting (and only then do reads get here with one).
            let written = unsafe { trailer(p, WRITTEN) }.load(Ordering::Relaxed);
            next = next.min(after(written, core.ttl));
        }
        if e.flags & IDLE != 0 {
            if let Some(tti) = core.tti {
                next = next.min(after(now, Some(tti)));
                // Skip a store that moves the deadline forward by less than
                // 1/64 of the idle time: hot entries are not rewritten on
                // every read.
                if next > d && next <= d.saturating_add(tti >> 6) {
                    return;
                }
            }
        }
        if next != d {
            e.deadline.store(next, Ordering::Relaxed);
        }
    }
}

/// Computes an entry's time to live from its key and value: when it is
/// inserted, when it is updated, and when it is read.
///
/// Set with [`CacheBuilder::expiry`](crate::CacheBuilder::expiry). It
/// combines with the cache-wide time to live and time to idle: an entry
/// expires at the earliest of the three deadlines. A ttl given to
/// [`Cache::insert_with_ttl`](crate::Cache::insert_with_ttl) replaces all
/// three for that entry (its reads call no hook and do not extend it).
///
/// Each answer is a duration from the call's moment (`None`: this
/// deadline never comes). `expire_after_update` runs when an insert (or a
/// compute, or a load) replaces a live entry of the key, and is given the
/// time the old entry had left by this trait's deadline; by default it
/// answers as `expire_after_insert`. `expire_after_read` runs on every hit
/// through [`get`](crate::Cache::get) and the loading calls (not `peek`,
/// `contains_key` or iteration), with the time left; by default it keeps
/// it.
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

    /// Time to live of an entry that replaces a live entry of its key, which
    /// had `remaining` left (`None`: never). By default, as
    /// [`expire_after_insert`](Self::expire_after_insert).
    fn expire_after_update(
        &self,
        key: &K,
        value: &V,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        let _ = remaining;
        self.expire_after_insert(key, value)
    }

    /// Time to live of an entry just read, which had `remaining` left
    /// (`None`: never). By default `remaining`: reads do not change it. It
    /// runs on the reading thread, on every hit: keep it cheap.
    fn expire_after_read(
        &self,
        key: &K,
        value: &V,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        let _ = (key, value);
        remaining
    }
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
