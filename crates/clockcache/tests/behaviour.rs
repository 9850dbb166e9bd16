//! Single-threaded behaviour of the public API, one property per test.

use clockcache::{Cache, CacheStats, EvictionPolicy, MockClock, RemovalCause};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Events<K, V> = Arc<Mutex<Vec<(K, V, RemovalCause)>>>;

fn recording<K: Clone + Send + 'static, V: Clone + Send + 'static>() -> (
    Events<K, V>,
    impl Fn(&K, &V, RemovalCause) + Send + Sync + 'static,
) {
    let events: Events<K, V> = Arc::default();
    let e = events.clone();
    (events, move |k: &K, v: &V, c| {
        e.lock().unwrap().push((k.clone(), v.clone(), c))
    })
}

fn causes<K, V>(events: &Events<K, V>) -> Vec<RemovalCause> {
    events.lock().unwrap().iter().map(|e| e.2).collect()
}

#[test]
fn insert_get_remove() {
    let c: Cache<String, u32> = Cache::new(100);
    assert_eq!(c.get("a"), None);
    c.insert("a".to_string(), 1);
    assert_eq!(c.get("a"), Some(1));
    assert_eq!(c.peek("a"), Some(1));
    assert!(c.contains_key("a"));
    c.insert("a".to_string(), 2);
    assert_eq!(c.get("a"), Some(2));
    assert_eq!(c.len(), 1);
    assert_eq!(c.remove("a"), Some(2));
    assert_eq!(c.remove("a"), None);
    assert!(!c.contains_key("a"));
    assert!(c.is_empty());
}

#[test]
fn count_capacity_is_never_exceeded_for_both_policies() {
    for policy in [
        EvictionPolicy::Clock,
        EvictionPolicy::S3Fifo,
        EvictionPolicy::Adaptive,
    ] {
        for shards in [1, 4, 16] {
            let c: Cache<u64, u64> = Cache::builder()
                .capacity(1000)
                .shards(shards)
                .eviction_policy(policy)
                .build();
            for i in 0..20_000u64 {
                c.insert(i, i);
                assert!(c.len() <= 1000, "{policy:?} {shards}: {}", c.len());
            }
            assert_eq!(c.capacity(), 1000);
            assert!(
                c.len() >= 900,
                "{policy:?} {shards}: a full cache stays nearly full, got {}",
                c.len()
            );
        }
    }
}

#[test]
fn clock_gives_referenced_entries_a_second_chance() {
    let c: Cache<u64, u64> = Cache::builder()
        .capacity(4)
        .shards(1)
        .eviction_policy(EvictionPolicy::Clock)
        .build();
    for i in 0..4 {
        c.insert(i, i);
    }
    c.get(&0);
    c.insert(4, 4); // the hand passes 0 (referenced) and evicts 1
    assert_eq!(c.peek(&0), Some(0));
    assert_eq!(c.peek(&1), None);
    assert_eq!(c.len(), 4);
}

#[test]
fn s3fifo_keeps_the_hot_set_through_a_scan() {
    let c: Cache<u64, u64> = Cache::builder()
        .capacity(100)
        .shards(1)
        .eviction_policy(EvictionPolicy::S3Fifo)
        .build();
    for round in 0..3 {
        for i in 0..50 {
            if c.get(&i).is_none() {
                c.insert(i, i);
            }
        }
        let _ = round;
    }
    // A scan of one-time keys, twice the cache.
    for i in 1000..1200 {
        c.insert(i, i);
    }
    let kept = (0..50).filter(|i| c.peek(i).is_some()).count();
    assert!(kept >= 45, "hot keys kept: {kept}");
}

#[test]
fn listener_sees_each_cause_once() {
    let clock = MockClock::new();
    let (events, listener) = recording::<u32, u32>();
    let c: Cache<u32, u32> = Cache::builder()
        .capacity(2)
        .shards(1)
        .clock(clock.clone())
        .eviction_listener(listener)
        .build();
    c.insert(1, 10);
    c.insert(1, 11); // Replaced 10
    c.remove(&1); // Removed 11
    c.insert_with_ttl(2, 20, Duration::from_secs(1));
    clock.advance(Duration::from_secs(2));
    assert_eq!(c.purge_expired(), 1); // Expired 20
    c.insert(3, 30);
    c.insert(4, 40);
    c.insert(5, 50); // Evicted one of 30, 40
    c.clear(); // Cleared the two left
    let ev = events.lock().unwrap().clone();
    assert_eq!(
        &ev[..3],
        &[
            (1, 10, RemovalCause::Replaced),
            (1, 11, RemovalCause::Removed),
            (2, 20, RemovalCause::Expired)
        ]
    );
    assert_eq!(ev[3].2, RemovalCause::Evicted);
    assert!(ev[4..].iter().all(|e| e.2 == RemovalCause::Cleared));
    assert_eq!(ev.len(), 6);
    let stats = c.stats();
    assert_eq!(
        (
            stats.inserts,
            stats.updates,
            stats.evictions,
            stats.expirations
        ),
        (5, 1, 1, 1)
    );
    assert_eq!(stats.removals, 3);
}

