//! Refresh-ahead: a hit on an entry a refresh period old returns the cached
//! value and starts one reload; success replaces the value, failure keeps
//! it until it expires, a write during the reload wins, and the loading
//! calls wait for a reload like for any load of the key. Time is a mock
//! clock throughout; reloads run on executors the tests control.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use clockcache::{Cache, MockClock, Refresh, RefreshJob, RemovalCause};

const TTL: Duration = Duration::from_secs(100);
const PERIOD: Duration = Duration::from_secs(60);

/// Jobs handed to the executor, run when the test says.
#[derive(Clone, Default)]
struct Queue(Arc<Mutex<Vec<RefreshJob>>>);

impl Queue {
    fn executor(&self) -> impl Fn(RefreshJob) + Send + Sync + 'static {
        let q = self.clone();
        move |job| q.0.lock().unwrap().push(job)
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn run_all(&self) {
        let jobs: Vec<_> = std::mem::take(&mut *self.0.lock().unwrap());
        for job in jobs {
            job();
        }
    }
}

/// A cache whose reloads answer `"<old>+"` (counted in `calls`) or, while
/// `fail` is set, an error; reloads go to `queue`.
fn cache(
    clock: &MockClock,
    queue: &Queue,
    calls: &Arc<AtomicUsize>,
    fail: &Arc<AtomicUsize>,
) -> Cache<u32, String> {
    let (calls, fail) = (calls.clone(), fail.clone());
    Cache::builder()
        .capacity(100)
        .time_to_live(TTL)
        .clock(clock.clone())
        .refresh_after(
            PERIOD,
            Refresh::with_executor(
                move |_k: &u32, old: &String| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    if fail.load(Ordering::SeqCst) != 0 {
                        Err("database down")
                    } else {
                        Ok(format!("{old}+"))
                    }
                },
                queue.executor(),
            ),
        )
        .build()
}

struct Setup {
    clock: MockClock,
    queue: Queue,
    calls: Arc<AtomicUsize>,
    fail: Arc<AtomicUsize>,
    cache: Cache<u32, String>,
}

/// A job holds a handle on its cache, and the cache holds the executor that
/// holds the queue: drop the jobs left over, so that no test leaks its
/// cache (AddressSanitizer's leak check runs these tests).
impl Drop for Setup {
    fn drop(&mut self) {
        let left: Vec<_> = std::mem::take(&mut *self.queue.0.lock().unwrap());
        drop(left);
    }
}

fn setup() -> Setup {
    let clock = MockClock::new();
    let queue = Queue::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(AtomicUsize::new(0));
    let cache = cache(&clock, &queue, &calls, &fail);
    cache.insert(1, "v".to_string());
    Setup {
        clock,
        queue,
        calls,
        fail,
        cache,
    }
}

/// [`setup`], then a due hit that claims the reload of key 1 (its job
/// waits in the queue).
fn claimed() -> Setup {
    let s = setup();
    s.clock.advance(PERIOD);
    assert_eq!(
        s.cache.get(&1).unwrap(),
        "v",
        "a due hit returns the cached value"
    );
    s
}

#[test]
fn a_hit_before_the_period_starts_nothing_and_one_at_the_period_returns_the_old_value_and_reloads()
{
    let s = setup();
    s.clock.advance(PERIOD - Duration::from_nanos(1));
    assert_eq!(s.cache.get(&1).unwrap(), "v");
    assert_eq!(s.queue.len(), 0, "not due yet");
    s.clock.advance(Duration::from_nanos(1));
    assert_eq!(s.cache.get(&1).unwrap(), "v", "a due hit returns at once");
    assert_eq!(s.queue.len(), 1);
    s.queue.run_all();
    assert_eq!(s.calls.load(Ordering::SeqCst), 1);
    assert_eq!(s.cache.get(&1).unwrap(), "v+");
    assert_eq!(s.cache.stats().loads, 1, "a refresh counts as a load");
    // The reloaded entry has a write time of its own: not due again until
    // a period after the reload.
    s.clock.advance(PERIOD - Duration::from_nanos(1));
    assert_eq!(s.cache.get(&1).unwrap(), "v+");
    assert_eq!(s.queue.len(), 0);
    s.clock.advance(Duration::from_nanos(1));
    s.cache.get(&1);
    assert_eq!(s.queue.len(), 1);
}

