//! The raw table: an open-addressing hash table whose lookups take no lock.
//!
//! This module holds the engine's pointer-chasing `unsafe` code, kept apart
//! from the safe shard and cache logic (as hashbrown keeps its `RawTable`
//! apart from `HashMap`).
//!
//! Layout: a prime number of cache-line buckets (the home bucket is a
//! multiply-shift of the hash's low 32 bits). A
//! bucket holds seven slots and their seven tag bytes in one 64-byte line, so
//! a lookup costs one cache miss for the bucket and one for the entry:
//!
//! ```text
//! Bucket (64 bytes) = tags: u64   bytes 0..7: 0 EMPTY, 0x80|h7 FULL; byte 7: overflow count
//!                     slots: [*mut Entry; 7]
//! ```
//!
//! Probing is double hashing over buckets: a key steps from its home by a
//! stride of 1..n-1 buckets taken from the low 16 bits of its hash (the
//! bucket count is prime, so every stride reaches every bucket). Linear
//! probing would merge the runs of full buckets into long clusters. A reader
//! loads a bucket's tag word,
//! matches its tag against all seven bytes at once (SWAR), dereferences only
//! matching slots, and stops at the first bucket whose overflow count is
//! zero. The overflow count of a bucket is the number of live entries whose
//! probe passed it (it was full when they were placed), saturating at 255 (then it stays until the table is
//! rebuilt). This is F14's scheme: erasing always leaves an EMPTY slot, so
//! there are no tombstones to clean up, and a table is rebuilt only to grow.
//!
//! Concurrency contract:
//! - Every mutation happens with the owning shard's lock held; readers never
//!   write. (A writer updates a tag word with a plain load and store: it is
//!   the only writer.)
//! - Publishing: the slot pointer is stored (Release) before the tag word
//!   (Release), so a reader that sees a FULL tag (Acquire) and loads the slot
//!   (Acquire) sees the entry fully written, or a later entry, or null.
//! - Erasing: the slot is nulled before the entry is handed to the epoch
//!   collector, so no reader that pins afterwards can reach it. A reader that
//!   pinned earlier may still hold it; the collector waits for that reader.
//! - Overflow counts are raised before the entry that passed them is
//!   published (both by the writer, the publication Release), and lowered
//!   only after that entry is unlinked; so while a key stays in the table,
//!   every bucket between its home and its slot counts it, and a reader never
//!   stops short of it.
//! - Once a shard replaces its table (to grow), the old
//!   one is never written again; readers still walking it see a consistent
//!   snapshot whose entries stay allocated until they unpin. The shard keeps
//!   the old table itself until it is dropped, so a reader may read tag
//!   words without pinning ([`RawTable::scout`]); it dereferences a slot's
//!   entry only once pinned, and only from the current table.

use crate::entry::Entry;
use crate::sync::epoch::Guard;
use crate::sync::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use equivalent::Equivalent;
use std::ptr::NonNull;

/// Slots per bucket.
const GROUP: usize = 7;
const EMPTY: u8 = 0;
const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
/// The eighth byte of a tag word: the bucket's overflow count.
const OVERFLOW: u64 = 0xFF << 56;

/// The FULL tag of a hash: the top bit set and the hash's top 7 bits.
#[inline]
fn tag_of(hash: u64) -> u8 {
    0x80 | (hash >> 57) as u8
}

/// Bytes of `word` equal to `byte`, as a mask of their high bits. May
/// report a false match above a true one (borrow propagation); callers
/// verify candidates.
#[inline]
fn match_byte(word: u64, byte: u8) -> u64 {
    let x = word ^ (LOW_BITS * u64::from(byte));
    x.wrapping_sub(LOW_BITS) & !x & HIGH_BITS & !OVERFLOW
}

/// Whether some probe continues past this bucket.
#[inline]
fn overflowed(word: u64) -> bool {
    word & OVERFLOW != 0
}

