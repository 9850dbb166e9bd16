//! A shard: one raw table that readers search without locking, and the
//! writer state (eviction queues, deadline index, weight accounting, loads
//! in flight) behind one `parking_lot` mutex.
//!
//! Every function here named `*_locked` runs with that mutex held and
//! collects the entries it takes out in a [`Retired`] list; the caller
//! releases the lock first and only then hands the list to the eviction
//! listener and the epoch collector.

use crate::entry::Entry;
use crate::expiry::DeadlineIndex;
use crate::policy::{Duel, EvictionPolicy, Policy};
use crate::raw::{BucketHint, RawTable};
use crate::slab::{InFlight, Sealed, Slab};
use crate::stats::WriteCounters;
use crate::sync::epoch::{self, Guard, Owned, Shared};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::RemovalCause;
use crossbeam_utils::CachePadded;
use equivalent::Equivalent;
use std::ptr::NonNull;

/// How many due deadlines an insert reclaims on its way (more are reclaimed
/// whenever the shard is over budget, and by `purge_expired`).
const PURGE_PER_INSERT: usize = 8;

/// Entries a shard's eviction rings are first sized for (they grow by
/// doubling, up to what the shard's budget needs).
const INITIAL_ITEMS: usize = 4096;

/// The eviction listener, as the cache stores it.
pub(crate) type Listener<K, V> = std::sync::Arc<dyn Fn(&K, &V, RemovalCause) + Send + Sync>;

/// Entries taken out of a shard under its lock, waiting to be reported and
/// reclaimed once the lock is released. Most writes retire one or two
/// entries: the first few are kept inline, so the common insert allocates
/// nothing here.
pub(crate) struct Retired<K: Send + 'static, V: Send + 'static> {
    inline: [Option<Departure<K, V>>; INLINE_RETIRED],
    more: Vec<Departure<K, V>>,
    /// Whether a listener will be told: without one, departures are not
    /// recorded at all.
    listening: bool,
    /// Batches the slab sealed under the lock: handed to the collector
    /// once the lock is released (never under it: a pin or a flush may run
    /// other garbage's destructors, user code that may call into the cache).
    sealed: Vec<Sealed<Entry<K, V>>>,
}

/// An entry taken out, with the cause the listener will be given.
type Departure<K, V> = (NonNull<Entry<K, V>>, RemovalCause);

const INLINE_RETIRED: usize = 4;

impl<K: Send + 'static, V: Send + 'static> Retired<K, V> {
    /// `listening`: whether the cache has an eviction listener.
    #[inline]
    pub(crate) fn new(listening: bool) -> Self {
        Self {
            inline: [None; INLINE_RETIRED],
            more: Vec::new(),
            listening,
            sealed: Vec::new(),
        }
    }

    /// Keeps a batch the slab sealed, if any, for the collector.
    #[inline]
    pub(crate) fn keep(&mut self, sealed: Option<Sealed<Entry<K, V>>>) {
        if let Some(batch) = sealed {
            self.sealed.push(batch);
        }
    }

    /// Whether a batch was sealed (the write may then help the collector).
    #[inline]
    pub(crate) fn sealed_any(&self) -> bool {
        !self.sealed.is_empty()
    }

    #[inline]
    pub(crate) fn push(&mut self, e: NonNull<Entry<K, V>>, cause: RemovalCause) {
        if !self.listening {
            return;
        }
        match self.inline.iter_mut().find(|c| c.is_none()) {
            Some(cell) => *cell = Some((e, cause)),
            None => self.more.push((e, cause)),
        }
    }

