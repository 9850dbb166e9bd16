//! Results of a harness run and their renderings: terminal text, Markdown, HTML
//! (with inline SVG charts) and JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::adapters::CacheKind;
use crate::child::{ExpiryParams, ExpiryResult, MemResult};
use crate::svg::{self, Series};

/// The machine a run was made on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// Kernel release.
    pub kernel: String,
    /// Output of `date -u` when the run started.
    pub date: String,
    /// /proc/loadavg when the run started (other work on a shared machine shows here).
    #[serde(default)]
    pub loadavg: String,
}

impl Machine {
    /// Reads the machine description from /proc and `date`.
    pub fn detect() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let date = std::process::Command::new("date")
            .arg("-u")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            kernel,
            date,
            loadavg,
        }
    }
}

/// One cell: a workload on a cache at a thread count, over all repetitions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    /// Workload name.
    pub workload: String,
    /// Cache name.
    pub cache: String,
    /// Worker threads.
    pub threads: usize,
    /// Throughput of each repetition, Mops/s.
    pub mops: Vec<f64>,
    /// Gets and hits over all repetitions (`None` when the workload has no gets).
    pub hit_ratio: Option<f64>,
    /// Latency percentiles over all sampled ops, ns: p50, p99, p99.9, max.
    pub latency_ns: [u64; 4],
    /// Number of sampled ops behind the percentiles.
    pub samples: u64,
}

impl Cell {
    /// Median throughput of the repetitions.
    pub fn median(&self) -> f64 {
        median(&self.mops)
    }
    /// Slowest repetition.
    pub fn min(&self) -> f64 {
        self.mops.iter().copied().fold(f64::INFINITY, f64::min)
    }
    /// Fastest repetition.
    pub fn max(&self) -> f64 {
        self.mops.iter().copied().fold(0.0, f64::max)
    }
}

/// Median of a slice (mean of the middle two for even lengths; 0 when empty).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// One trace replay.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TraceCell {
    /// Trace name.
    pub trace: String,
    /// Keys requested.
    pub requests: u64,
    /// Cache capacity in entries.
    pub capacity: usize,
    /// Cache name.
    pub cache: String,
    /// Hits over gets.
    pub hit_ratio: f64,
    /// Single-thread replay throughput, Mops/s.
    pub mops: f64,
}

/// Everything one run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// The command line.
    pub command: String,
    /// Settings in words (mode, capacity, keys, duration, repetitions...).
    pub settings: Vec<(String, String)>,
    /// Timer overhead, ns: p50 and p99 of an empty timed region.
    pub timer_overhead_ns: [u64; 2],
    /// Synthetic workload cells.
    pub cells: Vec<Cell>,
    /// Trace replays.
    pub traces: Vec<TraceCell>,
    /// Why traces were not replayed, if they were not.
    pub traces_note: Option<String>,
    /// Bytes per entry per cache.
    pub memory: Vec<MemResult>,
    /// Expiry churn settings, when it ran.
    pub expiry_params: Option<ExpiryParams>,
    /// Expiry churn per cache.
    pub expiry: Vec<ExpiryResult>,
}

/// A target the project sets itself, with its measured value.
#[derive(Clone, Debug, Serialize)]
pub struct Goal {
    /// What is compared.
    pub what: String,
    /// The target.
    pub target: String,
    /// The measured figure.
    pub measured: String,
    /// Whether the target is met (`None`: not measured in this run).
    pub met: Option<bool>,
}

const CC: &str = "clockcache";

/// The hit-ratio goal of one workload or trace cell: clockcache at least
/// exact LRU, with the differences to quick_cache and moka alongside. `None`
/// when clockcache or the mutex-LRU did not run there.
fn hit_goal(cell: String, hr: impl Fn(&str) -> Option<f64>) -> Option<Goal> {
    let (cc, lru) = (hr(CC)?, hr("mutex-lru")?);
    let vs = |name: &str| {
        hr(name).map_or(String::new(), |q| {
            format!(", vs {name} {:+.2} pt", (cc - q) * 100.0)
        })
    };
    Some(Goal {
        what: format!("{cell}: hit ratio clockcache - mutex-lru"),
        target: ">= 0 pt".into(),
        measured: format!(
            "{:.2}% vs {:.2}%: {:+.2} pt{}{}",
            cc * 100.0,
            lru * 100.0,
            (cc - lru) * 100.0,
            vs("quick_cache"),
            vs("moka")
        ),
        met: Some(cc >= lru),
    })
}

