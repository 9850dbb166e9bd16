//! The loading calls, blocking and async: single flight, shared errors, a
//! write during a load winning over it, a loader that loads its own key,
//! cancellation of an async leader, and the statistics of a loading call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use clockcache::Cache;

/// A loader whose error is handed to every waiter runs once, and every
/// caller holds the very same error.
#[test]
fn a_failed_load_runs_once_and_every_waiter_gets_its_error() {
    let c: Cache<u32, u32> = Cache::new(100);
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (c, calls, barrier) = (c.clone(), calls.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                c.get_or_try_insert_with(1, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    Err::<u32, String>("database down".to_owned())
                })
            })
        })
        .collect();
    let errors: Vec<Arc<String>> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap_err())
        .collect();
    // The 16 threads pass the barrier within far less than the loader's
    // 200 ms, so all of them join the one load.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(errors.iter().all(|e| Arc::ptr_eq(e, &errors[0])));
    assert_eq!(*errors[0], "database down");
    assert!(c.get(&1).is_none());
    // A failure leaves nothing behind: the next caller loads.
    assert_eq!(c.get_or_insert_with(1, || 5), 5);
}

/// Runs a load of key 1 that yields `loaded` once `during` has run while it
/// was in flight; returns what the loader's caller got.
fn load_racing(c: &Cache<u32, &'static str>, during: impl FnOnce()) -> &'static str {
    let started = Arc::new(Barrier::new(2));
    let resume = Arc::new(Barrier::new(2));
    let loader = {
        let (c, started, resume) = (c.clone(), started.clone(), resume.clone());
        std::thread::spawn(move || {
            c.get_or_insert_with(1, || {
                started.wait();
                resume.wait();
                "old"
            })
        })
    };
    started.wait();
    during();
    resume.wait();
    loader.join().unwrap()
}

#[test]
fn a_load_never_overwrites_an_insert_made_while_it_ran() {
    let c: Cache<u32, &'static str> = Cache::new(100);
    let got = load_racing(&c, || {
        c.remove(&1);
        c.insert(1, "new");
        assert_eq!(c.get(&1), Some("new"));
    });
    // Its caller gets what it loaded; the cache keeps the newer value.
    assert_eq!(got, "old");
    assert_eq!(c.get(&1), Some("new"));
}

#[test]
fn a_remove_made_while_a_load_ran_is_not_undone() {
    let c: Cache<u32, &'static str> = Cache::new(100);
    assert_eq!(
        load_racing(&c, || {
            c.remove(&1);
        }),
        "old"
    );
    assert_eq!(c.get(&1), None);
}

#[test]
fn a_clear_made_while_a_load_ran_is_not_undone() {
    let c: Cache<u32, &'static str> = Cache::new(100);
    assert_eq!(load_racing(&c, || c.clear()), "old");
    assert_eq!(c.get(&1), None);
}

#[test]
fn a_replace_made_while_a_load_ran_wins() {
    let c: Cache<u32, &'static str> = Cache::new(100);
    assert_eq!(
        load_racing(&c, || {
            c.insert(1, "first");
            assert!(c.replace_if(1, "second", |v| *v == "first"));
        }),
        "old"
    );
    assert_eq!(c.get(&1), Some("second"));
}

/// A write of another key does not stop a load from caching its value.
#[test]
fn a_write_of_another_key_leaves_the_load_alone() {
    let c: Cache<u32, &'static str> = Cache::new(100);
    assert_eq!(load_racing(&c, || c.insert(2, "other")), "old");
    assert_eq!(c.get(&1), Some("old"));
}

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_loader_that_loads_its_own_key_panics_with_a_message_and_frees_the_key() {
    let c: Cache<u32, u32> = Cache::new(100);
    let c2 = c.clone();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.get_or_insert_with(1, || c2.get_or_insert_with(1, || 2) + 1)
    }));
    let msg = panic_text(r.unwrap_err());
    assert!(
        msg.contains("called back into the cache for the key it is loading"),
        "{msg}"
    );
    // The key is not stuck: the next load runs and is cached.
    assert_eq!(c.get_or_insert_with(1, || 7), 7);
    assert_eq!(c.get(&1), Some(7));
}