    fn take_all(&mut self) -> impl Iterator<Item = Departure<K, V>> + '_ {
        self.inline
            .iter_mut()
            .filter_map(Option::take)
            .chain(self.more.drain(..))
    }

    /// Calls the listener once per entry (outside every lock; a panicking
    /// listener is contained), then hands the sealed batches to the
    /// collector. `guard` must have been pinned since before the entries
    /// were unlinked if a listener is told: the entries stay readable only
    /// while such a guard is. Without one (a write of a cache without a
    /// listener, which needs no pin), a batch is deferred under a fresh pin.
    #[inline]
    pub(crate) fn release(&mut self, listener: Option<&Listener<K, V>>, guard: Option<&Guard>) {
        if self.listening {
            if let Some(guard) = guard {
                self.report(listener, guard);
            }
        }
        if !self.sealed.is_empty() {
            self.hand_over(guard);
        }
    }

    /// Defers every sealed batch and flushes the thread's bag to the
    /// collector, so that the batches do not wait there for later garbage.
    #[cold]
    #[inline(never)]
    fn hand_over(&mut self, guard: Option<&Guard>) {
        let pinned: Guard;
        let guard = match guard {
            Some(g) => g,
            None => {
                pinned = epoch::pin();
                &pinned
            }
        };
        for batch in self.sealed.drain(..) {
            // Its entries were unlinked from the table and their queues
            // under the shard lock, which the caller has released since.
            // SAFETY: no reader that pins from now on can reach them.
            unsafe { batch.defer(guard) };
        }
        guard.flush();
    }

    #[cold]
    fn report(&mut self, listener: Option<&Listener<K, V>>, _guard: &Guard) {
        if let Some(l) = listener {
            for (p, cause) in self.take_all() {
                // `p` was retired to its shard's slab under the shard lock
                // while `_guard` was pinned, and no writer touches a retired
                // entry.
                // SAFETY: its block is not reused before `_guard` unpins.
                let e = unsafe { p.as_ref() };
                let call = std::panic::AssertUnwindSafe(|| l(e.key(), e.value(), cause));
                // A panicking listener must not skip the remaining entries
                // nor poison the cache; the panic hook has already reported it.
                let _ = std::panic::catch_unwind(call);
            }
        }
    }
}

impl<K: Send + 'static, V: Send + 'static> Drop for Retired<K, V> {
    fn drop(&mut self) {
        // Only a write that unwinds (a panicking weigher, say) drops its
        // list unreleased: its batches still go to the collector, so that
        // their values are dropped and their blocks reused.
        if !self.sealed.is_empty() {
            self.hand_over(None);
        }
    }
}

/// A load in flight for the loading calls (single flight).
pub(crate) struct Loading<K, V> {
    pub(crate) hash: u64,
    pub(crate) key: K,
    pub(crate) pending: Arc<crate::loader::Pending<V>>,
    /// The key was written (inserted, removed, replaced or cleared) while
    /// the load ran: its value must not be inserted over that newer state.
    pub(crate) superseded: bool,
}

/// Writer state of a shard.
pub(crate) struct Inner<K, V> {
    policy: Policy<K, V>,
    deadlines: DeadlineIndex,
    weight: u64,
    len: usize,
    pub(crate) budget: u64,
    /// Whether `weight > budget` at the last publication.
    over: bool,
    /// Most entries the shard is expected to hold (its budget without a
    /// weigher): the table never grows past what that needs.
    item_limit: usize,
    pub(crate) loading: Vec<Loading<K, V>>,
    /// Where this shard's entries live.
    slab: Slab<Entry<K, V>>,
    /// Tables this shard outgrew (see `Shard::table_unpinned`).
    outgrown: Outgrown<K, V>,
}

/// The tables a shard has replaced by larger ones. They are kept, never
/// written again, until the shard is dropped, so that a table pointer loaded
/// without pinning stays dereferenceable (see `Shard::table_unpinned`). A
/// shard's table only ever doubles, so together they take less memory than
/// the current one; a table sized ahead (the default, up to 1,048,576
/// entries per cache) is never outgrown.
struct Outgrown<K, V>(Vec<*mut RawTable<K, V>>);

// SAFETY: the pointers are tables owned by the shard, read by any thread
// that reads the shard (RawTable<K, V> is Send + Sync when the entries are),
// and freed only by the shard's drop.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for Outgrown<K, V> {}
// SAFETY: as above; `&Outgrown` exposes nothing.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Outgrown<K, V> {}

impl<K, V> Drop for Outgrown<K, V> {
    fn drop(&mut self) {
        for &t in &self.0 {
            // SAFETY: each came from an `Owned` swapped out of the shard's
            // table pointer, is kept once, and no reader is left (the shard
            // is being dropped). Dropping a table frees only its arrays.
            drop(unsafe { Shared::from(t.cast_const()).into_owned() });
        }
    }
}

