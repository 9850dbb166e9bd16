//! The raw table: an open-addressing hash table whose lookups take no lock.
//!
//! This module holds the engine's pointer-chasing `unsafe` code, kept apart
//! from the safe shard and cache logic (as hashbrown keeps its `RawTable`
//! apart from `HashMap`).
//!
//! Layout: two parallel arrays of `len` slots (any `len`, not only powers of
//! two; the home slot comes from a multiply-shift of the hash's low 32 bits):
//!
//! ```text
//! tags : [u8; len]           0 = EMPTY, 1 = DELETED, 0x80..=0xFF = FULL + 7 hash bits
//! slots: [*mut Entry; len]   the entry of a FULL slot, null otherwise
//! ```
//!
//! Probing is linear. A reader scans tags (64 to a cache line), dereferences
//! only slots whose tag matches, and stops at the first EMPTY tag.
//!
//! Concurrency contract:
//! - Every mutation happens with the owning shard's lock held; readers never
//!   write.
//! - Publishing: the slot pointer is stored (Release) before the tag
//!   (Release), so a reader that sees a FULL tag (Acquire) and loads the slot
//!   sees the entry fully written, or a later entry, or null.
//! - Erasing: the slot is nulled before the entry is handed to the epoch
//!   collector, so no reader that pins afterwards can reach it. A reader that
//!   pinned earlier may still hold it; the collector waits for that reader.
//! - A tag becomes EMPTY only where no probe sequence can run past it to a
//!   live entry (the next slot is EMPTY), so a reader never stops short of a
//!   key that stays in the table during its lookup.
//! - Once a shard replaces its table (to grow or to clear tombstones), the old
//!   one is never written again; readers still walking it see a consistent
//!   snapshot whose entries stay allocated until they unpin.

use crate::entry::Entry;
use crate::sync::epoch::Guard;
use crate::sync::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use std::borrow::Borrow;

const EMPTY: u8 = 0;
const DELETED: u8 = 1;

/// The FULL tag of a hash: the top bit set and the hash's top 7 bits.
#[inline]
fn tag_of(hash: u64) -> u8 {
    0x80 | (hash >> 57) as u8
}

pub(crate) struct RawTable<K, V> {
    tags: Box<[AtomicU8]>,
    slots: Box<[AtomicPtr<Entry<K, V>>]>,
    /// FULL slots (writer only).
    items: AtomicUsize,
    /// DELETED slots (writer only).
    tombstones: AtomicUsize,
}

impl<K, V> RawTable<K, V> {
    /// A table that holds `items` entries at a load factor of at most 3/4.
    pub(crate) fn for_items(items: usize) -> Self {
        let len = (items.saturating_mul(4) / 3).saturating_add(1).max(8);
        Self {
            tags: (0..len).map(|_| AtomicU8::new(EMPTY)).collect(),
            slots: (0..len)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            items: AtomicUsize::new(0),
            tombstones: AtomicUsize::new(0),
        }
    }

    /// Number of slots.
    #[inline]
    pub(crate) fn slot_count(&self) -> usize {
        self.tags.len()
    }

    /// Live entries (writer only).
    pub(crate) fn items(&self) -> usize {
        self.items.load(Ordering::Relaxed)
    }

    /// Whether one more insertion would push FULL + DELETED slots past 7/8
    /// of the table (writer only). Linear probing degrades fast beyond that,
    /// and at least one EMPTY slot must always remain for lookups to end.
    pub(crate) fn needs_rehash(&self) -> bool {
        let used = self.items() + self.tombstones.load(Ordering::Relaxed) + 1;
        used * 8 > self.slot_count() * 7
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        (((hash as u32) as u64 * self.slot_count() as u64) >> 32) as usize
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slot_count() {
            0
        } else {
            i + 1
        }
    }

