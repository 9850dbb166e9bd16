//! The reliability suite of `clockcache`.
//!
//! Each fuzz target in `fuzz/fuzz_targets/` is one line that calls a `run`
//! function of this crate, so that the same logic also runs on stable as an
//! ordinary test: `tests/corpus.rs` replays every file of the checked-in
//! seed corpora (`fuzz/corpus/<target>/`). Every `run` takes raw bytes,
//! decodes them with [`arbitrary`] and panics on the first broken invariant.
//!
//! | module | fuzz target | checks |
//! |---|---|---|
//! | [`cache_ops`] | `cache_ops` | one thread, step by step against a reference model |
//! | [`cache_ops_threads`] | `cache_ops_threads` | 2 to 4 threads, invariants that hold under concurrency |
//! | `session_json` | `session_json` | session decoding never panics, round-trips |
//! | `session_ops` | `session_ops` | in-memory session strategy and `SessionCache` against a model |
//!
//! [`stress`] and [`memory`] are the long-running checks behind the
//! `clockcache-stress` binary. `docs/reliability.md` lists every guarantee
//! and what checks it.

#![warn(missing_docs)]

pub mod cache_ops;
pub mod cache_ops_threads;
pub mod memory;
#[cfg(feature = "session")]
pub mod session_json;
#[cfg(feature = "session")]
pub mod session_ops;
pub mod stress;
pub mod tracked;
