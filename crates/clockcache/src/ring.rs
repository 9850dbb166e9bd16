//! A FIFO of entry pointers with O(1) removal from the middle: the building
//! block of both eviction policies (CLOCK is one ring whose head is the hand;
//! S3-FIFO is two rings).
//!
//! Each entry records its logical position; removing it leaves a hole that
//! the hand skips. When holes outnumber live entries the ring is compacted
//! (positions renumbered), so holes cost O(1) amortized and never more than
//! the live entries' own slots. Writer only: every method runs under the
//! shard lock.

use crate::entry::Entry;
use crate::sync::prefetch;
use std::collections::VecDeque;
use std::ptr::NonNull;

/// How far ahead of the hand `pop_front` prefetches.
const PREFETCH_AHEAD: usize = 4;

/// Fewest cells a ring grows or shrinks by.
const MIN_GROWTH: usize = 64;

pub(crate) struct Ring<K, V> {
    cells: VecDeque<Option<NonNull<Entry<K, V>>>>,
    /// Most entries the ring is expected to hold (its shard's item limit):
    /// it doubles up to that, then grows by a thirty-second.
    limit: usize,
    /// Logical position of `cells[0]` (positions wrap around `u32`; a ring
    /// never holds anywhere near 2^32 cells).
    head: u32,
    holes: usize,
}

// SAFETY: the ring only stores pointers to entries that the shard owns; it is
// used only under the shard lock and is Send/Sync exactly when the entries
// are.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for Ring<K, V> {}
// SAFETY: as above; shared references never touch the pointees.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Ring<K, V> {}

impl<K, V> Ring<K, V> {
    pub(crate) fn new(initial: usize, limit: usize) -> Self {
        Self {
            cells: VecDeque::with_capacity(initial),
            // An insert holds one entry over the budget until it evicts.
            limit: limit.saturating_add(MIN_GROWTH),
            head: 0,
            holes: 0,
        }
    }

    /// Live entries.
    pub(crate) fn len(&self) -> usize {
        self.cells.len() - self.holes
    }

    /// Appends entry `e` at the tail. The ring keeps `p`, the pointer the
    /// slab allocated `e` through: a pointer re-derived from `&Entry` may
    /// only read, and the ring's pointers go on to the slab, which writes
    /// the next entry through them.
    pub(crate) fn push_back(&mut self, e: &Entry<K, V>, p: NonNull<Entry<K, V>>) {
        debug_assert!(std::ptr::eq(e, p.as_ptr()));
        let (len, cap) = (self.cells.len(), self.cells.capacity());
        if len == cap {
            // Sized to the shard, not to the next power of two.
            // Past the limit (a shard lent unused capacity, or a weigher
            // that makes entries light): small steps.
            let target = if cap < self.limit {
                (cap * 2).min(self.limit)
            } else {
                cap + cap / 32
            };
            self.cells.reserve_exact(target.max(cap + MIN_GROWTH) - len);
        }
        e.set_pos(self.head.wrapping_add(self.cells.len() as u32));
        self.cells.push_back(Some(p));
    }

    /// The entry at the head, unless the head is a hole (only a hint of what
    /// the hand takes next: for prefetching).
    #[inline]
    pub(crate) fn peek_front(&self) -> Option<NonNull<Entry<K, V>>> {
        self.cells.front().copied().flatten()
    }

    /// Takes the entry at the head, skipping holes.
    pub(crate) fn pop_front(&mut self) -> Option<NonNull<Entry<K, V>>> {
        while let Some(cell) = self.cells.pop_front() {
            self.head = self.head.wrapping_add(1);
            match cell {
                Some(p) => {
                    self.shrink_if_sparse();
                    // The hand visits entries in ring order, each a likely
                    // cache miss: start loading one a few places ahead.
                    if let Some(Some(ahead)) = self.cells.get(PREFETCH_AHEAD) {
                        prefetch(ahead.as_ptr());
                    }
                    return Some(p);
                }
                None => self.holes -= 1,
            }
        }
        None
    }