#[test]
fn peek_contains_key_and_iteration_do_not_refresh() {
    let s = setup();
    s.clock.advance(PERIOD);
    assert_eq!(s.cache.peek(&1).unwrap(), "v");
    assert!(s.cache.contains_key(&1));
    assert_eq!(s.cache.iter().count(), 1);
    assert_eq!(s.queue.len(), 0);
}

#[test]
fn many_readers_of_a_due_entry_start_one_reload() {
    let s = setup();
    s.clock.advance(PERIOD);
    let barrier = Arc::new(Barrier::new(8));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (c, b) = (s.cache.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                (0..1_000).all(|_| c.get(&1).unwrap() == "v")
            })
        })
        .collect();
    for r in readers {
        assert!(
            r.join().unwrap(),
            "every read before the reload sees the old value"
        );
    }
    assert_eq!(s.queue.len(), 1, "one reload for 8,000 due hits");
    s.queue.run_all();
    assert_eq!(s.cache.get(&1).unwrap(), "v+");
    assert_eq!(s.calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_successful_reload_replaces_the_value_with_a_new_time_to_live() {
    let replaced = Arc::new(Mutex::new(Vec::new()));
    let seen = replaced.clone();
    let clock = MockClock::new();
    let queue = Queue::default();
    let cache: Cache<u32, String> = Cache::builder()
        .capacity(100)
        .time_to_live(TTL)
        .clock(clock.clone())
        .eviction_listener(move |_k: &u32, v: &String, cause| {
            seen.lock().unwrap().push((v.clone(), cause));
        })
        .refresh_after(
            PERIOD,
            Refresh::with_executor(
                |_k: &u32, old: &String| Ok::<_, ()>(format!("{old}+")),
                queue.executor(),
            ),
        )
        .build();
    cache.insert(1, "v".to_string());
    clock.advance(PERIOD);
    cache.get(&1);
    queue.run_all();
    assert_eq!(
        *replaced.lock().unwrap(),
        vec![("v".to_string(), RemovalCause::Replaced)]
    );
    // The first write would have expired at TTL; the reload lives TTL from
    // the reload.
    clock.advance(TTL - Duration::from_nanos(1));
    assert_eq!(cache.peek(&1).unwrap(), "v+");
    clock.advance(Duration::from_nanos(1));
    assert_eq!(cache.peek(&1), None);
}

#[test]
fn a_failed_reload_keeps_the_old_value_until_it_expires_and_retries_a_period_later() {
    let s = setup();
    s.fail.store(1, Ordering::SeqCst);
    s.clock.advance(PERIOD);
    s.cache.get(&1);
    s.queue.run_all();
    assert_eq!(s.calls.load(Ordering::SeqCst), 1);
    assert_eq!(s.cache.stats().load_failures, 1);
    assert_eq!(s.cache.get(&1).unwrap(), "v", "the old value stays");
    assert_eq!(s.queue.len(), 0, "no retry on the next hit");
    // The failure at PERIOD counts as a write time for the next attempt,
    // which therefore comes after the entry expired at TTL < 2 * PERIOD.
    s.clock.advance(TTL - PERIOD - Duration::from_nanos(1));
    assert_eq!(s.cache.get(&1).unwrap(), "v");
    assert_eq!(s.queue.len(), 0);
    s.clock.advance(Duration::from_nanos(1));
    assert_eq!(s.cache.get(&1), None, "expired at its time to live");
}

#[test]
fn a_failed_reload_is_tried_again_a_period_after_the_failure() {
    let clock = MockClock::new();
    let queue = Queue::default();
    let fails = Arc::new(AtomicUsize::new(1));
    let f = fails.clone();
    let cache: Cache<u32, u32> = Cache::builder()
        .capacity(100)
        .clock(clock.clone())
        .refresh_after(
            PERIOD,
            Refresh::with_executor(
                move |_k: &u32, old: &u32| {
                    if f.fetch_sub(1, Ordering::SeqCst) > 0 {
                        Err(())
                    } else {
                        Ok(old + 1)
                    }
                },
                queue.executor(),
            ),
        )
        .build();
    cache.insert(1, 1);
    clock.advance(PERIOD);
    cache.get(&1);
    queue.run_all();
    assert_eq!(cache.get(&1), Some(1));
    clock.advance(PERIOD - Duration::from_nanos(1));
    cache.get(&1);
    assert_eq!(queue.len(), 0);
    clock.advance(Duration::from_nanos(1));
    cache.get(&1);
    assert_eq!(queue.len(), 1, "tried again a period after the failure");
    queue.run_all();
    assert_eq!(cache.get(&1), Some(2));
}

#[test]
fn a_write_during_a_reload_wins_over_it() {
    let s = claimed();
    s.cache.insert(1, "newer".to_string());
    s.queue.run_all();
    assert_eq!(s.cache.get(&1).unwrap(), "newer");

    s.clock.advance(PERIOD);
    s.cache.get(&1);
    assert!(s.cache.remove(&1).is_some());
    s.queue.run_all();
    assert_eq!(s.cache.get(&1), None, "a removal during the reload wins");

    s.cache.insert(2, "w".to_string());
    s.clock.advance(PERIOD);
    s.cache.get(&2);
    s.cache.clear();
    s.queue.run_all();
    assert_eq!(s.cache.get(&2), None, "a clear during the reload wins");
}

#[test]
fn a_write_gives_the_entry_a_new_write_time() {
    let s = setup();
    s.clock.advance(PERIOD);
    s.cache.insert(1, "w".to_string());
    assert_eq!(s.cache.get(&1).unwrap(), "w");
    assert_eq!(s.queue.len(), 0, "written just now: not due");
    s.clock.advance(PERIOD);
    s.cache.get(&1);
    assert_eq!(s.queue.len(), 1);
}

#[test]
fn a_caller_that_misses_during_a_reload_waits_for_it() {
    let s = claimed();
    // The entry expires while its reload is in flight.
    s.clock.advance(TTL);
    let queue = s.queue.clone();
    let runner = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        queue.run_all();
    });
    let v = s.cache.get_or_insert_with(1, || {
        panic!("the reload's value is awaited, not loaded again")
    });
    assert_eq!(v, "v+");
    runner.join().unwrap();
    assert_eq!(s.calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_caller_that_waited_for_a_failed_reload_loads_the_key_itself() {
    let s = setup();
    s.fail.store(1, Ordering::SeqCst);
    s.clock.advance(PERIOD);
    s.cache.get(&1);
    s.clock.advance(TTL);
    let queue = s.queue.clone();
    let runner = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        queue.run_all();
    });
    let r = s
        .cache
        .get_or_try_insert_with(1, || Ok::<_, String>("loaded".to_string()));
    assert_eq!(r.unwrap(), "loaded");
    runner.join().unwrap();
    assert_eq!(s.cache.get(&1).unwrap(), "loaded");
}

