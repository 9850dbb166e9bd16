//! Where the read-heavy latency tail comes from when threads outnumber cores.
//!
//! Runs the harness's read-heavy mix (90% gets, a miss inserts its key, 10%
//! inserts; Zipf keys) on one cache from many threads, times a sample of the
//! ops, and for each timed op also reads the thread's counts of context
//! switches (`getrusage(RUSAGE_THREAD)`) before and after it. A slow op
//! during which its thread blocked (a voluntary switch: it parked on a
//! lock) waited for another thread; one during which its thread only lost
//! the CPU (an involuntary switch: preempted, or yielding in a lock's
//! spin-wait) waited for the scheduler; one that kept its CPU was slow by
//! its own work (a long collection, say).
//!
//! ```sh
//! cargo run --release -p clockcache-bench --example tail_sources -- 8 3 clockcache quick_cache mutex-lru
//! ```
//! (threads, seconds per cache, caches). Prints, per cache and per kind of
//! op, the p99.9 and p99.99 and the ops slower than 100 us, split by what
//! their thread did meanwhile.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use clockcache_bench::adapters::{BenchCache, CacheKind, CacheSpec, CacheVisitor};
use clockcache_bench::runner::new_histogram;
use clockcache_bench::workload::{generate, GenParams, Mix, Workload, WRITE};
use hdrhistogram::Histogram;

/// An op slower than this is counted as part of the tail.
const SLOW_NS: u64 = 100_000;

/// One timed op in this many (the rusage calls cost about a microsecond).
const SAMPLE_EVERY: usize = 16;

/// The kinds of op: a get that hit, a get that missed (and inserted), an
/// insert.
const KINDS: [&str; 3] = ["get hit", "get miss + insert", "insert"];

/// The thread's voluntary and involuntary context switches so far.
fn switches() -> (i64, i64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid place for one `rusage`, which the call fills.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_THREAD) failed");
    // SAFETY: filled by the successful call above (and zeroed before).
    let usage = unsafe { usage.assume_init() };
    (usage.ru_nvcsw, usage.ru_nivcsw)
}

#[derive(Default)]
struct Tally {
    /// Slow ops during which the thread blocked, only lost the CPU, or
    /// neither.
    slow_blocked: u64,
    slow_preempted: u64,
    slow_kept_cpu: u64,
    timed: u64,
}

struct Kind {
    hist: Histogram<u64>,
    tally: Tally,
}

struct Run {
    threads: usize,
    duration: Duration,
    ops: Vec<Vec<u64>>,
    capacity: usize,
}

impl CacheVisitor for &Run {
    type Output = Vec<Kind>;
    fn visit<C: BenchCache>(self, _kind: CacheKind) -> Vec<Kind> {
        let cache = C::build(&CacheSpec::new(self.capacity), &[]);
        let barrier = Barrier::new(self.threads + 1);
        let stop = AtomicBool::new(false);
        let per_thread: Vec<Vec<Kind>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .ops
                .iter()
                .map(|ops| {
                    let (cache, barrier, stop) = (cache.clone(), &barrier, &stop);
                    s.spawn(move || worker(&cache, ops, barrier, stop))
                })
                .collect();
            barrier.wait();
            std::thread::sleep(self.duration);
            stop.store(true, Ordering::Relaxed);
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut total: Vec<Kind> = (0..KINDS.len())
            .map(|_| Kind {
                hist: new_histogram(),
                tally: Tally::default(),
            })
            .collect();
        for kinds in per_thread {
            for (t, k) in total.iter_mut().zip(kinds) {
                t.hist.add(&k.hist).unwrap();
                t.tally.slow_blocked += k.tally.slow_blocked;
                t.tally.slow_preempted += k.tally.slow_preempted;
                t.tally.slow_kept_cpu += k.tally.slow_kept_cpu;
                t.tally.timed += k.tally.timed;
            }
        }
        total
    }
}

fn worker<C: BenchCache>(
    cache: &C,
    ops: &[u64],
    barrier: &Barrier,
    stop: &AtomicBool,
) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = (0..KINDS.len())
        .map(|_| Kind {
            hist: new_histogram(),
            tally: Tally::default(),
        })
        .collect();
    // Warm the cache (and this thread's epoch handle) before timing.
    for &op in &ops[..ops.len() / 4] {
        apply(cache, op);
    }
    barrier.wait();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        for _ in 1..SAMPLE_EVERY {
            apply(cache, ops[i]);
            i = (i + 1) % ops.len();
        }
        let (vol, invol) = switches();
        let t = Instant::now();
        let kind = apply(cache, ops[i]);
        let ns = t.elapsed().as_nanos() as u64;
        let (vol_after, invol_after) = switches();
        i = (i + 1) % ops.len();
        let k = &mut kinds[kind];
        k.hist.saturating_record(ns.max(1));
        k.tally.timed += 1;
        if ns >= SLOW_NS {
            if vol_after != vol {
                k.tally.slow_blocked += 1;
            } else if invol_after != invol {
                k.tally.slow_preempted += 1;
            } else {
                k.tally.slow_kept_cpu += 1;
            }
        }
    }
    kinds
}

/// Runs one op; returns its kind (an index into [`KINDS`]).
fn apply<C: BenchCache>(cache: &C, op: u64) -> usize {
    if op & WRITE != 0 {
        let k = op & !WRITE;
        cache.insert(k, k);
        return 2;
    }
    match cache.get(op) {
        Some(v) => {
            black_box(v);
            0
        }
        None => {
            cache.insert(op, op);
            1
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().map_or(8, |a| a.parse().expect("threads"));
    let secs: f64 = args.next().map_or(3.0, |a| a.parse().expect("seconds"));
    let caches: Vec<String> = args.collect();
    let caches = if caches.is_empty() {
        vec![
            "clockcache".into(),
            "quick_cache".into(),
            "mutex-lru".into(),
        ]
    } else {
        caches
    };
    let workload = Workload {
        mix: Mix::ReadHeavy,
        zipf: 0.99,
    };
    let gen = GenParams {
        keys: 1_000_000,
        capacity: 100_000,
        ops_per_thread: 1 << 20,
        seed: 42,
    };
    let run = Run {
        threads,
        duration: Duration::from_secs_f64(secs),
        ops: generate(&workload, &gen, threads),
        capacity: gen.capacity,
    };
    println!(
        "read-heavy 90/10 z0.99, {threads} threads on {} CPUs, {secs} s per cache; \
         one op in {SAMPLE_EVERY} timed; slow = at least {} us",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        SLOW_NS / 1_000
    );
    println!(
        "{:<12} {:<18} {:>9} {:>10} {:>10} {:>13} {:>13} {:>13}",
        "cache", "op", "timed", "p99.9", "p99.99", "slow blocked", "slow lost CPU", "slow kept CPU"
    );
    for name in caches {
        let kind = CacheKind::from_name(&name).unwrap_or_else(|| panic!("unknown cache {name}"));
        let kinds = kind.visit(&run);
        for (label, k) in KINDS.iter().zip(&kinds) {
            println!(
                "{:<12} {:<18} {:>9} {:>8.1}us {:>8.1}us {:>13} {:>13} {:>13}",
                name,
                label,
                k.tally.timed,
                k.hist.value_at_quantile(0.999) as f64 / 1e3,
                k.hist.value_at_quantile(0.9999) as f64 / 1e3,
                k.tally.slow_blocked,
                k.tally.slow_preempted,
                k.tally.slow_kept_cpu
            );
        }
    }
}
