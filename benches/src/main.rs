//! `clockcache-bench`: the harness binary. `--quick` for the reduced matrix (under two
//! minutes on two cores), `--smoke` for CI (seconds, asserts nothing about speed), no
//! flag for the full matrix. See docs/benchmarks.md.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use clockcache_bench::adapters::{CacheKind, CacheSpec};
use clockcache_bench::child::{self, ExpiryParams, ExpiryResult, MemResult};
use clockcache_bench::opcost::{Op, OpCost};
use clockcache_bench::report::{Cell, Machine, Report, TraceCell};
use clockcache_bench::runner::{timer_overhead, RunOnce, RunParams, Solo};
use clockcache_bench::sessions::{self, SessionsParams};
use clockcache_bench::trace::{self, Replay, Trace};
use clockcache_bench::workload::{self, GenParams, Mix, Workload};

/// Benchmarks clockcache against a mutex-LRU, moka and quick_cache, side by side.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    child: Option<ChildCmd>,
    /// Reduced matrix: under two minutes on two cores.
    #[arg(long)]
    quick: bool,
    /// Tiny matrix for CI: seconds; checks that everything runs, asserts no timing.
    #[arg(long, conflicts_with = "quick")]
    smoke: bool,
    /// Thread counts, e.g. 1,2,4,8.
    #[arg(long, value_delimiter = ',')]
    threads: Option<Vec<usize>>,
    /// Cache capacity in entries for the synthetic workloads.
    #[arg(long)]
    capacity: Option<usize>,
    /// Distinct Zipf keys.
    #[arg(long)]
    keys: Option<u64>,
    /// Zipf exponents.
    #[arg(long, value_delimiter = ',')]
    zipf: Option<Vec<f64>>,
    /// Caches to run: clockcache, quick_cache, moka, mutex-lru, sharded-lru, hashmap.
    #[arg(long, value_delimiter = ',')]
    caches: Option<Vec<String>>,
    /// Mixes to run: read-heavy, write-heavy, get-only, insert-only, scan, loop.
    #[arg(long, value_delimiter = ',')]
    workloads: Option<Vec<String>>,
    /// Timed phase of one run, milliseconds.
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Interleaved repetitions per cell (the median is reported).
    #[arg(long)]
    reps: Option<usize>,
    /// Pre-generated ops per thread (replayed cyclically).
    #[arg(long)]
    ops_per_thread: Option<usize>,
    /// Time one op in N (on average; random gaps) for the latency histograms.
    #[arg(long, default_value_t = 64)]
    sample_every: u32,
    /// Directory of ARC traces (*.lis.zst); default ../shared/traces of the workspace.
    #[arg(long)]
    traces: Option<PathBuf>,
    /// Skip trace replay.
    #[arg(long)]
    no_traces: bool,
    /// Cache sizes for trace replay.
    #[arg(long, value_delimiter = ',')]
    trace_sizes: Option<Vec<usize>>,
    /// Replay only the first N lines of each trace.
    #[arg(long)]
    trace_lines: Option<usize>,
    /// Entries for the bytes-per-entry measurement.
    #[arg(long)]
    mem_entries: Option<u64>,
    /// Skip the bytes-per-entry measurement.
    #[arg(long)]
    no_mem: bool,
    /// Seconds of expiry churn per cache.
    #[arg(long)]
    expiry_secs: Option<f64>,
    /// Skip the expiry workload.
    #[arg(long)]
    no_expiry: bool,
    /// Report directory (default target/bench-report of the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of the key generators.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Subcommand, Debug)]
