//! Recycling of entry allocations.
//!
//! Every insert allocates an entry and every eviction frees one, through the
//! epoch collector, in batches. With the system allocator that churn costs
//! about as much as the rest of an insert (batched frees also trigger glibc's
//! fastbin consolidation). So freed entry blocks go to a small per-thread
//! free list, one per block layout, and allocations take from it first.
//!
//! A block is recycled only after its entry was dropped in place, which the
//! epoch collector does once no reader can hold it: recycling reuses memory
//! exactly when freeing would have allowed the allocator to. Each list keeps
//! at most [`MAX_BLOCKS`] blocks (the rest go back to the allocator), and a
//! thread's lists are freed when it exits.
//!
//! Under loom, and with `--cfg clockcache_no_recycle` (used for the
//! AddressSanitizer runs, so that a use after free stays visible to ASan),
//! allocation is plain `Box`.

use std::ptr::NonNull;

/// Most blocks one thread keeps per layout (48 KiB of 48-byte entries).
#[cfg(not(any(loom, clockcache_no_recycle)))]
const MAX_BLOCKS: usize = 1024;

/// Moves `value` into a fresh (or recycled) allocation.
pub(crate) fn alloc<T>(value: T) -> NonNull<T> {
    imp::alloc(value)
}

/// Drops the value at `p` and recycles or frees its block.
///
/// # Safety
///
/// `p` must come from [`alloc`] and not be used again; no other reference to
/// it may exist.
pub(crate) unsafe fn free<T>(p: NonNull<T>) {
    // SAFETY: forwarded contract.
    unsafe { imp::free(p) }
}

#[cfg(any(loom, clockcache_no_recycle))]
mod imp {
    use std::ptr::NonNull;

    pub(super) fn alloc<T>(value: T) -> NonNull<T> {
        NonNull::from(Box::leak(Box::new(value)))
    }

    pub(super) unsafe fn free<T>(p: NonNull<T>) {
        // SAFETY: `p` came from `Box::leak` in `alloc` (caller's contract).
        drop(unsafe { Box::from_raw(p.as_ptr()) });
    }
}

#[cfg(not(any(loom, clockcache_no_recycle)))]
mod imp {
    use super::MAX_BLOCKS;
    use std::alloc::{self, Layout};
    use std::cell::RefCell;
    use std::ptr::NonNull;

    /// Free blocks of one layout.
    struct Bin {
        layout: Layout,
        blocks: Vec<NonNull<u8>>,
    }

    struct Bins(Vec<Bin>);

    impl Drop for Bins {
        fn drop(&mut self) {
            for bin in &self.0 {
                for b in &bin.blocks {
                    // SAFETY: every block was allocated with `bin.layout` by
                    // `alloc::alloc` and is owned by this list alone.
                    unsafe { alloc::dealloc(b.as_ptr(), bin.layout) };
                }
            }
        }
    }

    std::thread_local! {
        static BINS: RefCell<Bins> = const { RefCell::new(Bins(Vec::new())) };
    }

    fn take(layout: Layout) -> Option<NonNull<u8>> {
        BINS.try_with(|bins| {
            let mut bins = bins.try_borrow_mut().ok()?;
            bins.0.iter_mut().find(|b| b.layout == layout)?.blocks.pop()
        })
        .ok()
        .flatten()
    }

    /// Keeps `block`; false if the list is full or unavailable (thread exit).
    fn give(layout: Layout, block: NonNull<u8>) -> bool {
        BINS.try_with(|bins| {
            let Ok(mut bins) = bins.try_borrow_mut() else {
                return false;
            };
            let i = match bins.0.iter().position(|b| b.layout == layout) {
                Some(i) => i,
                None => {
                    bins.0.push(Bin {
                        layout,
                        blocks: Vec::new(),
                    });
                    bins.0.len() - 1
                }
            };
            let bin = &mut bins.0[i];
            if bin.blocks.len() >= MAX_BLOCKS {
                return false;
            }
            bin.blocks.push(block);
            true
        })
        .unwrap_or(false)
    }

    pub(super) fn alloc<T>(value: T) -> NonNull<T> {
        let layout = Layout::new::<T>();
        if layout.size() == 0 {
            return NonNull::from(Box::leak(Box::new(value)));
        }
        let block = take(layout).unwrap_or_else(|| {
            // SAFETY: `layout` has a non-zero size.
            let p = unsafe { alloc::alloc(layout) };
            NonNull::new(p).unwrap_or_else(|| alloc::handle_alloc_error(layout))
        });
        let p = block.cast::<T>();
        // SAFETY: `block` is a fresh or recycled allocation of `layout`,
        // owned by us and holding no value.
        unsafe { p.as_ptr().write(value) };
        p
    }

    pub(super) unsafe fn free<T>(p: NonNull<T>) {
        let layout = Layout::new::<T>();
        if layout.size() == 0 {
            // SAFETY: zero-sized values came from `Box::leak` in `alloc`.
            drop(unsafe { Box::from_raw(p.as_ptr()) });
            return;
        }
        // SAFETY: the caller owns the value at `p` and never uses it again.
        unsafe { std::ptr::drop_in_place(p.as_ptr()) };
        let block = p.cast::<u8>();
        if !give(layout, block) {
            // SAFETY: `block` was allocated with `layout` by `alloc::alloc`
            // (in `alloc`, or by whoever recycled it there).
            unsafe { alloc::dealloc(block.as_ptr(), layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static DROPS: AtomicUsize = AtomicUsize::new(0);

    struct Counted(#[allow(dead_code)] u64);
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn values_are_dropped_once_and_blocks_reused() {
        let a = alloc(Counted(1));
        // SAFETY: from `alloc`, used once.
        unsafe { free(a) };
        let b = alloc(Counted(2));
        // SAFETY: `b` is a live value from `alloc`.
        assert_eq!(unsafe { b.as_ref() }.0, 2);
        // SAFETY: from `alloc`, used once.
        unsafe { free(b) };
        assert_eq!(DROPS.load(Ordering::SeqCst), 2);
        let z = alloc(());
        // SAFETY: from `alloc`, used once.
        unsafe { free(z) };
    }
}
