//! Single-thread micro-benchmarks of the loading calls, blocking and async side by side, on
//! clockcache and quick_cache: a hit and a miss (which loads and inserts) through
//! `get_or_insert_with` and `get_or_insert_async`.
//!
//! The async calls are driven by `pollster::block_on`, which adds only a poll and a no-op
//! waker, so the difference between the two forms is the async call's own cost.
//!
//! A second group measures hits on a cache with refresh-ahead beside hits on a plain one.
//!
//! `cargo bench -p clockcache-bench --bench loading` (add `-- --quick` for a fast pass).

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

const CAP: u64 = 100_000;
/// Hits cycle over this many keys, all resident.
const HOT: u64 = 1 << 14;

fn key(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % HOT
}

fn clockcache_full() -> clockcache::Cache<u64, u64> {
    let c = clockcache::Cache::new(CAP);
    for k in 0..CAP {
        c.insert(k, k);
    }
    c
}

fn quick_cache_full() -> quick_cache::sync::Cache<u64, u64> {
    let c = quick_cache::sync::Cache::new(CAP as usize);
    for k in 0..CAP {
        c.insert(k, k);
    }
    c
}

fn benches(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("loading");
    let c = clockcache_full();
    let q = quick_cache_full();
    let mut i = 0u64;
    g.bench_function("clockcache get_or_insert_with (hit)", |b| {
        b.iter(|| {
            i += 1;
            black_box(c.get_or_insert_with(key(i), || 0))
        })
    });
    g.bench_function("clockcache get_or_insert_async (hit)", |b| {
        b.iter(|| {
            i += 1;
            black_box(pollster::block_on(
                c.get_or_insert_async(key(i), async { 0 }),
            ))
        })
    });
    g.bench_function("quick_cache get_or_insert_with (hit)", |b| {
        b.iter(|| {
            i += 1;
            let r = q.get_or_insert_with(&key(i), || Ok::<u64, Infallible>(0));
            black_box(r.unwrap_or_default())
        })
    });
    g.bench_function("quick_cache get_or_insert_async (hit)", |b| {
        b.iter(|| {
            i += 1;
            let r = pollster::block_on(
                q.get_or_insert_async(&key(i), async { Ok::<u64, Infallible>(0) }),
            );
            black_box(r.unwrap_or_default())
        })
    });
    // Misses: fresh keys past every resident one, so each call loads and inserts (and the
    // full cache evicts).
    let mut fresh = 20 * CAP;
    g.bench_function("clockcache get_or_insert_with (miss)", |b| {
        b.iter(|| {
            fresh += 1;
            black_box(c.get_or_insert_with(fresh, || fresh))
        })
    });
    g.bench_function("clockcache get_or_insert_async (miss)", |b| {
        b.iter(|| {
            fresh += 1;
            let v = fresh;
            black_box(pollster::block_on(
                c.get_or_insert_async(v, async move { v }),
            ))
        })
    });
    g.bench_function("quick_cache get_or_insert_with (miss)", |b| {
        b.iter(|| {
            fresh += 1;
            let r = q.get_or_insert_with(&fresh, || Ok::<u64, Infallible>(fresh));
            black_box(r.unwrap_or_default())
        })
    });
    g.bench_function("quick_cache get_or_insert_async (miss)", |b| {
        b.iter(|| {
            fresh += 1;
            let v = fresh;
            let r = pollster::block_on(
                q.get_or_insert_async(&v, async move { Ok::<u64, Infallible>(v) }),
            );
            black_box(r.unwrap_or_default())
        })
    });
    g.finish();
}

/// Hits on a refreshing cache (refresh-ahead), beside hits on a plain one: what the write-time
/// check adds to a hit when no entry is due, and when every entry is due with its reload
/// already claimed (the executor keeps the jobs and never runs them).
fn refresh_hits(cr: &mut Criterion) {
    use clockcache::{Cache, MockClock, Refresh, RefreshJob};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let mut g = cr.benchmark_group("refresh");
    let plain = clockcache_full();
    let clock = MockClock::new();
    let held: Arc<Mutex<Vec<RefreshJob>>> = Arc::default();
    let keep = Arc::clone(&held);
    let refreshing: Cache<u64, u64> = Cache::builder()
        .capacity(CAP)
        .clock(clock.clone())
        .refresh_after(
            Duration::from_secs(60),
            Refresh::with_executor(
                |_k: &u64, v: &u64| Ok::<_, Infallible>(*v),
                move |job| keep.lock().unwrap().push(job),
            ),
        )
        .build();
    for k in 0..CAP {
        refreshing.insert(k, k);
    }
    let mut i = 0u64;
    g.bench_function("clockcache get (hit)", |b| {
        b.iter(|| {
            i += 1;
            black_box(plain.get(&key(i)))
        })
    });
    g.bench_function("clockcache get, refreshing, not due (hit)", |b| {
        b.iter(|| {
            i += 1;
            black_box(refreshing.get(&key(i)))
        })
    });
    clock.advance(Duration::from_secs(60));
    for k in 0..HOT {
        refreshing.get(&k);
    }
    // Every resident hot key (the fill evicted a few) has its reload claimed.
    let present = (0..HOT).filter(|k| refreshing.peek(k).is_some()).count();
    assert_eq!(held.lock().unwrap().len(), present);
    g.bench_function("clockcache get, refreshing, reload in flight (hit)", |b| {
        b.iter(|| {
            i += 1;
            black_box(refreshing.get(&key(i)))
        })
    });
    g.finish();
    // Withdrawn as failed refreshes, with the cache still alive.
    held.lock().unwrap().clear();
}

criterion_group!(loading, benches, refresh_hits);
criterion_main!(loading);
