//! Where entries live: a per-shard slab of entry blocks, and their
//! reclamation through the epoch collector.
//!
//! A shard allocates its entries from chunks of its own (no allocator call
//! per insert, no allocator header per entry: 40 bytes for a `u64` key and
//! value, not glibc's 48) and keeps the chunks until the shard and every
//! batch below are gone.
//!
//! A removed entry cannot be dropped at once: a reader pinned before the
//! removal may still be cloning its value. So the lock holder that unlinks
//! an entry puts its block on `pending`, and seals the pending blocks into a
//! batch as soon as [`BATCH`] of them, or a [`SEAL_SHARE`]th of the shard's
//! budget by weight, have gathered. The sealed batch ([`Sealed`]) leaves the
//! shard with the write, which hands the epoch collector one function for
//! the whole batch once it has released the shard lock ([`Sealed::defer`]:
//! a pin or a flush may run other garbage's destructors, which must not run
//! under the lock). The collector runs it only once every thread pinned at
//! deferring time has unpinned (the guarantee `defer_destroy` relies on),
//! and the blocks were unlinked before, so by then no reader can reach
//! them: the function drops the batch's keys and values in
//! place, at once, and only then hands the emptied blocks back to the slab
//! through a small mutex of their own (`Home::returned`), where the next
//! allocation that finds the free list empty takes them.
//!
//! So a value's release never waits for the shard's next write, and the
//! reuse of a block never waits for anything but the value's release. What
//! may outlive its removal is bounded: per shard, fewer than [`BATCH`]
//! unsealed entries weighing less than a [`SEAL_SHARE`]th of the shard's
//! budget, plus the sealed batches the collector has not run yet (each
//! seal's write flushes and so asks the collector to advance, and a batch
//! runs at the second advance after its deferral; bulk removals drive it
//! there before they return; see `Cache::reclaim_now`).
//!
//! The batches share the chunks through an `Arc<Home>`: a batch that runs
//! after its cache is gone drops its values and frees the chunks if it is
//! the last owner, and touches nothing freed.
//!
//! A cache that needs more per-entry times than the entry holds (a
//! refreshing cache's write times; the `Expiry` deadline of a cache that
//! combines an `Expiry` with a time to live or to idle) keeps them in a
//! trailer of one or two 8-byte words after each block (see [`trailer`]),
//! so that every other cache keeps its 40-byte blocks.
//!
//! Under loom, and with `--cfg clockcache_no_recycle` (the AddressSanitizer
//! runs, so that a use after free stays visible to ASan), every entry is its
//! own `Box`, sealed into batches at the same thresholds and dropped and
//! freed by the batch's function.

use crate::sync::epoch::Guard;
#[cfg(not(loom))]
use crate::sync::{AtomicU64, AtomicUsize, Ordering};
use std::ptr::NonNull;

/// Most retired entries a shard gathers before it seals them into a batch
/// (one deferred function, one flush).
pub(crate) const BATCH: usize = 256;

/// A shard also seals once its unsealed entries weigh a `SEAL_SHARE`th of
/// its budget, so that a few heavy values never wait for 63 more.
pub(crate) const SEAL_SHARE: u64 = 16;

/// What one cache's shards have sealed and the collector has not dropped
/// yet: batches and their weight. Writers
/// read it to help the collector along when too much waits (see
/// `Cache::release`). Under loom it counts nothing: the models check the
/// protocol, and these counters only decide how hard to push the collector.
pub(crate) struct InFlight {
    #[cfg(not(loom))]
    batches: AtomicUsize,
    #[cfg(not(loom))]
    weight: AtomicU64,
}

