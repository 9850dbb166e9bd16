//! The reliability suite's long-running checks.
//!
//! ```text
//! clockcache-stress [--secs N] [--threads A..B | --threads N] [--memory-rounds N] [--skip-stress] [--skip-memory]
//! ```
//!
//! Stress: the time is split evenly over phases, one per thread count (the
//! powers of two from A to B, and B) and per mode (S3-FIFO counting
//! entries, CLOCK weighing them); each phase builds a new cache and checks
//! invariants continuously and drop counts at the end (see
//! `clockcache_reliability::stress`). Memory: a churn at constant live size
//! whose resident memory must plateau (see `clockcache_reliability::memory`).
//! Exits non-zero on any failure.

use clockcache::EvictionPolicy;
use clockcache_reliability::{memory, stress};
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Args {
    secs: u64,
    threads: Vec<usize>,
    memory_rounds: usize,
    stress: bool,
    memory: bool,
}

fn thread_counts(spec: &str) -> Result<Vec<usize>, String> {
    let parse = |s: &str| {
        s.parse::<usize>()
            .map_err(|e| format!("--threads {spec}: {e}"))
    };
    let (lo, hi) = match spec.split_once("..") {
        Some((a, b)) => (parse(a)?, parse(b.trim_start_matches('='))?),
        None => (parse(spec)?, parse(spec)?),
    };
    if lo == 0 || lo > hi {
        return Err(format!("--threads {spec}: want 1 <= A <= B"));
    }
    let mut v: Vec<usize> = std::iter::successors(Some(lo), |&n| Some(n * 2))
        .take_while(|&n| n < hi)
        .collect();
    v.push(hi);
    Ok(v)
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        secs: 60,
        threads: thread_counts("2..16")?,
        memory_rounds: 150,
        stress: true,
        memory: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--secs" => a.secs = value()?.parse().map_err(|e| format!("--secs: {e}"))?,
            "--threads" => a.threads = thread_counts(&value()?)?,
            "--memory-rounds" => {
                a.memory_rounds = value()?
                    .parse()
                    .map_err(|e| format!("--memory-rounds: {e}"))?
            }
            "--skip-stress" => a.stress = false,
            "--skip-memory" => a.memory = false,
            "-h" | "--help" => {
                return Err("usage: clockcache-stress [--secs N] [--threads A..B] \
                            [--memory-rounds N] [--skip-stress] [--skip-memory]"
                    .into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if args.stress {
        let modes = [
            (EvictionPolicy::Adaptive, false),
            (EvictionPolicy::S3Fifo, false),
            (EvictionPolicy::Clock, true),
        ];
        let phases = args.threads.len() * modes.len();
        let per_phase = Duration::from_secs(args.secs).div_f64(phases as f64);
        let mut total = stress::StressReport::default();
        let started = Instant::now();
        for &threads in &args.threads {
            for (policy, weighted) in modes {
                let cfg = stress::StressConfig {
                    threads,
                    limit: stress::Limit::Time(per_phase),
                    policy,
                    weighted,
                    capacity: if weighted { 4096 * 8 } else { 4096 },
                    keys: 16_384,
                    shards: 16,
                };
                let t = Instant::now();
                let r = stress::run(&cfg);
                println!(
                    "stress threads={threads} policy={policy:?} weighted={weighted}: {} ops in {:.1} s, \
                     {} reads checked, {} values created and dropped, {} departures, \
                     {} bound checks, clock {} ms",
                    r.ops,
                    t.elapsed().as_secs_f64(),
                    r.checked_reads,
                    r.values,
                    r.departures,
                    r.bound_checks,
                    r.clock_ms
                );
                total.ops += r.ops;
                total.checked_reads += r.checked_reads;
                total.values += r.values;
            }
        }
        println!(
            "stress ok: {} phases, {} ops, {} reads checked, {} values, {:.1} s",
            phases,
            total.ops,
            total.checked_reads,
            total.values,
            started.elapsed().as_secs_f64()
        );
    }
    if args.memory {
        let started = Instant::now();
        let report = memory::run(&memory::MemoryConfig {
            threads: 2,
            rounds: args.memory_rounds,
            ops_per_round: 100_000,
            live: 20_000,
            policy: EvictionPolicy::S3Fifo,
        });
        let mib: Vec<String> = report
            .rss
            .iter()
            .map(|b| format!("{:.1}", *b as f64 / 1048576.0))
            .collect();
        println!("memory rss per round (MiB): {}", mib.join(" "));
        match memory::plateau(&report) {
            Ok(text) => println!(
                "memory ok in {:.1} s: {text}",
                started.elapsed().as_secs_f64()
            ),
            Err(text) => {
                eprintln!("memory FAILED: {text}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
