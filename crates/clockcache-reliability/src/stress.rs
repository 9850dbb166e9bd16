//! Multi-threaded stress: mixed operations with expiry, invariants checked
//! continuously, drop counts checked at the end.
//!
//! Workers run `get`, `peek`, `insert`, `insert_with_ttl`, `remove`,
//! `get_or_insert_with`, `purge_expired`, `retain` and short `iter`s on one
//! cache, picked by a xorshift generator, over more keys than the capacity
//! (so eviction runs all the time). A ticker thread moves a [`MockClock`]
//! forward by 1 ms per tick, so entries with ttls of 1 to 50 ms expire all
//! the time. Checked:
//!
//! - by every worker, after every read: the value was created for its key,
//!   and its deadline (an upper bound recorded once its insert returned)
//!   had not passed when the read began;
//! - by the listener: each departing value belongs to its key;
//! - continuously by the main thread and by the workers: `len` is at most
//!   the capacity plus one in-flight insert per worker (count mode), and
//!   `weighted_size` at most the capacity plus one heaviest entry per worker;
//! - at the end: `len` and `weighted_size` within the capacity, every live
//!   entry of its key, and once the cache is dropped and crossbeam-epoch's
//!   garbage flushed, every value created dropped exactly once and either
//!   reported to the listener or live at the end.

use crate::tracked::{Departures, DropCounter, Tracked};
use clockcache::{Cache, Clock, EvictionPolicy, MockClock};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const MS: u64 = 1_000_000;
/// Heaviest entry of a weighted run.
const MAX_WEIGHT: u64 = 16;

/// When a run stops.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// After this long (the binary).
    Time(Duration),
    /// After this many operations per worker (tests).
    OpsPerThread(u64),
}