impl InFlight {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            batches: AtomicUsize::new(0),
            #[cfg(not(loom))]
            weight: AtomicU64::new(0),
        }
    }

    /// A batch of `weight` was sealed.
    #[inline]
    fn sealed(&self, weight: u64) {
        #[cfg(not(loom))]
        {
            self.weight.fetch_add(weight, Ordering::Relaxed);
            self.batches.fetch_add(1, Ordering::Relaxed);
        }
        #[cfg(loom)]
        let _ = weight;
    }

    /// A batch of `weight` has been dropped.
    #[inline]
    fn dropped(&self, weight: u64) {
        #[cfg(not(loom))]
        {
            self.weight.fetch_sub(weight, Ordering::Relaxed);
            // Release: a thread that sees the count fall sees the drops.
            self.batches.fetch_sub(1, Ordering::Release);
        }
        #[cfg(loom)]
        let _ = weight;
    }

    /// Batches sealed and not dropped yet.
    pub(crate) fn batches(&self) -> usize {
        #[cfg(not(loom))]
        return self.batches.load(Ordering::Acquire);
        #[cfg(loom)]
        0
    }

    /// Their weight.
    pub(crate) fn weight(&self) -> u64 {
        #[cfg(not(loom))]
        return self.weight.load(Ordering::Relaxed);
        #[cfg(loom)]
        0
    }
}

/// The weight at which a shard of budget `budget` seals its pending blocks.
pub(crate) fn seal_weight(budget: u64) -> u64 {
    (budget / SEAL_SHARE).max(1)
}

pub(crate) use imp::{trailer, Sealed, Slab};

/// Runs `f` on each of a batch's blocks, containing a panic in any one (a
/// user's destructor): it must neither leak the rest of the batch nor unwind
/// through the collector that runs the batch.
fn for_each_contained<T>(blocks: &[NonNull<T>], f: impl Fn(NonNull<T>)) {
    for &p in blocks {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(p)));
    }
}

/// Where a block's trailer starts: right after the value, 8-aligned.
#[cfg(not(any(loom, clockcache_no_recycle)))]
const fn trailer_offset<T>() -> usize {
    std::mem::size_of::<T>().next_multiple_of(8)
}

/// Most words a trailer holds.
pub(crate) const TRAILER_WORDS: usize = 2;

/// A block's size and alignment: the value's, or with a trailer of `words`
/// words, room for the value and 8-aligned `u64`s after it.
#[cfg(not(any(loom, clockcache_no_recycle)))]
pub(crate) fn block_layout<T>(words: usize) -> (usize, usize) {
    if words > 0 {
        let align = std::mem::align_of::<T>().max(8);
        (
            (trailer_offset::<T>() + 8 * words).next_multiple_of(align),
            align,
        )
    } else {
        (std::mem::size_of::<T>(), std::mem::align_of::<T>())
    }
}

#[cfg(not(any(loom, clockcache_no_recycle)))]
mod imp {
    use super::{
        block_layout, for_each_contained, seal_weight, trailer_offset, Guard, InFlight, NonNull,
        BATCH, TRAILER_WORDS,
    };
    use crate::sync::{Arc, AtomicBool, AtomicU64, Mutex, Ordering};
    use std::alloc::{self, Layout};

    /// Smallest and largest chunk, in blocks.
    const MIN_CHUNK: usize = 32;
    const MAX_CHUNK: usize = 4096;

    /// Empty block lists a slab keeps for its next batches.
    const SPARE_LISTS: usize = 8;

    /// `n` blocks, or a few more so that a large chunk fills its last page:
    /// the allocator maps large chunks as whole pages plus a small header.
    fn fill_pages(n: usize, size: usize) -> usize {
        const PAGE: usize = 4096;
        const HEADER: usize = 16;
        if size == 0 || n * size < 32 * PAGE {
            return n;
        }
        ((n * size + HEADER).next_multiple_of(PAGE) - HEADER) / size
    }

    /// What a slab shares with its sealed batches: the chunks (freed when
    /// the last owner goes) and the lists of emptied blocks coming back.
    struct Home<T> {
        /// Every chunk: its first block and its layout.
        chunks: Mutex<Vec<(NonNull<T>, Layout)>>,
        /// Block lists whose values the collector has dropped.
        returned: Mutex<Vec<Vec<NonNull<T>>>>,
        /// Whether `returned` may hold a list: lets an allocation that finds
        /// the free list empty (every insert while the shard fills) skip the
        /// mutex.
        any_returned: AtomicBool,
        in_flight: Arc<InFlight>,
    }