/// Nested loads of other keys are fine.
#[test]
fn a_loader_may_load_other_keys() {
    let c: Cache<u32, u32> = Cache::new(100);
    let c2 = c.clone();
    assert_eq!(
        c.get_or_insert_with(1, || c2.get_or_insert_with(2, || 20) + 1),
        21
    );
    assert_eq!((c.get(&1), c.get(&2)), (Some(21), Some(20)));
}

#[test]
fn loading_calls_count_a_hit_or_one_miss() {
    let c: Cache<u32, u32> = Cache::new(100);
    c.get_or_insert_with(1, || 1); // a miss, then the load
    c.get_or_insert_with(1, || 1); // a hit
    let s = c.stats();
    assert_eq!((s.hits, s.misses), (1, 1));
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

fn single_flight_async(rt: tokio::runtime::Runtime) {
    let c: Cache<u32, u32> = Cache::new(100);
    let loads = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (c, loads) = (c.clone(), loads.clone());
                tokio::spawn(async move {
                    c.get_or_insert_async(9, async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        99
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 99);
        }
    });
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(c.get(&9), Some(99));
}

#[test]
fn async_single_flight_on_a_current_thread_runtime() {
    // Waiters await: on one thread they could not block while the loader
    // sleeps, or nothing would ever run it.
    single_flight_async(current_thread());
}

#[test]
fn async_single_flight_on_a_multi_thread_runtime() {
    single_flight_async(multi_thread());
}

#[test]
fn async_errors_are_shared() {
    let c: Cache<u32, u32> = Cache::new(100);
    let calls = Arc::new(AtomicUsize::new(0));
    let errors: Vec<Arc<&str>> = multi_thread().block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (c, calls) = (c.clone(), calls.clone());
                tokio::spawn(async move {
                    c.get_or_try_insert_async(1, async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Err::<u32, &str>("down")
                    })
                    .await
                    .unwrap_err()
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(errors.iter().all(|e| Arc::ptr_eq(e, &errors[0])));
}

fn cancelled_leader(rt: tokio::runtime::Runtime) {
    let c: Cache<u32, u32> = Cache::new(100);
    rt.block_on(async {
        // The leader's request times out mid-load.
        let leader = {
            let c = c.clone();
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(50),
                    c.get_or_insert_async(1, async {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        1
                    }),
                )
                .await
            })
        };
        // A waiter joins while the leader still runs.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.get_or_insert_async(1, async { 2 }).await })
        };
        assert!(leader.await.unwrap().is_err(), "the leader timed out");
        // The waiter takes over and loads its own value.
        let got = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("a waiter of a cancelled load must not hang")
            .unwrap();
        assert_eq!(got, 2);
    });
    assert_eq!(c.get(&1), Some(2));
}

#[test]
fn a_cancelled_async_leader_hands_over_on_a_current_thread_runtime() {
    cancelled_leader(current_thread());
}

#[test]
fn a_cancelled_async_leader_hands_over_on_a_multi_thread_runtime() {
    cancelled_leader(multi_thread());
}

#[test]
fn a_dropped_async_leader_leaves_no_load_behind() {
    let c: Cache<u32, u32> = Cache::new(100);
    current_thread().block_on(async {
        let r = tokio::time::timeout(
            Duration::from_millis(10),
            c.get_or_insert_async(1, std::future::pending::<u32>()),
        )
        .await;
        assert!(r.is_err());
    });
    // No waiter: the next caller leads at once (it would wait forever on a
    // load left behind).
    assert_eq!(c.get_or_insert_with(1, || 3), 3);
}