enum ChildCmd {
    /// Fills one cache and prints its memory use as JSON (run by the harness).
    #[command(hide = true)]
    MemChild {
        /// Cache name.
        cache: String,
        /// Entries to insert.
        entries: u64,
    },
    /// Re-renders the reports (text, Markdown, HTML, SVG) from a results.json.
    Render {
        /// A results.json written by an earlier run.
        json: PathBuf,
        /// Report directory (default: the directory of the JSON file).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Fills one cache, then repeats one kind of op, for an instruction
    /// counter (`scripts/opcost` runs it under cachegrind and prints the cost
    /// per op).
    Opcost {
        /// Cache name.
        cache: String,
        /// The op: hit, miss, insert-evict, update, remove.
        op: String,
        /// How many times it is applied.
        #[arg(long, default_value_t = 50_000)]
        ops: usize,
        /// The most ops of any run compared with this one (sizes the key
        /// arrays, so that runs differ only by their ops).
        #[arg(long, default_value_t = 100_000)]
        max_ops: usize,
        /// Cache capacity in entries (filled first).
        #[arg(long, default_value_t = 100_000)]
        capacity: usize,
    },
    /// Replays one thread's ops on one cache, single-threaded, for a
    /// profiler: `valgrind --tool=cachegrind clockcache-bench profile clockcache`.
    Profile {
        /// Cache name.
        cache: String,
        /// Mix: read-heavy, write-heavy, get-only, insert-only, scan, loop.
        #[arg(long, default_value = "read-heavy")]
        workload: String,
        /// Zipf exponent.
        #[arg(long, default_value_t = 0.99)]
        zipf: f64,
        /// Ops in the sequence.
        #[arg(long, default_value_t = 1_000_000)]
        ops: usize,
        /// Times the sequence is applied.
        #[arg(long, default_value_t = 2)]
        passes: usize,
        /// Cache capacity in entries.
        #[arg(long, default_value_t = 100_000)]
        capacity: usize,
        /// Distinct Zipf keys.
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        /// Seed of the key generator.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Measures the tiered session cache across two instances sharing one redis-server
    /// (started on a loopback port): how long an instance serves a session after another
    /// deletes or overwrites it, and the latency of a near hit. Writes sessions.md and
    /// sessions.json to the report directory.
    Sessions {
        /// Trials of each kind of write (delete, overwrite).
        #[arg(long, default_value_t = 500)]
        trials: usize,
        /// Near hits timed one by one.
        #[arg(long, default_value_t = 200_000)]
        hits: usize,
        /// Report directory (default target/bench-report of the workspace).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Runs the expiry churn on one cache and prints JSON (run by the harness).
    #[command(hide = true)]
    ExpiryChild {
        /// Cache name.
        cache: String,
        /// `ExpiryParams` as JSON.
        params: String,
    },
}

/// The resolved plan of a run.
struct Plan {
    mode: &'static str,
    caches: Vec<CacheKind>,
    matrix: Vec<(Workload, Vec<usize>)>,
    gen: GenParams,
    duration: Duration,
    reps: usize,
    sample_every: u32,
    traces: Vec<PathBuf>,
    traces_note: Option<String>,
    trace_sizes: Vec<usize>,
    trace_lines: Option<usize>,
    mem_entries: Option<u64>,
    expiry: Option<ExpiryParams>,
    out: PathBuf,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Every mix, in report order.
const ALL_MIXES: [Mix; 6] = [
    Mix::ReadHeavy,
    Mix::WriteHeavy,
    Mix::GetOnly,
    Mix::InsertOnly,
    Mix::ScanPolluted,
    Mix::Loop,
];

fn mix_name(m: Mix) -> &'static str {
    match m {
        Mix::ReadHeavy => "read-heavy",
        Mix::WriteHeavy => "write-heavy",
        Mix::GetOnly => "get-only",
        Mix::InsertOnly => "insert-only",
        Mix::ScanPolluted => "scan",
        Mix::Loop => "loop",
    }
}

fn plan(cli: &Cli) -> Result<Plan, String> {
    let mode = if cli.smoke {
        "smoke"
    } else if cli.quick {
        "quick"
    } else {
        "full"
    };
    let caches: Vec<CacheKind> = match &cli.caches {
        None => CacheKind::ALL.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| CacheKind::from_name(n).ok_or_else(|| format!("unknown cache {n:?}")))
            .collect::<Result<_, _>>()?,
    };
    let threads = cli.threads.clone().unwrap_or_else(|| match mode {
        "smoke" => vec![1, 2],
        "quick" => vec![1, 2, 8],
        _ => vec![1, 2, 4, 8],
    });
    if threads.is_empty() || threads.contains(&0) {
        return Err("--threads needs positive counts".into());
    }
    let zipf = cli.zipf.clone().unwrap_or_else(|| match mode {
        "smoke" => vec![0.99],
        _ => vec![0.9, 0.99, 1.2],
    });
    if zipf.is_empty() || zipf.iter().any(|&s| s.is_nan() || s < 0.0) {
        return Err("--zipf needs exponents >= 0".into());
    }
    let main_s = if zipf.contains(&0.99) { 0.99 } else { zipf[0] };
    // Quick: the goal workloads at every thread count, the rest at 2 threads.
    let secondary: Vec<usize> = if mode == "quick" && cli.threads.is_none() {
        vec![2]
    } else {
        threads.clone()
    };
    let mut matrix = Vec::new();
    for &s in &zipf {
        let t = if s == main_s { &threads } else { &secondary };
        matrix.push((
            Workload {
                mix: Mix::ReadHeavy,
                zipf: s,
            },
            t.clone(),
        ));
    }
    matrix.push((
        Workload {
            mix: Mix::GetOnly,
            zipf: main_s,
        },
        threads.clone(),
    ));
    for &s in &zipf {
        // Quick: write-heavy at the main exponent only.
        if mode == "quick" && cli.zipf.is_none() && s != main_s {
            continue;
        }
        matrix.push((
            Workload {
                mix: Mix::WriteHeavy,
                zipf: s,
            },
            secondary.clone(),
        ));
    }
    matrix.push((
        Workload {
            mix: Mix::InsertOnly,
            zipf: main_s,
        },
        secondary.clone(),
    ));
    matrix.push((
        Workload {
            mix: Mix::ScanPolluted,
            zipf: main_s,
        },
        secondary.clone(),
    ));
    matrix.push((
        Workload {
            mix: Mix::Loop,
            zipf: main_s,
        },
        secondary.clone(),
    ));
    if let Some(ws) = &cli.workloads {
        for w in ws {
            if !ALL_MIXES.iter().any(|&m| mix_name(m) == w) {
                return Err(format!("unknown workload {w:?}"));
            }
        }
        matrix.retain(|(w, _)| ws.iter().any(|n| n == mix_name(w.mix)));
    }
    let capacity = cli
        .capacity
        .unwrap_or(if mode == "smoke" { 1_000 } else { 100_000 });
    let keys = cli
        .keys
        .unwrap_or(if mode == "smoke" { 10_000 } else { 1_000_000 });
    if capacity == 0 || keys == 0 {
        return Err("--capacity and --keys must be positive".into());
    }
    let gen = GenParams {
        keys,
        capacity,
        ops_per_thread: cli.ops_per_thread.unwrap_or(match mode {
            "smoke" => 20_000,
            "quick" => 1 << 19,
            _ => 1 << 20,
        }),
        seed: cli.seed,
    };
    let duration = Duration::from_millis(cli.duration_ms.unwrap_or(match mode {
        "smoke" => 10,
        "quick" => 150,
        _ => 400,
    }));
    let reps = cli.reps.unwrap_or(3).max(1);
    let (traces, traces_note) = if cli.no_traces {
        (
            Vec::new(),
            Some("Trace replay skipped (--no-traces).".to_string()),
        )
    } else {
        let dir = cli
            .traces
            .clone()
            .unwrap_or_else(|| workspace_root().join("../shared/traces"));
        let mut found = trace::find_traces(&dir);
        if mode != "full" && cli.traces.is_none() {
            found = one_trace(found);
        }
        if found.is_empty() {
            (
                Vec::new(),
                Some(format!(
                    "No traces (*.lis.zst) found in {}: trace replay skipped.",
                    dir.display()
                )),
            )
        } else {
            (found, None)
        }
    };
    let trace_sizes = cli.trace_sizes.clone().unwrap_or_else(|| match mode {
        "smoke" => vec![1000],
        _ => vec![1000, 8192, 65536, 262144],
    });
    let trace_lines = cli.trace_lines.or((mode == "smoke").then_some(20_000));
    let mem_entries = (!cli.no_mem).then(|| {
        cli.mem_entries
            .unwrap_or(if mode == "smoke" { 10_000 } else { 1_000_000 })
    });
    let expiry = (!cli.no_expiry).then(|| {
        let secs = cli.expiry_secs.unwrap_or(match mode {
            "smoke" => 0.3,
            "quick" => 3.0,
            _ => 10.0,
        });
        let (ttl, rate) = match mode {
            "smoke" => (Duration::from_millis(50), 50_000),
            _ => (Duration::from_millis(500), 200_000),
        };
        ExpiryParams {
            duration: Duration::from_secs_f64(secs),
            ttl,
            rate_per_thread: rate,
            threads: 2,
            capacity: 1_000_000,
        }
    });
    let out = cli
        .out
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/bench-report"));
    Ok(Plan {
        mode,
        caches,
        matrix,
        gen,
        duration,
        reps,
        sample_every: cli.sample_every.max(1),
        traces,
        traces_note,
        trace_sizes,
        trace_lines,
        mem_entries,
        expiry,
        out,
    })
}

fn cell_caches(p: &Plan, w: &Workload) -> Vec<CacheKind> {
    p.caches
        .iter()
        .copied()
        .filter(|k| !k.read_only() || w.read_only())
        .collect()
}

fn run(cli: &Cli) -> Result<(), String> {
    let p = plan(cli)?;
    let machine = Machine::detect();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let writers: Vec<CacheKind> = p
        .caches
        .iter()
        .copied()
        .filter(|k| !k.read_only())
        .collect();
    let ttl_caches: Vec<CacheKind> = p
        .caches
        .iter()
        .copied()
        .filter(|k| k.supports_ttl() && !k.policy_variant())
        .collect();
    let mem_caches: Vec<CacheKind> = p
        .caches
        .iter()
        .copied()
        .filter(|k| !k.policy_variant())
        .collect();
    let units: usize = p
        .matrix
        .iter()
        .map(|(w, t)| t.len() * p.reps * cell_caches(&p, w).len())
        .sum::<usize>()
        + p.traces.len() * p.trace_sizes.len() * writers.len()
        + p.mem_entries.map_or(0, |_| mem_caches.len())
        + p.expiry.map_or(0, |_| ttl_caches.len());
    let pb = ProgressBar::new(units as u64);
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let overhead = timer_overhead();

    let mut cells = Vec::new();
    for (w, threads) in &p.matrix {
        let kinds = cell_caches(&p, w);
        for &t in threads {
            pb.set_message(format!("{w}, {t} threads: generating keys"));
            let ops = workload::generate(w, &p.gen, t);
            let prefill = w.prefill(p.gen.capacity);
            let params = RunParams {
                duration: p.duration,
                sample_every: p.sample_every,
                insert_on_miss: w.insert_on_miss(),
                warmup_ops: (2 * p.gen.capacity / t).max(1),
            };
            let mut acc: Vec<(Vec<f64>, u64, u64, hdrhistogram::Histogram<u64>)> = kinds
                .iter()
                .map(|_| (Vec::new(), 0, 0, clockcache_bench::runner::new_histogram()))
                .collect();
            // Interleaved: A B C A B C A B C.
            for rep in 0..p.reps {
                for (i, &k) in kinds.iter().enumerate() {
                    pb.set_message(format!("{w}, {t} threads: {} (rep {})", k.name(), rep + 1));
                    let r = k.visit(RunOnce {
                        spec: CacheSpec::new(p.gen.capacity),
                        prefill: &prefill,
                        ops: &ops,
                        params,
                    });
                    let a = &mut acc[i];
                    a.0.push(r.mops());
                    a.1 += r.gets;
                    a.2 += r.hits;
                    a.3.add(&r.latency).expect("same bounds");
                    pb.inc(1);
                }
            }
            for (k, (mops, gets, hits, h)) in kinds.iter().zip(acc) {
                cells.push(Cell {
                    workload: w.name(),
                    cache: k.name().to_string(),
                    threads: t,
                    mops,
                    hit_ratio: (gets > 0).then(|| hits as f64 / gets as f64),
                    latency_ns: [
                        h.value_at_quantile(0.5),
                        h.value_at_quantile(0.99),
                        h.value_at_quantile(0.999),
                        h.max(),
                    ],
                    samples: h.len(),
                });
            }
        }
    }

    let mut traces = Vec::new();
    for path in &p.traces {
        pb.set_message(format!("loading {}", path.display()));
        let tr =
            Trace::load(path, p.trace_lines).map_err(|e| format!("{}: {e}", path.display()))?;
        let requests = tr.requests();
        for &cap in &p.trace_sizes {
            for &k in &writers {
                pb.set_message(format!("trace {} at {cap}: {}", tr.name, k.name()));
                let r = k.visit(Replay {
                    trace: &tr,
                    capacity: cap,
                });
                traces.push(TraceCell {
                    trace: tr.name.clone(),
                    requests,
                    capacity: cap,
                    cache: k.name().to_string(),
                    hit_ratio: r.hit_ratio(),
                    mops: r.gets as f64 / r.elapsed.as_secs_f64() / 1e6,
                });
                pb.inc(1);
            }
        }
    }

    let mut memory = Vec::new();
    if let Some(n) = p.mem_entries {
        for &k in &mem_caches {
            pb.set_message(format!("bytes per entry: {}", k.name()));
            let m: MemResult =
                child::run_child(&exe, &["mem-child".into(), k.name().into(), n.to_string()])
                    .map_err(|e| e.to_string())?;
            memory.push(m);
            pb.inc(1);
        }
    }

    let mut expiry = Vec::new();
    if let Some(ep) = p.expiry {
        let json = serde_json::to_string(&ep).map_err(|e| e.to_string())?;
        for &k in &ttl_caches {
            pb.set_message(format!("expiry churn: {}", k.name()));
            let e: ExpiryResult = child::run_child(
                &exe,
                &["expiry-child".into(), k.name().into(), json.clone()],
            )
            .map_err(|e| e.to_string())?;
            expiry.push(e);
            pb.inc(1);
        }
    }
    pb.finish_and_clear();

    let settings = vec![
        ("mode".to_string(), p.mode.to_string()),
        ("capacity (entries)".into(), p.gen.capacity.to_string()),
        ("distinct Zipf keys".into(), p.gen.keys.to_string()),
        (
            "ops pre-generated per thread".into(),
            p.gen.ops_per_thread.to_string(),
        ),
        (
            "timed phase per run".into(),
            format!("{} ms", p.duration.as_millis()),
        ),
        ("repetitions (interleaved)".into(), p.reps.to_string()),
        (
            "latency sampling".into(),
            format!("one op in {} on average (random gaps)", p.sample_every),
        ),
        (
            "traces".into(),
            if p.traces.is_empty() {
                "none".into()
            } else {
                p.traces
                    .iter()
                    .map(|t| {
                        t.file_name()
                            .map_or(String::new(), |f| f.to_string_lossy().into_owned())
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        (
            "wall time".into(),
            format!("{:.0} s", started.elapsed().as_secs_f64()),
        ),
    ];
    let report = Report {
        machine,
        command,
        settings,
        timer_overhead_ns: [
            overhead.value_at_quantile(0.5),
            overhead.value_at_quantile(0.99),
        ],
        cells,
        traces,
        traces_note: p.traces_note.clone(),
        memory,
        expiry_params: p.expiry,
        expiry,
    };
    print!("{}", report.text());
    write_report(&report, &p.out).map_err(|e| format!("writing {}: {e}", p.out.display()))?;
    println!(
        "\nReport: {}/report.md, report.html, results.json",
        p.out.display()
    );
    Ok(())
}

fn write_report(r: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.md"), r.markdown())?;
    std::fs::write(dir.join("report.html"), r.html())?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(r).map_err(std::io::Error::other)?,
    )?;
    for (name, svg) in r.charts() {
        std::fs::write(dir.join(format!("{name}.svg")), svg)?;
    }
    Ok(())
}

fn child_main(cmd: &ChildCmd) -> Result<(), String> {
    match cmd {
        ChildCmd::MemChild { cache, entries } => {
            let k = CacheKind::from_name(cache).ok_or("unknown cache")?;
            let r = child::mem_child(k, *entries).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        }
        ChildCmd::Render { json, out } => {
            let text =
                std::fs::read_to_string(json).map_err(|e| format!("{}: {e}", json.display()))?;
            let report: Report =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
            let dir = out.clone().unwrap_or_else(|| {
                json.parent()
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            });
            print!("{}", report.text());
            write_report(&report, &dir).map_err(|e| format!("writing {}: {e}", dir.display()))?;
        }
        ChildCmd::Profile {
            cache,
            workload,
            zipf,
            ops,
            passes,
            capacity,
            keys,
            seed,
        } => {
            let k =
                CacheKind::from_name(cache).ok_or_else(|| format!("unknown cache {cache:?}"))?;
            let mix = ALL_MIXES
                .into_iter()
                .find(|&m| mix_name(m) == workload)
                .ok_or_else(|| format!("unknown workload {workload:?}"))?;
            if zipf.is_nan() || *zipf < 0.0 || *capacity == 0 || *keys == 0 {
                return Err(
                    "--zipf needs an exponent >= 0, --capacity and --keys positive counts".into(),
                );
            }
            let w = Workload { mix, zipf: *zipf };
            let gen = GenParams {
                keys: *keys,
                capacity: *capacity,
                ops_per_thread: (*ops).max(1),
                seed: *seed,
            };
            let seq = workload::generate_thread(&w, &gen, 0, 1);
            let prefill = w.prefill(*capacity);
            let r = k.visit(Solo {
                spec: CacheSpec::new(*capacity),
                prefill: &prefill,
                ops: &seq,
                insert_on_miss: w.insert_on_miss(),
                passes: (*passes).max(1),
            });
            let hit = if r.gets == 0 {
                0.0
            } else {
                100.0 * r.hits as f64 / r.gets as f64
            };
            println!(
                "{} {w}: {} ops in {:.3} s ({:.1} ns/op), hit ratio {hit:.2}%",
                k.name(),
                r.ops,
                r.elapsed.as_secs_f64(),
                r.elapsed.as_nanos() as f64 / r.ops.max(1) as f64
            );
        }
        ChildCmd::Opcost {
            cache,
            op,
            ops,
            max_ops,
            capacity,
        } => {
            let k =
                CacheKind::from_name(cache).ok_or_else(|| format!("unknown cache {cache:?}"))?;
            let op = Op::from_name(op).ok_or_else(|| {
                format!("unknown op {op:?} (hit, miss, insert-evict, update, remove)")
            })?;
            if op == Op::Remove && *ops > *capacity {
                return Err("remove needs --ops at most --capacity (present keys)".into());
            }
            let found = k.visit(OpCost {
                capacity: *capacity,
                op,
                ops: *ops,
                max_ops: *max_ops,
            });
            println!(
                "{} {}: {ops} ops, {found} found their key",
                k.name(),
                op.name()
            );
        }
        ChildCmd::Sessions { trials, hits, out } => {
            if *trials == 0 || *hits == 0 {
                return Err("--trials and --hits need positive counts".into());
            }
            let params = SessionsParams {
                trials: *trials,
                hits: *hits,
            };
            let report = sessions::run(params)?;
            let text = sessions::render(&report, params);
            let dir = out
                .clone()
                .unwrap_or_else(|| workspace_root().join("target/bench-report"));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
            for (name, body) in [("sessions.md", &text), ("sessions.json", &json)] {
                let path = dir.join(name);
                std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            print!("{text}");
            println!("\nWritten to {}", dir.join("sessions.md").display());
        }
        ChildCmd::ExpiryChild { cache, params } => {
            let k = CacheKind::from_name(cache).ok_or("unknown cache")?;
            let p: ExpiryParams = serde_json::from_str(params).map_err(|e| e.to_string())?;
            let r = child::expiry_child(k, p).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
        }
    }
    Ok(())
}

/// The trace that quick and smoke runs replay: OLTP (the smallest) when
/// present, else the first found; none when none was found.
fn one_trace(mut found: Vec<std::path::PathBuf>) -> Vec<std::path::PathBuf> {
    let pick = found.iter().position(|f| {
        f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("OLTP"))
    });
    match pick {
        Some(i) => vec![found.swap_remove(i)],
        None => found.into_iter().take(1).collect(),
    }
}

fn main() {
    let cli = Cli::parse();
    let res = match &cli.child {
        Some(c) => child_main(c),
        None => run(&cli),
    };
    if let Err(e) = res {
        eprintln!("clockcache-bench: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::one_trace;
    use std::path::PathBuf;

    #[test]
    fn quick_runs_pick_oltp_or_the_first_trace_and_survive_none() {
        let p = |s: &str| PathBuf::from(s);
        assert!(one_trace(Vec::new()).is_empty());
        assert_eq!(
            one_trace(vec![p("/t/P3.lis.zst"), p("/t/OLTP.lis.zst")]),
            vec![p("/t/OLTP.lis.zst")]
        );
        assert_eq!(
            one_trace(vec![p("/t/P3.lis.zst"), p("/t/P12.lis.zst")]),
            vec![p("/t/P3.lis.zst")]
        );
    }
}
