//! Where entries live: a per-shard slab of entry blocks, and their
//! reclamation through the epoch collector.
//!
//! A shard allocates its entries from chunks of its own (no allocator call
//! per insert, no allocator header per entry: 40 bytes for a `u64` key and
//! value, not glibc's 48) and keeps them until the shard is dropped.
//!
//! A removed entry cannot be reused at once: a reader pinned before the
//! removal may still be reading it. So the lock holder that unlinks an
//! entry puts its block on `pending`; every [`BATCH`] blocks it seals them
//! into a batch and hands the epoch collector one small function that
//! raises the batch's `ready` flag. The collector runs it only once every
//! thread pinned at sealing time has unpinned (the guarantee `defer_destroy`
//! relies on), and the blocks were unlinked before sealing, so once the flag
//! is up no reader can reach them. Later allocations take such ready
//! batches back: the entries' keys and values are moved out (to be dropped
//! by the caller once it has released the shard lock) and the blocks reused.
//! Only the flag is shared with the collector, so a batch whose flag rises
//! after the cache is gone touches nothing freed.
//!
//! Under loom, and with `--cfg clockcache_no_recycle` (the AddressSanitizer
//! runs, so that a use after free stays visible to ASan), every entry is its
//! own `Box`, freed by a function deferred to the collector.

use crate::sync::epoch::Guard;
use std::ptr::NonNull;

/// Blocks sealed into one batch (one deferred function, one flush).
#[cfg(not(any(loom, clockcache_no_recycle)))]
const BATCH: usize = 64;

pub(crate) use imp::Slab;

#[cfg(not(any(loom, clockcache_no_recycle)))]
mod imp {
    use super::{Guard, NonNull, BATCH};
    use std::alloc::{self, Layout};
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Smallest and largest chunk, in blocks.
    const MIN_CHUNK: usize = 32;
    const MAX_CHUNK: usize = 4096;

    /// `n` blocks, or a few more so that a large chunk fills its last page:
    /// the allocator maps large chunks as whole pages plus a small header.
    fn fill_pages<T>(n: usize) -> usize {
        const PAGE: usize = 4096;
        const HEADER: usize = 16;
        let size = std::mem::size_of::<T>();
        if size == 0 || n * size < 32 * PAGE {
            return n;
        }
        ((n * size + HEADER).next_multiple_of(PAGE) - HEADER) / size
    }

    /// Retired blocks whose values are still live, waiting for `ready`.
    struct Batch<T> {
        ready: Arc<AtomicBool>,
        blocks: Vec<NonNull<T>>,
    }

    pub(crate) struct Slab<T> {
        /// Every chunk: its first block and its length in blocks.
        chunks: Vec<(NonNull<T>, usize)>,
        /// Blocks of the last chunk not handed out yet.
        fresh: usize,
        /// Blocks that hold no value.
        free: Vec<NonNull<T>>,
        /// Retired blocks not sealed into a batch yet (values live).
        pending: Vec<NonNull<T>>,
        /// Sealed batches, oldest first.
        limbo: VecDeque<Batch<T>>,
        /// Blocks the shard expects to hold live at most.
        limit: usize,
    }

    // SAFETY: the slab owns the values in its blocks and hands `&T` only to
    // its shard, which shares entries across threads exactly when `T` is
    // Send + Sync; it is used only under the shard lock.
    unsafe impl<T: Send + Sync> Send for Slab<T> {}
    // SAFETY: as above; `&Slab` exposes nothing.
    unsafe impl<T: Send + Sync> Sync for Slab<T> {}

    impl<T> Slab<T> {
        pub(crate) fn new(limit: usize) -> Self {
            Self {
                chunks: Vec::new(),
                fresh: 0,
                free: Vec::new(),
                pending: Vec::new(),
                limbo: VecDeque::new(),
                limit,
            }
        }