#[test]
fn panicking_listener_does_not_poison_the_cache() {
    let c: Cache<u32, u32> = Cache::builder()
        .capacity(1)
        .shards(1)
        .eviction_listener(|_k: &u32, _v: &u32, _c| panic!("listener bug"))
        .build();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..10 {
        c.insert(i, i); // each evicts the previous one: the listener panics
    }
    std::panic::set_hook(quiet);
    assert_eq!(c.len(), 1);
    assert_eq!(c.get(&9), Some(9));
    c.insert(42, 42);
    assert_eq!(c.get(&42), Some(42));
}

#[test]
fn capacity_zero_stores_nothing() {
    let (events, listener) = recording::<u32, u32>();
    let c: Cache<u32, u32> = Cache::builder()
        .capacity(0)
        .eviction_listener(listener)
        .build();
    c.insert(1, 1);
    assert_eq!(c.get(&1), None);
    assert_eq!(c.len(), 0);
    assert_eq!(causes(&events), vec![RemovalCause::Evicted]);
    assert_eq!(c.get_or_insert_with(2, || 2), 2);
    assert_eq!(c.len(), 0);
}

#[test]
fn ttl_expires_entries_and_get_never_returns_them() {
    let clock = MockClock::new();
    let c: Cache<u32, u32> = Cache::builder()
        .capacity(10)
        .time_to_live(Duration::from_secs(10))
        .clock(clock.clone())
        .build();
    c.insert(1, 1);
    c.insert_with_ttl(2, 2, Duration::from_secs(1));
    clock.advance(Duration::from_millis(999));
    assert_eq!(c.get(&2), Some(2));
    clock.advance(Duration::from_millis(1));
    assert_eq!(c.get(&2), None);
    assert_eq!(c.peek(&2), None);
    assert!(!c.contains_key(&2));
    assert_eq!(c.get(&1), Some(1));
    clock.advance(Duration::from_secs(9));
    assert_eq!(c.get(&1), None);
    assert_eq!(c.len(), 2, "expired entries wait for reclamation");
    assert_eq!(c.purge_expired(), 2);
    assert_eq!(c.len(), 0);
    assert_eq!(c.stats().expirations, 2);
}

#[test]
fn zero_ttl_stores_nothing_and_replaces_the_old_value() {
    let (events, listener) = recording::<u32, u32>();
    let c: Cache<u32, u32> = Cache::builder()
        .capacity(10)
        .clock(MockClock::new())
        .eviction_listener(listener)
        .build();
    c.insert(1, 1);
    c.insert_with_ttl(1, 2, Duration::ZERO);
    assert_eq!(c.get(&1), None);
    assert_eq!(c.len(), 0);
    assert_eq!(
        events.lock().unwrap().clone(),
        vec![
            (1, 1, RemovalCause::Replaced),
            (1, 2, RemovalCause::Expired)
        ]
    );
}

#[test]
fn huge_ttl_means_never() {
    let clock = MockClock::new();
    let c: Cache<u32, u32> = Cache::builder().capacity(10).clock(clock.clone()).build();
    c.insert_with_ttl(1, 1, Duration::MAX);
    c.insert_with_ttl(2, 2, Duration::from_secs(u64::MAX / 4));
    clock.advance(Duration::from_secs(1_000_000_000));
    assert_eq!(c.get(&1), Some(1));
    assert_eq!(c.get(&2), Some(2));
    assert_eq!(c.purge_expired(), 0);
}

#[test]
fn time_to_idle_is_reset_by_reads_only() {
    let clock = MockClock::new();
    let c: Cache<u32, u32> = Cache::builder()
        .capacity(10)
        .time_to_idle(Duration::from_secs(10))
        .clock(clock.clone())
        .build();
    c.insert(1, 1);
    c.insert(2, 2);
    for _ in 0..5 {
        clock.advance(Duration::from_secs(6));
        assert_eq!(c.get(&1), Some(1), "read within the idle time");
    }
    assert_eq!(c.peek(&2), None, "never read: idle too long");
    assert_eq!(c.purge_expired(), 1);
    // peek does not reset the idle timer.
    clock.advance(Duration::from_secs(6));
    assert_eq!(c.peek(&1), Some(1));
    clock.advance(Duration::from_secs(6));
    assert_eq!(c.get(&1), None);
}

