//! One cached entry, shared between the shard that owns it and the readers
//! that find it through the table.

use crate::sync::{AtomicU32, AtomicU64, AtomicU8, Ordering, Published};

/// Deadline of an entry that never expires.
pub(crate) const NEVER: u64 = u64::MAX;

/// Highest value of the per-entry access counter (two bits' worth, as in
/// S3-FIFO; CLOCK only asks whether it is non-zero).
pub(crate) const MAX_FREQ: u8 = 3;

/// [`Entry::flags`]: reads push the deadline forward (time to idle).
pub(crate) const IDLE: u8 = 1;
/// [`Entry::flags`]: reads ask the [`Expiry`](crate::Expiry) for a new
/// deadline (`expire_after_read`).
pub(crate) const HOOKED: u8 = 2;

/// Which eviction queue of its shard an entry sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Queue {
    /// S3-FIFO's small probationary FIFO.
    Small = 0,
    /// The main clock (the only queue of plain CLOCK).
    Main = 1,
}

/// An entry, in a block of its shard's slab. Readers reach it through the
/// shard's table while pinned by crossbeam-epoch; its block is reused only
/// after it has been unlinked from the table and from its queue and the
/// collector has seen every reader pinned at its retirement unpin (see
/// `slab.rs`).
///
/// Field ownership:
/// - `key`, `value`, `hash`, `weight`, `flags` never change after publication.
/// - `deadline` is written by the writer that publishes the entry and, for
///   entries whose reads move it (`flags`), by readers (a plain store, no
///   read-modify-write).
/// - `freq` is bumped by readers with a load and a conditional store, and
///   lowered by the shard's writer during eviction.
/// - `pos` and `queue` belong to the writer holding the shard lock.
///
/// Layout (`repr(C)`, in this order): what a read touches comes first, so
/// that it spans as few cache lines as the slab's 40-byte stride allows. A
/// read of a cache that nothing can expire in touches the key, the value
/// and `freq` (bytes 0..17 for `u64` keys and values); the deadline, read
/// only when something can expire, follows; the writer's fields come last.
#[repr(C)]
pub(crate) struct Entry<K, V> {
    key: Published<K>,
    value: Published<V>,
    pub(crate) freq: AtomicU8,
    queue: AtomicU8,
    /// What a read does to the deadline: [`IDLE`], [`HOOKED`], or nothing.
    pub(crate) flags: u8,
    pos: AtomicU32,
    pub(crate) deadline: AtomicU64,
    /// The low 32 bits of the key's hash: its home bucket and ghost
    /// fingerprint, so that writers never rehash a key.
    pub(crate) hash: u32,
    pub(crate) weight: u32,
}

impl<K, V> Entry<K, V> {
    pub(crate) fn new(key: K, value: V, hash: u64, weight: u32, deadline: u64, flags: u8) -> Self {
        Self {
            key: Published::new(key),
            value: Published::new(value),
            deadline: AtomicU64::new(deadline),
            pos: AtomicU32::new(0),
            hash: hash as u32,
            weight,
            freq: AtomicU8::new(0),
            queue: AtomicU8::new(Queue::Main as u8),
            flags,
        }
    }

    /// The entry with its access counter at `freq` (before publication).
    pub(crate) fn used(self, freq: u8) -> Self {
        self.freq.store(freq.min(MAX_FREQ), Ordering::Relaxed);
        self
    }

    /// The key (immutable after publication).
    #[inline]
    pub(crate) fn key(&self) -> &K {
        self.key.get()
    }

    /// The value (immutable after publication).
    #[inline]
    pub(crate) fn value(&self) -> &V {
        self.value.get()
    }

    /// Whether the entry has an item in its shard's deadline index: it has
    /// a deadline, or its reads may give it one (an `Expiry` read hook).
    /// Stable for the entry's life: only hooked entries' deadlines change
    /// between `NEVER` and a time.
    #[inline]
    pub(crate) fn filed(&self) -> bool {
        self.flags & HOOKED != 0 || self.deadline.load(Ordering::Relaxed) != NEVER
    }

    /// Whether the entry's deadline has passed at `now`.
    #[inline]
    pub(crate) fn is_expired(&self, now: u64) -> bool {
        self.deadline.load(Ordering::Relaxed) <= now
    }

    /// Marks a hit: raises the access counter with a plain load and, only if
    /// it is below its cap, a store. Concurrent readers may lose an
    /// increment; that only makes the counter an underestimate.
    #[inline]
    pub(crate) fn touch(&self) {
        let f = self.freq.load(Ordering::Relaxed);
        if f < MAX_FREQ {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }

    /// Writer only (shard lock held): position in its queue's ring.
    #[inline]
    pub(crate) fn pos(&self) -> u32 {
        self.pos.load(Ordering::Relaxed)
    }

    /// Writer only (shard lock held).
    #[inline]
    pub(crate) fn set_pos(&self, pos: u32) {
        self.pos.store(pos, Ordering::Relaxed);
    }

    /// Writer only (shard lock held): the queue the entry is in.
    #[inline]
    pub(crate) fn queue(&self) -> Queue {
        if self.queue.load(Ordering::Relaxed) == Queue::Small as u8 {
            Queue::Small
        } else {
            Queue::Main
        }
    }

    /// Writer only (shard lock held).
    #[inline]
    pub(crate) fn set_queue(&self, queue: Queue) {
        self.queue.store(queue as u8, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The slab's block for a `u64` key and value stays 40 bytes, and what a
    /// read of a cache without expiry touches sits in its first 17.
    #[test]
    fn a_u64_entry_is_40_bytes_with_the_read_fields_first() {
        type E = Entry<u64, u64>;
        assert_eq!(size_of::<E>(), 40);
        assert_eq!(offset_of!(E, key), 0);
        assert_eq!(offset_of!(E, value), 8);
        assert_eq!(offset_of!(E, freq), 16);
        assert!(offset_of!(E, deadline) < 32);
    }

    /// A block is 8 bytes longer per trailer word (a refreshing cache's
    /// write time; the expiry deadline of a cache that combines an `Expiry`
    /// with another expiry setting); every other cache keeps the entry's
    /// own size.
    #[cfg(not(clockcache_no_recycle))]
    #[test]
    fn each_trailer_word_adds_eight_bytes() {
        type E = Entry<u64, u64>;
        assert_eq!(crate::slab::block_layout::<E>(0), (40, 8));
        assert_eq!(crate::slab::block_layout::<E>(1), (48, 8));
        assert_eq!(crate::slab::block_layout::<E>(2), (56, 8));
    }
}
