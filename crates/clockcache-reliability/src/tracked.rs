//! Values that count their creations and drops, per run (not in globals, so
//! that runs can go on in parallel, as `cargo test` does).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Creation and drop counts of one run's values.
#[derive(Debug, Default)]
pub struct DropCounter {
    created: AtomicUsize,
    dropped: AtomicUsize,
    loaded: AtomicUsize,
}

impl DropCounter {
    /// Values created so far.
    pub fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }

    /// Values created by loaders ([`Tracked::new_loaded`]) so far.
    pub fn loaded(&self) -> usize {
        self.loaded.load(Ordering::SeqCst)
    }

    /// Values dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Flushes this thread's crossbeam-epoch garbage and advances the epoch
    /// until every created value has been dropped, or a bounded number of
    /// rounds has passed. Returns the number of values still alive.
    ///
    /// Call it after the cache (and every value handed out) is dropped:
    /// the values the cache retired are freed by the epoch collector, which
    /// needs a few pins to advance far enough.
    pub fn settle(&self) -> usize {
        for _ in 0..100_000 {
            if self.dropped() >= self.created() {
                break;
            }
            crossbeam_epoch::pin().flush();
            std::thread::yield_now();
        }
        self.created() - self.dropped().min(self.created())
    }
}

/// A cache value: a key, a number and an optional expiry bound, in one
/// shared allocation whose single drop is counted. Clones share it, so the
/// counts are of allocations, not of handles.
#[derive(Clone, Debug)]
pub struct Tracked(Arc<Payload>);

/// What a [`Tracked`] holds.
#[derive(Debug)]
pub struct Payload {
    /// The key the value was created for.
    pub key: u64,
    /// The value proper.
    pub val: u64,
    /// An upper bound of the entry's deadline in clock nanoseconds, set
    /// after the insert returns (`u64::MAX` until then, or for no deadline).
    pub deadline_ub: AtomicU64,
    /// Made by a loader: such a value is not stored when a write of its key
    /// superseded the load, so it may never depart through the listener.
    loaded: AtomicBool,
    counter: Arc<DropCounter>,
}

impl Tracked {
    /// A new value, counted as created.
    pub fn new(counter: &Arc<DropCounter>, key: u64, val: u64) -> Self {
        counter.created.fetch_add(1, Ordering::SeqCst);
        Self(Arc::new(Payload {
            key,
            val,
            deadline_ub: AtomicU64::new(u64::MAX),
            loaded: AtomicBool::new(false),
            counter: counter.clone(),
        }))
    }

    /// A new value made by a loader, counted as created and as loaded.
    pub fn new_loaded(counter: &Arc<DropCounter>, key: u64, val: u64) -> Self {
        counter.loaded.fetch_add(1, Ordering::SeqCst);
        let t = Self::new(counter, key, val);
        t.0.loaded.store(true, Ordering::SeqCst);
        t
    }

    /// Whether a loader made it.
    pub fn is_loaded(&self) -> bool {
        self.0.loaded.load(Ordering::SeqCst)
    }

    /// The key it was created for.
    pub fn key(&self) -> u64 {
        self.0.key
    }

    /// The value proper.
    pub fn val(&self) -> u64 {
        self.0.val
    }

    /// The upper bound of its deadline (see [`Payload::deadline_ub`]).
    pub fn deadline_ub(&self) -> u64 {
        self.0.deadline_ub.load(Ordering::SeqCst)
    }

    /// Records the upper bound of its deadline.
    pub fn set_deadline_ub(&self, ub: u64) {
        self.0.deadline_ub.store(ub, Ordering::SeqCst);
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.counter.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// Departures heard by a listener, split by whether a loader made the value.
#[derive(Debug, Default)]
pub struct Departures {
    plain: AtomicUsize,
    loaded: AtomicUsize,
}

impl Departures {
    /// Counts the departure of `v`.
    pub fn record(&self, v: &Tracked) {
        let n = if v.is_loaded() {
            &self.loaded
        } else {
            &self.plain
        };
        n.fetch_add(1, Ordering::SeqCst);
    }

    /// Checks the departures against the values made, once the cache is
    /// gone and `counter` settled: every value no loader made departed
    /// exactly once, is in `live`, or was never stored (`never_stored`: a
    /// compare-and-swap that rejected it); a loaded value departed or is
    /// live at most once per load (none, if a write superseded its load).
    pub fn check(&self, counter: &DropCounter, live: &[bool], never_stored: usize) {
        let live_loaded = live.iter().filter(|&&l| l).count();
        let live_plain = live.len() - live_loaded;
        assert_eq!(
            self.plain.load(Ordering::SeqCst) + live_plain + never_stored,
            counter.created() - counter.loaded(),
            "departures reported + live at the end + values never stored != values created"
        );
        assert!(
            self.loaded.load(Ordering::SeqCst) + live_loaded <= counter.loaded(),
            "more loaded values departed or live than loads"
        );
    }

    /// All departures heard.
    pub fn total(&self) -> usize {
        self.plain.load(Ordering::SeqCst) + self.loaded.load(Ordering::SeqCst)
    }
}
