//! Loom models of the races the design argues about (docs/design.md, "Why
//! it is correct"). Each model runs the real engine: under `--cfg loom` the
//! `sync` shim hands it loom's atomics, mutex and cells, and crossbeam-epoch
//! runs on loom too (`--cfg crossbeam_loom`).
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom --cfg crossbeam_loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p clockcache --release --lib loom`
//!
//! Every model's main thread calls `thread::yield_now()` right after it
//! spawns. loom 0.7 does not explore running a spawned thread ahead of its
//! parent when the spawned thread's first operation is an atomic load
//! (tokio-rs/loom#392, open), and every cache operation starts with loads
//! (the epoch pin). Without the yield, a probe whose writer inserted and
//! then moved the mock clock ran 3 executions, none with the writer first;
//! with it, 12, in both orders, and the model of the first deadline below
//! then catches a writer deliberately broken to raise its flag too late.

use crate::{Cache, EvictionPolicy, MockClock, RemovalCause};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use std::time::Duration;

/// Loom replays a model many times and needs every run to take the same
/// path for the same schedule: a fixed hasher seed keeps slot positions
/// deterministic.
fn hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(1, 2, 3, 4)
}

fn cache(capacity: u64, clock: &MockClock) -> Cache<u64, u64, ahash::RandomState> {
    Cache::builder()
        .capacity(capacity)
        .shards(1)
        .clock(clock.clone())
        .build_with_hasher(hasher())
}

/// A reader racing an insert that replaces the value it looks up sees the
/// old value or the new one, never anything else, and the replaced entry is
/// reported once.
#[test]
fn loom_get_races_replacing_insert() {
    loom::model(|| {
        let replaced = Arc::new(AtomicUsize::new(0));
        let r = replaced.clone();
        let c: Cache<u64, u64, ahash::RandomState> = Cache::builder()
            .capacity(4)
            .shards(1)
            .clock(MockClock::new())
            .eviction_listener(move |_k: &u64, v: &u64, cause| {
                assert_eq!((*v, cause), (10, RemovalCause::Replaced));
                r.fetch_add(1, Ordering::SeqCst);
            })
            .build_with_hasher(hasher());
        c.insert(1, 10);
        let w = {
            let c = c.clone();
            thread::spawn(move || c.insert(1, 11))
        };
        thread::yield_now();
        let seen = c.get(&1);
        assert!(matches!(seen, Some(10) | Some(11)), "{seen:?}");
        w.join().unwrap();
        assert_eq!(c.get(&1), Some(11));
        assert_eq!(replaced.load(Ordering::SeqCst), 1);
    });
}

/// A reader racing the insert of a key it looks up for the first time sees
/// nothing or the complete entry (publication is Release/Acquire: loom
/// reports a causality violation otherwise).
#[test]
fn loom_get_races_first_insert() {
    loom::model(|| {
        let c = cache(4, &MockClock::new());
        let w = {
            let c = c.clone();
            thread::spawn(move || c.insert(7, 70))
        };
        thread::yield_now();
        let seen = c.get(&7);
        assert!(matches!(seen, None | Some(70)), "{seen:?}");
        w.join().unwrap();
        assert_eq!(c.get(&7), Some(70));
    });
}

/// A reader racing the eviction of the entry it reads gets the value or a
/// miss; the evicted entry stays allocated while the reader holds it.
#[test]
fn loom_get_races_eviction() {
    loom::model(|| {
        let c: Cache<u64, u64, ahash::RandomState> = Cache::builder()
            .capacity(1)
            .shards(1)
            .eviction_policy(EvictionPolicy::Clock)
            .clock(MockClock::new())
            .build_with_hasher(hasher());
        c.insert(1, 10);
        let w = {
            let c = c.clone();
            thread::spawn(move || c.insert(2, 20))
        };
        thread::yield_now();
        let seen = c.get(&1);
        assert!(matches!(seen, None | Some(10)), "{seen:?}");
        w.join().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&2), Some(20));
    });
}

/// The same race under the default (adaptive S3-FIFO) policy, where the
/// victim leaves the probationary FIFO and its key enters the ghost.
#[test]
fn loom_get_races_adaptive_eviction() {
    loom::model(|| {
        let c: Cache<u64, u64, ahash::RandomState> = Cache::builder()
            .capacity(1)
            .shards(1)
            .eviction_policy(EvictionPolicy::Adaptive)
            .clock(MockClock::new())
            .build_with_hasher(hasher());
        c.insert(1, 10);
        let w = {
            let c = c.clone();
            thread::spawn(move || {
                c.insert(2, 20);
                c.insert(1, 11); // back from the ghost: straight to the main clock
            })
        };
        thread::yield_now();
        let seen = c.get(&1);
        assert!(matches!(seen, None | Some(10) | Some(11)), "{seen:?}");
        w.join().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&1), Some(11));
    });
}

/// A reader racing `remove` gets the value or a miss; `remove` returns the
/// value exactly once.
#[test]
fn loom_get_races_remove() {
    loom::model(|| {
        let c = cache(4, &MockClock::new());
        c.insert(1, 10);
        let w = {
            let c = c.clone();
            thread::spawn(move || c.remove(&1))
        };
        thread::yield_now();
        let seen = c.get(&1);
        assert!(matches!(seen, None | Some(10)), "{seen:?}");
        assert_eq!(w.join().unwrap(), Some(10));
        assert_eq!(c.get(&1), None);
        assert!(c.is_empty());
    });
}

/// A value that knows whether it was dropped: its drop poisons it, and a
/// clone of a poisoned value panics. The scouting models below read values
/// that a broken reclamation would free under them; a plain `u64` read from
/// freed memory would usually still look right, a canary does not.
struct Canary {
    value: u64,
    alive: u64,
}

const ALIVE: u64 = 0xA11C_E5E5_A11C_E5E5;

impl Canary {
    fn new(value: u64) -> Self {
        Self {
            value,
            alive: ALIVE,
        }
    }
}

impl Canary {
    /// Panics if the canary was dropped.
    fn check(&self) -> u64 {
        // SAFETY: a plain read of our own field, volatile so that a value
        // dropped (and freed) under the reader is actually read again.
        let alive = unsafe { std::ptr::read_volatile(&self.alive) };
        assert_eq!(alive, ALIVE, "read an entry the cache had already dropped");
        self.value
    }
}

impl Clone for Canary {
    fn clone(&self) -> Self {
        Self::new(self.check())
    }
}

/// As a key, a canary checks itself whenever a lookup compares it.
impl PartialEq for Canary {
    fn eq(&self, other: &Self) -> bool {
        self.check() == other.check()
    }
}

impl Eq for Canary {}

impl std::hash::Hash for Canary {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        // SAFETY: a plain write to our own field, volatile so that it is
        // not optimised away as a dead store.
        unsafe { std::ptr::write_volatile(&mut self.alive, 0) };
    }
}

type CanaryCache = Cache<Canary, Canary, ahash::RandomState>;

/// `cache.get(key)`'s value.
fn get(c: &CanaryCache, key: u64) -> Option<u64> {
    c.get(&Canary::new(key)).map(|v| v.value)
}

fn put(c: &CanaryCache, key: u64, value: u64) {
    c.insert(Canary::new(key), Canary::new(value));
}

/// Makes the calling thread's lookups scout the home bucket before they pin
/// (a thread that has just missed does: see `Stripe::scouts`).
fn scouting(c: &CanaryCache) {
    assert_eq!(get(c, 99), None);
}

/// Lets the epoch advance twice from a thread that is not pinned, so that a
/// batch deferred before runs if no reader holds it back (the engine's own
/// collector driving is off under loom).
fn advance_epochs() {
    for _ in 0..3 {
        crate::sync::epoch::pin().flush();
    }
}

/// A scouting reader (home bucket read before the pin) racing an eviction by
/// a writer that does not pin (the cache has no listener): the writer
/// defers the victim's batch only after it unlocks, under a pin of its own,
/// so the reader that scouted and then pinned still reads the value or
/// misses. With the batch handed to an unprotected guard instead (freed at
/// once), loom finds the run in which the reader clones a dropped value.
#[test]
fn loom_scouting_get_races_unpinned_eviction() {
    loom::model(|| {
        let c: CanaryCache = Cache::builder()
            .capacity(1)
            .shards(1)
            .eviction_policy(EvictionPolicy::Clock)
            .clock(MockClock::new())
            .build_with_hasher(hasher());
        put(&c, 1, 10);
        scouting(&c);
        let w = {
            let c = c.clone();
            thread::spawn(move || put(&c, 2, 20))
        };
        thread::yield_now();
        let seen = get(&c, 1);
        assert!(matches!(seen, None | Some(10)), "{seen:?}");
        w.join().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(get(&c, 2), Some(20));
    });
}

/// A scouting reader racing a writer that outgrows the table and then
/// removes the key being read. Tables are kept until the shard drops, so
/// the scout's table is always readable; after pinning, the reader checks
/// that the table it scouted is still the current one (otherwise it looks
/// again in the current table), so it never follows a slot of an outgrown
/// table to an entry removed, and freed, before its pin. Without that
/// check, loom finds the run in which it clones the dropped value.
#[test]
fn loom_scouting_get_races_table_growth_and_remove() {
    loom::model(|| {
        let c: CanaryCache = Cache::builder()
            .capacity(16)
            .shards(1)
            .initial_capacity(1)
            .clock(MockClock::new())
            .build_with_hasher(hasher());
        // One bucket of seven slots, grown at 7/8 full: the seventh entry
        // outgrows it.
        for k in 1..=6 {
            put(&c, k, k * 10);
        }
        scouting(&c);
        let w = {
            let c = c.clone();
            thread::spawn(move || {
                put(&c, 7, 70);
                let removed = c.remove(&Canary::new(1)).map(|v| v.value);
                advance_epochs();
                removed
            })
        };
        thread::yield_now();
        let seen = get(&c, 1);
        assert!(matches!(seen, None | Some(10)), "{seen:?}");
        assert_eq!(w.join().unwrap(), Some(10));
        assert_eq!(get(&c, 1), None);
        assert_eq!(get(&c, 7), Some(70));
    });
}

/// A reader racing expiry (the clock moving past the deadline, then a purge)
/// never returns the value once it has seen the clock past the deadline.
#[test]
fn loom_get_races_expiry() {
    loom::model(|| {
        let clock = MockClock::new();
        let c = cache(4, &clock);
        c.insert_with_ttl(1, 10, Duration::from_nanos(10));
        let w = {
            let (c, clock) = (c.clone(), clock.clone());
            thread::spawn(move || {
                clock.advance(Duration::from_nanos(100));
                c.purge_expired()
            })
        };
        thread::yield_now();
        let before = clock.now_for_tests();
        let seen = c.get(&1);
        let after = clock.now_for_tests();
        assert!(matches!(seen, None | Some(10)), "{seen:?}");
        // The deadline (1 + 10 ns) had passed before the read began: the
        // read misses, whether or not the purge has run.
        if before > 11 {
            assert_eq!(seen, None, "an entry read after its deadline");
        }
        let purged = w.join().unwrap();
        assert_eq!(purged, 1);
        assert!(after <= 101);
        assert_eq!(c.get(&1), None);
        assert!(c.is_empty());
    });
}

/// A read skips the deadline while no entry can expire. The first entry
/// with a deadline, inserted on another thread into a cache built without
/// any expiry, must still be seen as expired once the clock has passed it:
/// the writer raises `may_expire` before it publishes the entry, so a
/// reader that finds the entry sees the flag.
#[test]
fn loom_first_ttl_entry_is_checked_by_a_racing_read() {
    loom::model(|| {
        let clock = MockClock::new();
        let c = cache(4, &clock);
        let w = {
            let (c, clock) = (c.clone(), clock.clone());
            thread::spawn(move || {
                c.insert_with_ttl(1, 10, Duration::from_nanos(10));
                clock.advance(Duration::from_nanos(100));
            })
        };
        thread::yield_now();
        // Seeing the clock moved means the insert happened before this read.
        let moved = clock.now_for_tests() >= 100;
        let seen = c.get(&1);
        if moved {
            assert_eq!(seen, None);
        } else {
            assert!(matches!(seen, None | Some(10)), "{seen:?}");
        }
        w.join().unwrap();
    });
}

/// Once the clock has passed the deadline (happens-before the read), the
/// read misses, whether or not the purge has run.
#[test]
fn loom_expired_read_after_clock_moves() {
    loom::model(|| {
        let clock = MockClock::new();
        let c = cache(4, &clock);
        c.insert_with_ttl(1, 10, Duration::from_nanos(10));
        clock.advance(Duration::from_nanos(10));
        let w = {
            let c = c.clone();
            thread::spawn(move || c.purge_expired())
        };
        thread::yield_now();
        assert_eq!(c.get(&1), None);
        w.join().unwrap();
    });
}

/// Two inserts of one key leave exactly one entry holding one of the two
/// values, and the other value is reported as replaced.
#[test]
fn loom_two_inserts_of_one_key() {
    loom::model(|| {
        let replaced = Arc::new(AtomicUsize::new(0));
        let r = replaced.clone();
        let c: Cache<u64, u64, ahash::RandomState> = Cache::builder()
            .capacity(4)
            .shards(1)
            .clock(MockClock::new())
            .eviction_listener(move |_k: &u64, _v: &u64, cause| {
                assert_eq!(cause, RemovalCause::Replaced);
                r.fetch_add(1, Ordering::SeqCst);
            })
            .build_with_hasher(hasher());
        let w = {
            let c = c.clone();
            thread::spawn(move || c.insert(1, 1))
        };
        thread::yield_now();
        c.insert(1, 2);
        w.join().unwrap();
        assert_eq!(c.len(), 1);
        assert!(matches!(c.get(&1), Some(1) | Some(2)));
        assert_eq!(replaced.load(Ordering::SeqCst), 1);
    });
}

/// Two read-compute-`replace_if` increments of one counter, each reading
/// through the lock-free path and retrying when the compare fails: neither
/// increment is lost (the compare and the write are one step under the shard
/// lock, so a stale read can only fail, never overwrite).
#[test]
fn loom_two_replace_if_increments() {
    loom::model(|| {
        let c = cache(4, &MockClock::new());
        c.insert(1, 0);
        let add = |c: &Cache<u64, u64, ahash::RandomState>| loop {
            let seen = c.get(&1).expect("the counter stays");
            if c.replace_if(1, seen + 1, |v| *v == seen) {
                break;
            }
        };
        let w = {
            let c = c.clone();
            thread::spawn(move || add(&c))
        };
        thread::yield_now();
        add(&c);
        w.join().unwrap();
        assert_eq!(c.get(&1), Some(2));
    });
}

/// Two `upsert`s of one counter: no increment is lost (the read and the
/// write happen under one hold of the shard lock). With the lookup and the
/// function moved before the lock, loom finds a run that ends at 1.
#[test]
fn loom_two_upserts_increment() {
    loom::model(|| {
        let c = cache(4, &MockClock::new());
        c.insert(1, 0);
        let w = {
            let c = c.clone();
            thread::spawn(move || c.upsert(1, |n| n.map_or(1, |n| n + 1)))
        };
        c.upsert(1, |n| n.map_or(1, |n| n + 1));
        w.join().unwrap();
        assert_eq!(c.get(&1), Some(2));
    });
}

/// `clear` racing an insert: afterwards the cache is empty or holds exactly
/// the inserted entry, and its counts agree with what `get` sees.
#[test]
fn loom_clear_races_insert() {
    loom::model(|| {
        let c = cache(4, &MockClock::new());
        c.insert(1, 10);
        let w = {
            let c = c.clone();
            thread::spawn(move || c.insert(2, 20))
        };
        thread::yield_now();
        c.clear();
        w.join().unwrap();
        assert_eq!(c.get(&1), None);
        match c.get(&2) {
            Some(20) => assert_eq!(c.len(), 1),
            None => assert_eq!(c.len(), 0),
            other => panic!("{other:?}"),
        }
    });
}

/// Two callers of `get_or_insert_with` on one missing key: the loader runs
/// once and both get its value.
#[test]
fn loom_single_flight_two_callers() {
    loom::model(|| {
        let loads = Arc::new(AtomicUsize::new(0));
        let c = cache(4, &MockClock::new());
        let w = {
            let (c, loads) = (c.clone(), loads.clone());
            thread::spawn(move || {
                c.get_or_insert_with(5, || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    50
                })
            })
        };
        thread::yield_now();
        let mine = c.get_or_insert_with(5, || {
            loads.fetch_add(1, Ordering::SeqCst);
            50
        });
        assert_eq!(mine, 50);
        assert_eq!(w.join().unwrap(), 50);
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    });
}

/// A leader that gives up its load (its future dropped, or its loader
/// panicked) hands the key over: a caller waiting on that load, or arriving
/// after, runs its own load and gets its value; no caller hangs and no load
/// record stays behind. Without the wake-up in `Pending::abandon`, loom
/// reports the waiter blocked forever.
#[test]
fn loom_single_flight_leader_gives_up() {
    loom::model(|| {
        let c = cache(4, &MockClock::new());
        let h = c.hash(&5);
        let w = {
            let c = c.clone();
            thread::spawn(move || c.get_or_insert_with(5, || 60))
        };
        thread::yield_now();
        let mut key = crate::load::Owned(Some(5));
        if let crate::load::Flight::Lead(p) = c.begin_load(h, &mut key) {
            // The leader's drop guard, as when its future is dropped.
            drop(crate::load::Lead::new(&c, h, p));
        }
        assert_eq!(w.join().unwrap(), 60);
        assert_eq!(c.get(&5), Some(60));
        assert!(c.shard(h).inner.lock().loading.is_empty());
    });
}

/// A remove of the key while its load runs wins over the load: the loader's
/// caller gets what it loaded, and the cache keeps the newer state (absent)
/// whichever runs first. Without the mark that `remove` leaves on the load
/// record, the load re-inserts the removed key.
#[test]
fn loom_remove_during_a_load_wins() {
    loom::model(|| {
        let c = cache(4, &MockClock::new());
        let started = Arc::new(AtomicUsize::new(0));
        let l = {
            let (c, started) = (c.clone(), started.clone());
            thread::spawn(move || {
                c.get_or_insert_with(5, || {
                    started.store(1, Ordering::SeqCst);
                    thread::yield_now();
                    50
                })
            })
        };
        thread::yield_now();
        // Remove only once the load has begun: before it, there is nothing
        // to supersede.
        let began = started.load(Ordering::SeqCst) == 1;
        if began {
            c.remove(&5);
        }
        assert_eq!(l.join().unwrap(), 50);
        assert_eq!(c.get(&5), if began { None } else { Some(50) });
    });
}

/// A due hit starts a refresh while another thread replaces the key: the
/// replacing write wins whatever the order, so the cache ends with the
/// written value. The reader that claimed the refresh checks, under the
/// shard lock, that the entry it read is still the key's live one before it
/// registers the reload; without that check, loom finds the run in which
/// the reader reads the old entry, the insert completes, and the reload,
/// registered after the insert and so not superseded by it, overwrites the
/// written value with one computed from the old.
#[test]
fn loom_refresh_races_replacing_insert() {
    loom::model(|| {
        let clock = MockClock::new();
        let c: Cache<u64, u64, ahash::RandomState> = Cache::builder()
            .capacity(4)
            .shards(1)
            .clock(clock.clone())
            .refresh_after(
                Duration::from_secs(1),
                crate::Refresh::with_executor(
                    |_k: &u64, old: &u64| Ok::<_, ()>(old + 1),
                    |job| job(),
                ),
            )
            .build_with_hasher(hasher());
        c.insert(1, 10);
        clock.advance(Duration::from_secs(1));
        let w = {
            let c = c.clone();
            thread::spawn(move || c.insert(1, 20))
        };
        thread::yield_now();
        let seen = c.get(&1);
        assert!(matches!(seen, Some(10 | 11 | 20)), "{seen:?}");
        w.join().unwrap();
        assert_eq!(c.peek(&1), Some(20));
    });
}