#[test]
fn blocking_and_async_callers_share_one_load() {
    let c: Cache<u32, u32> = Cache::new(100);
    let loads = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Barrier::new(2));
    let blocking = {
        let (c, loads, started) = (c.clone(), loads.clone(), started.clone());
        std::thread::spawn(move || {
            c.get_or_insert_with(4, || {
                loads.fetch_add(1, Ordering::SeqCst);
                started.wait();
                std::thread::sleep(Duration::from_millis(100));
                40
            })
        })
    };
    started.wait();
    let got = multi_thread().block_on(async {
        c.get_or_insert_async(4, async {
            loads.fetch_add(1, Ordering::SeqCst);
            41
        })
        .await
    });
    assert_eq!((got, blocking.join().unwrap()), (40, 40));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[test]
fn an_async_loader_that_loads_its_own_key_panics_and_frees_the_key() {
    let c: Cache<u32, u32> = Cache::new(100);
    let rt = current_thread();
    let c1 = c.clone();
    let r = rt.block_on(async move {
        tokio::spawn(async move {
            let c2 = c1.clone();
            c1.get_or_insert_async(1, async move {
                c2.get_or_insert_async(1, async { 2 }).await + 1
            })
            .await
        })
        .await
    });
    let msg = panic_text(r.unwrap_err().into_panic());
    assert!(
        msg.contains("called back into the cache for the key it is loading"),
        "{msg}"
    );
    assert_eq!(c.get_or_insert_with(1, || 7), 7);
}

/// The async call's future can be spawned on a multi-thread runtime.
#[test]
fn the_async_loading_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let c: Cache<String, u32> = Cache::new(10);
    let f = c.get_or_insert_async("k".to_owned(), async { 1 });
    assert_send(&f);
    let g = c.get_or_try_insert_async("k".to_owned(), async { Ok::<u32, String>(1) });
    assert_send(&g);
}

/// A key type that counts its clones: `ToOwned` on a borrowed form makes one.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Counted(u32);

static CLONES: AtomicUsize = AtomicUsize::new(0);

impl Clone for Counted {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, Ordering::SeqCst);
        Counted(self.0)
    }
}

/// The `_by_ref` loaders clone the key only when they start a load: a hit,
/// blocking or async, clones nothing.
#[test]
fn by_ref_loaders_clone_the_key_only_on_a_miss() {
    let c: Cache<Counted, u32> = Cache::new(100);
    let k = Counted(3);
    let before = CLONES.load(Ordering::SeqCst);
    assert_eq!(c.get_or_insert_with_by_ref(&k, || 30), 30);
    assert_eq!(CLONES.load(Ordering::SeqCst), before + 1);
    for _ in 0..10 {
        assert_eq!(c.get_or_insert_with_by_ref(&k, || unreachable!()), 30);
        let r = c.get_or_try_insert_with_by_ref(&k, || Err::<u32, ()>(()));
        assert_eq!(r.ok(), Some(30));
    }
    let rt = current_thread();
    rt.block_on(async {
        assert_eq!(c.get_or_insert_async_by_ref(&k, async { 0 }).await, 30);
        let r = c.get_or_try_insert_async_by_ref(&k, async { Err::<u32, ()>(()) });
        assert_eq!(r.await.ok(), Some(30));
    });
    assert_eq!(CLONES.load(Ordering::SeqCst), before + 1);
    // A String-keyed cache is looked up with a &str.
    let s: Cache<String, usize> = Cache::new(10);
    assert_eq!(s.get_or_insert_with_by_ref("abc", || 3), 3);
    assert_eq!(s.get("abc"), Some(3));
    assert_eq!(s.remove("abc"), Some(3));
}

