//! Replays the checked-in seed corpora of the fuzz targets
//! (`fuzz/corpus/<target>/`) through the same functions the targets call,
//! so a plain `cargo test` on stable covers them.

use std::fs;
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    for file in corpus(target) {
        let data = fs::read(&file).expect("readable corpus file");
        eprintln!("replaying {}", file.display());
        run(&data);
    }
}

#[test]
fn cache_ops_corpus() {
    replay("cache_ops", clockcache_reliability::cache_ops::run);
}

#[test]
fn cache_ops_threads_corpus() {
    replay(
        "cache_ops_threads",
        clockcache_reliability::cache_ops_threads::run,
    );
}

#[cfg(feature = "session")]
#[test]
fn session_json_corpus() {
    replay("session_json", clockcache_reliability::session_json::run);
}

#[cfg(feature = "session")]
#[test]
fn session_ops_corpus() {
    replay("session_ops", clockcache_reliability::session_ops::run);
}