    impl<T> Drop for Home<T> {
        fn drop(&mut self) {
            for &(base, layout) in self.chunks.lock().iter() {
                if layout.size() != 0 {
                    // SAFETY: allocated in `carve` with this layout. The
                    // slab and every batch are gone (they own the `Home`),
                    // and each dropped or handed on every value it held.
                    unsafe { alloc::dealloc(base.as_ptr().cast(), layout) };
                }
            }
        }
    }

    /// A sealed batch: retired blocks whose values are still live, to be
    /// owned by the function the collector will run (see [`Sealed::defer`]).
    pub(crate) struct Sealed<T> {
        home: Arc<Home<T>>,
        blocks: Vec<NonNull<T>>,
        weight: u64,
    }

    // SAFETY: a batch owns its blocks' values (`T: Send`) and a share of the
    // slab's `Home`, whose mutexes and atomics may be used from any thread.
    unsafe impl<T: Send> Send for Sealed<T> {}

    impl<T: Send + 'static> Sealed<T> {
        /// Hands the batch to the collector, which drops its values and
        /// returns its blocks once every thread pinned now has unpinned.
        ///
        /// # Safety
        ///
        /// Every block of the batch was unlinked from the table and from its
        /// queue before this call (under the shard lock), so that no reader
        /// that pins from now on can reach it.
        pub(crate) unsafe fn defer(self, guard: &Guard) {
            // By the caller's contract only readers pinned now can hold the
            // blocks, and the collector runs the function after they have all
            // unpinned; it owns what it touches (the blocks, its `Home` share).
            // SAFETY: as just argued; `T: Send + 'static` may be dropped on
            // any thread at any later time.
            unsafe { guard.defer_unchecked(move || self.release()) };
        }
    }

    impl<T> Sealed<T> {
        /// Run by the collector once no reader can reach the blocks.
        fn release(self) {
            for_each_contained(&self.blocks, |p| {
                // SAFETY: the block holds a value (retired once, not dropped
                // before) that no reader can reach any more (see the module
                // docs) and no writer touches.
                unsafe { p.as_ptr().drop_in_place() }
            });
            let Sealed {
                home,
                blocks,
                weight,
            } = self;
            home.returned.lock().push(blocks);
            // Release: an allocation that sees the flag sees the list (the
            // mutex orders the rest).
            home.any_returned.store(true, Ordering::Release);
            home.in_flight.dropped(weight);
        }
    }

    pub(crate) struct Slab<T> {
        home: Arc<Home<T>>,
        /// The last chunk, and how many of its blocks were never handed out.
        last: (NonNull<T>, usize),
        fresh: usize,
        /// Blocks in every chunk.
        total: usize,
        /// Blocks that hold no value.
        free: Vec<NonNull<T>>,
        /// Retired blocks not sealed into a batch yet (values live), and
        /// their weight.
        pending: Vec<NonNull<T>>,
        pending_weight: u64,
        seal_weight: u64,
        /// Empty lists, for the next `pending`.
        spare: Vec<Vec<NonNull<T>>>,
        /// Blocks the shard expects to hold live at most.
        limit: usize,
        /// Bytes from one block to the next, and their alignment.
        stride: usize,
        align: usize,
        /// Words in each block's trailer.
        words: usize,
    }

    // SAFETY: the slab owns the values in its blocks and hands `&T` only to
    // its shard, which shares entries across threads exactly when `T` is
    // Send + Sync; it is used only under the shard lock. The pointers in
    // `Home` are to its own chunks.
    unsafe impl<T: Send + Sync> Send for Slab<T> {}
    // SAFETY: as above; `&Slab` exposes nothing.
    unsafe impl<T: Send + Sync> Sync for Slab<T> {}

    impl<T: Send + 'static> Slab<T> {
        /// A slab for a shard expecting at most `limit` live entries within
        /// `budget` weight; `in_flight` counts its batches not yet run.
        /// Each block carries a [`trailer`](super::trailer) of `words`
        /// words (at most [`TRAILER_WORDS`]).
        pub(crate) fn new(
            limit: usize,
            budget: u64,
            in_flight: Arc<InFlight>,
            words: usize,
        ) -> Self {
            assert!(words <= TRAILER_WORDS);
            let (stride, align) = block_layout::<T>(words);
            Self {
                home: Arc::new(Home {
                    chunks: Mutex::new(Vec::new()),
                    returned: Mutex::new(Vec::new()),
                    any_returned: AtomicBool::new(false),
                    in_flight,
                }),
                last: (NonNull::dangling(), 0),
                fresh: 0,
                total: 0,
                free: Vec::new(),
                pending: Vec::with_capacity(BATCH),
                pending_weight: 0,
                seal_weight: seal_weight(budget),
                spare: Vec::new(),
                limit,
                stride,
                align,
                words,
            }
        }

        /// Moves `value` into a block, and the first `words` of `trailer`
        /// into its trailer.
        #[inline]
        pub(crate) fn alloc(&mut self, value: T, trailer: [u64; TRAILER_WORDS]) -> NonNull<T> {
            if self.free.is_empty() && self.home.any_returned.load(Ordering::Acquire) {
                self.take_returned();
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
            for (i, &word) in trailer.iter().enumerate().take(self.words) {
                // Blocks of this slab have room for `words` trailer words
                // at that offset, 8-aligned (`block_layout`).
                // SAFETY: as above, and `p` has its whole chunk's provenance.
                unsafe {
                    p.as_ptr()
                        .cast::<u8>()
                        .add(trailer_offset::<T>() + 8 * i)
                        .cast::<AtomicU64>()
                        .write(AtomicU64::new(word))
                };
            }
            p
        }

        /// Takes back one list of blocks the collector has emptied.
        #[cold]
        #[inline(never)]
        fn take_returned(&mut self) {
            let list = {
                let mut returned = self.home.returned.lock();
                let list = returned.pop();
                if returned.is_empty() {
                    // Under the mutex: a batch pushing now raises it again.
                    self.home.any_returned.store(false, Ordering::Relaxed);
                }
                list
            };
            let Some(list) = list else {
                return;
            };
            // The mutex orders the batch's drops before this reuse.
            let empty = std::mem::replace(&mut self.free, list);
            if self.spare.len() < SPARE_LISTS {
                self.spare.push(empty);
            }
        }

        /// A never-used block, from the last chunk or a new one.
        #[cold]
        #[inline(never)]
        fn carve(&mut self) -> NonNull<T> {
            if self.fresh == 0 {
                let total = self.total;
                let room = self.limit.saturating_sub(total);
                let n = if room > 0 {
                    // Doubling, but not past what the shard needs.
                    total.clamp(MIN_CHUNK, MAX_CHUNK).min(room.max(MIN_CHUNK))
                } else {
                    // Past the limit only by blocks in flight: small steps.
                    (total / 64).clamp(MIN_CHUNK, MAX_CHUNK)
                };
                let n = fill_pages(n, self.stride);
                let layout = n
                    .checked_mul(self.stride)
                    .and_then(|size| Layout::from_size_align(size, self.align).ok())
                    .expect("chunk size fits in memory");
                let base = if layout.size() == 0 {
                    NonNull::dangling()
                } else {
                    // SAFETY: `layout` has a non-zero size.
                    let p = unsafe { alloc::alloc(layout) };
                    NonNull::new(p.cast::<T>()).unwrap_or_else(|| alloc::handle_alloc_error(layout))
                };
                self.home.chunks.lock().push((base, layout));
                self.last = (base, n);
                self.total += n;
                self.fresh = n;
            }
            let (base, n) = self.last;
            let i = n - self.fresh;
            self.fresh -= 1;
            // SAFETY: `i < n`, so the block lies inside the chunk's
            // allocation, aligned for `T` (the stride is a multiple of it).
            unsafe {
                NonNull::new_unchecked(base.as_ptr().cast::<u8>().add(i * self.stride).cast())
            }
        }

        /// Seals the pending blocks into a batch, however few. The caller
        /// hands it to the collector ([`Sealed::defer`]) once it has released
        /// the shard lock, pinned, and flushes, so that the batch does not
        /// wait in the thread's bag for later garbage.
        #[cold]
        #[inline(never)]
        pub(crate) fn seal(&mut self) -> Option<Sealed<T>> {
            if self.pending.is_empty() {
                return None;
            }
            let next = self
                .spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(BATCH));
            let blocks = std::mem::replace(&mut self.pending, next);
            let weight = std::mem::take(&mut self.pending_weight);
            self.home.in_flight.sealed(weight);
            Some(Sealed {
                home: Arc::clone(&self.home),
                blocks,
                weight,
            })
        }

        /// Retires a block of `weight` whose entry was unlinked under the
        /// shard lock. Its value stays in place, readable by readers pinned
        /// before the unlink, until the batch it is sealed into has run.
        /// Returns a batch if this retirement completed one (see `seal`).
        #[inline]
        pub(crate) fn retire(&mut self, p: NonNull<T>, weight: u32) -> Option<Sealed<T>> {
            self.pending.push(p);
            self.pending_weight += u64::from(weight);
            if self.pending.len() >= BATCH || self.pending_weight >= self.seal_weight {
                return self.seal();
            }
            None
        }
    }

    impl<T> Slab<T> {
        /// Heap bytes held by blocks that hold no live entry (free, never
        /// used, or emptied and on their way back) and by the bookkeeping.
        pub(crate) fn overhead_bytes(&self) -> usize {
            let ptr = std::mem::size_of::<NonNull<T>>();
            let returned: usize = self.home.returned.lock().iter().map(Vec::len).sum();
            (self.free.len() + self.fresh + returned) * self.stride
                + (self.free.capacity() + self.pending.capacity()) * ptr
                + self.spare.iter().map(|l| l.capacity() * ptr).sum::<usize>()
        }

        /// Drops the value in `p` now and frees its block.
        ///
        /// # Safety
        ///
        /// `p` holds a live value of this slab that no other thread can
        /// reach (the cache is being dropped), and it is not retired.
        pub(crate) unsafe fn drop_live(&mut self, p: NonNull<T>) {
            // SAFETY: the caller's contract.
            unsafe { p.as_ptr().drop_in_place() };
            self.free.push(p);
        }
    }

    /// Word `i` of block `p`'s trailer (see the module docs).
    ///
    /// # Safety
    ///
    /// `p` is a block of a slab built with more than `i` trailer words, as
    /// `alloc` returned it (not a pointer re-derived from a reference to the
    /// value), that holds a value: live, or retired while the caller stays
    /// pinned.
    #[inline]
    pub(crate) unsafe fn trailer<'a, T>(p: NonNull<T>, i: usize) -> &'a AtomicU64 {
        // SAFETY: the caller's contract: the block has that word at this
        // offset, initialised by `alloc`, 8-aligned, and stays allocated
        // while the value is reachable.
        unsafe {
            &*p.as_ptr()
                .cast::<u8>()
                .add(trailer_offset::<T>() + 8 * i)
                .cast::<AtomicU64>()
        }
    }

    impl<T> Drop for Slab<T> {
        fn drop(&mut self) {
            // Live entries were dropped by the shard; pending
            // ones still hold values, and no reader is left (no handle is).
            for p in self.pending.drain(..) {
                // SAFETY: a retired block holds a value nobody else owns.
                unsafe { p.as_ptr().drop_in_place() };
            }
            // Sealed batches own their values: the last of them (or this
            // slab) frees the chunks with `Home`.
        }
    }
}

