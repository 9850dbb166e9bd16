//! Bytes the engine's own structures (table, queues, ghosts, deadline index)
//! take per entry, for each eviction policy: right after filling a cache of
//! one million `u64` entries, and after three million more inserts of fresh
//! keys, once the ghosts have filled. Entry allocations themselves are not
//! included (see the bench harness's bytes-per-entry figure for the total).
//!
//! `cargo run --release -p clockcache --example ghost_memory`

use clockcache::{Cache, EvictionPolicy};

fn main() {
    const N: u64 = 1_000_000;
    for policy in [
        EvictionPolicy::Clock,
        EvictionPolicy::S3Fifo,
        EvictionPolicy::Adaptive,
    ] {
        let cache: Cache<u64, u64> = Cache::builder().capacity(N).eviction_policy(policy).build();
        for k in 0..N {
            cache.insert(k, k);
        }
        let filled = cache.structure_bytes() as f64 / cache.len() as f64;
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..3 * N {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = N + x % (10 * N);
            cache.insert(k, k);
        }
        let churned = cache.structure_bytes() as f64 / cache.len() as f64;
        println!(
            "{policy:?}: {filled:.1} bytes per entry when filled, {churned:.1} after {} more inserts ({} entries)",
            3 * N,
            cache.len()
        );
    }
}