/// The word with its overflow count raised (saturating) or lowered (a
/// saturated count stays).
#[inline]
fn with_overflow(word: u64, raise: bool) -> u64 {
    let c = (word >> 56) as u8;
    let c = match (raise, c) {
        (_, u8::MAX) => u8::MAX,
        (true, c) => c + 1,
        (false, c) => c - 1,
    };
    (word & !OVERFLOW) | (u64::from(c) << 56)
}

/// A slot's handle: its bucket times eight plus its index in the bucket
/// (shifts, not a division by seven, to find it again).
#[inline]
fn handle(bucket: usize, i: usize) -> usize {
    bucket << 3 | i
}

#[inline]
fn tag_at(word: u64, i: usize) -> u8 {
    (word >> (i * 8)) as u8
}

#[inline]
fn with_tag(word: u64, i: usize, tag: u8) -> u64 {
    (word & !(0xFF << (i * 8))) | (u64::from(tag) << (i * 8))
}

/// Slot indexes (0..7) of the set high bits in a match mask.
#[inline]
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let i = mask.trailing_zeros() as usize / 8;
            mask &= mask - 1;
            i
        })
    })
}

/// The smallest prime at least `n` (1 for 0 and 1: a one-bucket table
/// probes nothing but its bucket). Called only when a table is built.
fn next_prime(n: usize) -> usize {
    let is_prime = |m: usize| m >= 2 && (2..).take_while(|d| d * d <= m).all(|d| m % d != 0);
    if n <= 1 {
        return 1;
    }
    (n..).find(|&m| is_prime(m)).unwrap_or(n)
}

/// A bucket's size: one cache line (checked by a test). Under loom nothing
/// is prefetched, so only the test uses it.
#[cfg_attr(loom, allow(dead_code))]
const BUCKET_BYTES: usize = 64;

/// The home bucket of `hash` among `n` buckets: a multiply-shift of the
/// hash's low 32 bits.
#[inline]
fn home_of(hash: u64, n: usize) -> usize {
    (((hash as u32) as u64 * n as u64) >> 32) as usize
}

/// Where a table's buckets are, kept beside the shard's table pointer so
/// that an operation can start fetching its key's home bucket before it
/// pins the epoch or takes the shard lock: the pin's atomic
/// read-modify-write (or the lock's) then overlaps the cache miss instead
/// of preceding it.
///
/// Only a hint: it is read without pinning, and a reader that races a table
/// replacement may pair the new address with the old length. Then it
/// prefetches a useless line, nothing more: a prefetch never faults and the
/// address is never dereferenced. Under loom it is empty (a prefetch changes no result, so
/// the models need not explore it).
pub(crate) struct BucketHint {
    #[cfg(not(loom))]
    base: AtomicPtr<u8>,
    #[cfg(not(loom))]
    len: AtomicUsize,
}

impl BucketHint {
    /// A hint at `table`'s buckets.
    pub(crate) fn new<K, V>(table: &RawTable<K, V>) -> Self {
        let hint = Self {
            #[cfg(not(loom))]
            base: AtomicPtr::new(std::ptr::null_mut()),
            #[cfg(not(loom))]
            len: AtomicUsize::new(0),
        };
        hint.point_at(table);
        hint
    }

    /// Points the hint at `table` (writer only, when it replaces the table).
    pub(crate) fn point_at<K, V>(&self, table: &RawTable<K, V>) {
        #[cfg(not(loom))]
        {
            self.base
                .store(table.buckets.as_ptr().cast_mut().cast(), Ordering::Relaxed);
            self.len.store(table.buckets.len(), Ordering::Relaxed);
        }
        #[cfg(loom)]
        let _ = table;
    }

    /// Whether the hint points at `table`'s buckets.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn points_at<K, V>(&self, table: &RawTable<K, V>) -> bool {
        self.base.load(Ordering::Relaxed).cast_const() == table.buckets.as_ptr().cast()
            && self.len.load(Ordering::Relaxed) == table.buckets.len()
    }

    /// Asks the CPU to start loading the home bucket of `hash` (see
    /// [`crate::sync::prefetch`]).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        #[cfg(not(loom))]
        {
            let base = self.base.load(Ordering::Relaxed);
            let len = self.len.load(Ordering::Relaxed);
            // An address computed, never dereferenced (see the type's doc
            // for why it may be stale).
            let line = base.wrapping_add(home_of(hash, len) * BUCKET_BYTES);
            crate::sync::prefetch(line.cast_const());
        }
        #[cfg(loom)]
        let _ = hash;
    }
}