#[cfg(any(loom, clockcache_no_recycle))]
mod imp {
    use super::{for_each_contained, seal_weight, Guard, InFlight, NonNull, BATCH, TRAILER_WORDS};
    use crate::sync::{Arc, AtomicU64};

    /// A value with its trailer, boxed together.
    #[repr(C)]
    struct Block<T> {
        value: T,
        trailer: [AtomicU64; TRAILER_WORDS],
    }

    /// Frees the box behind `p`, dropping its value.
    ///
    /// # Safety
    ///
    /// `p` came from `alloc` of a slab with trailers if `with_trailer`, and
    /// is freed once.
    unsafe fn free<T>(p: *mut T, with_trailer: bool) {
        if with_trailer {
            // SAFETY: the caller's contract: `p` is `Box<Block<T>>`'s pointer.
            drop(unsafe { Box::from_raw(p.cast::<Block<T>>()) });
        } else {
            // SAFETY: the caller's contract: `p` is `Box<T>`'s pointer.
            drop(unsafe { Box::from_raw(p) });
        }
    }

    /// Word `i` of block `p`'s trailer (see the recycling slab's
    /// `trailer`).
    ///
    /// # Safety
    ///
    /// `p` came from `alloc` of a slab built with trailers and holds a value
    /// (live, or retired while the caller stays pinned).
    #[inline]
    pub(crate) unsafe fn trailer<'a, T>(p: NonNull<T>, i: usize) -> &'a AtomicU64 {
        // SAFETY: the caller's contract: `p` is a `Block<T>`'s pointer
        // (`repr(C)`, value first), allocated while the value is reachable.
        unsafe { &(*p.as_ptr().cast::<Block<T>>()).trailer[i] }
    }

