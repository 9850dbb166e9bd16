//! The one door through which the engine reaches atomics, locks, `Arc`,
//! epoch-based reclamation and the CPU's prefetch hint.
//!
//! In a normal build everything here is `std`, `parking_lot` and
//! `crossbeam-epoch`. Under `RUSTFLAGS="--cfg loom --cfg crossbeam_loom"` the
//! same names map to [loom]'s model-checked versions, so the loom tests next to
//! the code exercise the real engine, not a copy of it (the pattern of
//! crossbeam-epoch's `primitive` module and tokio's `loom` module).
//!
//! parking_lot cannot run under loom (a parked waiter blocks loom's single OS
//! thread), so under loom [`Mutex`] and [`Condvar`] are small parking_lot-shaped
//! wrappers around loom's own.
//!
//! [loom]: https://docs.rs/loom

pub(crate) use crossbeam_epoch as epoch;

#[cfg(not(loom))]
mod imp {
    /// An immutable value written once, before the entry holding it is
    /// published, and read by any thread after. Outside loom it is the value
    /// itself; under loom it is a `loom::cell::UnsafeCell`, so that a read
    /// that does not happen after the write (a publication without
    /// Release/Acquire) is reported as a causality violation.
    pub(crate) struct Published<T>(T);

    impl<T> Published<T> {
        #[inline]
        pub(crate) fn new(value: T) -> Self {
            Self(value)
        }

        #[inline]
        pub(crate) fn get(&self) -> &T {
            &self.0
        }
    }

    pub(crate) use parking_lot::{Mutex, MutexGuard};
    pub(crate) use std::sync::atomic::{
        AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
    };
    pub(crate) use std::sync::Arc;
    pub(crate) use std::thread_local;

    /// A condition variable with a guard-by-value `wait`, the shape both
    /// parking_lot and loom can provide.
    #[derive(Default)]
    pub(crate) struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Self(parking_lot::Condvar::new())
        }

        pub(crate) fn wait<'a, T>(&self, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(&mut guard);
            guard
        }

        /// Waits until notified or `deadline` passes; `true` if it passed.
        pub(crate) fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            deadline: std::time::Instant,
        ) -> bool {
            self.0.wait_until(guard, deadline).timed_out()
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    /// Which stripe of the statistics counters this thread writes.
    ///
    /// A `const`-initialised thread local (no lazy-initialisation check or
    /// destructor registration on each access), assigned on first use.
    #[inline]
    pub(crate) fn thread_stripe() -> usize {
        use std::cell::Cell;
        use std::sync::atomic::AtomicUsize as StdAtomicUsize;
        static NEXT: StdAtomicUsize = StdAtomicUsize::new(0);
        std::thread_local! {
            static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        STRIPE.with(|s| {
            let v = s.get();
            if v != usize::MAX {
                return v;
            }
            let v = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & (usize::MAX >> 1);
            s.set(v);
            v
        })
    }
}

#[cfg(loom)]
mod imp {
    /// See the non-loom definition.
    pub(crate) struct Published<T>(loom::cell::UnsafeCell<T>);

    impl<T> Published<T> {
        pub(crate) fn new(value: T) -> Self {
            let cell = loom::cell::UnsafeCell::new(value);
            // Record the initialisation as a write by this thread, so that a
            // read on another thread that does not happen after it is caught.
            cell.with_mut(|_| ());
            Self(cell)
        }

        pub(crate) fn get(&self) -> &T {
            // SAFETY: the value is never written after `new`; loom checks
            // that this read happens after that write.
            self.0.with(|p| unsafe { &*p })
        }
    }

    pub(crate) use loom::sync::atomic::{
        AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
    };
    pub(crate) use loom::sync::{Arc, MutexGuard};
    pub(crate) use loom::thread_local;

    /// parking_lot-shaped mutex over loom's (no poisoning: a panic while the
    /// lock is held leaves the data as it was, as with parking_lot).
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }
    }

    /// Condition variable over loom's.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Self(loom::sync::Condvar::new())
        }

        pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0
                .wait(guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    /// Under loom every thread writes stripe 0: the models check the
    /// statistics as a whole, not their striping.
    pub(crate) fn thread_stripe() -> usize {
        0
    }
}

pub(crate) use imp::*;

/// Hints the CPU to start loading the cache line at `p` into its caches.
/// Changes no result, so any address will do, even a stale or dangling one:
/// nothing is dereferenced. A no-op off x86-64 and under loom (there is
/// nothing for a model to explore).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch reads no memory architecturally and never
        // faults, whatever the address; SSE, its target feature, is part of
        // baseline x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = p;
}