/// What [`RawTable::scout`] read of a key's home bucket.
#[derive(Clone, Copy)]
pub(crate) struct Scouted {
    bucket: usize,
    word: u64,
    /// The word's bytes that match the key's tag.
    matches: u64,
}

#[repr(C, align(64))]
struct Bucket<K, V> {
    tags: AtomicU64,
    slots: [AtomicPtr<Entry<K, V>>; GROUP],
}

impl<K, V> Bucket<K, V> {
    fn new() -> Self {
        Self {
            tags: AtomicU64::new(0),
            slots: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
        }
    }
}

pub(crate) struct RawTable<K, V> {
    buckets: Box<[Bucket<K, V>]>,
    /// FULL slots (writer only).
    items: AtomicUsize,
}

impl<K, V> RawTable<K, V> {
    /// A table that holds `items` entries at a load factor of at most 2/3
    /// (see `misses_stay_short_under_churn` for why not higher).
    pub(crate) fn for_items(items: usize) -> Self {
        let slots = items.saturating_mul(3) / 2 + 1;
        let n = next_prime(slots.div_ceil(GROUP));
        Self {
            buckets: (0..n).map(|_| Bucket::new()).collect(),
            items: AtomicUsize::new(0),
        }
    }

    /// Number of slots (see [`RawTable::nth_entry_ptr`]).
    #[inline]
    pub(crate) fn slot_count(&self) -> usize {
        self.buckets.len() * GROUP
    }

    /// Raw pointer in the `n`th slot (0 to `slot_count() - 1`; null if
    /// none), for iteration: loaded with Acquire, so a reader pinned while
    /// it loads may dereference a non-null result.
    pub(crate) fn nth_entry_ptr(&self, n: usize) -> *mut Entry<K, V> {
        self.buckets[n / GROUP].slots[n % GROUP].load(Ordering::Acquire)
    }

    /// The first slot at or after `from` whose tag is FULL, for iteration
    /// (`None` past the last): empty buckets cost one tag load each. A slot
    /// tagged FULL may hold null or a later entry by the time it is loaded
    /// (the caller checks); an entry published before this call and still
    /// in the table is never skipped (its slot is stored before its tag).
    pub(crate) fn next_full_slot(&self, from: usize) -> Option<usize> {
        let mut b = from / GROUP;
        let mut skip = from % GROUP;
        while let Some(bucket) = self.buckets.get(b) {
            let word = bucket.tags.load(Ordering::Acquire);
            // FULL slots, past the first `skip` of this bucket.
            let full = word & HIGH_BITS & !OVERFLOW & (u64::MAX << (skip * 8));
            if let Some(i) = bits(full).next() {
                return Some(b * GROUP + i);
            }
            b += 1;
            skip = 0;
        }
        None
    }

    /// Live entries (writer only).
    pub(crate) fn items(&self) -> usize {
        self.items.load(Ordering::Relaxed)
    }

    /// Whether one more insertion would fill more than 7/8 of the slots
    /// (writer only): probes lengthen fast beyond that, and an insertion must
    /// always find a free slot.
    pub(crate) fn needs_rehash(&self) -> bool {
        (self.items() + 1) * 8 > self.slot_count() * 7
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        home_of(hash, self.buckets.len())
    }

    /// The probe stride of `hash`: 1..n-1 buckets, from the low 16 bits of
    /// the hash (the home bucket comes from its high bits). The bucket count
    /// is prime, so every stride visits every bucket within `n` steps.
    #[inline]
    fn step(&self, hash: u64) -> usize {
        let n = self.buckets.len() as u64;
        (1 + (((hash & 0xFFFF) * n.saturating_sub(1)) >> 16)) as usize
    }