/// A placeholder holds the key's load: a second caller waits for it and gets
/// the value it is filled with; the waiter's timeout is honoured while the
/// placeholder is held.
#[test]
fn a_placeholder_is_waited_for_and_a_wait_can_time_out() {
    use clockcache::GuardResult;
    let c: Cache<String, u32> = Cache::new(100);
    let GuardResult::Guard(p) = c.get_value_or_guard("k", None) else {
        panic!("an empty cache hands out the placeholder");
    };
    assert!(matches!(
        c.get_value_or_guard("k", Some(Duration::from_millis(20))),
        GuardResult::Timeout
    ));
    std::thread::scope(|s| {
        let waiter = s.spawn(|| c.get_or_insert_with("k".to_owned(), || unreachable!()));
        std::thread::sleep(Duration::from_millis(20));
        p.insert(7);
        assert_eq!(waiter.join().unwrap(), 7);
    });
    assert!(matches!(
        c.get_value_or_guard("k", None),
        GuardResult::Value(7)
    ));
}

/// A placeholder dropped unfilled releases its waiters: one of them loads.
#[test]
fn a_dropped_placeholder_hands_the_load_over() {
    use clockcache::GuardResult;
    let c: Cache<String, u32> = Cache::new(100);
    let GuardResult::Guard(p) = c.get_value_or_guard("k", None) else {
        panic!("an empty cache hands out the placeholder");
    };
    std::thread::scope(|s| {
        let waiter = s.spawn(|| c.get_or_insert_with("k".to_owned(), || 9));
        std::thread::sleep(Duration::from_millis(20));
        drop(p);
        assert_eq!(waiter.join().unwrap(), 9);
    });
    assert_eq!(c.get("k"), Some(9));
}

/// A write of the key while its placeholder is held wins over the fill.
#[test]
fn a_write_made_while_a_placeholder_was_held_wins() {
    use clockcache::GuardResult;
    let c: Cache<String, u32> = Cache::new(100);
    let GuardResult::Guard(p) = c.get_value_or_guard("k", None) else {
        panic!("an empty cache hands out the placeholder");
    };
    c.insert("k".to_owned(), 1);
    p.insert(2);
    assert_eq!(c.get("k"), Some(1));
}

/// The async placeholder: a task that got it fills it, and a task waiting on
/// it gets the value; a caller that gives up waiting (a runtime timeout)
/// leaves the placeholder's load alone.
#[test]
fn an_async_placeholder_is_awaited() {
    let c: Cache<String, u32> = Cache::new(100);
    multi_thread().block_on(async {
        let p = c.get_value_or_guard_async("k").await.unwrap_err();
        let timed_out =
            tokio::time::timeout(Duration::from_millis(20), c.get_value_or_guard_async("k")).await;
        assert!(timed_out.is_err());
        let c2 = c.clone();
        let waiter =
            tokio::spawn(async move { c2.get_or_insert_async("k".into(), async { 0 }).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.insert(4);
        assert_eq!(waiter.await.unwrap(), 4);
    });
    assert_eq!(c.get("k"), Some(4));
}

/// `stats()` counts loads that ended with a value, loads that ended without
/// one (an error, a panic, a placeholder dropped unfilled), and their time.
#[test]
fn stats_count_loads_their_failures_and_their_time() {
    let c: Cache<u32, u32> = Cache::new(100);
    assert_eq!(c.stats().average_load_time(), Duration::ZERO);
    c.get_or_insert_with(1, || {
        std::thread::sleep(Duration::from_millis(20));
        1
    });
    c.get_or_insert_with(1, || unreachable!("a hit loads nothing"));
    let _ = c.get_or_try_insert_with(2, || Err::<u32, _>("down"));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.get_or_insert_with(3, || panic!("loader bug"))
    }));
    assert!(panicked.is_err());
    match c.get_value_or_guard(&4, None) {
        clockcache::GuardResult::Guard(placeholder) => drop(placeholder),
        _ => unreachable!(),
    }
    let s = c.stats();
    assert_eq!((s.loads, s.load_failures), (1, 3));
    assert!(s.total_load_time >= Duration::from_millis(20), "{s:?}");
    assert!(s.average_load_time() >= Duration::from_millis(5));
}
