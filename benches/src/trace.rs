//! Replay of the ARC block traces (see ../shared/traces/README.md).
//!
//! A trace file is zstd-compressed text; each line `start count ...` stands for the
//! `count` consecutive keys `start .. start + count`. Replay makes each key a get and
//! inserts it on a miss.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::adapters::{BenchCache, CacheKind, CacheSpec, CacheVisitor};

/// A parsed trace: runs of consecutive keys.
#[derive(Clone, Debug)]
pub struct Trace {
    /// File stem, e.g. `OLTP`.
    pub name: String,
    /// `(start, count)` per line.
    pub runs: Vec<(u64, u32)>,
}

impl Trace {
    /// Total keys requested (the sum of the counts).
    pub fn requests(&self) -> u64 {
        self.runs.iter().map(|&(_, c)| c as u64).sum()
    }

    /// Parses decompressed trace text, keeping at most `limit` lines.
    pub fn parse(name: &str, text: impl Read, limit: Option<usize>) -> std::io::Result<Trace> {
        let mut runs = Vec::new();
        for line in BufReader::new(text).lines() {
            if limit.is_some_and(|l| runs.len() >= l) {
                break;
            }
            let line = line?;
            let mut f = line.split_ascii_whitespace();
            let (Some(start), Some(count)) = (f.next(), f.next()) else {
                continue;
            };
            let bad = |_| std::io::Error::new(std::io::ErrorKind::InvalidData, line.clone());
            runs.push((start.parse().map_err(bad)?, count.parse().map_err(bad)?));
        }
        Ok(Trace {
            name: name.to_string(),
            runs,
        })
    }

    /// Reads and parses a `.lis.zst` file.
    pub fn load(path: &Path, limit: Option<usize>) -> std::io::Result<Trace> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("trace")
            .split('.')
            .next()
            .unwrap_or("trace")
            .to_string();
        let file = std::fs::File::open(path)?;
        Trace::parse(&name, zstd::stream::read::Decoder::new(file)?, limit)
    }
}

/// The `*.lis.zst` files in `dir`, sorted by name.
pub fn find_traces(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".lis.zst")))
        .collect();
    files.sort();
    files
}

/// What one replay measured.
#[derive(Clone, Copy, Debug)]
pub struct ReplayResult {
    /// Gets issued.
    pub gets: u64,
    /// Gets that hit.
    pub hits: u64,
    /// Wall time of the replay (one thread).
    pub elapsed: Duration,
}

impl ReplayResult {
    /// Hits over gets.
    pub fn hit_ratio(&self) -> f64 {
        self.hits as f64 / self.gets.max(1) as f64
    }
}

/// Replays `trace` on a fresh `C` of `capacity` entries, on the calling thread.
pub fn replay<C: BenchCache>(trace: &Trace, capacity: usize) -> ReplayResult {
    let cache = C::build(&CacheSpec::new(capacity), &[]);
    let (mut gets, mut hits) = (0u64, 0u64);
    let t = Instant::now();
    for &(start, count) in &trace.runs {
        for k in start..start + count as u64 {
            gets += 1;
            if cache.get(k).is_some() {
                hits += 1;
            } else {
                cache.insert(k, k);
            }
        }
    }
    ReplayResult {
        gets,
        hits,
        elapsed: t.elapsed(),
    }
}

/// [`replay`] for a cache chosen at run time.
pub struct Replay<'a> {
    /// The trace.
    pub trace: &'a Trace,
    /// Cache capacity in entries.
    pub capacity: usize,
}

impl CacheVisitor for Replay<'_> {
    type Output = ReplayResult;
    fn visit<C: BenchCache>(self, _kind: CacheKind) -> ReplayResult {
        replay::<C>(self.trace, self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compressed_runs() {
        let text = "10 3 0 0\n\n100 1 5 6\n11 2 0 0\n";
        let packed = zstd::stream::encode_all(text.as_bytes(), 3).unwrap();
        let t = Trace::parse(
            "T",
            zstd::stream::read::Decoder::new(&packed[..]).unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(t.runs, vec![(10, 3), (100, 1), (11, 2)]);
        assert_eq!(t.requests(), 6);
        let limited = Trace::parse("T", text.as_bytes(), Some(1)).unwrap();
        assert_eq!(limited.runs, vec![(10, 3)]);
        assert!(Trace::parse("T", "x 1\n".as_bytes(), None).is_err());
    }

    #[test]
    fn replay_expands_runs_and_counts_lru_hits() {
        // Keys 10 11 12 100 11 12: with room for 4, the last two hit.
        let t = Trace::parse("T", "10 3\n100 1\n11 2\n".as_bytes(), None).unwrap();
        let r = CacheKind::MutexLru.visit(Replay {
            trace: &t,
            capacity: 4,
        });
        assert_eq!((r.gets, r.hits), (6, 2));
        // With room for 2 exact LRU holds {100, 12} when 11 comes back: no hits.
        let r = CacheKind::MutexLru.visit(Replay {
            trace: &t,
            capacity: 2,
        });
        assert_eq!((r.gets, r.hits), (6, 0));
    }

    #[test]
    fn finds_only_trace_files() {
        let dir = std::env::temp_dir().join(format!("ccb-traces-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("B.lis.zst"), b"0123456789").unwrap();
        std::fs::write(dir.join("A.lis.zst"), b"0").unwrap();
        std::fs::write(dir.join("README.md"), b"x").unwrap();
        let found = find_traces(&dir);
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["A.lis.zst", "B.lis.zst"]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(find_traces(&dir).is_empty());
    }
}
