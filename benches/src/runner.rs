//! Runs one workload on one cache with N threads for a fixed time and measures it.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::adapters::{BenchCache, CacheKind, CacheSpec, CacheVisitor};
use crate::workload::WRITE;

/// Largest latency the histograms record, in nanoseconds (larger values saturate).
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// Settings of one timed run.
#[derive(Clone, Copy, Debug)]
pub struct RunParams {
    /// How long the timed phase lasts.
    pub duration: Duration,
    /// Time one op in this many on average (1 = every op); the gaps are random.
    pub sample_every: u32,
    /// Whether a get that misses inserts the key.
    pub insert_on_miss: bool,
    /// Ops each thread runs untimed before timing starts (capped at its sequence).
    pub warmup_ops: usize,
}

/// What one timed run measured.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// Ops completed by all threads in the timed phase.
    pub ops: u64,
    /// From the start of the timed phase until the last thread stopped.
    pub elapsed: Duration,
    /// Gets issued in the timed phase.
    pub gets: u64,
    /// Gets that found their key.
    pub hits: u64,
    /// Latencies of the sampled ops, in nanoseconds (timer overhead included).
    pub latency: Histogram<u64>,
}

impl RunResult {
    /// Throughput in millions of ops per second.
    pub fn mops(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Applies one op. Returns whether it was a get, and whether that get hit.
#[inline(always)]
fn apply<C: BenchCache>(cache: &C, op: u64, insert_on_miss: bool) -> (bool, bool) {
    if op & WRITE != 0 {
        let k = op & !WRITE;
        cache.insert(k, k);
        (false, false)
    } else {
        match cache.get(op) {
            Some(v) => {
                black_box(v);
                (true, true)
            }
            None => {
                if insert_on_miss {
                    cache.insert(op, op);
                }
                (true, false)
            }
        }
    }
}

struct ThreadResult {
    ops: u64,
    gets: u64,
    hits: u64,
    finished: Instant,
    latency: Histogram<u64>,
}

fn worker<C: BenchCache>(
    cache: C,
    ops: &[u64],
    p: RunParams,
    barrier: &Barrier,
    stop: &AtomicBool,
) -> ThreadResult {
    let n = ops.len();
    let warm = p.warmup_ops.min(n);
    for &op in &ops[..warm] {
        apply(&cache, op, p.insert_on_miss);
    }
    let mut hist = new_histogram();
    // Gaps between timed ops are drawn uniformly from 1..=2N-1 (mean N): a fixed
    // stride would alias with periodic work inside a cache (an epoch bag flushed every
    // 64 retirements, a maintenance pass every N writes) and bias the percentiles.
    let every = u64::from(p.sample_every.max(1));
    let mut rng = (0x9E37_79B9_7F4A_7C15u64 ^ (ops.as_ptr() as u64)) | 1;
    let (mut done, mut gets, mut hits) = (0u64, 0u64, 0u64);
    let mut i = if warm == n { 0 } else { warm };
    barrier.wait();
    loop {
        let chunk = if every == 1 {
            1
        } else {
            1 + (xorshift(&mut rng) % (2 * every - 1)) as usize
        };
        // One timed op, then chunk - 1 untimed ones.
        let t = Instant::now();
        let (g, h) = apply(&cache, ops[i], p.insert_on_miss);
        let ns = t.elapsed().as_nanos() as u64;
        hist.saturating_record(ns.max(1));
        gets += g as u64;
        hits += h as u64;
        i += 1;
        if i == n {
            i = 0;
        }
        for _ in 1..chunk {
            let (g, h) = apply(&cache, ops[i], p.insert_on_miss);
            gets += g as u64;
            hits += h as u64;
            i += 1;
            if i == n {
                i = 0;
            }
        }
        done += chunk as u64;
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    ThreadResult {
        ops: done,
        gets,
        hits,
        finished: Instant::now(),
        latency: hist,
    }
}

/// xorshift64: a cheap per-thread generator for the sampling gaps.
#[inline]
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Builds a fresh `C`, prefills it, and runs `ops[t]` on thread `t` for
/// `p.duration` after an untimed warm-up.
pub fn run_once<C: BenchCache>(
    spec: &CacheSpec,
    prefill: &[u64],
    read_only: bool,
    ops: &[Vec<u64>],
    p: RunParams,
) -> RunResult {
    let cache = C::build(spec, prefill);
    if !read_only {
        for &k in prefill {
            cache.insert(k, k);
        }
    }
    cache.sync();
    let threads = ops.len();
    let barrier = Barrier::new(threads + 1);
    let stop = AtomicBool::new(false);
    let (start, results) = std::thread::scope(|s| {
        let handles: Vec<_> = ops
            .iter()
            .map(|seq| {
                let c = cache.clone();
                let (b, st) = (&barrier, &stop);
                s.spawn(move || worker(c, seq, p, b, st))
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(p.duration);
        stop.store(true, Ordering::Relaxed);
        let results: Vec<ThreadResult> = handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect();
        (start, results)
    });
    let mut latency = new_histogram();
    let (mut total, mut gets, mut hits) = (0, 0, 0);
    let mut end = start;
    for r in &results {
        total += r.ops;
        gets += r.gets;
        hits += r.hits;
        end = end.max(r.finished);
        latency.add(&r.latency).expect("same histogram bounds");
    }
    drop(cache);
    RunResult {
        ops: total,
        elapsed: end - start,
        gets,
        hits,
        latency,
    }
}

/// [`run_once`] for a cache chosen at run time.
pub struct RunOnce<'a> {
    /// How to build the cache.
    pub spec: CacheSpec,
    /// Keys inserted (or, for the read-only map, built from) before timing.
    pub prefill: &'a [u64],
    /// One op sequence per thread.
    pub ops: &'a [Vec<u64>],
    /// Run settings.
    pub params: RunParams,
}

impl CacheVisitor for RunOnce<'_> {
    type Output = RunResult;
    fn visit<C: BenchCache>(self, kind: CacheKind) -> RunResult {
        run_once::<C>(
            &self.spec,
            self.prefill,
            kind.read_only(),
            self.ops,
            self.params,
        )
    }
}

/// Replays one op sequence on one thread, untimed per op: for profilers
/// (`perf record`, `valgrind --tool=cachegrind`), which need the cache's
/// own work without the harness's threads, barriers and timers.
pub struct Solo<'a> {
    /// How to build the cache.
    pub spec: CacheSpec,
    /// Keys inserted (or, for the read-only map, built from) first.
    pub prefill: &'a [u64],
    /// The ops, applied in order `passes` times.
    pub ops: &'a [u64],
    /// Whether a get that misses inserts the key.
    pub insert_on_miss: bool,
    /// How many times the sequence is applied.
    pub passes: usize,
}

/// What a [`Solo`] run did: gets, hits, and the wall time of all passes.
#[derive(Clone, Copy, Debug)]
pub struct SoloResult {
    /// Ops applied.
    pub ops: u64,
    /// Gets issued.
    pub gets: u64,
    /// Gets that found their key.
    pub hits: u64,
    /// Wall time of the passes (the cache's construction excluded).
    pub elapsed: Duration,
}

impl CacheVisitor for Solo<'_> {
    type Output = SoloResult;
    fn visit<C: BenchCache>(self, _kind: CacheKind) -> SoloResult {
        let cache = C::build(&self.spec, self.prefill);
        let (mut gets, mut hits) = (0u64, 0u64);
        let start = Instant::now();
        for _ in 0..self.passes {
            for &op in self.ops {
                let (g, h) = apply(&cache, op, self.insert_on_miss);
                gets += g as u64;
                hits += h as u64;
            }
        }
        SoloResult {
            ops: (self.ops.len() * self.passes) as u64,
            gets,
            hits,
            elapsed: start.elapsed(),
        }
    }
}

/// Cost of reading the clock around an op (`Instant::now` then `elapsed`), in
/// nanoseconds: the floor under every latency figure.
pub fn timer_overhead() -> Histogram<u64> {
    let mut h = new_histogram();
    for _ in 0..200_000 {
        let t = Instant::now();
        let ns = t.elapsed().as_nanos() as u64;
        h.saturating_record(ns.max(1));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{generate, GenParams, Mix, Workload};

    #[test]
    fn a_run_counts_ops_gets_and_hits() {
        let w = Workload {
            mix: Mix::GetOnly,
            zipf: 0.99,
        };
        let gp = GenParams {
            keys: 1000,
            capacity: 1000,
            ops_per_thread: 5000,
            seed: 1,
        };
        let ops = generate(&w, &gp, 2);
        let prefill = w.prefill(gp.capacity);
        let params = RunParams {
            duration: Duration::from_millis(20),
            sample_every: 4,
            insert_on_miss: false,
            warmup_ops: 100,
        };
        for kind in [CacheKind::MutexLru, CacheKind::HashMap] {
            let r = kind.visit(RunOnce {
                spec: CacheSpec::new(gp.capacity),
                prefill: &prefill,
                ops: &ops,
                params,
            });
            assert!(r.ops > 0);
            // Get-only on a cache holding every key: all gets, all hits.
            assert_eq!(r.gets, r.ops);
            assert_eq!(r.hits, r.gets, "{}", kind.name());
            // One op in 4 on average is timed.
            let timed = r.latency.len() as f64 / r.ops as f64;
            assert!((0.2..0.3).contains(&timed), "{timed}");
            assert!(r.elapsed >= Duration::from_millis(20));
        }
    }

    #[test]
    fn a_loop_larger_than_an_lru_never_hits() {
        let w = Workload {
            mix: Mix::Loop,
            zipf: 0.0,
        };
        let gp = GenParams {
            keys: 1000,
            capacity: 500,
            ops_per_thread: 5000,
            seed: 1,
        };
        let ops = generate(&w, &gp, 1);
        let params = RunParams {
            duration: Duration::from_millis(10),
            sample_every: 1,
            insert_on_miss: true,
            warmup_ops: 1000,
        };
        let r = CacheKind::MutexLru.visit(RunOnce {
            spec: CacheSpec::new(gp.capacity),
            prefill: &[],
            ops: &ops,
            params,
        });
        assert!(r.gets > 0);
        assert_eq!(r.hits, 0);
    }
}
