#![no_main]
// The logic lives in clockcache-reliability so the corpus also replays as a
// plain `cargo test` (crates/clockcache-reliability/tests/corpus.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| clockcache_reliability::cache_ops::run(data));