impl Report {
    fn cell(&self, workload: &str, cache: &str, threads: usize) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.workload == workload && c.cache == cache && c.threads == threads)
    }

    /// Workload names in run order.
    pub fn workloads(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in &self.cells {
            if !out.contains(&c.workload) {
                out.push(c.workload.clone());
            }
        }
        out
    }

    /// Cache names in report order (those that appear in this run).
    pub fn caches(&self) -> Vec<String> {
        CacheKind::ALL
            .iter()
            .map(|k| k.name().to_string())
            .filter(|n| {
                self.cells.iter().any(|c| &c.cache == n)
                    || self.traces.iter().any(|c| &c.cache == n)
                    || self.memory.iter().any(|c| &c.cache == n)
            })
            .collect()
    }

    fn threads_of(&self, workload: &str) -> Vec<usize> {
        let mut t: Vec<usize> = self
            .cells
            .iter()
            .filter(|c| c.workload == workload)
            .map(|c| c.threads)
            .collect();
        t.sort_unstable();
        t.dedup();
        t
    }

    /// The thread count used to compare hit ratios of a workload: 2 if it ran,
    /// else the smallest.
    fn hit_threads(&self, workload: &str) -> Option<usize> {
        let t = self.threads_of(workload);
        t.contains(&2).then_some(2).or(t.first().copied())
    }

    /// The (trace, capacity) pairs replayed, in replay order.
    fn trace_keys(&self) -> Vec<(String, usize)> {
        let mut keys: Vec<(String, usize)> = self
            .traces
            .iter()
            .map(|t| (t.trace.clone(), t.capacity))
            .collect();
        keys.dedup();
        keys
    }

    /// Hit ratio (0..1) of `cache` replaying `trace` at `capacity`.
    fn trace_hit(&self, trace: &str, capacity: usize, cache: &str) -> Option<f64> {
        self.traces
            .iter()
            .find(|t| t.trace == trace && t.capacity == capacity && t.cache == cache)
            .map(|t| t.hit_ratio)
    }

    /// The project's targets, evaluated on this run.
    pub fn goals(&self) -> Vec<Goal> {
        let mut g = Vec::new();
        let ratio = |w: &str, other: &str, t: usize| -> Option<f64> {
            Some(self.cell(w, CC, t)?.median() / self.cell(w, other, t)?.median())
        };
        let rh = self
            .workloads()
            .into_iter()
            .find(|w| w.starts_with("read-heavy") && w.ends_with("z0.99"));
        let go = self
            .workloads()
            .into_iter()
            .find(|w| w.starts_with("get-only"));
        let mut push = |what: String,
                        target: &str,
                        v: Option<f64>,
                        fmt: &dyn Fn(f64) -> String,
                        ok: &dyn Fn(f64) -> bool| {
            g.push(Goal {
                what,
                target: target.into(),
                measured: v.map_or("not measured".into(), fmt),
                met: v.map(ok),
            })
        };
        let x = |v: f64| format!("{v:.2}x");
        let rhw = rh.clone().unwrap_or_default();
        push(
            format!("{rhw}, 2 threads: clockcache / quick_cache throughput"),
            ">= 1.5x",
            ratio(&rhw, "quick_cache", 2),
            &x,
            &|v| v >= 1.5,
        );
        push(
            format!("{rhw}, 2 threads: clockcache / mutex-lru throughput"),
            ">= 5x",
            ratio(&rhw, "mutex-lru", 2),
            &x,
            &|v| v >= 5.0,
        );
        let gow = go.unwrap_or_default();
        push(
            format!("{gow}, 2 threads: clockcache / quick_cache throughput"),
            ">= 2x",
            ratio(&gow, "quick_cache", 2),
            &x,
            &|v| v >= 2.0,
        );
        push(
            format!("{gow}, 2 threads: clockcache / read-only HashMap throughput"),
            "aim 0.5x",
            ratio(&gow, "hashmap", 2),
            &x,
            &|v| v >= 0.5,
        );
        let p999 = |c: &str| self.cell(&rhw, c, 8).map(|c| c.latency_ns[2] as f64);
        let lat = match (p999(CC), p999("mutex-lru")) {
            (Some(a), Some(b)) => Some(a / b),
            _ => None,
        };
        push(
            format!("{rhw}, 8 threads: clockcache p99.9 / mutex-lru p99.9"),
            "<= 0.10",
            lat,
            &|v| {
                format!(
                    "{v:.3} ({} ns vs {} ns)",
                    p999(CC).unwrap_or(0.0),
                    p999("mutex-lru").unwrap_or(0.0)
                )
            },
            &|v| v <= 0.1,
        );
        // Hit ratios: every workload that inserts on a miss, and every trace replay.
        // (Get-only never inserts: its hit ratio only shows how many keys a cache
        // evicted while being filled exactly to capacity.)
        for w in self
            .workloads()
            .into_iter()
            .filter(|w| !w.starts_with("get-only"))
        {
            let Some(t) = self.hit_threads(&w) else {
                continue;
            };
            let hr = |c: &str| self.cell(&w, c, t).and_then(|c| c.hit_ratio);
            g.extend(hit_goal(format!("{w}, {t} threads"), hr));
        }
        for (tr, cap) in self.trace_keys() {
            let hr = |c: &str| self.trace_hit(&tr, cap, c);
            g.extend(hit_goal(format!("trace {tr} at {cap}"), hr));
        }
        // Eviction policy: every trace cell within 0.5 pt of exact
        // LRU, the mean within 1 pt of the best of LRU, quick_cache and moka,
        // and throughput not more than 5% below plain CLOCK.
        let cells: Vec<(f64, f64, f64)> = {
            self.trace_keys()
                .into_iter()
                .filter_map(|(tr, cap)| {
                    let hr = |c: &str| self.trace_hit(&tr, cap, c).map(|h| h * 100.0);
                    let lru = hr("mutex-lru")?;
                    let best = [hr("quick_cache"), hr("moka")]
                        .into_iter()
                        .flatten()
                        .fold(lru, f64::max);
                    Some((hr(CC)?, lru, best))
                })
                .collect()
        };
        if !cells.is_empty() {
            let worst = cells
                .iter()
                .map(|(cc, lru, _)| cc - lru)
                .fold(f64::INFINITY, f64::min);
            g.push(Goal {
                what: format!("every trace cell ({}), clockcache - mutex-lru", cells.len()),
                target: ">= -0.5 pt".into(),
                measured: format!("worst {worst:+.2} pt"),
                met: Some(worst >= -0.5),
            });
            let mean =
                cells.iter().map(|(cc, _, best)| cc - best).sum::<f64>() / cells.len() as f64;
            g.push(Goal {
                what: "mean over trace cells, clockcache - best of (mutex-lru, quick_cache, moka)"
                    .into(),
                target: ">= -1 pt".into(),
                measured: format!("{mean:+.2} pt"),
                met: Some(mean >= -1.0),
            });
        }
        for w in [rh.clone(), Some(gow.clone())].into_iter().flatten() {
            let v = (|| {
                Some(
                    self.cell(&w, CC, 2)?.median() / self.cell(&w, "clockcache-clock", 2)?.median(),
                )
            })();
            if let Some(v) = v {
                g.push(Goal {
                    what: format!("{w}, 2 threads: clockcache / clockcache-clock throughput"),
                    target: ">= 0.95x".into(),
                    measured: format!("{v:.2}x"),
                    met: Some(v >= 0.95),
                });
            }
        }
        if let Some(m) = self.memory.iter().find(|m| m.cache == CC) {
            let others: Vec<String> = self
                .memory
                .iter()
                .filter(|o| o.cache != CC)
                .map(|o| format!("{} {:.1}", o.cache, o.bytes_per_entry))
                .collect();
            g.push(Goal {
                what: format!("bytes per entry, {} u64 entries", m.inserted),
                target: "<= 64".into(),
                measured: format!(
                    "clockcache {:.1} ({})",
                    m.bytes_per_entry,
                    others.join(", ")
                ),
                met: Some(m.bytes_per_entry <= 64.0),
            });
        }
        g
    }
}