    /// A sealed batch of boxes whose values are still live, to be owned by
    /// the function the collector will run (see [`Sealed::defer`]).
    pub(crate) struct Sealed<T> {
        in_flight: Arc<InFlight>,
        with_trailer: bool,
        boxes: Vec<NonNull<T>>,
        weight: u64,
    }

    // SAFETY: a batch owns its boxes' values (`T: Send`).
    unsafe impl<T: Send> Send for Sealed<T> {}

    impl<T: Send + 'static> Sealed<T> {
        /// Hands the batch to the collector, which drops and frees its boxes
        /// once every thread pinned now has unpinned.
        ///
        /// # Safety
        ///
        /// Every box of the batch was unlinked from the table and from its
        /// queue before this call, so that no reader that pins from now on
        /// can reach it.
        pub(crate) unsafe fn defer(self, guard: &Guard) {
            // SAFETY: the caller's contract; the function owns the boxes, and
            // `T: Send + 'static` may be dropped anywhere.
            unsafe { guard.defer_unchecked(move || self.release()) };
        }
    }

    impl<T> Sealed<T> {
        fn release(self) {
            for_each_contained(&self.boxes, |p| {
                // SAFETY: each box came from `alloc`, was retired once and is
                // freed once, here, when no reader can reach it.
                unsafe { free(p.as_ptr(), self.with_trailer) }
            });
            self.in_flight.dropped(self.weight);
        }
    }

    /// One `Box` per entry, dropped and freed through the epoch collector in
    /// batches sealed at the recycling slab's thresholds, so that the memory
    /// bound is the same.
    pub(crate) struct Slab<T> {
        in_flight: Arc<InFlight>,
        with_trailer: bool,
        /// Boxes retired and not sealed yet, and their weight.
        pending: Vec<NonNull<T>>,
        pending_weight: u64,
        seal_weight: u64,
    }

    // SAFETY: the slab owns the values of its pending boxes, which it only
    // moves into a batch or drops, under the shard lock: sending it sends
    // them (`T: Send`).
    unsafe impl<T: Send> Send for Slab<T> {}
    // SAFETY: `&Slab` exposes nothing of the values.
    unsafe impl<T: Send> Sync for Slab<T> {}

    impl<T: Send + 'static> Slab<T> {
        pub(crate) fn new(
            _limit: usize,
            budget: u64,
            in_flight: Arc<InFlight>,
            words: usize,
        ) -> Self {
            Self {
                in_flight,
                with_trailer: words > 0,
                pending: Vec::new(),
                pending_weight: 0,
                seal_weight: seal_weight(budget),
            }
        }

        pub(crate) fn alloc(&mut self, value: T, trailer: [u64; TRAILER_WORDS]) -> NonNull<T> {
            let p = if self.with_trailer {
                Box::into_raw(Box::new(Block {
                    value,
                    trailer: trailer.map(AtomicU64::new),
                }))
                .cast::<T>()
            } else {
                Box::into_raw(Box::new(value))
            };
            // SAFETY: `Box::into_raw` never returns null.
            unsafe { NonNull::new_unchecked(p) }
        }

        pub(crate) fn retire(&mut self, p: NonNull<T>, weight: u32) -> Option<Sealed<T>> {
            self.pending.push(p);
            self.pending_weight += u64::from(weight);
            if self.pending.len() >= BATCH || self.pending_weight >= self.seal_weight {
                return self.seal();
            }
            None
        }

        pub(crate) fn seal(&mut self) -> Option<Sealed<T>> {
            if self.pending.is_empty() {
                return None;
            }
            let weight = std::mem::take(&mut self.pending_weight);
            self.in_flight.sealed(weight);
            Some(Sealed {
                in_flight: Arc::clone(&self.in_flight),
                with_trailer: self.with_trailer,
                boxes: std::mem::take(&mut self.pending),
                weight,
            })
        }
    }

    impl<T> Slab<T> {
        pub(crate) fn overhead_bytes(&self) -> usize {
            self.pending.capacity() * std::mem::size_of::<NonNull<T>>()
        }

        /// Drops the value in `p` now and frees its box.
        ///
        /// # Safety
        ///
        /// `p` holds a live value of this slab that no other thread can
        /// reach (the cache is being dropped), and it is not retired.
        pub(crate) unsafe fn drop_live(&mut self, p: NonNull<T>) {
            // SAFETY: `p` came from `alloc`; the caller's contract.
            unsafe { free(p.as_ptr(), self.with_trailer) };
        }
    }

    impl<T> Drop for Slab<T> {
        fn drop(&mut self) {
            // No handle is left, hence no reader: unsealed boxes go now.
            for p in self.pending.drain(..) {
                // SAFETY: retired once, never sealed, so freed once, here.
                unsafe { free(p.as_ptr(), self.with_trailer) };
            }
        }
    }
}