pub(crate) struct Shard<K, V> {
    /// The only fields readers load: on a cache line of their own (and the
    /// shard aligned to one), so that writers updating the lock, the
    /// mirrors and the counters of this shard or the one before it in the
    /// array do not invalidate it under the readers.
    read: CachePadded<ReadSide<K, V>>,
    /// The shard's share of the capacity (also in `Inner`, for the lock
    /// holder).
    budget: u64,
    pub(crate) inner: Mutex<Inner<K, V>>,
    len: AtomicUsize,
    weight: AtomicU64,
    pub(crate) counters: WriteCounters,
}

/// What readers of a shard load.
struct ReadSide<K, V> {
    table: epoch::Atomic<RawTable<K, V>>,
    /// Where `table`'s buckets are, for a prefetch before pinning.
    hint: BucketHint,
}

/// Hashes a key the way the cache does.
pub(crate) type HashFn<'a, K> = &'a dyn Fn(&K) -> u64;

impl<K, V> Inner<K, V> {
    /// Marks the load of `key`, if one runs, as superseded by a write.
    #[inline]
    pub(crate) fn supersede_load<Q>(&mut self, hash: u64, key: &Q)
    where
        Q: Equivalent<K> + ?Sized,
    {
        if self.loading.is_empty() {
            return;
        }
        for l in &mut self.loading {
            if l.hash == hash && key.equivalent(&l.key) {
                l.superseded = true;
            }
        }
    }

    /// Every entry with its rank for keeping (see `Policy::ranked`).
    pub(crate) fn ranked(&self) -> Vec<crate::policy::Ranked<K, V>> {
        self.policy.ranked()
    }

    /// Whether a deadline item is due at `now` (for the maintenance
    /// thread, which loom builds leave out).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn has_due(&self, now: u64) -> bool {
        self.deadlines.has_due(now)
    }

    /// Marks every load of the shard as superseded (`clear`).
    pub(crate) fn supersede_all_loads(&mut self) {
        for l in &mut self.loading {
            l.superseded = true;
        }
    }
}

impl<K: Send + 'static, V: Send + 'static> Inner<K, V> {
    /// Moves `entry` into a block of the shard's slab.
    /// `trailer` holds its write time and `Expiry` deadline, kept by caches
    /// whose blocks carry them.
    pub(crate) fn alloc(
        &mut self,
        entry: Entry<K, V>,
        trailer: [u64; crate::slab::TRAILER_WORDS],
    ) -> NonNull<Entry<K, V>> {
        self.slab.alloc(entry, trailer)
    }
}

impl<K, V> Shard<K, V> {
    /// Live entries (a relaxed mirror of the writer's count).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// The shard's share of the capacity.
    pub(crate) fn budget(&self) -> u64 {
        self.budget
    }

    /// Total weight (a relaxed mirror of the writer's sum).
    pub(crate) fn weight(&self) -> u64 {
        self.weight.load(Ordering::Relaxed)
    }

    /// The current table.
    #[inline]
    pub(crate) fn table<'g>(&self, guard: &'g Guard) -> &'g RawTable<K, V> {
        let t = self.read.table.load(Ordering::Acquire, guard);
        // SAFETY: the table pointer is never null (set in `new`, only ever
        // swapped for another table), and a replaced table is kept until the
        // shard is dropped, so it outlives `guard`.
        unsafe { t.deref() }
    }

    /// The current table, loaded without pinning: tables are freed only
    /// when the shard is dropped (an outgrown one is kept, see `Outgrown`),
    /// so the reference is valid for as long as the shard. Its tag words
    /// may be read; a slot's entry pointer may be prefetched but not
    /// dereferenced (the entry may have been freed since it was unlinked):
    /// that takes a pin taken before the pointer is loaded.
    #[inline]
    pub(crate) fn table_unpinned(&self) -> &RawTable<K, V> {
        // SAFETY: the pointer is only loaded and dereferenced as a table,
        // which lives as long as `self` (see above); no entry is reached
        // through this guard.
        let guard = unsafe { epoch::unprotected() };
        let t = self.read.table.load(Ordering::Acquire, guard);
        // SAFETY: never null, and alive while the shard is (see above).
        unsafe { t.deref() }
    }

    /// Heap bytes held by this shard's structures, entries excluded.
    pub(crate) fn structure_bytes(&self, inner: &Inner<K, V>, guard: &Guard) -> usize {
        self.table(guard).heap_bytes()
            + inner
                .outgrown
                .0
                .iter()
                .map(|&t| {
                    // SAFETY: an outgrown table, kept until the shard drops.
                    unsafe { &*t }.heap_bytes()
                })
                .sum::<usize>()
            + inner.policy.heap_bytes()
            + inner.deadlines.heap_bytes()
            + inner.slab.overhead_bytes()
    }
}