    /// Lock-free lookup.
    ///
    /// The returned entry stays allocated for as long as `guard` is pinned,
    /// even if a writer removes it meanwhile.
    #[inline]
    pub(crate) fn find<'g, Q>(
        &'g self,
        hash: u64,
        key: &Q,
        _guard: &'g Guard,
    ) -> Option<&'g Entry<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let tag = tag_of(hash);
        let mut i = self.home(hash);
        for _ in 0..self.slot_count() {
            let t = self.tags[i].load(Ordering::Acquire);
            if t == EMPTY {
                return None;
            }
            if t == tag {
                let p = self.slots[i].load(Ordering::Acquire);
                if !p.is_null() {
                    // SAFETY: `p` was loaded from the table while `_guard` is
                    // pinned. Writers null a slot before they defer the
                    // entry's destruction to the epoch collector, so the
                    // entry cannot be freed before this guard unpins, and
                    // the Release store that published `p` makes its fields
                    // visible here (Acquire load above).
                    let e = unsafe { &*p };
                    if e.key().borrow() == key {
                        return Some(e);
                    }
                }
            }
            i = self.next(i);
        }
        None
    }

    /// Slot of the live entry for `key` (writer only, shard lock held).
    pub(crate) fn find_slot<Q>(&self, hash: u64, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let tag = tag_of(hash);
        let mut i = self.home(hash);
        for _ in 0..self.slot_count() {
            let t = self.tags[i].load(Ordering::Relaxed);
            if t == EMPTY {
                return None;
            }
            if t == tag {
                if let Some(e) = self.entry(i) {
                    if e.key().borrow() == key {
                        return Some(i);
                    }
                }
            }
            i = self.next(i);
        }
        None
    }

    /// Slots whose tag matches `hash`, in probe order, until the first EMPTY
    /// slot (writer only). The caller checks the full hash or the key.
    pub(crate) fn candidates(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let tag = tag_of(hash);
        let mut i = self.home(hash);
        let mut left = self.slot_count();
        std::iter::from_fn(move || {
            while left > 0 {
                left -= 1;
                let t = self.tags[i].load(Ordering::Relaxed);
                if t == EMPTY {
                    left = 0;
                    return None;
                }
                let here = i;
                i = self.next(i);
                if t == tag {
                    return Some(here);
                }
            }
            None
        })
    }

    /// The entry in slot `i`, if the slot is FULL (writer only, shard lock
    /// held: entries in the current table are live, since writers unlink an
    /// entry before retiring it).
    pub(crate) fn entry(&self, i: usize) -> Option<&Entry<K, V>> {
        let p = self.slots[i].load(Ordering::Acquire);
        // SAFETY: with the shard lock held, every non-null pointer in the
        // current table is a live entry: only a lock holder unlinks entries,
        // and it retires them only after nulling their slot.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// Raw pointer in slot `i` (null if none).
    pub(crate) fn entry_ptr(&self, i: usize) -> *mut Entry<K, V> {
        self.slots[i].load(Ordering::Acquire)
    }

    /// Iterator over the non-null entry pointers, in slot order. Used by
    /// readers (iteration, under a guard) and writers (rehash, clear).
    pub(crate) fn pointers(&self) -> impl Iterator<Item = *mut Entry<K, V>> + '_ {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .filter(|p| !p.is_null())
    }

    /// Puts `entry` for a key that is not in the table (writer only; the
    /// caller has checked `needs_rehash`). Returns the slot used.
    pub(crate) fn insert(&self, hash: u64, entry: *mut Entry<K, V>) -> usize {
        let mut i = self.home(hash);
        loop {
            let t = self.tags[i].load(Ordering::Relaxed);
            if t == EMPTY || t == DELETED {
                if t == DELETED {
                    self.tombstones.store(
                        self.tombstones.load(Ordering::Relaxed) - 1,
                        Ordering::Relaxed,
                    );
                }
                self.items
                    .store(self.items.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                self.slots[i].store(entry, Ordering::Release);
                self.tags[i].store(tag_of(hash), Ordering::Release);
                return i;
            }
            i = self.next(i);
        }
    }

    /// Swaps the entry of FULL slot `i` for another of the same key (writer
    /// only). Readers see the old entry or the new one, never neither.
    pub(crate) fn replace(&self, i: usize, entry: *mut Entry<K, V>) {
        self.slots[i].store(entry, Ordering::Release);
    }

    /// Empties FULL slot `i` (writer only). The caller retires the entry
    /// afterwards.
    pub(crate) fn erase(&self, i: usize) {
        let next_empty = self.tags[self.next(i)].load(Ordering::Relaxed) == EMPTY;
        self.items
            .store(self.items.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        self.slots[i].store(std::ptr::null_mut(), Ordering::Release);
        if !next_empty {
            self.tombstones.store(
                self.tombstones.load(Ordering::Relaxed) + 1,
                Ordering::Relaxed,
            );
            self.tags[i].store(DELETED, Ordering::Release);
            return;
        }
        // No probe sequence continues past an EMPTY successor, so this slot
        // and the run of tombstones before it can become EMPTY.
        self.tags[i].store(EMPTY, Ordering::Release);
        let mut j = i;
        let mut freed = 0;
        loop {
            j = if j == 0 { self.slot_count() - 1 } else { j - 1 };
            if j == i || self.tags[j].load(Ordering::Relaxed) != DELETED {
                break;
            }
            self.tags[j].store(EMPTY, Ordering::Release);
            freed += 1;
        }
        self.tombstones.store(
            self.tombstones.load(Ordering::Relaxed) - freed,
            Ordering::Relaxed,
        );
    }

    /// Empties every slot in place (writer only). Readers racing with this
    /// see each slot either as it was or empty.
    pub(crate) fn clear(&self) {
        for (t, s) in self.tags.iter().zip(self.slots.iter()) {
            s.store(std::ptr::null_mut(), Ordering::Release);
            t.store(EMPTY, Ordering::Release);
        }
        self.items.store(0, Ordering::Relaxed);
        self.tombstones.store(0, Ordering::Relaxed);
    }

    /// Heap bytes held by the table.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slot_count()
            * (std::mem::size_of::<AtomicU8>() + std::mem::size_of::<AtomicPtr<Entry<K, V>>>())
    }
}