#[cfg(all(test, not(any(loom, clockcache_no_recycle))))]
mod tests {
    use super::*;
    use crate::sync::epoch;
    use std::sync::atomic::AtomicUsize as Count;
    use std::sync::Arc;

    struct Counted(Arc<Count>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Hands `sealed`, if any, to the collector as a writer does after the
    /// shard lock; returns whether there was a batch.
    fn defer(sealed: Option<Sealed<Counted>>, guard: &epoch::Guard) -> bool {
        let Some(batch) = sealed else {
            return false;
        };
        // SAFETY: the tests retire blocks that no reader can reach.
        unsafe { batch.defer(guard) };
        true
    }

    /// Pins and flushes until the collector has run every sealed batch.
    fn drive(in_flight: &InFlight) {
        for _ in 0..100_000 {
            if in_flight.batches() == 0 {
                return;
            }
            epoch::pin().flush();
            std::thread::yield_now();
        }
        panic!("the collector never ran the sealed batches");
    }

    #[test]
    fn retired_values_drop_without_further_writes_and_their_blocks_come_back() {
        let drops = Arc::new(Count::new(0));
        let in_flight = Arc::new(InFlight::new());
        let mut slab = Slab::new(1_000, 1 << 20, Arc::clone(&in_flight), 0);
        let mut blocks: Vec<_> = (0..2 * BATCH + 3)
            .map(|_| slab.alloc(Counted(Arc::clone(&drops)), [0; 2]))
            .collect();
        {
            let guard = epoch::pin();
            let mut sealed = 0;
            for &p in &blocks {
                sealed += usize::from(defer(slab.retire(p, 1), &guard));
            }
            assert_eq!(sealed, 2, "a batch every {BATCH} blocks");
            // Still pinned: nothing retired may be dropped or reused.
            guard.flush();
            assert_eq!(drops.load(Ordering::SeqCst), 0);
            let fresh = slab.alloc(Counted(Arc::clone(&drops)), [0; 2]);
            assert!(!blocks.contains(&fresh));
            let batch = slab.retire(fresh, 1).or_else(|| slab.seal());
            assert!(defer(batch, &guard));
            blocks.push(fresh);
        }
        // Unpinned: the batches run with no further call into the slab.
        drive(&in_flight);
        assert_eq!(drops.load(Ordering::SeqCst), blocks.len());
        // Their blocks come back to the next allocation that finds the free
        // list empty (this one: the slab never freed a block before).
        let again = slab.alloc(Counted(Arc::clone(&drops)), [0; 2]);
        assert!(blocks.contains(&again), "an emptied block is reused");
        // SAFETY: `again` holds a value handed out by `alloc`, dropped once.
        unsafe { again.as_ptr().drop_in_place() };
        drop(slab);
        assert_eq!(Arc::strong_count(&drops), 1, "no value leaked");
    }

    /// Blocks with trailers keep their values and stamps apart, whatever
    /// the value's size and alignment, and come back like any block.
    #[test]
    fn trailers_sit_beside_their_values_for_any_alignment() {
        fn check<T: Copy + PartialEq + std::fmt::Debug + Send + 'static>(make: fn(u64) -> T) {
            let in_flight = Arc::new(InFlight::new());
            let mut slab = Slab::<T>::new(10_000, 1 << 20, Arc::clone(&in_flight), 2);
            let blocks: Vec<_> = (0..100_u64)
                .map(|i| (i, slab.alloc(make(i), [1_000 + i, 2_000 + i])))
                .collect();
            for &(i, p) in &blocks {
                assert_eq!(p.as_ptr() as usize % std::mem::align_of::<T>(), 0);
                // SAFETY: live blocks of a slab with two trailer words.
                let (a, b) = unsafe { (trailer(p, 0), trailer(p, 1)) };
                assert_eq!(a.load(Ordering::Relaxed), 1_000 + i);
                assert_eq!(b.load(Ordering::Relaxed), 2_000 + i);
                a.store(i, Ordering::Relaxed);
                b.store(!i, Ordering::Relaxed);
            }
            for &(i, p) in &blocks {
                // SAFETY: as above.
                let value = unsafe { *p.as_ptr() };
                assert_eq!(value, make(i), "a trailer overwrote a value");
                // SAFETY: as above.
                let (a, b) = unsafe { (trailer(p, 0), trailer(p, 1)) };
                assert_eq!(a.load(Ordering::Relaxed), i);
                assert_eq!(b.load(Ordering::Relaxed), !i);
            }
            let guard = epoch::pin();
            for &(_, p) in &blocks {
                if let Some(batch) = slab.retire(p, 1) {
                    // SAFETY: no reader can reach the test's blocks.
                    unsafe { batch.defer(&guard) };
                }
            }
            if let Some(batch) = slab.seal() {
                // SAFETY: as above.
                unsafe { batch.defer(&guard) };
            }
            drop(guard);
            drive(&in_flight);
            let again = slab.alloc(make(7), [7, 8]);
            assert!(blocks.iter().any(|&(_, p)| p == again));
            // SAFETY: as above.
            assert_eq!(unsafe { trailer(again, 1) }.load(Ordering::Relaxed), 8);
        }
        check(|i| [i as u8; 3]);
        check(|i| i as u128);
        check(|i| (i, i as u32));
    }

    #[test]
    fn a_heavy_block_seals_at_once_and_a_batch_may_outlive_its_slab() {
        let drops = Arc::new(Count::new(0));
        let in_flight = Arc::new(InFlight::new());
        // Budget 160: a block of weight 10 is a sixteenth of it.
        let mut slab = Slab::new(100, 160, Arc::clone(&in_flight), 0);
        let guard = epoch::pin();
        let light = slab.alloc(Counted(Arc::clone(&drops)), [0; 2]);
        assert!(!defer(slab.retire(light, 9), &guard));
        let heavy = slab.alloc(Counted(Arc::clone(&drops)), [0; 2]);
        assert!(
            defer(slab.retire(heavy, 1), &guard),
            "9 + 1 reaches 160 / 16"
        );
        // The slab goes while its batch waits for `guard`.
        drop(slab);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(guard);
        drive(&in_flight);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_eq!(Arc::strong_count(&drops), 1);
    }
}
