//! Single-thread micro-benchmarks of the basic operations, clockcache and the
//! mutex-LRU side by side: get hit, get miss, insert into a full cache (evicts),
//! remove, get_or_insert_with.
//!
//! `cargo bench -p clockcache-bench --bench ops` (add `-- --quick` for a fast pass).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

use clockcache_bench::adapters::{BenchCache, CacheSpec, ClockCacheAdapter, MutexLru};

const CAP: u64 = 100_000;

/// Keys spread over 0..n in a scrambled order (an odd multiplier mod 2^k walk).
fn key(i: u64, n: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n
}

fn full<C: BenchCache>() -> C {
    let c = C::build(&CacheSpec::new(CAP as usize), &[]);
    for k in 0..CAP {
        c.insert(k, k);
    }
    c.sync();
    c
}

fn bench_cache<C: BenchCache>(cr: &mut Criterion, name: &str) {
    let mut g = cr.benchmark_group(name);
    let c: C = full();
    // Keys that were inserted last: present in every policy.
    let hot = CAP / 2;
    let mut i = 0u64;
    g.bench_function("get hit", |b| {
        b.iter(|| {
            i += 1;
            black_box(c.get(CAP - 1 - key(i, hot)))
        })
    });
    g.bench_function("get miss", |b| {
        b.iter(|| {
            i += 1;
            black_box(c.get(CAP + key(i, CAP)))
        })
    });
    let mut next = 10 * CAP;
    g.bench_function("insert (full, evicts)", |b| {
        b.iter(|| {
            next += 1;
            c.insert(black_box(next), next)
        })
    });
    let r: C = full();
    let mut k = 0u64;
    g.bench_function("remove", |b| {
        b.iter_batched(
            || {
                // Re-insert the key the routine removes, so the cache stays full.
                k = (k + 1) % CAP;
                r.insert(k, k);
                k
            },
            |k| black_box(r.remove(k)),
            BatchSize::SmallInput,
        )
    });
    let h: C = full();
    g.bench_function("get_or_insert_with (hit)", |b| {
        b.iter(|| {
            i += 1;
            black_box(h.get_or_insert_with(CAP - 1 - key(i, hot), || 0))
        })
    });
    let mut fresh = 20 * CAP;
    g.bench_function("get_or_insert_with (miss)", |b| {
        b.iter(|| {
            fresh += 1;
            black_box(h.get_or_insert_with(fresh, || fresh))
        })
    });
    g.finish();
}

fn benches(cr: &mut Criterion) {
    bench_cache::<ClockCacheAdapter>(cr, "clockcache");
    bench_cache::<MutexLru>(cr, "mutex-lru");
}

criterion_group!(ops, benches);
criterion_main!(ops);