        /// Moves `value` into a block. Values of reclaimed blocks are
        /// pushed to `drops`, for the caller to drop outside the lock.
        #[inline]
        pub(crate) fn alloc(&mut self, value: T, drops: &mut Vec<T>) -> NonNull<T> {
            if self.free.is_empty() {
                self.reclaim(drops);
            }
            let p = match self.free.pop() {
                Some(p) => {
                    // The next insert writes the next free block: start
                    // fetching it now (it was freed long ago, so cold).
                    if let Some(next) = self.free.last() {
                        crate::sync::prefetch(next.as_ptr());
                    }
                    p
                }
                None => self.carve(),
            };
            // SAFETY: `p` is a block of one of our chunks that holds no
            // value (free, or never used), owned by the slab alone.
            unsafe { p.as_ptr().write(value) };
            p
        }

        /// Takes back the blocks of every ready batch at the front.
        #[cold]
        #[inline(never)]
        fn reclaim(&mut self, drops: &mut Vec<T>) {
            while let Some(b) = self.limbo.front() {
                // Acquire: pairs with the Release in the deferred function,
                // which runs after every reader that could hold these
                // blocks has unpinned.
                if !b.ready.load(Ordering::Acquire) {
                    return;
                }
                let Some(batch) = self.limbo.pop_front() else {
                    return;
                };
                for p in batch.blocks {
                    if std::mem::needs_drop::<T>() {
                        // SAFETY: the block holds a value (retired, not
                        // reclaimed before) that nothing can reach any more
                        // (see the module docs); reading moves it out.
                        drops.push(unsafe { p.as_ptr().read() });
                    }
                    self.free.push(p);
                }
            }
        }

        /// A never-used block, from the last chunk or a new one.
        #[cold]
        #[inline(never)]
        fn carve(&mut self) -> NonNull<T> {
            if self.fresh == 0 {
                let total: usize = self.chunks.iter().map(|c| c.1).sum();
                let room = self.limit.saturating_sub(total);
                let n = if room > 0 {
                    // Doubling, but not past what the shard needs.
                    total.clamp(MIN_CHUNK, MAX_CHUNK).min(room.max(MIN_CHUNK))
                } else {
                    // Past the limit only by blocks in limbo: small steps.
                    (total / 64).clamp(MIN_CHUNK, MAX_CHUNK)
                };
                let n = fill_pages::<T>(n);
                let layout = Layout::array::<T>(n).expect("chunk size fits in memory");
                let base = if layout.size() == 0 {
                    NonNull::dangling()
                } else {
                    // SAFETY: `layout` has a non-zero size.
                    let p = unsafe { alloc::alloc(layout) };
                    NonNull::new(p.cast::<T>()).unwrap_or_else(|| alloc::handle_alloc_error(layout))
                };
                self.chunks.push((base, n));
                self.fresh = n;
            }
            let (base, n) = *self.chunks.last().expect("a chunk was just pushed");
            let i = n - self.fresh;
            self.fresh -= 1;
            // SAFETY: `i < n`, inside the chunk's allocation.
            unsafe { NonNull::new_unchecked(base.as_ptr().add(i)) }
        }

        /// Seals the pending blocks into a batch, however few.
        #[cold]
        #[inline(never)]
        pub(crate) fn seal(&mut self, guard: &Guard) {
            if self.pending.is_empty() {
                return;
            }
            let ready = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&ready);
            guard.defer(move || flag.store(true, Ordering::Release));
            // Without a flush the function would wait in this thread's bag
            // until 63 more were deferred.
            guard.flush();
            let blocks = std::mem::replace(&mut self.pending, Vec::with_capacity(BATCH));
            self.limbo.push_back(Batch { ready, blocks });
        }

        /// Retires a block whose entry was unlinked under the shard lock;
        /// its value stays readable while `guard` (pinned before the unlink)
        /// is.
        #[inline]
        pub(crate) fn retire(&mut self, p: NonNull<T>, guard: &Guard) {
            self.pending.push(p);
            if self.pending.len() >= BATCH {
                self.seal(guard);
            }
        }