impl<K, V> Shard<K, V>
where
    K: Eq + Send + 'static,
    V: Send + 'static,
{
    /// `table_items`: what the table, and at least what the rings, are first
    /// sized for (see
    /// [`CacheBuilder::initial_capacity`](crate::CacheBuilder::initial_capacity)).
    pub(crate) fn new(
        budget: u64,
        policy: EvictionPolicy,
        item_limit: usize,
        table_items: usize,
        duel: Duel,
        in_flight: Arc<InFlight>,
        trailer_words: usize,
    ) -> Self {
        // A weighted shard's item limit is unbounded; its budget still
        // bounds how many entries of weight 1 or more it can hold.
        let by_budget = usize::try_from(budget).unwrap_or(usize::MAX);
        let initial = item_limit
            .min(by_budget)
            .min(INITIAL_ITEMS)
            .max(table_items);
        let table = RawTable::for_items(table_items);
        Self {
            read: CachePadded::new(ReadSide {
                hint: BucketHint::new(&table),
                table: epoch::Atomic::new(table),
            }),
            budget,
            inner: Mutex::new(Inner {
                policy: Policy::new(policy, budget, initial, item_limit, duel),
                deadlines: DeadlineIndex::default(),
                weight: 0,
                len: 0,
                budget,
                over: false,
                item_limit,
                loading: Vec::new(),
                slab: Slab::new(item_limit, budget, in_flight, trailer_words),
                outgrown: Outgrown(Vec::new()),
            }),
            len: AtomicUsize::new(0),
            weight: AtomicU64::new(0),
            counters: WriteCounters::default(),
        }
    }

    /// Starts fetching the current table's home bucket of `hash` into the
    /// cache, without pinning (see [`BucketHint`]).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        self.read.hint.prefetch(hash);
    }

    /// Publishes the mirrors. Returns how the shard's over-budget status
    /// changed: +1 if it went over its budget, -1 if it came back, 0
    /// otherwise (the cache counts shards over budget to know when the
    /// whole-cache bound needs enforcing).
    fn publish(&self, inner: &mut Inner<K, V>) -> isize {
        self.len.store(inner.len, Ordering::Relaxed);
        self.weight.store(inner.weight, Ordering::Relaxed);
        let over = inner.weight > inner.budget;
        let change = isize::from(over) - isize::from(inner.over);
        inner.over = over;
        change
    }

    /// Inserts `entry` (its key hashed to `hash`), replacing a live entry of
    /// the same key, then reclaims due deadlines and evicts down to the
    /// budget. An entry `dead_on_arrival` (already expired, or heavier than
    /// the whole cache) replaces the old entry and leaves at once with that
    /// cause. The shard may go `allowance` over its budget (capacity that
    /// other shards leave unused, lent to a heavy entry). Returns the
    /// over-budget change (see `publish`) and the new entry's address (to
    /// protect it from cross-shard eviction).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert_locked(
        &self,
        inner: &mut Inner<K, V>,
        hash: u64,
        entry: NonNull<Entry<K, V>>,
        dead_on_arrival: Option<RemovalCause>,
        allowance: u64,
        now: u64,
        hasher: HashFn<'_, K>,
        retired: &mut Retired<K, V>,
        guard: &Guard,
    ) -> (isize, *const Entry<K, V>) {
        inner.policy.prefetch_ghosts(hash);
        let raw = entry.as_ptr();
        // SAFETY: just allocated and not yet shared; freed only by a later
        // retirement.
        let e = unsafe { &*raw };
        let deadline = e.deadline.load(Ordering::Relaxed);
        let weight = u64::from(e.weight);
        let table = self.table(guard);
        if let Some(slot) = table.find_slot(hash, e.key()) {
            let old = table.entry_ptr(slot);
            // SAFETY: `old` is the live entry in the slot (lock held).
            let old_ref = unsafe { &*old };
            table.replace(slot, raw);
            inner.policy.replace(old_ref, e, entry);
            inner.weight = inner.weight - u64::from(old_ref.weight) + weight;
            if old_ref.filed() {
                inner.deadlines.forget();
            }
            // An expired entry is not live: writing over it inserts.
            let cause = if old_ref.is_expired(now) {
                WriteCounters::add(&self.counters.expirations, 1);
                WriteCounters::add(&self.counters.inserts, 1);
                RemovalCause::Expired
            } else {
                WriteCounters::add(&self.counters.updates, 1);
                RemovalCause::Replaced
            };
            // SAFETY: non-null (it was the slot's live entry).
            let old = unsafe { NonNull::new_unchecked(old) };
            retired.keep(inner.slab.retire(old, old_ref.weight));
            retired.push(old, cause);
        } else {
            let table = if table.needs_rehash() {
                self.rehash_locked(inner, guard)
            } else {
                table
            };
            table.insert(hash, raw);
            inner.policy.admit(e, entry, hash);
            inner.weight += weight;
            inner.len += 1;
            WriteCounters::add(&self.counters.inserts, 1);
        }
        if e.filed() {
            inner.deadlines.file(deadline, hash);
        }
        if let Some(cause) = dead_on_arrival {
            // SAFETY: `raw` is non-null (from the slab).
            let p = unsafe { NonNull::new_unchecked(raw) };
            self.take_locked(inner, p, hash, true, cause, retired, guard);
        }
        if inner.deadlines.has_due(now) {
            self.purge_locked(inner, now, PURGE_PER_INSERT, retired, guard);
        }
        self.evict_locked(inner, now, raw, allowance, retired, guard);
        if inner.deadlines.needs_rebuild() {
            let items = inner.policy.entries().filter_map(|p| {
                // SAFETY: queue pointers are live entries (lock held).
                let e = unsafe { p.as_ref() };
                e.filed()
                    .then(|| (e.deadline.load(Ordering::Relaxed), hasher(e.key())))
            });
            let items: Vec<_> = items.collect();
            inner.deadlines.rebuild(items.into_iter());
        }
        (self.publish(inner), raw)
    }

    /// Replaces the table by a larger one holding the same entries.
    fn rehash_locked<'g>(&self, inner: &mut Inner<K, V>, guard: &'g Guard) -> &'g RawTable<K, V> {
        let old = self.table(guard);
        let need = old.items() + 1;
        // Double, but not past what the budget can ever need (the limit is
        // only passed by a shard holding a heavy entry, or with no budget).
        let target = if need <= inner.item_limit {
            (need * 2).min(inner.item_limit)
        } else {
            need * 2
        };
        let new = RawTable::for_items(target);
        old.copy_into(&new);
        let new = Owned::new(new).into_shared(guard);
        let old = self.read.table.swap(new, Ordering::AcqRel, guard);
        // SAFETY: just stored; kept until the shard is dropped.
        self.read.hint.point_at(unsafe { new.deref() });
        // Readers that loaded the old table may still walk it: it is kept,
        // never written again, until the shard is dropped.
        inner.outgrown.0.push(old.as_raw().cast_mut());
        // SAFETY: just stored; kept until the shard is dropped.
        unsafe { new.deref() }
    }

    /// Unlinks `p` (whose key hashes to `hash`; only the low 32 bits are
    /// used) from the table and accounts for its departure. `in_queue` says
    /// whether it must also leave its eviction queue.
    #[allow(clippy::too_many_arguments)]
    fn take_locked(
        &self,
        inner: &mut Inner<K, V>,
        p: NonNull<Entry<K, V>>,
        hash: u64,
        in_queue: bool,
        cause: RemovalCause,
        retired: &mut Retired<K, V>,
        guard: &Guard,
    ) {
        // SAFETY: `p` is a live entry of this shard (lock held).
        let e = unsafe { p.as_ref() };
        let table = self.table(guard);
        table.remove_ptr(hash, p.as_ptr());
        if in_queue {
            inner.policy.remove(e);
        }
        inner.weight -= u64::from(e.weight);
        inner.len -= 1;
        if e.filed() {
            inner.deadlines.forget();
        }
        let c = &self.counters;
        let counter = match cause {
            RemovalCause::Evicted => &c.evictions,
            RemovalCause::Expired => &c.expirations,
            RemovalCause::Removed | RemovalCause::Cleared => &c.removals,
            RemovalCause::Replaced => &c.updates,
        };
        WriteCounters::add(counter, 1);
        retired.keep(inner.slab.retire(p, e.weight));
        retired.push(p, cause);
    }

    /// Reclaims up to `max` due deadline items. Returns entries expired.
    pub(crate) fn purge_locked(
        &self,
        inner: &mut Inner<K, V>,
        now: u64,
        max: usize,
        retired: &mut Retired<K, V>,
        guard: &Guard,
    ) -> usize {
        let mut expired = 0;
        let mut due = Vec::new();
        for _ in 0..max {
            let Some(h) = inner.deadlines.pop_due(now) else {
                break;
            };
            let table = self.table(guard);
            due.clear();
            // The slots' own pointers, not pointers re-derived from
            // `&Entry`: these go on to the slab, which writes through them.
            due.extend(table.candidates(h).into_iter().filter_map(|i| {
                let p = NonNull::new(table.entry_ptr(i))?;
                // SAFETY: a live entry of the current table (lock held).
                (unsafe { p.as_ref() }.hash == h as u32).then_some(p)
            }));
            for &p in &due {
                // SAFETY: found in the current table (lock held).
                let e = unsafe { p.as_ref() };
                let d = e.deadline.load(Ordering::Relaxed);
                if d <= now {
                    self.take_locked(inner, p, h, true, RemovalCause::Expired, retired, guard);
                    expired += 1;
                } else if e.flags != 0 {
                    // Reads moved the deadline: file it again.
                    inner.deadlines.refile(d, h);
                }
                // Otherwise the item was stale (the entry was replaced and
                // its successor filed its own deadline).
            }
        }
        expired
    }

    /// Evicts until the shard is within its budget plus `allowance`
    /// (expired entries first), never choosing `protect`.
    #[allow(clippy::too_many_arguments)]
    fn evict_locked(
        &self,
        inner: &mut Inner<K, V>,
        now: u64,
        protect: *const Entry<K, V>,
        allowance: u64,
        retired: &mut Retired<K, V>,
        guard: &Guard,
    ) {
        let limit = inner.budget.saturating_add(allowance);
        if inner.weight <= limit {
            return;
        }
        if inner.deadlines.has_due(now) {
            self.purge_locked(inner, now, usize::MAX, retired, guard);
        }
        while inner.weight > limit {
            if !self.evict_one_locked(inner, now, protect, retired, guard) {
                break;
            }
        }
    }

    /// Evicts one entry other than `protect`; false if there is none.
    pub(crate) fn evict_one_locked(
        &self,
        inner: &mut Inner<K, V>,
        now: u64,
        protect: *const Entry<K, V>,
        retired: &mut Retired<K, V>,
        guard: &Guard,
    ) -> bool {
        let Some(v) = inner.policy.evict(now, protect) else {
            return false;
        };
        // SAFETY: the policy returns live entries of this shard.
        let h = u64::from(unsafe { v.entry.as_ref() }.hash);
        // Each eviction unlinks its victim from the table and remembers it
        // in a ghost filter: two cache misses at addresses that depend on
        // the victim's hash. The ring already prefetched the next entries at
        // the hand, so the next likely victim's hash is at hand: start
        // fetching its bucket and ghost block now, for the next eviction.
        if let Some(next) = inner.policy.next_at_hand(v.from) {
            // SAFETY: ring pointers are live entries of this shard (lock
            // held).
            let nh = u64::from(unsafe { next.as_ref() }.hash);
            self.prefetch(nh);
            inner.policy.prefetch_ghosts(nh);
        }
        if v.cause == RemovalCause::Evicted {
            inner.policy.remember(h, v.from);
        }
        self.take_locked(inner, v.entry, h, false, v.cause, retired, guard);
        true
    }

    /// Removes the live entry for `key` if `pred` accepts its value, and
    /// returns it (retired, so valid while `guard` is pinned). An entry
    /// expired at `now` leaves as expired, unseen by `pred`, and `None` is
    /// returned.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn remove_locked<Q>(
        &self,
        inner: &mut Inner<K, V>,
        hash: u64,
        key: &Q,
        pred: impl FnOnce(&V) -> bool,
        now: u64,
        retired: &mut Retired<K, V>,
        guard: &Guard,
    ) -> Option<NonNull<Entry<K, V>>>
    where
        Q: Equivalent<K> + ?Sized,
    {
        let table = self.table(guard);
        let slot = table.find_slot(hash, key)?;
        let p = NonNull::new(table.entry_ptr(slot))?;
        // SAFETY: the slot's live entry (lock held).
        let e = unsafe { p.as_ref() };
        if e.is_expired(now) {
            self.take_locked(inner, p, hash, true, RemovalCause::Expired, retired, guard);
            return None;
        }
        if !pred(e.value()) {
            return None;
        }
        self.take_locked(inner, p, hash, true, RemovalCause::Removed, retired, guard);
        Some(p)
    }

    /// Removes every entry for which `keep` says false (and every expired
    /// one).
    pub(crate) fn retain_locked(
        &self,
        inner: &mut Inner<K, V>,
        now: u64,
        keep: &mut dyn FnMut(&K, &V) -> bool,
        retired: &mut Retired<K, V>,
        guard: &Guard,
    ) {
        let doomed: Vec<(NonNull<Entry<K, V>>, RemovalCause)> = inner
            .policy
            .entries()
            .filter_map(|p| {
                // SAFETY: queue pointers are live entries (lock held).
                let e = unsafe { p.as_ref() };
                if e.is_expired(now) {
                    Some((p, RemovalCause::Expired))
                } else if !keep(e.key(), e.value()) {
                    Some((p, RemovalCause::Removed))
                } else {
                    None
                }
            })
            .collect();
        for (p, cause) in doomed {
            // SAFETY: as above; each is taken once.
            let h = u64::from(unsafe { p.as_ref() }.hash);
            self.take_locked(inner, p, h, true, cause, retired, guard);
        }
    }

    /// Removes everything.
    /// Removes everything: entries expired at `now` leave as expired, the
    /// rest as cleared.
    pub(crate) fn clear_locked(
        &self,
        inner: &mut Inner<K, V>,
        now: u64,
        retired: &mut Retired<K, V>,
        guard: &Guard,
    ) {
        self.table(guard).clear();
        inner.policy.forget();
        let all = inner.policy.drain();
        let (mut removed, mut expired) = (0, 0);
        for p in all {
            // SAFETY: queue pointers are live entries (lock held).
            let e = unsafe { p.as_ref() };
            let cause = if e.is_expired(now) {
                expired += 1;
                RemovalCause::Expired
            } else {
                removed += 1;
                RemovalCause::Cleared
            };
            retired.keep(inner.slab.retire(p, e.weight));
            retired.push(p, cause);
        }
        WriteCounters::add(&self.counters.removals, removed);
        WriteCounters::add(&self.counters.expirations, expired);
        inner.deadlines.clear();
        inner.weight = 0;
        inner.len = 0;
    }

    /// Hands the entries retired so far, however few, to the collector, so
    /// that a bulk removal's values are dropped even if the shard sees no
    /// more writes (otherwise they would wait for the shard's next batch).
    pub(crate) fn seal_locked(&self, inner: &mut Inner<K, V>, retired: &mut Retired<K, V>) {
        retired.keep(inner.slab.seal());
    }

    /// Publishes the counts after any `*_locked` call that did not (all but
    /// `insert_locked`); see `publish` for the result.
    pub(crate) fn publish_locked(&self, inner: &mut Inner<K, V>) -> isize {
        self.publish(inner)
    }
}