/// A table with a header row, rendered as aligned text, Markdown or HTML.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Column headers.
    pub header: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Aligned plain text (first column left, the others right).
    pub fn text(&self) -> String {
        let n = self.header.len();
        let mut w = vec![0; n];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |r: &[String]| {
            let mut s = String::new();
            for (i, c) in r.iter().enumerate().take(n) {
                let pad = w[i] - c.chars().count();
                if i == 0 {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str("  ");
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let mut s = line(&self.header);
        s.push_str(&"-".repeat(w.iter().sum::<usize>() + 2 * (n - 1)));
        s.push('\n');
        for r in &self.rows {
            s.push_str(&line(r));
        }
        s
    }

    /// A GitHub Markdown table.
    pub fn markdown(&self) -> String {
        let mut s = format!("| {} |\n|", self.header.join(" | "));
        for i in 0..self.header.len() {
            s.push_str(if i == 0 { "---|" } else { "---:|" });
        }
        s.push('\n');
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }

    /// An HTML table.
    pub fn html(&self) -> String {
        let mut s = String::from("<table><tr>");
        for h in &self.header {
            let _ = write!(s, "<th>{}</th>", svg::esc(h));
        }
        s.push_str("</tr>");
        for r in &self.rows {
            s.push_str("<tr>");
            for c in r {
                let _ = write!(s, "<td>{}</td>", svg::esc(c));
            }
            s.push_str("</tr>");
        }
        s.push_str("</table>");
        s
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.2}%", v * 100.0))
}

fn ns(v: u64) -> String {
    if v >= 10_000_000 {
        format!("{:.1} ms", v as f64 / 1e6)
    } else if v >= 10_000 {
        format!("{:.1} us", v as f64 / 1e3)
    } else {
        format!("{v} ns")
    }
}

fn cache_color(name: &str) -> usize {
    CacheKind::ALL
        .iter()
        .position(|k| k.name() == name)
        .unwrap_or(7)
}

/// A titled table of the report.
pub struct Section {
    /// Heading.
    pub title: String,
    /// Text printed under the heading.
    pub note: String,
    /// The table.
    pub table: Table,
}

impl Report {
    /// The report's tables in order: throughput and hit ratio of every cache side by
    /// side, one table per workload (with latency), traces, memory, expiry, settings,
    /// and last the project's own targets.
    pub fn sections(&self) -> Vec<Section> {
        let mut out = Vec::new();
        self.summary_sections(&mut out);
        for w in self.workloads() {
            let mut t = Table::new(&[
                "cache",
                "threads",
                "Mops/s (median)",
                "min",
                "max",
                "clockcache / this",
                "hit ratio",
                "p50",
                "p99",
                "p99.9",
                "max latency",
            ]);
            for th in self.threads_of(&w) {
                let base = self.cell(&w, CC, th).map(|c| c.median());
                for cache in self.caches() {
                    let Some(c) = self.cell(&w, &cache, th) else {
                        continue;
                    };
                    t.row(vec![
                        cache.clone(),
                        th.to_string(),
                        format!("{:.2}", c.median()),
                        format!("{:.2}", c.min()),
                        format!("{:.2}", c.max()),
                        base.map_or("-".into(), |b| format!("{:.2}x", b / c.median())),
                        pct(c.hit_ratio),
                        ns(c.latency_ns[0]),
                        ns(c.latency_ns[1]),
                        ns(c.latency_ns[2]),
                        ns(c.latency_ns[3]),
                    ]);
                }
            }
            out.push(Section {
                title: format!("Workload: {w}"),
                note: String::new(),
                table: t,
            });
        }
        if !self.traces.is_empty() {
            let mut caches: Vec<String> = self.caches();
            caches.retain(|c| self.traces.iter().any(|t| &t.cache == c));
            let mut header = vec!["trace", "requests", "capacity"];
            header.extend(caches.iter().map(|s| s.as_str()));
            let mut t = Table::new(&header);
            let mut keys: Vec<(String, u64, usize)> = self
                .traces
                .iter()
                .map(|t| (t.trace.clone(), t.requests, t.capacity))
                .collect();
            keys.dedup();
            for (tr, req, cap) in &keys {
                let mut row = vec![tr.clone(), req.to_string(), cap.to_string()];
                for c in &caches {
                    let v = self
                        .traces
                        .iter()
                        .find(|x| &x.trace == tr && x.capacity == *cap && &x.cache == c);
                    row.push(v.map_or("-".into(), |v| {
                        format!("{:.2}% ({:.1} Mops/s)", v.hit_ratio * 100.0, v.mops)
                    }));
                }
                t.row(row);
            }
            out.push(Section {
                title: "Trace replay: hit ratio (single-thread replay throughput)".into(),
                note:
                    "ARC traces (Megiddo and Modha, FAST 03); every key a get, inserted on a miss."
                        .into(),
                table: t,
            });
        }
        if let Some(n) = &self.traces_note {
            out.push(Section {
                title: "Trace replay".into(),
                note: n.clone(),
                table: Table::new(&["-"]),
            });
        }
        if !self.memory.is_empty() {
            let mut t = Table::new(&[
                "cache",
                "keys inserted",
                "entries held",
                "RSS growth",
                "bytes per entry",
            ]);
            for m in &self.memory {
                t.row(vec![
                    m.cache.clone(),
                    m.inserted.to_string(),
                    m.entries.to_string(),
                    format!("{:.1} MiB", m.rss_delta as f64 / 1048576.0),
                    format!("{:.1}", m.bytes_per_entry),
                ]);
            }
            out.push(Section {
                title:
                    "Memory: bytes per entry (u64 keys and values, fresh child process per cache)"
                        .into(),
                note: String::new(),
                table: t,
            });
        }
        if let Some(p) = &self.expiry_params {
            let mut t = Table::new(&[
                "cache",
                "ops",
                "get hit ratio",
                "max entries",
                "entries at stop",
                "after idle 2xTTL",
                "max RSS growth",
                "p50",
                "p99",
                "p99.9",
                "p99.99",
                "max",
            ]);
            for e in &self.expiry {
                t.row(vec![
                    e.cache.clone(),
                    e.ops.to_string(),
                    pct(Some(e.hits as f64 / e.gets.max(1) as f64)),
                    e.max_len.to_string(),
                    e.end_len.to_string(),
                    e.idle_len.to_string(),
                    format!("{:.1} MiB", e.max_rss_delta as f64 / 1048576.0),
                    ns(e.latency_ns[0]),
                    ns(e.latency_ns[1]),
                    ns(e.latency_ns[2]),
                    ns(e.latency_ns[3]),
                    ns(e.latency_ns[4]),
                ]);
            }
            out.push(Section {
                title: "Expiry churn".into(),
                note: format!(
                    "{} threads x {} inserts/s of new keys, each with TTL {} ms, plus a get of the key inserted 1,000 inserts earlier, for {:.1} s; capacity {} (never reached if expired entries are reclaimed: about {} live). Every op timed.",
                    p.threads,
                    p.rate_per_thread,
                    p.ttl.as_millis(),
                    p.duration.as_secs_f64(),
                    p.capacity,
                    p.expected_live()
                ),
                table: t,
            });
        }
        let mut t = Table::new(&["setting", "value"]);
        for (k, v) in &self.settings {
            t.row(vec![k.clone(), v.clone()]);
        }
        t.row(vec![
            "timer overhead (p50 / p99)".into(),
            format!(
                "{} / {} (included in every latency)",
                ns(self.timer_overhead_ns[0]),
                ns(self.timer_overhead_ns[1])
            ),
        ]);
        out.push(Section {
            title: "Settings".into(),
            note: format!(
                "{} CPUs ({}), kernel {}, {}, load average at start {}",
                self.machine.nproc,
                self.machine.cpu,
                self.machine.kernel,
                self.machine.date,
                self.machine.loadavg
            ),
            table: t,
        });
        let mut t = Table::new(&["goal", "target", "measured", "met"]);
        for g in self.goals() {
            let met = match g.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            t.row(vec![g.what, g.target, g.measured, met.into()]);
        }
        out.push(Section {
            title: "Targets this project sets itself".into(),
            note: "Ratios of caches measured side by side in this run.".into(),
            table: t,
        });
        out
    }

    /// The two tables a reader comes for, first: throughput of every cache
    /// in every workload and thread count, and hit ratio per workload.
    fn summary_sections(&self, out: &mut Vec<Section>) {
        let caches = self.caches();
        let mut header = vec!["workload", "threads"];
        header.extend(caches.iter().map(String::as_str));
        let mut t = Table::new(&header);
        for w in self.workloads() {
            for th in self.threads_of(&w) {
                let mut row = vec![w.clone(), th.to_string()];
                for c in &caches {
                    row.push(
                        self.cell(&w, c, th)
                            .map_or("-".into(), |c| format!("{:.2}", c.median())),
                    );
                }
                t.row(row);
            }
        }
        out.push(Section {
            title: "Throughput (Mops/s, median of the repetitions)".into(),
            note: "Every cache ran the same pre-generated ops, side by side in this process; \
                   the per-workload tables below add the spread, the ratios and latency."
                .into(),
            table: t,
        });
        let mut t = Table::new(&header);
        for w in self.workloads() {
            let Some(th) = self.hit_threads(&w) else {
                continue;
            };
            let mut row = vec![w.clone(), th.to_string()];
            for c in &caches {
                row.push(pct(self.cell(&w, c, th).and_then(|c| c.hit_ratio)));
            }
            t.row(row);
        }
        out.push(Section {
            title: "Hit ratio".into(),
            note: "Gets that found their key; a miss inserts it (get-only: filled to capacity \
                   first, never inserts). Trace replays follow the workload tables."
                .into(),
            table: t,
        });
    }

    /// Plain text for the terminal.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for sec in self.sections() {
            let _ = writeln!(s, "\n== {} ==", sec.title);
            if !sec.note.is_empty() {
                let _ = writeln!(s, "{}", sec.note);
            }
            if sec.table.header.len() > 1 {
                s.push_str(&sec.table.text());
            }
        }
        s
    }

    /// Markdown with every table.
    pub fn markdown(&self) -> String {
        let mut s = format!("# clockcache-bench report\n\nCommand: `{}`\n", self.command);
        for sec in self.sections() {
            let _ = writeln!(s, "\n## {}\n", sec.title);
            if !sec.note.is_empty() {
                let _ = writeln!(s, "{}\n", sec.note);
            }
            if sec.table.header.len() > 1 {
                s.push_str(&sec.table.markdown());
            }
        }
        s
    }

    /// The charts: throughput against threads per workload, latency percentiles,
    /// hit ratio against capacity per trace, bytes per entry.
    pub fn charts(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let caches = self.caches();
        for w in self.workloads() {
            let th = self.threads_of(&w);
            if th.len() > 1 {
                let xl: Vec<String> = th.iter().map(|t| t.to_string()).collect();
                let series: Vec<Series> = caches
                    .iter()
                    .filter(|c| th.iter().any(|&t| self.cell(&w, c, t).is_some()))
                    .map(|c| Series {
                        name: c.clone(),
                        color: cache_color(c),
                        values: th
                            .iter()
                            .map(|&t| self.cell(&w, c, t).map(|x| x.median()))
                            .collect(),
                    })
                    .collect();
                out.push((
                    format!("throughput-{}", slug(&w)),
                    svg::line_chart(
                        &format!("{w}: throughput"),
                        "threads",
                        "Mops/s (median)",
                        &xl,
                        &series,
                        false,
                    ),
                ));
            }
            let Some(&t) = th.last() else { continue };
            let xl: Vec<String> = ["p50", "p99", "p99.9", "max"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let series: Vec<Series> = caches
                .iter()
                .filter_map(|c| self.cell(&w, c, t))
                .map(|c| Series {
                    name: c.cache.clone(),
                    color: cache_color(&c.cache),
                    values: c.latency_ns.iter().map(|&v| Some(v as f64)).collect(),
                })
                .collect();
            out.push((
                format!("latency-{}-{t}t", slug(&w)),
                svg::line_chart(
                    &format!("{w}: latency at {t} threads"),
                    "percentile",
                    "latency (log scale)",
                    &xl,
                    &series,
                    true,
                ),
            ));
        }
        let mut by_trace: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for t in &self.traces {
            let v = by_trace.entry(t.trace.clone()).or_default();
            if !v.contains(&t.capacity) {
                v.push(t.capacity);
            }
        }
        for (tr, caps) in by_trace {
            let xl: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
            let series: Vec<Series> = caches
                .iter()
                .filter(|c| self.traces.iter().any(|t| t.trace == tr && &t.cache == *c))
                .map(|c| Series {
                    name: c.clone(),
                    color: cache_color(c),
                    values: caps
                        .iter()
                        .map(|&cap| {
                            self.traces
                                .iter()
                                .find(|t| t.trace == tr && t.capacity == cap && &t.cache == c)
                                .map(|t| t.hit_ratio * 100.0)
                        })
                        .collect(),
                })
                .collect();
            out.push((
                format!("hit-ratio-{}", slug(&tr)),
                svg::line_chart(
                    &format!("trace {tr}: hit ratio against capacity"),
                    "capacity (entries)",
                    "hit ratio %",
                    &xl,
                    &series,
                    false,
                ),
            ));
        }
        if !self.memory.is_empty() {
            let bars: Vec<(String, usize, f64)> = self
                .memory
                .iter()
                .map(|m| (m.cache.clone(), cache_color(&m.cache), m.bytes_per_entry))
                .collect();
            out.push((
                "bytes-per-entry".into(),
                svg::bar_chart("bytes per entry (u64 keys and values)", "B", &bars),
            ));
        }
        out
    }

    /// A self-contained HTML page: every table and chart inline.
    pub fn html(&self) -> String {
        let mut s = String::from(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>clockcache-bench report</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}svg{margin:0.5em;border:1px solid #eee}</style></head><body><h1>clockcache-bench report</h1>",
        );
        let _ = write!(
            s,
            "<p>Command: <code>{}</code></p>",
            svg::esc(&self.command)
        );
        s.push_str("<h2>Charts</h2><div>");
        for (_, c) in self.charts() {
            s.push_str(&c);
        }
        s.push_str("</div>");
        for sec in self.sections() {
            let _ = write!(s, "<h2>{}</h2>", svg::esc(&sec.title));
            if !sec.note.is_empty() {
                let _ = write!(s, "<p>{}</p>", svg::esc(&sec.note));
            }
            if sec.table.header.len() > 1 {
                s.push_str(&sec.table.html());
            }
        }
        s.push_str("</body></html>\n");
        s
    }
}

/// A file-name-safe form of a name.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(w: &str, cache: &str, threads: usize, mops: f64, hit: f64, p999: u64) -> Cell {
        Cell {
            workload: w.into(),
            cache: cache.into(),
            threads,
            mops: vec![mops * 0.9, mops, mops * 1.1],
            hit_ratio: Some(hit),
            latency_ns: [50, 200, p999, 9000],
            samples: 100,
        }
    }

    fn report() -> Report {
        let rh = "read-heavy 90/10 z0.99";
        let go = "get-only (full) z0.99";
        Report {
            machine: Machine {
                nproc: 2,
                cpu: "test".into(),
                kernel: "k".into(),
                date: "d".into(),
                loadavg: "0.00 0.00 0.00".into(),
            },
            command: "x".into(),
            settings: vec![("capacity".into(), "100".into())],
            timer_overhead_ns: [20, 40],
            cells: vec![
                cell(rh, "clockcache", 2, 30.0, 0.70, 1000),
                cell(rh, "quick_cache", 2, 15.0, 0.69, 1000),
                cell(rh, "mutex-lru", 2, 5.0, 0.65, 1000),
                cell(rh, "clockcache", 8, 30.0, 0.70, 1000),
                cell(rh, "mutex-lru", 8, 3.0, 0.65, 20_000),
                cell(go, "clockcache", 2, 40.0, 1.0, 100),
                cell(go, "quick_cache", 2, 25.0, 1.0, 100),
                cell(go, "hashmap", 2, 100.0, 1.0, 100),
            ],
            traces: vec![
                TraceCell {
                    trace: "OLTP".into(),
                    requests: 10,
                    capacity: 1000,
                    cache: "clockcache".into(),
                    hit_ratio: 0.30,
                    mops: 1.0,
                },
                TraceCell {
                    trace: "OLTP".into(),
                    requests: 10,
                    capacity: 1000,
                    cache: "mutex-lru".into(),
                    hit_ratio: 0.33,
                    mops: 1.0,
                },
            ],
            traces_note: None,
            memory: vec![MemResult {
                cache: "clockcache".into(),
                inserted: 1000,
                entries: 1000,
                rss_delta: 60_000,
                bytes_per_entry: 60.0,
            }],
            expiry_params: None,
            expiry: vec![],
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn goals_are_evaluated_from_the_cells() {
        let g = report().goals();
        let find = |s: &str| {
            g.iter()
                .find(|g| g.what.contains(s))
                .unwrap_or_else(|| panic!("{s}: {g:?}"))
        };
        let q = find("2 threads: clockcache / quick_cache");
        assert_eq!((q.measured.as_str(), q.met), ("2.00x", Some(true)));
        let l = find("clockcache / mutex-lru throughput");
        assert_eq!((l.measured.as_str(), l.met), ("6.00x", Some(true)));
        let go = g
            .iter()
            .find(|g| g.what.starts_with("get-only") && g.what.contains("quick_cache"))
            .unwrap();
        assert_eq!((go.measured.as_str(), go.met), ("1.60x", Some(false)));
        let hm = find("HashMap");
        assert_eq!((hm.measured.as_str(), hm.met), ("0.40x", Some(false)));
        let p = find("p99.9");
        assert_eq!(p.met, Some(true), "{p:?}");
        let hr = find("read-heavy 90/10 z0.99, 2 threads: hit ratio");
        assert_eq!(hr.met, Some(true));
        assert!(hr.measured.contains("vs quick_cache +1.00 pt"), "{hr:?}");
        let tr = find("trace OLTP at 1000");
        assert_eq!(tr.met, Some(false));
        assert_eq!(find("bytes per entry").met, Some(true));
    }

    #[test]
    fn renderings_hold_every_cell() {
        let r = report();
        let text = r.text();
        let md = r.markdown();
        let html = r.html();
        for s in [&text, &md, &html] {
            assert!(s.contains("read-heavy 90/10 z0.99"));
            assert!(s.contains("quick_cache"));
            assert!(s.contains("30.00"));
        }
        assert!(md.contains("|---|"));
        assert!(html.contains("<svg") && html.ends_with("</html>\n"));
        let charts = r.charts();
        let names: Vec<&str> = charts.iter().map(|c| c.0.as_str()).collect();
        assert!(
            names.contains(&"throughput-read-heavy-90-10-z0.99"),
            "{names:?}"
        );
        assert!(names.contains(&"hit-ratio-oltp"));
        assert!(names.contains(&"bytes-per-entry"));
        assert!(serde_json::to_string(&r).unwrap().contains("\"cells\""));
    }

    #[test]
    fn tables_align_and_slugs_are_safe() {
        let mut t = Table::new(&["a", "bb"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.text(), "a    bb\n-------\nxyz   1\n");
        assert_eq!(slug("get-only (full) z0.99"), "get-only-full-z0.99");
    }
}