        /// Heap bytes held by blocks that hold no live entry and by the
        /// bookkeeping.
        pub(crate) fn overhead_bytes(&self) -> usize {
            let ptr = std::mem::size_of::<NonNull<T>>();
            (self.free.len() + self.fresh) * std::mem::size_of::<T>()
                + (self.free.capacity() + self.pending.capacity()) * ptr
                + self
                    .limbo
                    .iter()
                    .map(|b| b.blocks.capacity() * ptr)
                    .sum::<usize>()
        }
    }

    impl<T> Drop for Slab<T> {
        fn drop(&mut self) {
            // Live entries were dropped by the shard; retired ones still
            // hold values. No reader is left (no handle is).
            let retired = self
                .limbo
                .drain(..)
                .flat_map(|b| b.blocks)
                .chain(self.pending.drain(..));
            for p in retired {
                // SAFETY: a retired block holds a value nobody else owns.
                unsafe { p.as_ptr().drop_in_place() };
            }
            for &(base, n) in &self.chunks {
                let layout = Layout::array::<T>(n).expect("allocated with this layout");
                if layout.size() != 0 {
                    // SAFETY: allocated in `carve` with this layout; every
                    // value in it has been dropped or moved out.
                    unsafe { alloc::dealloc(base.as_ptr().cast(), layout) };
                }
            }
        }
    }
}

#[cfg(any(loom, clockcache_no_recycle))]
mod imp {
    use super::{Guard, NonNull};

    /// One `Box` per entry, freed through the epoch collector.
    pub(crate) struct Slab<T>(std::marker::PhantomData<T>);

    impl<T> Slab<T> {
        pub(crate) fn new(_limit: usize) -> Self {
            Self(std::marker::PhantomData)
        }

        pub(crate) fn alloc(&mut self, value: T, _drops: &mut Vec<T>) -> NonNull<T> {
            NonNull::from(Box::leak(Box::new(value)))
        }

        pub(crate) fn retire(&mut self, p: NonNull<T>, guard: &Guard) {
            let raw = p.as_ptr();
            // SAFETY: `raw` came from `Box::leak`, was unlinked under the
            // shard lock before this call and is retired once; the collector
            // runs the drop after every thread pinned now has unpinned.
            unsafe { guard.defer_unchecked(move || drop(Box::from_raw(raw))) };
        }

        pub(crate) fn seal(&mut self, _guard: &Guard) {}

        pub(crate) fn overhead_bytes(&self) -> usize {
            0
        }
    }
}

#[cfg(all(test, not(any(loom, clockcache_no_recycle))))]
mod tests {
    use super::*;
    use crate::sync::epoch;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn retired_blocks_come_back_once_ready_and_every_value_drops_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut created = 0;
        let mut new_value = || {
            created += 1;
            Counted(Arc::clone(&drops))
        };
        let mut slab = Slab::new(100);
        let mut out = Vec::new();
        let blocks: Vec<_> = (0..3 * BATCH)
            .map(|_| slab.alloc(new_value(), &mut out))
            .collect();
        {
            let guard = epoch::pin();
            for &p in &blocks {
                slab.retire(p, &guard);
            }
            // Still pinned: nothing retired can be reused, so this carves.
            let fresh = slab.alloc(new_value(), &mut out);
            assert!(!blocks.contains(&fresh));
            assert!(out.is_empty());
            slab.retire(fresh, &guard);
        }
        // Unpinned: the batches become ready once the epoch advances.
        let mut reused = None;
        for _ in 0..10_000 {
            epoch::pin().flush();
            let p = slab.alloc(new_value(), &mut out);
            if blocks.contains(&p) {
                reused = Some(p);
                break;
            }
            slab.retire(p, &epoch::pin());
        }
        let live = reused.expect("a retired block is reused");
        // Reclaimed values were moved out, for the caller to drop.
        let moved = out.len();
        assert!(moved >= BATCH);
        drop(out);
        assert_eq!(drops.load(Ordering::SeqCst), moved);
        // SAFETY: `live` holds a value handed out by `alloc`, dropped once.
        unsafe { live.as_ptr().drop_in_place() };
        // The slab drops the retired values it still holds.
        drop(slab);
        assert_eq!(drops.load(Ordering::SeqCst), created);
        assert_eq!(Arc::strong_count(&drops), 1, "no value leaked");
    }
}
