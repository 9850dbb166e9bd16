//! Reclaiming expired entries while nobody writes: bounded steps, run by a
//! background thread of the cache's own ([`CacheBuilder::maintenance_thread`])
//! or by an async task the caller spawns on any runtime
//! ([`Cache::maintenance`]).
//!
//! Writes reclaim a few due entries on their way, and reads never return an
//! expired entry, so a busy cache needs no maintenance. An idle one would
//! keep every expired entry (and its value) until the next writes or a
//! `purge_expired`; maintenance gives it back its live size. Each step holds
//! one shard's lock for at most [`MAINTENANCE_STEP`] deadline items, so a
//! writer of that shard waits for at most one step, and the caller's task
//! yields between steps.
//!
//! [`CacheBuilder::maintenance_thread`]: crate::CacheBuilder::maintenance_thread

use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::cache::{Cache, Core};
use crate::shard::Shard;
use crate::sync::epoch;

/// Most deadline items one maintenance step handles under one shard lock.
pub const MAINTENANCE_STEP: usize = 256;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// One step on `shard`: reclaims at most [`MAINTENANCE_STEP`] due
    /// entries under its lock. Returns how many it reclaimed and whether
    /// more are due.
    fn maintenance_step(&self, shard: &Shard<K, V>) -> (usize, bool) {
        let guard = epoch::pin();
        let mut retired = self.retired();
        let now = self.core.clock.now();
        let (n, more) = {
            let mut inner = shard.inner.lock();
            let n = shard.purge_locked(&mut inner, now, MAINTENANCE_STEP, &mut retired, &guard);
            let more = inner.has_due(now);
            shard.seal_locked(&mut inner, &mut retired);
            let change = shard.publish_locked(&mut inner);
            drop(inner);
            self.count_over(change);
            (n, more)
        };
        self.release(retired, guard);
        (n, more)
    }

    /// Reclaims every entry expired by now, in steps of at most
    /// [`MAINTENANCE_STEP`] deadline items per shard lock, and drops their
    /// values before it returns. Returns how many it reclaimed. What the
    /// maintenance thread and task run each period; call it from a timer of
    /// your own instead if you prefer.
    ///
    /// ```
    /// use clockcache::{Cache, MockClock};
    /// use std::time::Duration;
    ///
    /// let clock = MockClock::new();
    /// let cache: Cache<u32, u32> = Cache::builder()
    ///     .time_to_live(Duration::from_secs(1))
    ///     .clock(clock.clone())
    ///     .build();
    /// for i in 0..1_000 {
    ///     cache.insert(i, i);
    /// }
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(cache.len(), 1_000); // expired, not reclaimed yet
    /// assert_eq!(cache.run_maintenance(), 1_000);
    /// assert_eq!(cache.len(), 0);
    /// ```
    pub fn run_maintenance(&self) -> usize {
        let mut total = 0;
        for shard in self.core.shards.iter() {
            loop {
                let (n, more) = self.maintenance_step(shard);
                total += n;
                if !more {
                    break;
                }
            }
        }
        self.reclaim_now();
        total
    }

    /// An async task that runs [`run_maintenance`](Self::run_maintenance)
    /// every `period`, yielding to its runtime between steps, until every
    /// other handle on the cache is gone (it holds none itself). `sleep`
    /// is the runtime's timer, so the engine depends on no runtime:
    ///
    /// ```
    /// use clockcache::Cache;
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let cache: Cache<u64, String> = Cache::builder()
    ///     .time_to_live(Duration::from_secs(300))
    ///     .build();
    /// let task = tokio::spawn(cache.maintenance(Duration::from_secs(1), tokio::time::sleep));
    /// // ... serve ...
    /// drop(cache);
    /// task.await.unwrap(); // ends within a period of the last handle's drop
    /// # });
    /// ```
    pub fn maintenance<Sl, F>(&self, period: Duration, mut sleep: Sl) -> impl Future<Output = ()>
    where
        Sl: FnMut(Duration) -> F,
        F: Future<Output = ()>,
    {
        let weak = Arc::downgrade(&self.core);
        async move {
            loop {
                sleep(period).await;
                let shards = match weak.upgrade() {
                    Some(core) => core.shards.len(),
                    None => return,
                };
                for i in 0..shards {
                    loop {
                        let Some(core) = weak.upgrade() else { return };
                        let cache = Cache { core };
                        let (_, more) = cache.maintenance_step(&cache.core.shards[i]);
                        drop(cache);
                        YieldNow(false).await;
                        if !more {
                            break;
                        }
                    }
                }
                match weak.upgrade() {
                    Some(core) => Cache { core }.reclaim_now(),
                    None => return,
                }
            }
        }
    }
}

/// Lets the runtime run other tasks once.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Tells a maintenance thread that its cache is gone: set when the cache's
/// core drops.
#[derive(Default)]
pub(crate) struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// Held by the cache's core: stops its maintenance thread on drop.
pub(crate) struct StopOnDrop(pub(crate) Arc<Stop>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        *self.0.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.0.wake.notify_all();
    }
}

/// Starts the thread that runs [`Cache::run_maintenance`] every `period`
/// for the cache behind `core`, until `stop` says it is gone.
pub(crate) fn spawn_thread<K, V, S>(core: Weak<Core<K, V, S>>, period: Duration, stop: Arc<Stop>)
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    let run = move || loop {
        {
            let stopped = stop.stopped.lock().unwrap_or_else(|e| e.into_inner());
            let (stopped, _) = stop
                .wake
                .wait_timeout_while(stopped, period, |s| !*s)
                .unwrap_or_else(|e| e.into_inner());
            if *stopped {
                return;
            }
        }
        let Some(core) = core.upgrade() else { return };
        // If this was the last handle, the cache drops here, on this
        // thread, and the next wait sees the stop.
        Cache { core }.run_maintenance();
    };
    // A cache whose thread cannot start still works; it is only not
    // maintained in the background.
    let _ = std::thread::Builder::new()
        .name("clockcache-maintenance".into())
        .spawn(run);
}