#[test]
fn expiry_trait_sets_per_entry_deadlines() {
    let clock = MockClock::new();
    let c: Cache<u32, u32> = Cache::builder()
        .capacity(10)
        .expiry(|_k: &u32, v: &u32| (*v > 0).then(|| Duration::from_secs(u64::from(*v))))
        .clock(clock.clone())
        .build();
    c.insert(1, 5);
    c.insert(2, 0);
    c.insert_with_ttl(3, 5, Duration::from_secs(1)); // explicit ttl wins
    clock.advance(Duration::from_secs(2));
    assert_eq!(c.get(&3), None);
    assert_eq!(c.get(&1), Some(5));
    clock.advance(Duration::from_secs(3));
    assert_eq!(c.get(&1), None);
    assert_eq!(c.get(&2), Some(0));
}

#[test]
fn purge_does_not_disturb_recency() {
    // Plain CLOCK, one shard: the same sequence with and without purges in
    // between must evict the same entries.
    let run = |purge: bool| {
        let clock = MockClock::new();
        let c: Cache<u32, u32> = Cache::builder()
            .capacity(8)
            .shards(1)
            .eviction_policy(EvictionPolicy::Clock)
            .clock(clock.clone())
            .build();
        for i in 0..8 {
            c.insert(i, i);
        }
        c.get(&3);
        c.get(&5);
        if purge {
            c.purge_expired();
        }
        for i in 100..104 {
            c.insert(i, i);
            if purge {
                c.purge_expired();
            }
        }
        let mut left: Vec<u32> = c.iter().map(|(k, _)| k).collect();
        left.sort_unstable();
        left
    };
    assert_eq!(run(false), run(true));
}

#[test]
fn expired_entries_are_taken_before_live_ones() {
    let clock = MockClock::new();
    let c: Cache<u32, u32> = Cache::builder()
        .capacity(4)
        .shards(1)
        .clock(clock.clone())
        .build();
    c.insert(0, 0);
    c.insert_with_ttl(1, 1, Duration::from_secs(1));
    c.insert(2, 2);
    c.insert(3, 3);
    clock.advance(Duration::from_secs(2));
    c.insert(4, 4);
    for k in [0, 2, 3, 4] {
        assert_eq!(c.peek(&k), Some(k));
    }
}

#[test]
fn weights_bound_total_weight() {
    let c: Cache<u32, Vec<u8>> = Cache::builder()
        .capacity(100)
        .shards(4)
        .weigher(|_k: &u32, v: &Vec<u8>| v.len() as u32)
        .build();
    for i in 0..100 {
        c.insert(i, vec![0; (i % 20) as usize]);
        assert!(c.weighted_size() <= 100, "{}", c.weighted_size());
    }
}

#[test]
fn an_item_heavier_than_a_shard_share_is_stored() {
    let (events, listener) = recording::<u32, u32>();
    let c: Cache<u32, u32> = Cache::builder()
        .capacity(100)
        .shards(8) // a share is 12 or 13
        .weigher(|_k: &u32, v: &u32| *v)
        .eviction_listener(listener)
        .build();
    for i in 0..40 {
        c.insert(i, 1);
    }
    c.insert(1000, 90);
    assert_eq!(c.get(&1000), Some(90), "a heavy item must not be refused");
    assert!(c.weighted_size() <= 100, "{}", c.weighted_size());
    assert!(causes(&events).iter().all(|&c| c == RemovalCause::Evicted));
    // Heavier than the whole cache: not stored, reported as evicted.
    c.insert(2000, 101);
    assert_eq!(c.get(&2000), None);
    assert_eq!(
        events.lock().unwrap().last().unwrap(),
        &(2000, 101, RemovalCause::Evicted)
    );
    assert!(c.weighted_size() <= 100);
}

#[test]
fn retain_and_clear() {
    let c: Cache<u32, u32> = Cache::new(100);
    for i in 0..50 {
        c.insert(i, i);
    }
    c.retain(|_k, v| v % 2 == 0);
    assert_eq!(c.len(), 25);
    assert!((0..50).all(|i| c.contains_key(&i) == (i % 2 == 0)));
    c.clear();
    assert!(c.is_empty());
    c.insert(1, 1);
    assert_eq!(c.get(&1), Some(1));
}

