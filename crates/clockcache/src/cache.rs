//! The cache front end: hashing, shard selection, the lock-free read path,
//! and the write paths that lock one shard at a time.

use crate::builder::CacheBuilder;
use crate::clock::ClockSource;
use crate::entry::{Entry, HOOKED, NEVER};
use crate::expiry::{after, Deadlines, Expiry};
use crate::hasher::DefaultHashBuilder;
use crate::refresh::RefreshConfig;
use crate::shard::{Listener, Retired, Shard};
use crate::slab::InFlight;
use crate::stats::{CacheStats, ReadCounters};
use crate::sync::epoch::{self, Guard};
use crate::sync::{Arc, AtomicBool, AtomicUsize, Ordering};
use crate::RemovalCause;
use equivalent::Equivalent;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::ptr::NonNull;
use std::time::Duration;

/// What a write says about its entry's deadline.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Life {
    /// The cache's settings.
    Default,
    /// Its own ttl (`insert_with_ttl`), replacing them.
    Own(Duration),
    /// The cache's settings, but no later than `left` from now, and with the
    /// access counter `used` (warming from a snapshot).
    Warm { left: Option<Duration>, used: u8 },
}

/// Computes an entry's weight (see [`CacheBuilder::weigher`]).
pub(crate) type Weigher<K, V> = Box<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// Shared state behind every handle on one cache.
pub(crate) struct Core<K, V, S> {
    pub(crate) shards: Box<[Shard<K, V>]>,
    pub(crate) hasher: S,
    pub(crate) clock: ClockSource,
    pub(crate) listener: Option<Listener<K, V>>,
    pub(crate) weigher: Option<Weigher<K, V>>,
    pub(crate) expiry: Option<Box<dyn Expiry<K, V>>>,
    /// Default time to live, nanoseconds.
    pub(crate) ttl: Option<u64>,
    /// Time to idle, nanoseconds.
    pub(crate) tti: Option<u64>,
    pub(crate) capacity: u64,
    pub(crate) reads: ReadCounters,
    /// Shards whose weight is over their budget (rare: only an entry heavier
    /// than a shard's share puts one there). While non-zero, writers check
    /// the whole-cache bound and evict across shards.
    pub(crate) over: AtomicUsize,
    /// Next shard to evict from when enforcing the whole-cache bound.
    pub(crate) hand: AtomicUsize,
    /// Whether any entry can have a deadline (expiry configured, or an
    /// `insert_with_ttl` seen). Until then writers skip reading the clock.
    pub(crate) may_expire: AtomicBool,
    /// Sealed batches of removed entries whose values the collector has
    /// not dropped yet, over every shard.
    pub(crate) in_flight: Arc<InFlight>,
    /// Refresh-ahead, if configured (its entries' blocks then carry their
    /// write time).
    pub(crate) refresh: Option<RefreshConfig<K, V>>,
    /// Words of each entry block's trailer (see `slab.rs` and `expiry.rs`).
    pub(crate) trailer_words: usize,
    pub(crate) eviction_policy: crate::EvictionPolicy,
    /// Stops the maintenance thread, if any, when the cache goes.
    #[cfg(not(loom))]
    pub(crate) _maintenance: Option<crate::maintenance::StopOnDrop>,
}

/// A bounded, thread-safe, concurrent cache.
///
/// `Cache` is a cheap handle (`Clone` shares one cache). Reads ([`get`],
/// [`peek`], [`contains_key`]) take no lock; writes lock one shard. See the
/// [crate documentation](crate) for the design and an example.
///
/// [`get`]: Cache::get
/// [`peek`]: Cache::peek
/// [`contains_key`]: Cache::contains_key
pub struct Cache<K, V, S = DefaultHashBuilder> {
    pub(crate) core: Arc<Core<K, V, S>>,
}

impl<K, V, S> Clone for Cache<K, V, S> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
        }
    }
}

impl<K, V, S> fmt::Debug for Cache<K, V, S>
where
    K: Eq,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field(
                "len",
                &self.core.shards.iter().map(Shard::len).sum::<usize>(),
            )
            .field("capacity", &self.core.capacity)
            .field("shards", &self.core.shards.len())
            .finish()
    }
}

