//! `cache_ops_threads`: the operations of [`cache_ops`](crate::cache_ops)
//! dealt out to 2 to 4 threads running at once on one cache.
//!
//! No model can predict an interleaving, so this target checks what holds
//! under any interleaving:
//!
//! - every value a read, `remove`, `get_or_insert_with`, `retain` or `iter`
//!   shows was created for that key (values carry their key);
//! - no read returns a value whose deadline had passed before the read
//!   began (each value records an upper bound of its deadline once its
//!   insert returns; the mock clock only moves forward, under a lock);
//! - the listener hears about each departing entry with its own key;
//! - once the threads are done, `len` and `weighted_size` are within the
//!   capacity, and `iter` agrees with `len` on the live entries;
//! - once the cache is dropped and crossbeam-epoch's garbage flushed, every
//!   value created was dropped exactly once, and every value created either
//!   departed through the listener or was live at the end, except values
//!   `replace_if` rejected and loaded values whose load a write of the key
//!   superseded (never stored, so never reported).

use crate::cache_ops::{per_entry_ttl, Config, ExpirySetting, Op, KEYS};
use crate::tracked::{Departures, DropCounter, Tracked};
use arbitrary::{Arbitrary, Unstructured};
use clockcache::{Cache, Clock, MockClock};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::Duration;

/// Most operations run per input, over all threads.
pub const MAX_OPS: usize = 1_000;
const MS: u64 = 1_000_000;

/// A fuzz input.
#[derive(Arbitrary, Debug)]
pub struct Input {
    /// How the cache is built.
    pub config: Config,
    /// `2 + threads % 3` threads.
    pub threads: u8,
    /// Dealt out round-robin: operation `i` runs on thread `i % threads`.
    pub ops: Vec<Op>,
}

/// The fuzz target: decodes `data` and runs it (see [`check`]).
pub fn run(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        check(&input);
    }
}

/// The pool of `threads` threads (2 to 4), built once per process.
fn pool(threads: usize) -> &'static rayon::ThreadPool {
    static POOLS: [OnceLock<rayon::ThreadPool>; 3] = [const { OnceLock::new() }; 3];
    POOLS[threads - 2].get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("cache_ops_threads {i}/{threads}"))
            .build()
            .expect("a thread pool")
    })
}

/// The upper bound of the deadline of an entry that an insert with `ttl`
/// (`None`: the cache-wide setting) made, given a clock reading taken after
/// that insert returned. `u64::MAX` when unknown or never.
fn deadline_ub(cfg: &Config, v: u16, ttl: Option<Duration>, after: u64) -> u64 {
    let life = match (ttl, cfg.expiry) {
        (Some(t), _) => Some(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)),
        (None, ExpirySetting::None) => None,
        (None, ExpirySetting::Ttl(t)) => Some(u64::from(t) * MS),
        // Reads push a time-to-idle deadline forward: no bound.
        (None, ExpirySetting::Tti(_)) => None,
        (None, ExpirySetting::PerEntry(m)) => per_entry_ttl(m, v),
    };
    life.map_or(u64::MAX, |n| after.saturating_add(n))
}

/// A value a read returned for `k` at or after clock reading `t0`.
fn check_read(k: u8, v: &Tracked, t0: u64, what: &str) {
    assert_eq!(v.key(), u64::from(k), "{what}: a value of another key");
    assert!(
        v.deadline_ub() > t0,
        "{what}: value {} of key {k} expired (deadline at most {}) before the read began at {t0}",
        v.val(),
        v.deadline_ub()
    );
}

