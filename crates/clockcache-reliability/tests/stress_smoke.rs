//! Short runs of the stress and memory checks, so a plain `cargo test`
//! exercises them (the binary `clockcache-stress` runs them for long).

use clockcache::EvictionPolicy;
use clockcache_reliability::stress::{run, Limit, StressConfig};

#[test]
fn stress_every_mode_at_two_and_four_threads() {
    for threads in [2, 4] {
        for (policy, weighted) in [
            (EvictionPolicy::Adaptive, false),
            (EvictionPolicy::S3Fifo, false),
            (EvictionPolicy::Clock, true),
        ] {
            let r = run(&StressConfig {
                threads,
                limit: Limit::OpsPerThread(20_000),
                policy,
                weighted,
                capacity: if weighted { 512 * 8 } else { 512 },
                keys: 2048,
                shards: 4,
            });
            assert_eq!(r.ops, threads as u64 * 20_000);
            assert!(r.values > 0 && r.checked_reads > 0, "{r:?}");
        }
    }
}