#[test]
fn a_job_the_executor_drops_releases_the_key_and_counts_as_a_failure() {
    let clock = MockClock::new();
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let cache: Cache<u32, u32> = Cache::builder()
        .capacity(100)
        .time_to_live(TTL)
        .clock(clock.clone())
        .refresh_after(
            PERIOD,
            Refresh::with_executor(
                |_k: &u32, _old: &u32| -> Result<u32, ()> { unreachable!("never run") },
                move |job| {
                    d.fetch_add(1, Ordering::SeqCst);
                    drop(job);
                },
            ),
        )
        .build();
    cache.insert(1, 1);
    clock.advance(PERIOD);
    assert_eq!(cache.get(&1), Some(1));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get(&1), Some(1));
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the failure counts as a write time"
    );
    // The key is not stuck: a load after expiry runs.
    clock.advance(TTL);
    assert_eq!(cache.get_or_insert_with(1, || 5), 5);
}

#[test]
fn a_panicking_reload_releases_the_key_and_keeps_the_value() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .capacity(100)
        .time_to_live(TTL)
        .clock(clock.clone())
        .refresh_after(
            PERIOD,
            Refresh::with_executor(
                |_k: &u32, _old: &u32| -> Result<u32, ()> { panic!("reload bug") },
                |job| {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    assert!(r.is_err());
                },
            ),
        )
        .build();
    cache.insert(1, 1);
    clock.advance(PERIOD);
    assert_eq!(cache.get(&1), Some(1));
    assert_eq!(cache.get(&1), Some(1));
    clock.advance(TTL);
    assert_eq!(cache.get_or_insert_with(1, || 7), 7);
}

#[test]
fn the_loading_calls_refresh_on_their_hits() {
    let s = setup();
    s.clock.advance(PERIOD);
    assert_eq!(
        s.cache.get_or_insert_with(1, || unreachable!()),
        "v",
        "a hit"
    );
    assert_eq!(s.queue.len(), 1);
}