impl<K, V> Drop for Shard<K, V> {
    fn drop(&mut self) {
        // No handle on the cache is left, hence no reader and no writer.
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        for p in inner.policy.drain() {
            // SAFETY: every live entry sits in exactly one queue, so each is
            // dropped once, and no reader is left to hold it.
            unsafe { inner.slab.drop_live(p) };
        }
        let table = std::mem::replace(&mut self.read.table, epoch::Atomic::null());
        // SAFETY: the table pointer is never null and nothing else can reach
        // it any more; it was allocated by `Owned`. Dropping it frees only
        // its arrays.
        drop(unsafe { table.into_owned() });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::sync::epoch;
    use crate::{Cache, MockClock};
    use std::time::Duration;

    /// The premise of the loom model of a scouting reader racing table
    /// growth: a one-shard cache sized for one entry outgrows its table at
    /// the seventh insert, not before.
    #[test]
    fn a_table_sized_for_one_entry_grows_at_the_seventh() {
        let cache: Cache<u64, u64> = Cache::builder()
            .capacity(16)
            .shards(1)
            .initial_capacity(1)
            .build();
        let grown = |c: &Cache<u64, u64>| c.core.shards[0].inner.lock().outgrown.0.len();
        for k in 1..=6 {
            cache.insert(k, k);
        }
        assert_eq!(grown(&cache), 0);
        cache.insert(7, 7);
        assert_eq!(grown(&cache), 1);
    }

    /// A shard that outgrows its table keeps the old one (readers may hold
    /// it unpinned) and counts it in its structure bytes.
    #[test]
    fn an_outgrown_table_is_kept_and_counted() {
        let n = if cfg!(miri) { 2_000 } else { 20_000 };
        let cache: Cache<u64, u64> = Cache::builder()
            .capacity(n)
            .shards(4)
            .initial_capacity(8)
            .build();
        let first: Vec<*const u8> = cache
            .core
            .shards
            .iter()
            .map(|s| std::ptr::from_ref(s.table_unpinned()).cast())
            .collect();
        for k in 0..n {
            cache.insert(k, k);
        }
        let guard = epoch::pin();
        for (shard, first) in cache.core.shards.iter().zip(first) {
            let inner = shard.inner.lock();
            assert!(inner.outgrown.0.len() >= 2, "grew more than once");
            assert!(inner
                .outgrown
                .0
                .iter()
                .any(|&t| t.cast_const().cast() == first));
            let kept: usize = inner
                .outgrown
                .0
                .iter()
                .map(|&t| {
                    // SAFETY: kept until the shard drops.
                    unsafe { &*t }.heap_bytes()
                })
                .sum();
            assert!(
                kept < shard.table(&guard).heap_bytes(),
                "doubling: less than the current table"
            );
            assert!(
                shard.structure_bytes(&inner, &guard) > kept + shard.table(&guard).heap_bytes()
            );
            // The prefetch hint follows the table: a stale hint changes no
            // result, so only this would notice prefetches of an old array.
            assert!(shard.read.hint.points_at(shard.table(&guard)));
        }
    }

    /// Blocks retired by every path (eviction from both rings, replacement,
    /// `retain`, expiry, `clear`) are written again by later inserts. The
    /// pointers the rings and the table hand to the slab must be the ones
    /// the slab allocated through: under Miri, a pointer re-derived from
    /// `&Entry` (read-only) made the next entry's write undefined
    /// behaviour. Every read checks its value.
    #[test]
    fn blocks_retired_by_every_path_are_written_again() {
        let clock = MockClock::new();
        let cache: Cache<u64, String> = Cache::builder()
            .capacity(32)
            .shards(1)
            .clock(clock.clone())
            .build();
        let check = |k: u64| {
            if let Some(v) = cache.get(&k) {
                assert!(v.ends_with(&format!(":{k}")), "{k} holds {v}");
            }
        };
        for round in 0..3u64 {
            // Evictions, with reads that promote some entries to the main
            // ring, and replacements of present keys.
            for k in 0..80 {
                cache.insert(k, format!("{round}:{k}"));
                cache.insert(k, format!("{round}r:{k}"));
                check(k / 2);
            }
            cache.retain(|k, _| k % 3 != 0);
            for k in 100..120 {
                cache.insert_with_ttl(k, format!("{round}t:{k}"), Duration::from_millis(5));
            }
            clock.advance(Duration::from_millis(10));
            cache.purge_expired();
            for k in 0..40 {
                cache.insert(k, format!("{round}a:{k}"));
                check(k);
            }
            cache.clear();
            // Let the collector run the sealed batches, so their blocks
            // come back to the slab for the next round's inserts.
            for _ in 0..8 {
                epoch::pin().flush();
            }
        }
        for k in 0..40 {
            cache.insert(k, format!("end:{k}"));
        }
        assert!((0..40).all(|k| cache.get(&k).is_none_or(|v| v == format!("end:{k}"))));
        assert!(cache.len() <= 32);
    }
}
