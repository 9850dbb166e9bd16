//! Maintenance: an idle cache with a maintenance thread or task returns to
//! its live size and drops its expired values, in steps of bounded work,
//! and the thread or task ends when the cache goes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clockcache::{Cache, MockClock, MAINTENANCE_STEP};

const EXPIRED: usize = 100_000;
const LIVE: usize = 1_000;

/// Fills `cache` with `EXPIRED` entries of a 1 s ttl and `LIVE` without,
/// all holding `marker`, and moves the clock past the ttl.
fn fill(cache: &Cache<usize, Arc<()>>, clock: &MockClock, marker: &Arc<()>) {
    for i in 0..EXPIRED {
        cache.insert_with_ttl(i, Arc::clone(marker), Duration::from_secs(1));
    }
    for i in EXPIRED..EXPIRED + LIVE {
        cache.insert(i, Arc::clone(marker));
    }
    clock.advance(Duration::from_secs(1));
    // Expired, not reclaimed: nothing has written since.
    assert_eq!(cache.len(), EXPIRED + LIVE);
}

/// Tests that start a maintenance thread run one at a time, so that one
/// can count the threads.
static SERIAL: Mutex<()> = Mutex::new(());

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(30), "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_idle_cache_with_a_maintenance_thread_returns_to_its_live_size() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let clock = MockClock::new();
    let marker = Arc::new(());
    let cache: Cache<usize, Arc<()>> = Cache::builder()
        .capacity(200_000)
        .clock(clock.clone())
        .maintenance_thread(Duration::from_millis(10))
        .build();
    fill(&cache, &clock, &marker);
    wait_for("the expired entries were never reclaimed", || {
        cache.len() == LIVE
    });
    // Their values are dropped too, with no call into the cache.
    wait_for("expired values outlived their reclamation", || {
        Arc::strong_count(&marker) == LIVE + 1
    });
    assert_eq!(cache.stats().expirations, EXPIRED as u64);
}

#[cfg(target_os = "linux")]
fn maintenance_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "clockcache-main")
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn the_maintenance_thread_ends_when_its_cache_is_dropped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Another test's thread, told to stop, may still be on its way out.
    wait_for("an earlier maintenance thread never ended", || {
        maintenance_threads() == 0
    });
    let cache: Cache<u32, u32> = Cache::builder()
        .maintenance_thread(Duration::from_millis(5))
        .build();
    wait_for("no maintenance thread started", || {
        maintenance_threads() == 1
    });
    let handle = cache.clone();
    drop(cache);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(maintenance_threads(), 1, "a handle is left");
    drop(handle);
    wait_for("the maintenance thread outlived its cache", || {
        maintenance_threads() == 0
    });
}

#[test]
fn each_step_holds_a_shard_lock_for_a_bounded_number_of_entries() {
    // The listener runs after each step releases its shard lock, and sees
    // the length that step published: with one shard, the lengths it sees
    // fall in steps of the step size.
    let clock = MockClock::new();
    let seen: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
    let handle: Arc<Mutex<Option<Cache<u32, u32>>>> = Arc::default();
    let (s, h) = (seen.clone(), handle.clone());
    let cache: Cache<u32, u32> = Cache::builder()
        .capacity(10_000)
        .shards(1)
        .time_to_live(Duration::from_secs(1))
        .clock(clock.clone())
        .eviction_listener(move |_k: &u32, _v: &u32, _c| {
            if let Some(c) = h.lock().unwrap().as_ref() {
                s.lock().unwrap().insert(c.len());
            }
        })
        .build();
    let n = 4 * MAINTENANCE_STEP + 10;
    for i in 0..n as u32 {
        cache.insert(i, i);
    }
    clock.advance(Duration::from_secs(1));
    *handle.lock().unwrap() = Some(cache.clone());
    assert_eq!(cache.run_maintenance(), n);
    let expected: BTreeSet<usize> = (1..=5)
        .map(|i| n.saturating_sub(i * MAINTENANCE_STEP))
        .collect();
    assert_eq!(*seen.lock().unwrap(), expected);
    handle.lock().unwrap().take();
}

#[test]
fn a_maintenance_task_on_tokio_reclaims_and_ends_with_its_cache() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let clock = MockClock::new();
    let marker = Arc::new(());
    let cache: Cache<usize, Arc<()>> = Cache::builder()
        .capacity(200_000)
        .clock(clock.clone())
        .build();
    let task = rt.spawn(cache.maintenance(Duration::from_millis(10), tokio::time::sleep));
    fill(&cache, &clock, &marker);
    wait_for("the task never reclaimed the expired entries", || {
        cache.len() == LIVE && Arc::strong_count(&marker) == LIVE + 1
    });
    drop(cache);
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the task outlived its cache")
            .unwrap();
    });
}