#[test]
fn the_default_executor_reloads_on_a_thread_of_its_own() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .capacity(100)
        .clock(clock.clone())
        .refresh_after(
            PERIOD,
            Refresh::new(|_k: &u32, old: &u32| {
                assert_eq!(std::thread::current().name(), Some("clockcache-refresh"));
                Ok::<_, ()>(old + 1)
            }),
        )
        .build();
    cache.insert(1, 1);
    clock.advance(PERIOD);
    assert_eq!(cache.get(&1), Some(1));
    let start = Instant::now();
    while cache.get(&1) != Some(2) {
        assert!(start.elapsed() < Duration::from_secs(10), "no reload");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn async_reload(rt: &tokio::runtime::Runtime) {
    let clock = MockClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handle = rt.handle().clone();
    let cache: Cache<u32, u32> = Cache::builder()
        .capacity(100)
        .clock(clock.clone())
        .refresh_after(
            PERIOD,
            Refresh::future(
                move |_k: u32, old: u32| {
                    let c = c.clone();
                    async move {
                        tokio::task::yield_now().await;
                        c.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, ()>(old + 1)
                    }
                },
                move |task| {
                    handle.spawn(task);
                },
            ),
        )
        .build();
    cache.insert(1, 1);
    clock.advance(PERIOD);
    rt.block_on(async {
        assert_eq!(cache.get(&1), Some(1));
        // A miss after expiry would wait; here the key is live, and the
        // reload lands while this task yields.
        for _ in 0..10_000 {
            if cache.get(&1) == Some(2) {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(cache.get(&1), Some(2));
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn an_async_reload_runs_on_a_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    async_reload(&rt);
}

#[test]
fn an_async_reload_runs_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    async_reload(&rt);
}

#[test]
fn an_async_reload_that_the_runtime_drops_releases_the_key() {
    let clock = MockClock::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    let cache: Cache<u32, u32> = Cache::builder()
        .capacity(100)
        .time_to_live(TTL)
        .clock(clock.clone())
        .refresh_after(
            PERIOD,
            Refresh::future(
                |_k: u32, _old: u32| std::future::pending::<Result<u32, ()>>(),
                move |task| {
                    handle.spawn(task);
                },
            ),
        )
        .build();
    cache.insert(1, 1);
    clock.advance(PERIOD);
    assert_eq!(cache.get(&1), Some(1));
    // Let the task start, then shut the runtime down: its future drops.
    rt.block_on(tokio::task::yield_now());
    drop(rt);
    clock.advance(TTL);
    assert_eq!(cache.get_or_insert_with(1, || 9), 9, "not stuck");
}

#[test]
fn every_value_of_a_refreshing_cache_is_dropped_once() {
    let clock = MockClock::new();
    let queue = Queue::default();
    let marker = Arc::new(());
    {
        let cache = marker_cache(&clock, &queue);
        for i in 0..64 {
            cache.insert(i, Arc::clone(&marker));
        }
        clock.advance(PERIOD);
        for i in 0..64 {
            cache.get(&i);
        }
        queue.run_all();
        for i in 0..32 {
            cache.remove(&i);
        }
    }
    wait_released(&marker);
}

/// A refreshing cache of 16 entries whose reloads keep the value and wait
/// in `queue`.
fn marker_cache(clock: &MockClock, queue: &Queue) -> Cache<u32, Arc<()>> {
    Cache::builder()
        .capacity(16)
        .shards(1)
        .clock(clock.clone())
        .refresh_after(
            PERIOD,
            Refresh::with_executor(
                |_k: &u32, old: &Arc<()>| Ok::<_, ()>(Arc::clone(old)),
                queue.executor(),
            ),
        )
        .build()
}

/// Waits until only the test holds `marker`: every value was dropped.
fn wait_released(marker: &Arc<()>) {
    let start = Instant::now();
    while Arc::strong_count(marker) != 1 {
        assert!(start.elapsed() < Duration::from_secs(10), "a value leaked");
        crossbeam_epoch::pin().flush();
        std::thread::yield_now();
    }
}

#[test]
fn an_entry_nobody_reads_is_not_reloaded_and_expires() {
    let s = setup();
    s.clock.advance(TTL);
    assert_eq!(s.cache.get(&1), None);
    assert_eq!(s.queue.len(), 0);
    assert_eq!(s.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn a_reload_outlives_the_last_handle_on_its_cache_and_then_releases_everything() {
    let clock = MockClock::new();
    let queue = Queue::default();
    let marker = Arc::new(());
    let cache = marker_cache(&clock, &queue);
    cache.insert(1, Arc::clone(&marker));
    clock.advance(PERIOD);
    cache.get(&1);
    drop(cache);
    assert!(Arc::strong_count(&marker) > 1, "the job holds the cache");
    queue.run_all();
    wait_released(&marker);
}