impl<K, V> Cache<K, V, DefaultHashBuilder>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache holding at most `capacity` entries, with the default policy,
    /// no expiry and a randomly seeded [`DefaultHashBuilder`].
    ///
    /// `Cache::new(0)` is valid and stores nothing (every insert is reported
    /// to the listener as `Evicted`).
    pub fn new(capacity: u64) -> Self {
        CacheBuilder::new().capacity(capacity).build()
    }

    /// A builder for every other setting.
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder::new()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    #[inline]
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.core.hasher.hash_one(key)
    }

    /// An empty list of departures for one write, recorded only when a
    /// listener will hear of them.
    #[inline]
    pub(crate) fn retired(&self) -> Retired<K, V> {
        Retired::new(self.core.listener.is_some())
    }

    #[inline]
    pub(crate) fn shard(&self, hash: u64) -> &Shard<K, V> {
        // Bits 32..: the table's home slot uses the low 32 bits and the tag
        // the top 7, so the three are independent.
        let i = (hash >> 32) as usize & (self.core.shards.len() - 1);
        &self.core.shards[i]
    }

    /// The value for `key`, marking it recently used. Returns `None` if the
    /// key is absent or its entry has expired.
    ///
    /// Takes no lock and writes no shared counter: it pins the epoch,
    /// searches the shard's table, and at most sets the entry's small access
    /// counter (and, with time to idle, its deadline). A thread whose
    /// lookups miss often reads the key's home bucket first, so that a miss
    /// there does not even pin.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.lookup::<Q, true>(key)
    }

    /// [`get`](Self::get), counting a miss only if `COUNT_MISS` (a loading
    /// call counts its miss where it decides to load or wait).
    #[inline(always)]
    pub(crate) fn lookup<Q, const COUNT_MISS: bool>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        let stripe = self.core.reads.stripe();
        let guard;
        let found = if stripe.scouts() {
            // This thread has been missing often: read the home bucket
            // before pinning, so that a miss whose home holds no candidate
            // ends here, unpinned; otherwise the candidate entry's cache
            // miss overlaps the pin.
            let scouted_table = shard.table_unpinned();
            let Some(scouted) = scouted_table.scout(hash) else {
                stripe.miss(COUNT_MISS);
                return None;
            };
            guard = epoch::pin();
            let table = shard.table(&guard);
            if std::ptr::eq(table, scouted_table) {
                table.find_scouted(hash, key, scouted, &guard)
            } else {
                // The shard outgrew its table since the scout.
                table.find_raw(hash, key, &guard)
            }
        } else {
            // Mostly hits: the bucket's cache miss overlaps the pin's
            // atomic instruction (a scout would have to wait for it).
            shard.prefetch(hash);
            guard = epoch::pin();
            shard.table(&guard).find_raw(hash, key, &guard)
        };
        match found {
            Some(p) if self.live_for_read(p) => {
                // SAFETY: the table's pointer, loaded while `guard` is
                // pinned: the entry stays allocated until it unpins (see
                // `find`).
                let e = unsafe { p.as_ref() };
                e.touch();
                stripe.hit();
                let value = e.value().clone();
                if let Some(config) = &self.core.refresh {
                    self.refresh_if_due(config, p, hash, &value, guard);
                }
                Some(value)
            }
            _ => {
                stripe.miss(COUNT_MISS);
                None
            }
        }
    }

    /// Checks the deadline of entry `p`, found by a pinned reader, and, if
    /// its reads move it (time to idle, an `Expiry` read hook), moves it.
    ///
    /// Until something can expire, the deadline is not read at all (it sits
    /// on the entry's last bytes, possibly on a second cache line). A writer
    /// sets `may_expire` before it publishes the first entry with a
    /// deadline, and the reader loaded `e` with Acquire from the slot that
    /// publication stored (Release), so a reader that finds such an entry
    /// sees the flag set.
    #[inline]
    pub(crate) fn live_for_read(&self, p: NonNull<Entry<K, V>>) -> bool {
        if !self.core.may_expire.load(Ordering::Relaxed) {
            return true;
        }
        // SAFETY: the caller found `p` in the table while pinned: it stays
        // allocated until the caller unpins.
        let e = unsafe { p.as_ref() };
        let d = e.deadline.load(Ordering::Relaxed);
        if d == NEVER && e.flags & HOOKED == 0 {
            return true;
        }
        let now = self.core.clock.now();
        if d <= now {
            return false;
        }
        if e.flags != 0 {
            self.on_read(p, d, now);
        }
        true
    }

    /// The value for `key` without marking it used or counting a hit or a
    /// miss (and without extending a time-to-idle deadline).
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        shard.table_unpinned().scout(hash)?;
        let guard = epoch::pin();
        let e = shard.table(&guard).find(hash, key, &guard)?;
        (!self.is_expired_now(e)).then(|| e.value().clone())
    }

    pub(crate) fn is_expired_now(&self, e: &Entry<K, V>) -> bool {
        let d = e.deadline.load(Ordering::Relaxed);
        d != NEVER && d <= self.core.clock.now()
    }

    /// Whether `key` has a live entry (no recency change).
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        if shard.table_unpinned().scout(hash).is_none() {
            return false;
        }
        let guard = epoch::pin();
        let found = shard.table(&guard).find(hash, key, &guard);
        found.is_some_and(|e| !self.is_expired_now(e))
    }

    /// Inserts or replaces the value for `key`. It expires at the earliest
    /// of its time to live, its idle deadline and its [`Expiry`]'s answer
    /// (none of them set: never). An old entry of the key that had expired
    /// but was not reclaimed yet is reported as [`RemovalCause::Expired`],
    /// not `Replaced`, and the write counts as an insert.
    ///
    /// An entry heavier than the whole capacity is not stored: it replaces
    /// (removes) the key's old entry and is reported to the listener as
    /// [`RemovalCause::Evicted`].
    pub fn insert(&self, key: K, value: V) {
        self.insert_inner(key, value, None);
    }

    /// Inserts or replaces the value for `key`, expiring `ttl` from now
    /// (overriding every cache-wide setting for this entry).
    ///
    /// A zero `ttl` stores nothing: it removes the key's old entry and
    /// reports the new one as [`RemovalCause::Expired`]. A `ttl` too large to
    /// represent (beyond ~580 years) means "never expires".
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.insert_inner(key, value, Some(ttl));
    }

    /// Replaces the value for `key` only if the key has a live entry and
    /// `pred` accepts its value: a compare-and-swap. The check and the write
    /// happen under the shard lock, atomically with respect to every other
    /// writer of the key, so a value written in between is never overwritten
    /// by one computed from an older read. Returns whether the compare
    /// succeeded and `value` was written as [`insert`](Self::insert) writes
    /// it (the old value is reported as [`RemovalCause::Replaced`]; a value
    /// heavier than the whole capacity leaves at once, as there); otherwise
    /// `value` is dropped unseen by the listener. `pred` runs under that
    /// lock: it must not call into this cache.
    ///
    /// ```
    /// use clockcache::Cache;
    ///
    /// let cache: Cache<&str, u32> = Cache::new(10);
    /// cache.insert("hits", 1);
    /// // Read, compute, and write back only if nobody wrote in between.
    /// let seen = cache.get("hits").unwrap();
    /// assert!(cache.replace_if("hits", seen + 1, |v| *v == seen));
    /// assert!(!cache.replace_if("hits", seen + 1, |v| *v == seen)); // 2 now
    /// assert!(!cache.replace_if("absent", 1, |_| true)); // no entry: no insert
    /// assert_eq!(cache.get("hits"), Some(2));
    /// ```
    pub fn replace_if<F>(&self, key: K, value: V, pred: F) -> bool
    where
        F: FnOnce(&V) -> bool,
    {
        self.replace_inner(key, value, None, pred)
    }

    /// Like [`replace_if`](Self::replace_if), and the new value expires
    /// `ttl` from now, as with [`insert_with_ttl`](Self::insert_with_ttl).
    pub fn replace_with_ttl_if<F>(&self, key: K, value: V, ttl: Duration, pred: F) -> bool
    where
        F: FnOnce(&V) -> bool,
    {
        self.replace_inner(key, value, Some(ttl), pred)
    }

    fn replace_inner<F>(&self, key: K, value: V, ttl: Option<Duration>, pred: F) -> bool
    where
        F: FnOnce(&V) -> bool,
    {
        let now = self.writer_now(ttl.is_some());
        let hash = self.hash(&key);
        let shard = self.shard(hash);
        let guard = epoch::pin();
        let mut retired = self.retired();
        let mut inner = shard.inner.lock();
        let found = shard.table(&guard).find(hash, &key, &guard);
        if !found.is_some_and(|e| !self.is_expired_now(e) && pred(e.value())) {
            // The key and value are dropped after the lock, like every
            // other user value.
            drop(inner);
            return false;
        }
        inner.supersede_load(hash, &key);
        let (change, new) =
            self.insert_built(&mut inner, hash, key, value, ttl, now, &mut retired, &guard);
        drop(inner);
        self.settle(change, new, now, &mut retired, &guard);
        self.release(retired, guard);
        true
    }

    /// Builds an entry: weight, deadlines, and whether it cannot stay.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn make_entry(
        &self,
        inner: &mut crate::shard::Inner<K, V>,
        key: K,
        value: V,
        hash: u64,
        life: Life,
        now: u64,
        guard: &Guard,
    ) -> (NonNull<Entry<K, V>>, Option<RemovalCause>) {
        let ttl = match life {
            Life::Own(t) => Some(t),
            _ => None,
        };
        let core = &*self.core;
        let weight = core.weigher.as_ref().map_or(1, |w| w(&key, &value));
        // An update asks the `Expiry` with the time the live entry had left.
        let old_custom = match (&core.expiry, ttl) {
            (Some(_), None) => self
                .shard(hash)
                .table(guard)
                .find_raw(hash, &key, guard)
                .filter(|&p| {
                    // SAFETY: the table's live entry (shard lock held).
                    let d = unsafe { p.as_ref() }.deadline.load(Ordering::Relaxed);
                    d == NEVER || d > now
                })
                .map(|p| self.custom_deadline(p)),
            _ => None,
        };
        let Deadlines {
            mut deadline,
            flags,
            mut custom,
        } = self.write_deadlines(&key, &value, ttl, old_custom, now);
        let mut frequency = 0;
        if let Life::Warm { left, used } = life {
            let cap = after(now, left.map(crate::clock::duration_nanos));
            deadline = deadline.min(cap);
            custom = custom.min(cap);
            frequency = used.min(crate::entry::MAX_FREQ);
        }
        let doa = if u64::from(weight) > core.capacity {
            Some(RemovalCause::Evicted)
        } else if deadline <= now {
            Some(RemovalCause::Expired)
        } else {
            None
        };
        (
            inner.alloc(
                Entry::new(key, value, hash, weight, deadline, flags).used(frequency),
                [now, custom],
            ),
            doa,
        )
    }

    /// How far shard `of` may go over its budget: zero unless an entry
    /// heavier than a shard's share is involved (`heavy`) or some shard is
    /// already over its budget; then whatever capacity the other shards
    /// leave unused.
    fn allowance(&self, of: &Shard<K, V>, heavy: bool) -> u64 {
        let core = &*self.core;
        if !heavy && core.over.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let others: u64 = core
            .shards
            .iter()
            .filter(|s| !std::ptr::eq(*s, of))
            .map(Shard::weight)
            .sum();
        core.capacity
            .saturating_sub(others)
            .saturating_sub(of.budget())
    }

    /// The time for a write: the clock, or 0 while no entry can expire
    /// (nothing is due at 0, so purging and expiry checks then do nothing).
    pub(crate) fn writer_now(&self, explicit_ttl: bool) -> u64 {
        let core = &*self.core;
        if explicit_ttl && !core.may_expire.load(Ordering::Relaxed) {
            core.may_expire.store(true, Ordering::Relaxed);
        }
        if core.may_expire.load(Ordering::Relaxed) {
            core.clock.now()
        } else {
            0
        }
    }

    /// Builds the entry for `key` and inserts it into its shard, whose
    /// lock the caller holds (`inner`). Returns `insert_locked`'s result.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn insert_built(
        &self,
        inner: &mut crate::shard::Inner<K, V>,
        hash: u64,
        key: K,
        value: V,
        ttl: Option<Duration>,
        now: u64,
        retired: &mut Retired<K, V>,
        guard: &Guard,
    ) -> (isize, *const Entry<K, V>) {
        let life = match ttl {
            Some(t) => Life::Own(t),
            None => Life::Default,
        };
        self.insert_life(inner, hash, key, value, life, now, retired, guard)
    }

    /// [`insert_built`](Self::insert_built) with any [`Life`].
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn insert_life(
        &self,
        inner: &mut crate::shard::Inner<K, V>,
        hash: u64,
        key: K,
        value: V,
        life: Life,
        now: u64,
        retired: &mut Retired<K, V>,
        guard: &Guard,
    ) -> (isize, *const Entry<K, V>) {
        let shard = self.shard(hash);
        let (entry, doa) = self.make_entry(inner, key, value, hash, life, now, guard);
        // SAFETY: just allocated, not shared yet.
        let weight = u64::from(unsafe { entry.as_ref() }.weight);
        let allowance = self.allowance(shard, weight > shard.budget());
        let hasher = |k: &K| self.hash(k);
        shard.insert_locked(
            inner, hash, entry, doa, allowance, now, &hasher, retired, guard,
        )
    }

    fn insert_inner(&self, key: K, value: V, ttl: Option<Duration>) {
        let now = self.writer_now(ttl.is_some());
        let hash = self.hash(&key);
        let shard = self.shard(hash);
        shard.prefetch(hash);
        // A write pins only when a listener will read the entries it
        // retires after the lock is released. Without one, it reaches no
        // entry or table outside the lock, and under the lock it needs no
        // pin: only lock holders unlink entries or replace tables, entries
        // are freed only through batches deferred after their unlink, and
        // outgrown tables live as long as their shard.
        let pinned = self.core.listener.is_some().then(epoch::pin);
        let guard = match &pinned {
            Some(g) => g,
            // SAFETY: used only under shard locks (see above); the write's
            // sealed batches are deferred under a real pin
            // (`Retired::release`).
            None => unsafe { epoch::unprotected() },
        };
        let mut retired = self.retired();
        let (change, new) = {
            let mut inner = shard.inner.lock();
            inner.supersede_load(hash, &key);
            self.insert_built(&mut inner, hash, key, value, ttl, now, &mut retired, guard)
        };
        self.settle(change, new, now, &mut retired, guard);
        self.finish(&mut retired, pinned);
    }

    /// After a write: keeps the count of shards over budget and, while any
    /// is, evicts across shards (one shard lock at a time, never the entry
    /// `protect`) until the whole cache is within its capacity.
    #[inline]
    pub(crate) fn settle(
        &self,
        change: isize,
        protect: *const Entry<K, V>,
        now: u64,
        retired: &mut Retired<K, V>,
        guard: &Guard,
    ) {
        if change != 0 || self.core.over.load(Ordering::Acquire) != 0 {
            self.settle_over(change, protect, now, retired, guard);
        }
    }

    /// [`settle`](Self::settle) once some shard is, or was, over budget.
    #[cold]
    #[inline(never)]
    fn settle_over(
        &self,
        change: isize,
        protect: *const Entry<K, V>,
        now: u64,
        retired: &mut Retired<K, V>,
        guard: &Guard,
    ) {
        let core = &*self.core;
        self.count_over(change);
        if core.over.load(Ordering::Acquire) == 0 {
            return;
        }
        let n = core.shards.len();
        loop {
            let total: u64 = core.shards.iter().map(Shard::weight).sum();
            if total <= core.capacity {
                return;
            }
            let mut progressed = false;
            // One pass visits every shard once, from a starting point that
            // moves on with each pass. Taking a fresh hand position per step
            // would let concurrent passes split the shards between them: two
            // writers, each protecting its own new entry, could each visit
            // only the shard holding nothing but that entry, give up, and
            // leave the cache over its capacity (found by the
            // `cache_ops_threads` fuzz target).
            let start = core.hand.fetch_add(1, Ordering::Relaxed);
            for step in 0..n {
                let i = start.wrapping_add(step) & (n - 1);
                let shard = &core.shards[i];
                let mut inner = shard.inner.lock();
                progressed |= shard.evict_one_locked(&mut inner, now, protect, retired, guard);
                let change = shard.publish_locked(&mut inner);
                drop(inner);
                self.count_over(change);
                if progressed {
                    break;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    pub(crate) fn count_over(&self, change: isize) {
        match change {
            1 => {
                self.core.over.fetch_add(1, Ordering::AcqRel);
            }
            -1 => {
                self.core.over.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }

    /// Removes `key`'s entry and returns its value (reported to the listener
    /// as [`RemovalCause::Removed`]). An expired entry not yet reclaimed is
    /// reclaimed (reported as [`RemovalCause::Expired`]) and `None`
    /// returned. The value returned is cloned under the shard lock, so its
    /// `Clone` must not call into this cache (for an `Arc`, it does not).
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.remove_if(key, |_| true)
    }

    /// Removes `key`'s entry only if `pred` accepts its value, atomically
    /// with respect to other writers of the key (the check and the removal
    /// happen under the shard lock), and returns the removed value (cloned
    /// under that lock, as by [`remove`](Self::remove)). `pred`
    /// runs under that lock: it must not call into this cache. An expired
    /// entry is never shown to `pred`: it is reclaimed as
    /// [`RemovalCause::Expired`] and `None` returned.
    ///
    /// ```
    /// use clockcache::Cache;
    ///
    /// let cache: Cache<&str, u32> = Cache::new(10);
    /// cache.insert("a", 1);
    /// assert_eq!(cache.remove_if("a", |v| *v == 2), None); // a newer value stays
    /// assert_eq!(cache.remove_if("a", |v| *v == 1), Some(1));
    /// ```
    pub fn remove_if<Q, F>(&self, key: &Q, pred: F) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
        F: FnOnce(&V) -> bool,
    {
        let hash = self.hash(key);
        let shard = self.shard(hash);
        shard.prefetch(hash);
        // As for `insert`: a pin only if a listener will read the entry
        // after the lock (see `insert_inner` for why the lock holder needs
        // none). The value is cloned under the lock, while the entry is
        // certainly allocated.
        let pinned = self.core.listener.is_some().then(epoch::pin);
        let guard = match &pinned {
            Some(g) => g,
            // SAFETY: used only under the shard lock (see `insert_inner`).
            None => unsafe { epoch::unprotected() },
        };
        let mut retired = self.retired();
        // 0 while nothing can expire: no clock read for a plain remove.
        let now = self.writer_now(false);
        let value = {
            let mut inner = shard.inner.lock();
            inner.supersede_load(hash, key);
            let p = shard.remove_locked(&mut inner, hash, key, pred, now, &mut retired, guard);
            // SAFETY: just retired under this lock: its batch is handed to
            // the collector only after the lock is released.
            let value = p.map(|p| unsafe { p.as_ref() }.value().clone());
            let change = shard.publish_locked(&mut inner);
            drop(inner);
            self.count_over(change);
            value
        };
        self.finish(&mut retired, pinned);
        value
    }

    /// Removes every entry for which `keep` returns false (reported as
    /// [`RemovalCause::Removed`]), and every expired entry. `keep` runs under
    /// the lock of the shard it looks at: it must not call into this cache.
    pub fn retain<F>(&self, mut keep: F)
    where
        F: FnMut(&K, &V) -> bool,
    {
        for shard in self.core.shards.iter() {
            let guard = epoch::pin();
            let mut retired = self.retired();
            let now = self.core.clock.now();
            {
                let mut inner = shard.inner.lock();
                shard.retain_locked(&mut inner, now, &mut keep, &mut retired, &guard);
                shard.seal_locked(&mut inner, &mut retired);
                let change = shard.publish_locked(&mut inner);
                drop(inner);
                self.count_over(change);
            }
            self.release(retired, guard);
        }
        self.reclaim_now();
    }

    /// Removes every entry (reported as [`RemovalCause::Cleared`], or as
    /// [`RemovalCause::Expired`] for an entry whose deadline had passed).
    /// Entries inserted while `clear` runs may survive it.
    pub fn clear(&self) {
        let now = self.writer_now(false);
        for shard in self.core.shards.iter() {
            let guard = epoch::pin();
            let mut retired = self.retired();
            {
                let mut inner = shard.inner.lock();
                inner.supersede_all_loads();
                shard.clear_locked(&mut inner, now, &mut retired, &guard);
                shard.seal_locked(&mut inner, &mut retired);
                let change = shard.publish_locked(&mut inner);
                drop(inner);
                self.count_over(change);
            }
            self.release(retired, guard);
        }
        self.reclaim_now();
    }

    /// Removes every entry whose deadline has passed, in time proportional
    /// to their number (no scan of the cache, no change of recency). Returns
    /// how many it removed.
    pub fn purge_expired(&self) -> usize {
        let mut total = 0;
        for shard in self.core.shards.iter() {
            let guard = epoch::pin();
            let mut retired = self.retired();
            let now = self.core.clock.now();
            {
                let mut inner = shard.inner.lock();
                total += shard.purge_locked(&mut inner, now, usize::MAX, &mut retired, &guard);
                shard.seal_locked(&mut inner, &mut retired);
                let change = shard.publish_locked(&mut inner);
                drop(inner);
                self.count_over(change);
            }
            self.release(retired, guard);
        }
        self.reclaim_now();
        total
    }

    /// Ends a write: tells the listener about its departures, hands the
    /// batches it sealed to the collector, and unpins. Then, if the values
    /// sealed and not yet dropped weigh more than a sixteenth of the
    /// capacity (writers sealing faster than the epoch advances: large
    /// values, or a reader descheduled while pinned), it helps the
    /// collector (see `help_collector`).
    #[inline]
    pub(crate) fn release(&self, mut retired: Retired<K, V>, guard: Guard) {
        self.finish(&mut retired, Some(guard));
    }

    /// [`release`](Self::release) for a write that pinned only if it had
    /// to (`guard`: see `insert_inner`).
    #[inline(always)]
    fn finish(&self, retired: &mut Retired<K, V>, guard: Option<Guard>) {
        let sealed = retired.sealed_any();
        retired.release(self.core.listener.as_ref(), guard.as_ref());
        drop(guard);
        if sealed && self.core.in_flight.weight() > self.core.capacity / HELP_SHARE {
            self.help_collector();
        }
    }

    /// Drives the collector until what waits for it weighs at most a
    /// sixteenth of the capacity; if it still weighs more than an eighth,
    /// yields to the thread holding the epoch back (on a busy machine, a
    /// reader descheduled while pinned) and tries again, for at most
    /// [`WAIT_LIMIT`]. This is the one place where a writer waits for
    /// readers, and only when the memory bound is at stake. A thread that
    /// is itself pinned (inside an iteration, say) never waits: it would
    /// be waiting for itself.
    #[cold]
    #[inline(never)]
    fn help_collector(&self) {
        let soft = self.core.capacity / HELP_SHARE;
        let hard = self.core.capacity / WAIT_SHARE;
        let in_flight = &*self.core.in_flight;
        drive_collector(in_flight, |f| f.weight() <= soft);
        if cfg!(loom) || in_flight.weight() <= hard || epoch::is_pinned() {
            return;
        }
        let start = std::time::Instant::now();
        while in_flight.weight() > hard && start.elapsed() < WAIT_LIMIT {
            std::thread::yield_now();
            drive_collector(in_flight, |f| f.weight() <= hard);
        }
    }

    /// After a bulk removal (which sealed what it retired): drives the epoch
    /// collector until every sealed batch of this cache has been dropped, so
    /// that the removed values are gone when the call returns.
    pub(crate) fn reclaim_now(&self) {
        drive_collector(&self.core.in_flight, |f| f.batches() == 0);
    }
}

/// The share of the capacity that values sealed but not yet dropped may
/// weigh before writers help the collector (see `Cache::release`).
const HELP_SHARE: u64 = 16;

/// The share they may weigh before writers wait for the collector.
const WAIT_SHARE: u64 = 8;

/// The longest a writer waits for the collector (see
/// `Cache::help_collector`): past it the bound gives way rather than stall
/// writes behind a reader that stays pinned.
const WAIT_LIMIT: Duration = Duration::from_millis(100);

/// Most collector steps [`drive_collector`] takes: a batch needs two epoch
/// advances, and each step runs at most a few bags of the whole process's
/// deferred functions.
const RECLAIM_STEPS: usize = 16;

/// Pins and flushes, from an unpinned thread, until `done` or for at most
/// [`RECLAIM_STEPS`] steps. Each fresh pin lets the collector advance the
/// epoch once (a batch runs at the second advance after its sealing) and
/// run the batches now due. Bounded: a batch that a reader pinned
/// elsewhere still holds back is left to a later collection (the epoch
/// advances only past threads that are not pinned in an older one).
fn drive_collector(in_flight: &InFlight, done: impl Fn(&InFlight) -> bool) {
    if cfg!(loom) {
        // The models check the protocol, not this best effort.
        return;
    }
    for _ in 0..RECLAIM_STEPS {
        if done(in_flight) {
            return;
        }
        epoch::pin().flush();
    }
}

impl<K, V, S> Drop for Core<K, V, S> {
    fn drop(&mut self) {
        // No handle is left: what this cache sealed is dropped before the
        // last handle's drop returns, unless a thread pinned elsewhere
        // holds the epoch back (then at a later collection).
        drive_collector(&self.in_flight, |f| f.batches() == 0);
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Eq,
{
    /// Entries held, live or expired but not yet reclaimed (expired entries
    /// count until a write, `purge_expired` or eviction reclaims them; a read
    /// never returns them). While writers run this is a moment's
    /// approximation; once they are quiet it never exceeds the capacity
    /// (without a weigher).
    pub fn len(&self) -> usize {
        self.core.shards.iter().map(Shard::len).sum()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity: the most entries, or with a weigher the most total
    /// weight.
    pub fn capacity(&self) -> u64 {
        self.core.capacity
    }

    /// Total weight of the entries held, counted as [`len`](Self::len) counts
    /// them (expired ones not yet reclaimed included; equals `len()` without
    /// a weigher).
    pub fn weighted_size(&self) -> u64 {
        self.core.shards.iter().map(Shard::weight).sum()
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.core.shards.len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let (hits, misses) = self.core.reads.sum();
        let mut s = CacheStats {
            hits,
            misses,
            ..CacheStats::default()
        };
        for shard in self.core.shards.iter() {
            let c = &shard.counters;
            s.inserts += c.inserts.load(Ordering::Relaxed);
            s.updates += c.updates.load(Ordering::Relaxed);
            s.evictions += c.evictions.load(Ordering::Relaxed);
            s.expirations += c.expirations.load(Ordering::Relaxed);
            s.removals += c.removals.load(Ordering::Relaxed);
            s.loads += c.loads.load(Ordering::Relaxed);
            s.load_failures += c.load_failures.load(Ordering::Relaxed);
            s.total_load_time += Duration::from_nanos(c.load_nanos.load(Ordering::Relaxed));
        }
        s
    }

    /// The cache's settings, as built.
    ///
    /// ```
    /// use clockcache::{Cache, EvictionPolicy};
    /// use std::time::Duration;
    ///
    /// let cache: Cache<u32, u32> = Cache::builder()
    ///     .capacity(1_000)
    ///     .shards(4)
    ///     .time_to_idle(Duration::from_secs(60))
    ///     .build();
    /// let p = cache.policy();
    /// assert_eq!(p.capacity, 1_000);
    /// assert_eq!(p.time_to_idle, Some(Duration::from_secs(60)));
    /// assert_eq!(p.time_to_live, None);
    /// assert_eq!(p.eviction_policy, EvictionPolicy::Adaptive);
    /// assert_eq!(p.shards, 4);
    /// ```
    pub fn policy(&self) -> crate::CachePolicy {
        let core = &*self.core;
        crate::CachePolicy {
            capacity: core.capacity,
            weighted: core.weigher.is_some(),
            time_to_live: core.ttl.map(Duration::from_nanos),
            time_to_idle: core.tti.map(Duration::from_nanos),
            expiry: core.expiry.is_some(),
            refresh_after: core
                .refresh
                .as_ref()
                .map(|r| Duration::from_nanos(r.period)),
            eviction_policy: core.eviction_policy,
            shards: core.shards.len(),
        }
    }

    /// Heap bytes held by the cache's own structures (tables, queues, ghost,
    /// deadline index, and slab blocks that hold no live entry), not
    /// counting the live entries themselves (`size_of::<K>() +
    /// size_of::<V>() + 24` bytes, rounded up to the alignment, each) nor
    /// what keys and values own.
    pub fn structure_bytes(&self) -> usize {
        let guard = epoch::pin();
        self.core
            .shards
            .iter()
            .map(|s| {
                let inner = s.inner.lock();
                s.structure_bytes(&inner, &guard)
            })
            .sum()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Iterates over clones of the live entries, shard by shard.
    ///
    /// Weakly consistent: it takes no lock and never blocks writers; an entry
    /// present for the whole iteration is yielded exactly once, one inserted
    /// or removed meanwhile may or may not be.
    pub fn iter(&self) -> crate::iter::Iter<'_, K, V, S> {
        crate::iter::Iter::new(self)
    }
}