#[test]
fn iter_yields_every_live_entry_once() {
    let clock = MockClock::new();
    let c: Cache<u32, u32> = Cache::builder()
        .capacity(10_000)
        .shards(8)
        .clock(clock.clone())
        .build();
    for i in 0..5000 {
        c.insert(i, i * 2);
    }
    for i in 0..100 {
        c.insert_with_ttl(10_000 + i, 0, Duration::from_secs(1));
    }
    clock.advance(Duration::from_secs(1));
    let mut all: Vec<(u32, u32)> = c.iter().collect();
    all.sort_unstable();
    assert_eq!(all, (0..5000).map(|i| (i, i * 2)).collect::<Vec<_>>());
}

#[test]
fn table_growth_and_tombstone_cleanup_keep_every_entry() {
    let c: Cache<u64, u64> = Cache::builder().capacity(100_000).shards(2).build();
    for i in 0..50_000 {
        c.insert(i, i);
    }
    for i in 0..50_000 {
        if i % 3 == 0 {
            c.remove(&i);
        }
    }
    for round in 0..5 {
        for i in 0..50_000u64 {
            if i % 3 == 0 {
                c.insert(i + round * 1_000_000 + 1_000_000, i);
                c.remove(&(i + round * 1_000_000 + 1_000_000));
            }
        }
    }
    for i in 0..50_000 {
        assert_eq!(c.get(&i), (i % 3 != 0).then_some(i), "key {i}");
    }
}

#[test]
fn get_or_insert_with_loads_once_and_caches() {
    let c: Cache<u32, u32> = Cache::new(10);
    let mut calls = 0;
    assert_eq!(
        c.get_or_insert_with(1, || {
            calls += 1;
            7
        }),
        7
    );
    assert_eq!(
        c.get_or_insert_with(1, || {
            calls += 1;
            8
        }),
        7
    );
    assert_eq!(calls, 1);
    let err = c.get_or_try_insert_with(2, || Err("db down"));
    assert_eq!(err.map_err(|e| *e), Err("db down"));
    assert!(!c.contains_key(&2));
    assert_eq!(c.get_or_try_insert_with(2, || Ok::<_, ()>(3)).ok(), Some(3));
}

#[test]
fn get_or_insert_with_single_flight_across_threads() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;
    let c: Cache<u32, u32> = Cache::new(100);
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (c, loads, barrier) = (c.clone(), loads.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                c.get_or_insert_with(9, || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    99
                })
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 99);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[test]
fn a_panicking_loader_releases_the_waiters() {
    use std::sync::Barrier;
    let c: Cache<u32, u32> = Cache::new(100);
    let barrier = Arc::new(Barrier::new(2));
    let leader = {
        let (c, barrier) = (c.clone(), barrier.clone());
        std::thread::spawn(move || {
            c.get_or_insert_with(1, || {
                barrier.wait();
                std::thread::sleep(Duration::from_millis(50));
                panic!("loader failed")
            })
        })
    };
    barrier.wait();
    // Either joins the failing load and then loads itself, or loads itself.
    assert_eq!(c.get_or_insert_with(1, || 5), 5);
    assert!(leader.join().is_err());
    assert_eq!(c.get(&1), Some(5));
}

