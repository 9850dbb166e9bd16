//! Multi-threaded stress with drop-counting values: every value created is
//! dropped exactly once (nothing leaked, nothing freed twice), the listener
//! hears about every departure exactly once (a loaded value may be
//! not stored at all, when a write of its key superseded the load), `len` stays within the bound,
//! and no read returns an expired value or a value never inserted for its
//! key.

use clockcache::{Cache, Clock, EvictionPolicy, MockClock, RemovalCause};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

static CREATED: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// A value that counts its creation and its (single) drop. Clones share one
/// allocation, so the counts are of allocations, not of handles.
#[derive(Clone)]
struct Tracked(Arc<Payload>);

struct Payload {
    key: u64,
    /// An upper bound of the entry's deadline on the mock clock, in
    /// nanoseconds: set once `insert_with_ttl` has returned (the clock read
    /// then, plus the ttl). 0 while unknown, `u64::MAX` for no expiry.
    latest_deadline: AtomicU64,
    /// Made by a loader (`get_or_insert_with`): such a value is not stored
    /// when a write of its key superseded the load, so it may never depart.
    loaded: AtomicBool,
    /// Set by the listener: a second report of one value fails the test.
    reported: AtomicBool,
}

impl Tracked {
    fn new(key: u64, latest_deadline: u64) -> Self {
        CREATED.fetch_add(1, Ordering::SeqCst);
        Self(Arc::new(Payload {
            key,
            latest_deadline: AtomicU64::new(latest_deadline),
            loaded: AtomicBool::new(false),
            reported: AtomicBool::new(false),
        }))
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits until the epoch collector has run every deferred destructor.
fn settle(expected: usize) {
    for _ in 0..100_000 {
        if DROPPED.load(Ordering::SeqCst) == expected {
            return;
        }
        crossbeam_epoch::pin().flush();
        thread::yield_now();
    }
}

/// The cache's capacity and the number of keys: under Miri (which runs a
/// few hundred operations, not hundreds of thousands) a small cache, so
/// that evictions, expiry and bulk removals still happen.
const CAPACITY: usize = if cfg!(miri) { 16 } else { 512 };
const KEYS: u64 = if cfg!(miri) { 48 } else { 2048 };
/// Every this many operations of a thread, one `retain`.
const RETAIN_EVERY: u64 = if cfg!(miri) { 128 } else { 4096 };

fn stress(policy: EvictionPolicy, threads: usize, ops: u64) {
    let clock = MockClock::new();
    let departed = Arc::new(AtomicUsize::new(0));
    let departed_loaded = Arc::new(AtomicUsize::new(0));
    let loads = Arc::new(AtomicUsize::new(0));
    let dl = departed_loaded.clone();
    let d = departed.clone();
    let cache: Cache<u64, Tracked> = Cache::builder()
        .capacity(CAPACITY as u64)
        .shards(if cfg!(miri) { 2 } else { 4 })
        .eviction_policy(policy)
        .clock(clock.clone())
        .eviction_listener(move |k: &u64, v: &Tracked, _c: RemovalCause| {
            assert_eq!(*k, v.0.key);
            assert!(
                !v.0.reported.swap(true, Ordering::SeqCst),
                "a departure reported twice"
            );
            if v.0.loaded.load(Ordering::SeqCst) {
                dl.fetch_add(1, Ordering::SeqCst);
            } else {
                d.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build();
    let rejected = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (clock, stop) = (clock.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                clock.advance(Duration::from_secs(1));
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let workers: Vec<_> = (0..threads as u64)
        .map(|t| {
            let (cache, clock, rejected, loads) = (
                cache.clone(),
                clock.clone(),
                rejected.clone(),
                loads.clone(),
            );
            thread::spawn(move || {
                let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for i in 0..ops {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = x % KEYS;
                    match x >> 60 {
                        0..=7 => {
                            let before = clock.now_nanos();
                            if let Some(v) = cache.get(&key) {
                                assert_eq!(v.0.key, key, "a value of another key");
                                // A value is returned only before its
                                // deadline, which is at most `latest`.
                                let latest = v.0.latest_deadline.load(Ordering::SeqCst);
                                assert!(
                                    latest == 0 || before < latest,
                                    "an expired value: deadline at most {latest}, read at {before}"
                                );
                            }
                        }
                        8..=10 => cache.insert(key, Tracked::new(key, u64::MAX)),
                        11 => {
                            let ttl = Duration::from_secs(1 + x % 3);
                            let v = Tracked::new(key, 0);
                            cache.insert_with_ttl(key, v.clone(), ttl);
                            // The cache read the clock during the insert, so
                            // its deadline is at most now + ttl.
                            let latest = clock.now_nanos() + ttl.as_nanos() as u64;
                            v.0.latest_deadline.store(latest, Ordering::SeqCst);
                        }
                        12 if i % 2 == 0 => {
                            cache.remove(&key);
                        }
                        12 => {
                            // A compare-and-swap against the value read: the
                            // new value is stored or dropped, never leaked.
                            if let Some(seen) = cache.peek(&key) {
                                let stored =
                                    cache.replace_if(key, Tracked::new(key, u64::MAX), |v| {
                                        Arc::ptr_eq(&v.0, &seen.0)
                                    });
                                // A value never stored is no departure.
                                rejected.fetch_add(usize::from(!stored), Ordering::SeqCst);
                            }
                        }
                        13 => {
                            let v = cache.get_or_insert_with(key, || {
                                loads.fetch_add(1, Ordering::SeqCst);
                                let v = Tracked::new(key, u64::MAX);
                                v.0.loaded.store(true, Ordering::SeqCst);
                                v
                            });
                            assert_eq!(v.0.key, key);
                        }
                        14 => {
                            if i % 64 == 0 {
                                cache.purge_expired();
                            } else {
                                cache.peek(&key);
                            }
                        }
                        _ => {
                            if i % RETAIN_EVERY == 0 {
                                cache.retain(|k, _| k % 7 != 0);
                            }
                            assert!(cache.len() <= CAPACITY + threads, "len {}", cache.len());
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    ticker.join().unwrap();
    assert!(
        cache.len() <= CAPACITY,
        "len {} once writers are quiet",
        cache.len()
    );
    let live = cache.len();
    let live_loaded = cache
        .iter()
        .filter(|(_, v)| v.0.loaded.load(Ordering::SeqCst))
        .count();
    drop(cache);
    let created = CREATED.load(Ordering::SeqCst);
    settle(created);
    assert_eq!(
        DROPPED.load(Ordering::SeqCst),
        created,
        "every value dropped exactly once"
    );
    // Every value that was not loaded was stored: it departed (reported
    // once) or is still live, unless a compare-and-swap rejected it.
    let loads = loads.load(Ordering::SeqCst);
    assert_eq!(
        departed.load(Ordering::SeqCst) + (live - live_loaded) + rejected.load(Ordering::SeqCst),
        created - loads,
        "every departure reported once"
    );
    // A loaded value was stored unless a write superseded its load.
    assert!(
        departed_loaded.load(Ordering::SeqCst) + live_loaded <= loads,
        "a loaded value reported more often than loaded"
    );
}

/// One test runs both policies in turn: the drop counters are global.
#[test]
fn stress_counts_every_drop() {
    let threads = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, if cfg!(miri) { 2 } else { 8 });
    let ops = if cfg!(miri) {
        300
    } else if cfg!(debug_assertions) {
        60_000
    } else {
        600_000
    };
    for policy in [
        EvictionPolicy::Adaptive,
        EvictionPolicy::S3Fifo,
        EvictionPolicy::Clock,
    ] {
        CREATED.store(0, Ordering::SeqCst);
        DROPPED.store(0, Ordering::SeqCst);
        stress(policy, threads, ops);
    }
}

/// Read-compute-`replace_if` increments from every thread on a few counters
/// (with evictions of other keys around them): none is lost, because a
/// compare against a value someone has since replaced fails and is retried.
#[test]
fn replace_if_increments_are_never_lost() {
    let threads = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, if cfg!(miri) { 2 } else { 8 }) as u64;
    let per_thread = if cfg!(miri) {
        100
    } else if cfg!(debug_assertions) {
        5_000
    } else {
        50_000
    };
    let cache: Cache<u64, u64> = Cache::builder().capacity(4_096).shards(4).build();
    for k in 0..4 {
        cache.insert(k, 0);
    }
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let cache = cache.clone();
            thread::spawn(move || {
                for i in 0..per_thread {
                    let key = (t + i) % 4;
                    loop {
                        let seen = cache.get(&key).expect("counters are never evicted");
                        if cache.replace_if(key, seen + 1, |v| *v == seen) {
                            break;
                        }
                    }
                    // Churn elsewhere in the shards, never enough to evict
                    // a counter (the cache holds 4,096).
                    cache.insert(1_000 + (t * per_thread + i) % 2_000, i);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let total: u64 = (0..4).map(|k| cache.get(&k).unwrap()).sum();
    assert_eq!(total, threads * per_thread);
}