    /// The bucket after `b` on a probe of stride `step`.
    #[inline]
    fn next(&self, b: usize, step: usize) -> usize {
        let b = b + step;
        if b >= self.buckets.len() {
            b - self.buckets.len()
        } else {
            b
        }
    }

    #[inline]
    fn slot(&self, i: usize) -> &AtomicPtr<Entry<K, V>> {
        &self.buckets[i >> 3].slots[i & 7]
    }

    /// The probe both lookups share: the slot and pointer of the entry for
    /// `key`, loading with `order` (Acquire for readers; a writer holding the
    /// lock may use Relaxed).
    #[inline]
    fn locate<Q>(&self, hash: u64, key: &Q, order: Ordering) -> Option<(usize, *mut Entry<K, V>)>
    where
        Q: Equivalent<K> + ?Sized,
    {
        let b = self.home(hash);
        let word = self.buckets[b].tags.load(order);
        let matches = match_byte(word, tag_of(hash));
        self.locate_from(hash, key, order, b, word, matches)
    }

    /// [`locate`](Self::locate), given the home bucket `b`, its tag word,
    /// already loaded (with `order`), and the word's tag matches.
    #[inline]
    fn locate_from<Q>(
        &self,
        hash: u64,
        key: &Q,
        order: Ordering,
        b: usize,
        word: u64,
        matches: u64,
    ) -> Option<(usize, *mut Entry<K, V>)>
    where
        Q: Equivalent<K> + ?Sized,
    {
        let (mut b, mut word, mut matches) = (b, word, matches);
        // Most lookups end in the home bucket: the stride is computed only
        // when the probe goes on.
        let mut step = 0;
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            for i in bits(matches) {
                let p = bucket.slots[i].load(order);
                if p.is_null() {
                    continue;
                }
                // `p` was loaded from the table. Readers call this pinned,
                // and writers null a slot before they defer the entry's
                // destruction, so it cannot be freed before the caller
                // unpins; the Release store that published `p` makes its
                // fields visible (Acquire above). Writers call it with the
                // shard lock held, when every pointer in the table is live.
                // SAFETY: a live (or pinned-reachable) entry, as argued above.
                let e = unsafe { &*p };
                if key.equivalent(e.key()) {
                    return Some((handle(b, i), p));
                }
            }
            if !overflowed(word) {
                return None;
            }
            if step == 0 {
                step = self.step(hash);
            }
            b = self.next(b, step);
            word = self.buckets[b].tags.load(order);
            matches = match_byte(word, tag_of(hash));
        }
        None
    }

    /// The first step of a lookup, taken before the reader pins: the home
    /// bucket's tag word. `None` if the key is certainly absent (no tag of
    /// the bucket matches and no probe passed it), so that a miss costs no
    /// pin. Otherwise it starts fetching the first candidate's entry, whose
    /// cache miss then overlaps the pin's atomic instruction; the pointer
    /// is not dereferenced here (without a pin it may be freed: the caller
    /// pins first, then finishes the lookup with [`find_scouted`]).
    ///
    /// [`find_scouted`]: Self::find_scouted
    #[inline]
    pub(crate) fn scout(&self, hash: u64) -> Option<Scouted> {
        let b = self.home(hash);
        let bucket = &self.buckets[b];
        // Acquire, as in `locate`: a FULL tag seen here makes its entry's
        // fields visible to the slot load that follows the pin.
        let word = bucket.tags.load(Ordering::Acquire);
        let matches = match_byte(word, tag_of(hash));
        if matches != 0 {
            let i = matches.trailing_zeros() as usize / 8;
            crate::sync::prefetch(bucket.slots[i].load(Ordering::Relaxed));
        } else if !overflowed(word) {
            return None;
        }
        Some(Scouted {
            bucket: b,
            word,
            matches,
        })
    }

    /// Finishes a lookup that [`scout`](Self::scout) started on this table.
    /// The caller pinned after the scout and checked that this table was
    /// still its shard's current one after pinning: then every entry
    /// retired before the pin had been unlinked from this table, so the
    /// slot pointers loaded here are entries that the pin protects. The
    /// home bucket's tags are the scout's: a key inserted into it since
    /// is missed, as if the lookup had ended at the scout.
    #[inline]
    pub(crate) fn find_scouted<Q>(
        &self,
        hash: u64,
        key: &Q,
        scouted: Scouted,
        _guard: &Guard,
    ) -> Option<NonNull<Entry<K, V>>>
    where
        Q: Equivalent<K> + ?Sized,
    {
        let Scouted {
            bucket,
            word,
            matches,
        } = scouted;
        let (_, p) = self.locate_from(hash, key, Ordering::Acquire, bucket, word, matches)?;
        // `locate_from` skips null slots.
        NonNull::new(p)
    }

    /// Lock-free lookup.
    ///
    /// The returned entry stays allocated for as long as `_guard` is pinned,
    /// even if a writer removes it meanwhile.
    #[inline]
    pub(crate) fn find<'g, Q>(
        &'g self,
        hash: u64,
        key: &Q,
        _guard: &'g Guard,
    ) -> Option<&'g Entry<K, V>>
    where
        Q: Equivalent<K> + ?Sized,
    {
        let (_, p) = self.locate(hash, key, Ordering::Acquire)?;
        // SAFETY: see `locate`: loaded while `_guard` is pinned, so the
        // entry outlives the guard's borrow.
        Some(unsafe { &*p })
    }

    /// [`find`](Self::find), returning the pointer the slab handed out (it
    /// carries the provenance of the entry's whole block, so a refreshing
    /// cache reaches the block's trailer from it).
    #[inline]
    pub(crate) fn find_raw<Q>(
        &self,
        hash: u64,
        key: &Q,
        _guard: &Guard,
    ) -> Option<NonNull<Entry<K, V>>>
    where
        Q: Equivalent<K> + ?Sized,
    {
        let (_, p) = self.locate(hash, key, Ordering::Acquire)?;
        // `locate` skips null slots.
        NonNull::new(p)
    }

    /// Slot of the live entry for `key` (writer only, shard lock held).
    pub(crate) fn find_slot<Q>(&self, hash: u64, key: &Q) -> Option<usize>
    where
        Q: Equivalent<K> + ?Sized,
    {
        self.locate(hash, key, Ordering::Relaxed)
            .map(|(slot, _)| slot)
    }

    /// Slots whose tag matches `hash`, in probe order, until the first bucket
    /// no probe passes (writer only). The caller checks the key or the
    /// pointer.
    pub(crate) fn candidates(&self, hash: u64) -> Vec<usize> {
        let tag = tag_of(hash);
        let mut b = self.home(hash);
        let step = self.step(hash);
        let mut out = Vec::new();
        for _ in 0..self.buckets.len() {
            let word = self.buckets[b].tags.load(Ordering::Relaxed);
            out.extend(
                bits(match_byte(word, tag))
                    .filter(|&i| tag_at(word, i) == tag)
                    .map(|i| handle(b, i)),
            );
            if !overflowed(word) {
                break;
            }
            b = self.next(b, step);
        }
        out
    }

    /// Slot holding exactly `p`, whose key's hash has low 32 bits `hash`
    /// (writer only): compares pointers, so no key is read.
    fn find_ptr(&self, hash: u64, p: *const Entry<K, V>) -> Option<usize> {
        let mut b = self.home(hash);
        let step = self.step(hash);
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            if let Some(i) = bucket
                .slots
                .iter()
                .position(|s| std::ptr::eq(s.load(Ordering::Relaxed), p))
            {
                return Some(handle(b, i));
            }
            if !overflowed(bucket.tags.load(Ordering::Relaxed)) {
                return None;
            }
            b = self.next(b, step);
        }
        None
    }

    /// Copies every entry of this table into `new` (writer only), keeping
    /// tags and reading each entry's stored hash for its home: no key is
    /// hashed again.
    pub(crate) fn copy_into(&self, new: &RawTable<K, V>) {
        for bucket in self.buckets.iter() {
            let word = bucket.tags.load(Ordering::Relaxed);
            for (i, slot) in bucket.slots.iter().enumerate() {
                let p = slot.load(Ordering::Relaxed);
                if !p.is_null() {
                    // SAFETY: a live entry of the current table (lock held).
                    let home = u64::from(unsafe { &*p }.hash);
                    new.insert_tagged(home, tag_at(word, i), p);
                }
            }
        }
    }

    /// Raw pointer in slot `i` (null if none).
    pub(crate) fn entry_ptr(&self, i: usize) -> *mut Entry<K, V> {
        self.slot(i).load(Ordering::Acquire)
    }

    /// Puts `entry` for a key that is not in the table (writer only; the
    /// caller has checked `needs_rehash`). Returns the slot used.
    pub(crate) fn insert(&self, hash: u64, entry: *mut Entry<K, V>) -> usize {
        self.insert_tagged(hash, tag_of(hash), entry)
    }

    fn insert_tagged(&self, hash: u64, tag: u8, entry: *mut Entry<K, V>) -> usize {
        let mut b = self.home(hash);
        let step = self.step(hash);
        loop {
            let bucket = &self.buckets[b];
            let word = bucket.tags.load(Ordering::Relaxed);
            // The lowest match of a zero byte is exact (see `match_byte`).
            if let Some(i) = bits(match_byte(word, EMPTY)).next() {
                self.items
                    .store(self.items.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                bucket.slots[i].store(entry, Ordering::Release);
                bucket.tags.store(with_tag(word, i, tag), Ordering::Release);
                return handle(b, i);
            }
            // Full: this entry's probe passes it.
            bucket
                .tags
                .store(with_overflow(word, true), Ordering::Release);
            b = self.next(b, step);
        }
    }

    /// Swaps the entry of FULL slot `i` for another of the same key (writer
    /// only). Readers see the old entry or the new one, never neither.
    pub(crate) fn replace(&self, i: usize, entry: *mut Entry<K, V>) {
        self.slot(i).store(entry, Ordering::Release);
    }

    /// Unlinks exactly `p`, whose key's hash has low 32 bits `hash` (writer
    /// only): `find_ptr` and `erase` in one call. An entry in its home
    /// bucket (most of them) is found and erased without walking the probe
    /// twice. Returns whether `p` was in the table.
    pub(crate) fn remove_ptr(&self, hash: u64, p: *const Entry<K, V>) -> bool {
        let home = self.home(hash);
        let bucket = &self.buckets[home];
        if let Some(i) = bucket
            .slots
            .iter()
            .position(|s| std::ptr::eq(s.load(Ordering::Relaxed), p))
        {
            // In its home bucket: no bucket before it counts its probe.
            self.empty_slot(home, i);
            return true;
        }
        match self.find_ptr(hash, p) {
            Some(slot) => {
                self.erase(slot, hash);
                true
            }
            None => false,
        }
    }

    /// Nulls slot `i` of bucket `b` and tags it EMPTY (writer only).
    #[inline]
    fn empty_slot(&self, b: usize, i: usize) {
        let bucket = &self.buckets[b];
        let word = bucket.tags.load(Ordering::Relaxed);
        self.items
            .store(self.items.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        bucket.slots[i].store(std::ptr::null_mut(), Ordering::Release);
        bucket
            .tags
            .store(with_tag(word, i, EMPTY), Ordering::Release);
    }

    /// Empties FULL slot `i`, whose entry's key hashes to `hash` (writer
    /// only). The caller retires the entry afterwards.
    fn erase(&self, i: usize, hash: u64) {
        let target = i >> 3;
        self.empty_slot(target, i & 7);
        // The entry is unreachable now: the buckets its probe passed no
        // longer need to pass readers on for it.
        let mut b = self.home(hash);
        let step = self.step(hash);
        while b != target {
            let bucket = &self.buckets[b];
            let word = bucket.tags.load(Ordering::Relaxed);
            bucket
                .tags
                .store(with_overflow(word, false), Ordering::Release);
            b = self.next(b, step);
        }
    }

    /// Empties every slot in place (writer only). Readers racing with this
    /// see each slot either as it was or empty.
    pub(crate) fn clear(&self) {
        for b in self.buckets.iter() {
            for s in b.slots.iter() {
                s.store(std::ptr::null_mut(), Ordering::Release);
            }
            b.tags.store(0, Ordering::Release);
        }
        self.items.store(0, Ordering::Relaxed);
    }

    /// Heap bytes held by the table.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket<K, V>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_is_one_cache_line_and_the_hint_finds_the_home_bucket() {
        assert_eq!(std::mem::size_of::<Bucket<u64, u64>>(), BUCKET_BYTES);
        assert_eq!(std::mem::size_of::<Bucket<String, Vec<u8>>>(), BUCKET_BYTES);
        let t = RawTable::<u64, u64>::for_items(1000);
        let base = t.buckets.as_ptr() as usize;
        for hash in [0u64, 1, 0xFFFF_FFFF, 0xDEAD_BEEF_1234_5678, u64::MAX] {
            let b = t.home(hash);
            assert!(b < t.buckets.len());
            assert_eq!(
                std::ptr::addr_of!(t.buckets[b]) as usize,
                base + home_of(hash, t.buckets.len()) * BUCKET_BYTES
            );
        }
        // A hint at a table (the prefetch itself has no observable effect).
        BucketHint::new(&t).prefetch(42);
    }

    /// The unpinned first step of a lookup: a key present in the table is
    /// never denied (that would be a wrong miss) and the scouted lookup
    /// finds it; an empty table denies every key, and a table a third full
    /// most absent keys (those are the misses that skip the pin).
    #[test]
    fn the_scout_never_denies_a_present_key() {
        // Under Miri, a tenth of the sizes.
        let scale = if cfg!(miri) { 10 } else { 1 };
        let n = 3000 / scale;
        let t: RawTable<u64, u64> = RawTable::for_items(n);
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let absent: Vec<u64> = (0..10_000 / scale).map(|_| rnd()).collect();
        assert!(absent.iter().all(|&h| t.scout(h).is_none()));
        let held: Vec<(u64, *mut Entry<u64, u64>)> = (0..n / 3)
            .map(|_| {
                let h = rnd();
                let e = Box::into_raw(Box::new(Entry::new(h, h, h, 1, u64::MAX, 0)));
                t.insert(h, e);
                (h, e)
            })
            .collect();
        let guard = crate::sync::epoch::pin();
        for &(h, e) in &held {
            let scouted = t.scout(h).expect("a present key's home is never denied");
            let found = t.find_scouted(h, &h, scouted, &guard);
            assert_eq!(found.map(NonNull::as_ptr), Some(e));
        }
        let denied = absent.iter().filter(|&&h| t.scout(h).is_none()).count();
        assert!(
            denied > 8_000 / scale,
            "only {denied} of {} misses skip the pin",
            absent.len()
        );
        for (_, e) in held {
            // SAFETY: allocated above; nothing else holds it.
            drop(unsafe { Box::from_raw(e) });
        }
    }

    /// Iteration's walk visits exactly the FULL slots, skipping empty
    /// buckets, from any starting slot.
    #[test]
    fn the_walk_over_full_slots_finds_every_entry() {
        let t: RawTable<u64, u64> = RawTable::for_items(500);
        assert_eq!(t.next_full_slot(0), None);
        let entries: Vec<*mut Entry<u64, u64>> = (0..40u64)
            .map(|k| {
                let h = k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let e = Box::into_raw(Box::new(Entry::new(k, k, h, 1, u64::MAX, 0)));
                t.insert(h, e);
                e
            })
            .collect();
        let walk = |from: usize| {
            let mut seen = Vec::new();
            let mut n = from;
            while let Some(slot) = t.next_full_slot(n) {
                assert!(!t.nth_entry_ptr(slot).is_null());
                seen.push(slot);
                n = slot + 1;
            }
            seen
        };
        let all = walk(0);
        let mut found: Vec<_> = all.iter().map(|&n| t.nth_entry_ptr(n)).collect();
        found.sort();
        let mut want = entries.clone();
        want.sort();
        assert_eq!(found, want);
        // Starting mid-bucket or mid-table skips exactly the earlier slots.
        for from in [1, 3, 7, all[5], all[5] + 1, t.slot_count()] {
            let want: Vec<usize> = all.iter().copied().filter(|&n| n >= from).collect();
            assert_eq!(walk(from), want, "from {from}");
        }
        for e in entries {
            // SAFETY: allocated above; nothing else holds it.
            drop(unsafe { Box::from_raw(e) });
        }
    }

    #[test]
    fn swar_matching_finds_every_equal_byte() {
        let word = with_tag(with_tag(with_tag(0, 0, 0x85), 3, 0x85), 5, 0x86);
        let m: Vec<usize> = bits(match_byte(word, 0x85)).collect();
        assert_eq!(m, vec![0, 3]);
        // The overflow byte never matches a tag.
        let word = with_overflow(with_tag(0, 1, 0x81), true);
        assert_eq!(bits(match_byte(word, 0x81)).collect::<Vec<_>>(), vec![1]);
        assert_eq!(bits(match_byte(word, 0x80 | 1)).count(), 1);
    }

    /// Under steady churn (insert a fresh key, erase the oldest) at the
    /// load `for_items` sizes for, a miss stays short: entries displaced
    /// while their home was full keep their buckets marked for as long as
    /// they live, so a load near 7/8 would average five buckets or more.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "a statistical property of safe probing logic, 40,000 inserts"
    )]
    fn misses_stay_short_under_churn() {
        let n = 2000;
        let t: RawTable<u64, u64> = RawTable::for_items(n);
        let mut x = 0x1234_5678_9abc_def1_u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut live = std::collections::VecDeque::new();
        for _ in 0..20 * n {
            let h = rnd();
            let e = Box::into_raw(Box::new(Entry::new(h, h, h, 1, u64::MAX, 0)));
            t.insert(h, e);
            live.push_back((h, e));
            if live.len() > n {
                let (h, e) = live.pop_front().unwrap();
                assert!(t.remove_ptr(h, e));
                // SAFETY: allocated above and unlinked; nothing else holds it.
                drop(unsafe { Box::from_raw(e) });
            }
        }
        let probes: usize = (0..10_000u64)
            .map(|k| {
                let h = rnd() ^ k;
                let (mut b, step, mut c) = (t.home(h), t.step(h), 1);
                while overflowed(t.buckets[b].tags.load(Ordering::Relaxed)) {
                    b = t.next(b, step);
                    c += 1;
                }
                c
            })
            .sum();
        let avg = probes as f64 / 10_000.0;
        assert!(avg < 2.5, "a miss probes {avg:.2} buckets on average");
        for (_, e) in live {
            // SAFETY: as above.
            drop(unsafe { Box::from_raw(e) });
        }
    }

    #[test]
    fn bucket_counts_are_prime() {
        // Under Miri, not the 26,000-bucket table.
        let large = if cfg!(miri) { 1000 } else { 123_457 };
        for n in [0, 1, 2, 3, 10, 1000, large] {
            let b = RawTable::<u64, u64>::for_items(n).buckets.len();
            assert!(b == 1 || (2..b).take_while(|d| d * d <= b).all(|d| b % d != 0));
        }
    }

    #[test]
    fn overflow_counts_saturate_and_stay() {
        let mut w = 0;
        assert!(!overflowed(w));
        w = with_overflow(w, true);
        assert!(overflowed(w));
        w = with_overflow(w, false);
        assert!(!overflowed(w));
        for _ in 0..300 {
            w = with_overflow(w, true);
        }
        assert_eq!(w >> 56, 255);
        w = with_overflow(w, false);
        assert_eq!(w >> 56, 255);
    }
}
