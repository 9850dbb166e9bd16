//! clockcache-bench: runs the same workloads on clockcache, a mutex-LRU (whole and
//! sharded), moka, quick_cache and a read-only HashMap, side by side in one process,
//! and reports throughput, hit ratio, latency percentiles, bytes per entry and expiry
//! behaviour.
//!
//! The binary (`src/main.rs`) is the command-line front end; this library holds the
//! pieces so that the criterion benches and the tests can use them.

#![warn(missing_docs)]

pub mod adapters;
pub mod child;
pub mod opcost;
pub mod report;
pub mod runner;
pub mod sessions;
pub mod svg;
pub mod trace;
pub mod workload;