    /// Takes the entry at the head, except `protect`: found at the head, it
    /// is moved behind the tail and the next entry taken instead. `None` when
    /// the ring holds nothing but `protect`.
    pub(crate) fn pop_front_except(
        &mut self,
        protect: *const Entry<K, V>,
    ) -> Option<NonNull<Entry<K, V>>> {
        let head = self.pop_front()?;
        if !std::ptr::eq(head.as_ptr(), protect) {
            return Some(head);
        }
        // SAFETY: ring pointers are live entries of the shard (lock held).
        self.push_back(unsafe { head.as_ref() }, head);
        let next = self.pop_front()?;
        if std::ptr::eq(next.as_ptr(), protect) {
            // SAFETY: as above.
            self.push_back(unsafe { next.as_ref() }, next);
            return None;
        }
        Some(next)
    }

    /// Removes `e`, which must be in this ring.
    pub(crate) fn remove(&mut self, e: &Entry<K, V>) {
        let idx = e.pos().wrapping_sub(self.head) as usize;
        debug_assert_eq!(
            self.cells[idx].map(|p| p.as_ptr().cast_const()),
            Some(e as *const _)
        );
        self.cells[idx] = None;
        self.holes += 1;
        if self.holes > 32 && self.holes > self.len() {
            self.compact();
        }
    }

    /// Puts `new` in the cell of `old` (same position, same queue).
    /// Puts `new` (allocated through `p`, see `push_back`) in `old`'s cell.
    pub(crate) fn replace(
        &mut self,
        old: &Entry<K, V>,
        new: &Entry<K, V>,
        p: NonNull<Entry<K, V>>,
    ) {
        debug_assert!(std::ptr::eq(new, p.as_ptr()));
        let idx = old.pos().wrapping_sub(self.head) as usize;
        debug_assert_eq!(
            self.cells[idx].map(|p| p.as_ptr().cast_const()),
            Some(old as *const _)
        );
        new.set_pos(old.pos());
        self.cells[idx] = Some(p);
    }

    /// Gives memory back once the ring holds under a quarter of its cells
    /// (a probationary FIFO that held the whole shard while it filled, or
    /// whose share the adaptive policy lowered).
    #[inline]
    fn shrink_if_sparse(&mut self) {
        let len = self.cells.len();
        if self.cells.capacity() > 4 * len + 4 * MIN_GROWTH {
            self.cells.shrink_to(2 * len + MIN_GROWTH);
        }
    }

    fn compact(&mut self) {
        self.cells.retain(|c| c.is_some());
        self.holes = 0;
        for (i, c) in self.cells.iter().enumerate() {
            if let Some(p) = c {
                // SAFETY: every pointer in the ring is a live entry owned by
                // this shard (the shard lock is held by our caller).
                unsafe { p.as_ref() }.set_pos(self.head.wrapping_add(i as u32));
            }
        }
        self.cells
            .shrink_to(self.cells.len().max(self.cells.capacity() / 2));
    }

    /// The live entries, head first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = NonNull<Entry<K, V>>> + '_ {
        self.cells.iter().flatten().copied()
    }

    /// Empties the ring, returning its live entries.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = NonNull<Entry<K, V>>> + '_ {
        self.holes = 0;
        self.head = 0;
        self.cells.drain(..).flatten()
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<Option<NonNull<Entry<K, V>>>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_its_limit_not_a_power_of_two_and_shrinks_when_sparse() {
        let entries: Vec<Entry<u64, u64>> = (0..1000)
            .map(|k| Entry::new(k, k, k, 1, u64::MAX, 0))
            .collect();
        let mut ring = Ring::new(16, 1000);
        for e in &entries {
            ring.push_back(e, NonNull::from(e));
        }
        let cap = ring.cells.capacity();
        assert!((1000..=1000 + MIN_GROWTH).contains(&cap), "capacity {cap}");
        for _ in 0..900 {
            ring.pop_front().unwrap();
        }
        assert_eq!(ring.len(), 100);
        assert!(ring.cells.capacity() <= 4 * 100 + 4 * MIN_GROWTH);
        // Still a FIFO, positions intact: removal from the middle works.
        ring.remove(&entries[950]);
        let left: Vec<_> = ring.iter().collect();
        assert_eq!(left.len(), 99);
        assert_eq!(left[0], NonNull::from(&entries[900]));
    }
}