#[test]
fn stats_count_hits_and_misses() {
    let c: Cache<u32, u32> = Cache::new(10);
    c.insert(1, 1);
    c.get(&1);
    c.get(&1);
    c.get(&2);
    c.peek(&2);
    let s = c.stats();
    assert_eq!((s.hits, s.misses), (2, 1));
    assert!((s.hit_ratio() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(CacheStats::default().hit_ratio(), 0.0);
}

#[test]
fn borrowed_lookups_and_debug() {
    let c: Cache<String, Arc<str>> = Cache::new(10);
    c.insert("k".into(), Arc::from("v"));
    assert_eq!(c.get("k").as_deref(), Some("v"));
    let dbg = format!("{c:?}");
    assert!(dbg.contains("len: 1"), "{dbg}");
}

#[test]
fn structure_bytes_are_reported() {
    let c: Cache<u64, u64> = Cache::new(10_000);
    for i in 0..10_000 {
        c.insert(i, i);
    }
    let per_entry = c.structure_bytes() as f64 / 10_000.0;
    assert!(per_entry > 8.0 && per_entry < 64.0, "{per_entry}");
}

#[test]
fn initial_capacity_sizes_the_structures_up_front_and_both_ways_hold_everything() {
    let presized: Cache<u64, u64> = Cache::builder().capacity(200_000).build();
    let lazy: Cache<u64, u64> = Cache::builder()
        .capacity(200_000)
        .initial_capacity(0)
        .build();
    // About 22 bytes per entry sized for (table and probationary queue),
    // against a few thousand entries per shard.
    let (p, l) = (presized.structure_bytes(), lazy.structure_bytes());
    assert!(p >= 200_000 * 20, "presized: {p} bytes");
    assert!(l < p / 2, "lazy: {l} bytes, presized: {p}");
    for c in [&presized, &lazy] {
        for i in 0..150_000 {
            c.insert(i, i);
        }
        assert_eq!(c.len(), 150_000);
        assert!((0..150_000).all(|i| c.get(&i) == Some(i)));
    }
    // With a weigher the number of entries is unknown: nothing is presized
    // for the capacity, whatever it is.
    let weighted: Cache<u64, u64> = Cache::builder()
        .capacity(u64::MAX / 2)
        .weigher(|_, _| 1)
        .build();
    assert!(weighted.structure_bytes() < 64 << 20);
    // Nor, for a small weighted capacity, for more entries than the
    // capacity: entries that weigh at least 1 cannot outnumber it.
    let small = |capacity: u64| {
        Cache::<u64, u64>::builder()
            .capacity(capacity)
            .shards(1)
            .weigher(|_, _| 1)
            .build()
            .structure_bytes()
    };
    let (tiny, roomy) = (small(32), small(1 << 20));
    assert!(
        tiny * 20 < roomy,
        "capacity 32: {tiny} bytes, 2^20: {roomy}"
    );
    // Entries that weigh nothing do outnumber it: the table grows for them.
    let weightless: Cache<u64, u64> = Cache::builder()
        .capacity(32)
        .shards(1)
        .weigher(|_, _| 0)
        .build();
    for i in 0..2_000 {
        weightless.insert(i, i);
    }
    assert_eq!(weightless.len(), 2_000);
    assert!((0..2_000).all(|i| weightless.get(&i) == Some(i)));
}

/// A loop over slightly more keys than the cache holds: LRU and CLOCK miss
/// every time (each key is evicted just before it comes back). The default
/// policy keeps most of the loop: keys back from the main clock's ghost go
/// through probation instead of evicting residents that are needed just as
/// soon (the shards' duel settles on that here).
///
/// The hash seed is fixed. With a random one, a shard now and then draws
/// fewer of the loop's keys than it holds (3 standard deviations below the
/// mean of 1,100) and hits every one of them, whatever the policy: CLOCK's
/// last pass then scores 3% a shard like that (one seed in about 30; CI once
/// saw 5.6%). That is the split of keys over shards, not eviction. The
/// adaptive policy kept 83.8-85.1% over 30 random seeds.
#[test]
fn a_loop_larger_than_the_cache_keeps_most_of_its_keys() {
    let cap = 32_000u64;
    let keys = cap + cap / 10;
    for (policy, floor) in [
        (EvictionPolicy::Adaptive, 0.6),
        (EvictionPolicy::Clock, 0.0),
    ] {
        let c: Cache<u64, u64, ahash::RandomState> = Cache::builder()
            .capacity(cap)
            .shards(32)
            .eviction_policy(policy)
            .build_with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4));
        let mut last = 0.0;
        for _ in 0..12 {
            let mut hits = 0;
            for k in 0..keys {
                if c.get(&k).is_some() {
                    hits += 1;
                } else {
                    c.insert(k, k);
                }
            }
            last = hits as f64 / keys as f64;
        }
        assert!(last >= floor, "{policy:?}: last pass hit ratio {last:.3}");
        if policy == EvictionPolicy::Clock {
            assert!(last < 0.05, "CLOCK is LRU-like on a loop: {last:.3}");
        }
    }
}

#[test]
fn remove_if_checks_the_value_under_the_lock() {
    let (events, listener) = recording::<u32, u32>();
    let c: Cache<u32, u32> = Cache::builder()
        .capacity(10)
        .eviction_listener(listener)
        .build();
    c.insert(1, 10);
    assert_eq!(c.remove_if(&1, |v| *v == 11), None);
    assert_eq!(c.get(&1), Some(10));
    assert_eq!(c.remove_if(&1, |v| *v == 10), Some(10));
    assert_eq!(c.get(&1), None);
    assert_eq!(c.remove_if(&2, |_| true), None);
    assert_eq!(causes(&events), vec![RemovalCause::Removed]);
}
