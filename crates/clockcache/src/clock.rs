//! Time, as the cache sees it.
//!
//! Expiry needs the current time on every read of an entry that has a
//! deadline, so the clock sits on the hit path. The default [`SystemClock`]
//! reads the CPU's time-stamp counter through [quanta] (a few nanoseconds,
//! against ~20 ns for `Instant::now()` on a VM); entries without a deadline
//! never read the clock at all. Tests drive time by hand with [`MockClock`].
//!
//! [quanta]: https://docs.rs/quanta

use crate::sync::{Arc, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// A monotonic source of time for expiry.
///
/// `now_nanos` returns nanoseconds since an arbitrary origin fixed for the
/// life of the clock. It must never go backwards.
pub trait Clock: Send + Sync + 'static {
    /// The current time, in nanoseconds since this clock's origin.
    fn now_nanos(&self) -> u64;
}

/// The default clock: monotonic wall time through quanta's calibrated TSC
/// reader (falling back to the OS monotonic clock where the TSC is unusable).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

fn quanta_clock() -> &'static (quanta::Clock, u64) {
    static CLOCK: OnceLock<(quanta::Clock, u64)> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        (clock, origin)
    })
}

impl Clock for SystemClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        let (clock, origin) = quanta_clock();
        // +1 so that "now" is never 0, which keeps deadline arithmetic simple.
        clock.delta_as_nanos(*origin, clock.raw()) + 1
    }
}

/// A clock that moves only when told to: for tests of expiry.
///
/// Clones share one time, so a test keeps a clone and advances it while the
/// cache holds another.
///
/// ```
/// use clockcache::{Cache, MockClock};
/// use std::time::Duration;
///
/// let clock = MockClock::new();
/// let cache: Cache<u32, u32> = Cache::builder()
///     .capacity(10)
///     .time_to_live(Duration::from_secs(5))
///     .clock(clock.clone())
///     .build();
/// cache.insert(1, 1);
/// clock.advance(Duration::from_secs(4));
/// assert_eq!(cache.get(&1), Some(1));
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(cache.get(&1), None);
/// ```
#[derive(Clone, Debug)]
pub struct MockClock {
    nanos: Arc<AtomicU64>,
}

impl MockClock {
    /// A clock standing at time 1 ns.
    pub fn new() -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Moves the clock forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let now = self.nanos.load(Ordering::SeqCst);
        self.nanos.store(now.saturating_add(by), Ordering::SeqCst);
    }

    /// Sets the clock to `nanos`; a value earlier than the current time is
    /// ignored, since a clock must never go backwards.
    pub fn set_nanos(&self, nanos: u64) {
        if nanos > self.nanos.load(Ordering::SeqCst) {
            self.nanos.store(nanos, Ordering::SeqCst);
        }
    }
}

#[cfg(all(test, loom))]
impl MockClock {
    pub(crate) fn now_for_tests(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }
}

impl Default for MockClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MockClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }
}

/// The clock a cache holds: the system clock statically dispatched (the
/// common case, inlined on the hit path) or any other behind a pointer.
#[derive(Clone)]
pub(crate) enum ClockSource {
    System,
    Custom(std::sync::Arc<dyn Clock>),
}

impl ClockSource {
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            ClockSource::System => SystemClock.now_nanos(),
            ClockSource::Custom(c) => c.now_nanos(),
        }
    }
}

/// Converts a duration to nanoseconds, saturating at `u64::MAX`.
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