/// Runs `input` and panics at the first broken invariant.
pub fn check(input: &Input) {
    let cfg = input.config;
    let threads = 2 + usize::from(input.threads % 3);
    let counter = Arc::new(DropCounter::default());
    let departed = Arc::new(Departures::default());
    let clock = MockClock::new();
    // MockClock::advance is a load and a store: serialize the advances so
    // the clock never moves backwards.
    let advancing = Mutex::new(());
    let mut b = Cache::builder()
        .capacity(cfg.capacity())
        .shards(cfg.shards())
        .eviction_policy(cfg.policy.into())
        .clock(clock.clone())
        .eviction_listener({
            let departed = departed.clone();
            move |k: &u8, v: &Tracked, _cause| {
                assert_eq!(u64::from(*k), v.key(), "listener: a value of another key");
                departed.record(v);
            }
        });
    if let Some(m) = cfg.weigher {
        let modulus = u32::from(m % 41) + 1;
        b = b.weigher(move |_k: &u8, v: &Tracked| (v.val() as u32) % modulus);
    }
    match cfg.expiry {
        ExpirySetting::None => {}
        ExpirySetting::Ttl(t) => b = b.time_to_live(Duration::from_millis(u64::from(t))),
        ExpirySetting::Tti(t) => b = b.time_to_idle(Duration::from_millis(u64::from(t))),
        ExpirySetting::PerEntry(m) => {
            b = b.expiry(move |_k: &u8, v: &Tracked| {
                per_entry_ttl(m, v.val() as u16).map(Duration::from_nanos)
            })
        }
    }
    let cache: Cache<u8, Tracked> = b.build();
    let ops: Vec<Op> = input.ops.iter().take(MAX_OPS).copied().collect();
    let rejected = AtomicUsize::new(0);

    // The threads of a pool kept from one input to the next: spawning
    // threads for every input cost most of a run. Every thread of the pool
    // runs its share once; the barrier starts them together.
    let start = Barrier::new(threads);
    pool(threads).broadcast(|ctx| {
        let t = ctx.index();
        let (cache, clock, counter, advancing, cfg, rejected) =
            (&cache, &clock, &counter, &advancing, &cfg, &rejected);
        let mine: Vec<Op> = ops.iter().skip(t).step_by(threads).copied().collect();
        start.wait();
        let new = |k: u8, v: u16| Tracked::new(counter, u64::from(k), u64::from(v));
        let loaded = |k: u8, v: u16| Tracked::new_loaded(counter, u64::from(k), u64::from(v));
        for op in mine {
            match op {
                Op::Insert(k, v) => {
                    let k = k % KEYS;
                    let t = new(k, v);
                    cache.insert(k, t.clone());
                    t.set_deadline_ub(deadline_ub(cfg, v, None, clock.now_nanos()));
                }
                Op::InsertTtl(k, v, ms) => {
                    let k = k % KEYS;
                    let ttl = if ms == 255 {
                        Duration::MAX
                    } else {
                        Duration::from_millis(u64::from(ms))
                    };
                    let t = new(k, v);
                    cache.insert_with_ttl(k, t.clone(), ttl);
                    t.set_deadline_ub(deadline_ub(cfg, v, Some(ttl), clock.now_nanos()));
                }
                Op::Get(k) => {
                    let k = k % KEYS;
                    let t0 = clock.now_nanos();
                    if let Some(v) = cache.get(&k) {
                        check_read(k, &v, t0, "get");
                    }
                }
                Op::Peek(k) => {
                    let k = k % KEYS;
                    let t0 = clock.now_nanos();
                    if let Some(v) = cache.peek(&k) {
                        check_read(k, &v, t0, "peek");
                    }
                }
                Op::ContainsKey(k) => {
                    cache.contains_key(&(k % KEYS));
                }
                Op::Remove(k) => {
                    let k = k % KEYS;
                    let t0 = clock.now_nanos();
                    if let Some(v) = cache.remove(&k) {
                        check_read(k, &v, t0, "remove");
                    }
                }
                Op::GetOrInsert(k, v) => {
                    let k = k % KEYS;
                    // The loaded value's deadline stays unbounded
                    // (`u64::MAX`): reads of it check only its key.
                    let got = cache.get_or_insert_with(k, || loaded(k, v));
                    assert_eq!(got.key(), u64::from(k), "get_or_insert_with: another key");
                }
                Op::GetOrTryInsert(k, v, fail) => {
                    let k = k % KEYS;
                    let got = cache.get_or_try_insert_with(k, || {
                        if fail {
                            Err(())
                        } else {
                            Ok(loaded(k, v))
                        }
                    });
                    if let Ok(got) = got {
                        assert_eq!(
                            got.key(),
                            u64::from(k),
                            "get_or_try_insert_with: another key"
                        );
                    }
                }
                Op::ReplaceIf(k, v, d) => {
                    let k = k % KEYS;
                    let modulus = u64::from(d) + 2;
                    let t = new(k, v);
                    let t0 = clock.now_nanos();
                    let stored = cache.replace_if(k, t.clone(), |old| {
                        check_read(k, old, t0, "replace_if");
                        old.val() % modulus == 0
                    });
                    if stored {
                        t.set_deadline_ub(deadline_ub(cfg, v, None, clock.now_nanos()));
                    } else {
                        // Never stored: dropped, and no departure.
                        rejected.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Op::Retain(d) => {
                    let modulus = u64::from(d) + 2;
                    cache.retain(|k, v| {
                        assert_eq!(u64::from(*k), v.key(), "retain: a value of another key");
                        v.val() % modulus != 0
                    });
                }
                Op::Clear => cache.clear(),
                Op::PurgeExpired => {
                    cache.purge_expired();
                }
                Op::Advance(ms) => {
                    let _serial = advancing.lock().unwrap();
                    clock.advance(Duration::from_millis(u64::from(ms)));
                }
                Op::Iter => {
                    let t0 = clock.now_nanos();
                    for (k, v) in cache.iter() {
                        check_read(k, &v, t0, "iter");
                    }
                }
            }
        }
        // What this thread deferred goes to the global queue, where the
        // settling below can collect it (the thread lives on, idle).
        crossbeam_epoch::pin().flush();
    });

    // Quiescence: the bounds hold exactly.
    let capacity = cfg.capacity();
    if cfg.weigher.is_none() {
        assert!(
            cache.len() as u64 <= capacity,
            "len {} > capacity {capacity} once the threads are done",
            cache.len()
        );
    }
    assert!(
        cache.weighted_size() <= capacity,
        "weighted_size {} > capacity {capacity} once the threads are done",
        cache.weighted_size()
    );
    let t0 = clock.now_nanos();
    let mut seen = 0;
    for (k, v) in cache.iter() {
        check_read(k, &v, t0, "iter at quiescence");
        seen += 1;
    }
    let live = cache.len();
    assert!(seen <= live, "iter saw {seen} entries, len is {live}");
    cache.purge_expired();
    let live: Vec<bool> = cache.iter().map(|(_, v)| v.is_loaded()).collect();
    assert_eq!(
        live.len(),
        cache.len(),
        "iter and len disagree after a purge"
    );

    drop(cache);
    let alive = counter.settle();
    assert_eq!(alive, 0, "{alive} values never dropped");
    assert_eq!(
        counter.dropped(),
        counter.created(),
        "a value dropped twice"
    );
    departed.check(&counter, &live, rejected.load(Ordering::SeqCst));
}