/// One stress run.
#[derive(Clone, Copy, Debug)]
pub struct StressConfig {
    /// Worker threads.
    pub threads: usize,
    /// When to stop.
    pub limit: Limit,
    /// The eviction policy.
    pub policy: EvictionPolicy,
    /// Weigh entries 1 to 16 (else count them).
    pub weighted: bool,
    /// Entries (count mode) or total weight.
    pub capacity: u64,
    /// Keys are `0..keys`.
    pub keys: u64,
    /// Shards (rounded up to a power of two).
    pub shards: usize,
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct StressReport {
    /// Operations run, over all workers.
    pub ops: u64,
    /// Reads whose value was checked.
    pub checked_reads: u64,
    /// Values created (and dropped).
    pub values: usize,
    /// Departures the listener heard of.
    pub departures: usize,
    /// Times the main thread checked the bounds while workers ran.
    pub bound_checks: u64,
    /// Mock milliseconds the clock advanced.
    pub clock_ms: u64,
}

fn check_read(k: u64, v: &Tracked, t0: u64) {
    assert_eq!(v.key(), k, "a value of another key");
    assert!(
        v.deadline_ub() > t0,
        "value {} of key {k} expired (deadline at most {}) before the read began at {t0}",
        v.val(),
        v.deadline_ub()
    );
}

/// Runs one stress configuration; panics at the first broken invariant.
pub fn run(cfg: &StressConfig) -> StressReport {
    let counter = Arc::new(DropCounter::default());
    let departed = Arc::new(Departures::default());
    let clock = MockClock::new();
    let mut b = Cache::builder()
        .capacity(cfg.capacity)
        .shards(cfg.shards)
        .eviction_policy(cfg.policy)
        .clock(clock.clone())
        .eviction_listener({
            let departed = departed.clone();
            move |k: &u64, v: &Tracked, _cause| {
                assert_eq!(*k, v.key(), "listener: a value of another key");
                departed.record(v);
            }
        });
    if cfg.weighted {
        b = b.weigher(|_k: &u64, v: &Tracked| 1 + (v.val() % MAX_WEIGHT) as u32);
    }
    let cache: Cache<u64, Tracked> = b.build();
    let (len_slack, weight_slack) = (cfg.threads as u64, cfg.threads as u64 * MAX_WEIGHT);
    let check_bounds = |cache: &Cache<u64, Tracked>| {
        if !cfg.weighted {
            assert!(
                cache.len() as u64 <= cfg.capacity + len_slack,
                "len {} while running",
                cache.len()
            );
        }
        assert!(
            cache.weighted_size() <= cfg.capacity + weight_slack,
            "weighted_size {} while running",
            cache.weighted_size()
        );
    };
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let checked = AtomicU64::new(0);
    let clock_ms = AtomicU64::new(0);
    let mut bound_checks = 0;

    thread::scope(|s| {
        // The ticker: the only writer of the clock, so it never goes back.
        let ticker = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                clock.advance(Duration::from_millis(1));
                clock_ms.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_micros(200));
            }
        });
        let workers: Vec<_> = (0..cfg.threads as u64)
            .map(|t| {
                let (cache, clock, counter, stop, ops, checked) =
                    (&cache, &clock, &counter, &stop, &ops, &checked);
                s.spawn(move || {
                    let mut x = (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    let (mut n, mut reads) = (0u64, 0u64);
                    loop {
                        match cfg.limit {
                            Limit::OpsPerThread(max) if n >= max => break,
                            Limit::Time(_) if n % 256 == 0 && stop.load(Ordering::Relaxed) => break,
                            _ => {}
                        }
                        n += 1;
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = (x >> 8) % cfg.keys;
                        let val = x >> 32;
                        match x % 32 {
                            0..=13 => {
                                let t0 = clock.now_nanos();
                                if let Some(v) = cache.get(&key) {
                                    check_read(key, &v, t0);
                                    reads += 1;
                                }
                            }
                            14..=15 => {
                                let t0 = clock.now_nanos();
                                if let Some(v) = cache.peek(&key) {
                                    check_read(key, &v, t0);
                                    reads += 1;
                                }
                            }
                            16..=20 => cache.insert(key, Tracked::new(counter, key, val)),
                            21..=25 => {
                                let ttl = Duration::from_millis(1 + val % 50);
                                let v = Tracked::new(counter, key, val);
                                cache.insert_with_ttl(key, v.clone(), ttl);
                                v.set_deadline_ub(clock.now_nanos() + (1 + val % 50) * MS);
                            }
                            26..=27 => {
                                let t0 = clock.now_nanos();
                                if let Some(v) = cache.remove(&key) {
                                    check_read(key, &v, t0);
                                    reads += 1;
                                }
                            }
                            28..=29 => {
                                let v = cache.get_or_insert_with(key, || {
                                    Tracked::new_loaded(counter, key, val)
                                });
                                assert_eq!(v.key(), key, "get_or_insert_with: another key");
                            }
                            30 => {
                                if n % 64 == 0 {
                                    cache.purge_expired();
                                } else {
                                    let t0 = clock.now_nanos();
                                    for (k, v) in cache.iter().take(8) {
                                        check_read(k, &v, t0);
                                        reads += 1;
                                    }
                                }
                            }
                            _ => {
                                if n % 4096 == 0 {
                                    let m = 2 + val % 13;
                                    cache.retain(|k, v| {
                                        assert_eq!(*k, v.key(), "retain: another key");
                                        v.val() % m != 0
                                    });
                                }
                                check_bounds(cache);
                            }
                        }
                    }
                    ops.fetch_add(n, Ordering::Relaxed);
                    checked.fetch_add(reads, Ordering::Relaxed);
                })
            })
            .collect();
        let started = Instant::now();
        loop {
            check_bounds(&cache);
            bound_checks += 1;
            if workers.iter().all(|w| w.is_finished()) {
                break;
            }
            if let Limit::Time(d) = cfg.limit {
                if started.elapsed() >= d {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            thread::sleep(Duration::from_millis(1));
        }
        // Join explicitly: a real thread join, after the threads' TLS
        // destructors (crossbeam-epoch's handle) have run.
        for w in workers {
            w.join().expect("a worker panicked");
        }
        stop.store(true, Ordering::Relaxed);
        ticker.join().expect("the ticker panicked");
    });

    // Quiescence: exact bounds, every entry of its key.
    if !cfg.weighted {
        assert!(
            cache.len() as u64 <= cfg.capacity,
            "len {} at the end",
            cache.len()
        );
    }
    assert!(
        cache.weighted_size() <= cfg.capacity,
        "weighted_size {} at the end",
        cache.weighted_size()
    );
    let t0 = clock.now_nanos();
    for (k, v) in cache.iter() {
        check_read(k, &v, t0);
    }
    // Expired entries still counted by `len` leave now (reported), so that
    // `iter` shows every entry left.
    cache.purge_expired();
    let live: Vec<bool> = cache.iter().map(|(_, v)| v.is_loaded()).collect();
    assert_eq!(
        live.len(),
        cache.len(),
        "iter and len disagree at quiescence"
    );
    drop(cache);
    let alive = counter.settle();
    assert_eq!(alive, 0, "{alive} values never dropped");
    assert_eq!(
        counter.dropped(),
        counter.created(),
        "a value dropped twice"
    );
    departed.check(&counter, &live, 0);
    let departures = departed.total();
    StressReport {
        ops: ops.load(Ordering::Relaxed),
        checked_reads: checked.load(Ordering::Relaxed),
        values: counter.created(),
        departures,
        bound_checks,
        clock_ms: clock_ms.load(Ordering::Relaxed),
    }
}
