//! Refresh-ahead: a hit on an entry older than the refresh period returns
//! the cached value at once and starts one reload of the key in the
//! background, so that a hot key is reloaded before it expires instead of
//! making its next reader wait for the load.
//!
//! Each entry of a refreshing cache keeps its write time in its slab
//! block's trailer (see `slab.rs`). A reader whose hit finds that time a
//! period old claims the refresh with one compare-and-swap of the trailer
//! to [`REFRESHING`]: of the readers that see the entry due, one wins, and
//! the rest return as from any hit. The winner then, under the shard lock,
//! checks that the entry it read is still the key's live entry (a write
//! since its read has its own, fresh, write time) and that no load of the
//! key runs, and registers the refresh as the key's load, the record the
//! loading calls single-flight on. The reload runs on the refresh's
//! executor, and ends as a load ends: a value replaces the entry unless a
//! write of the key superseded the refresh (that write wins), and reaches
//! any caller that waited for the key meanwhile; a failure (an error, a
//! panic, an executor that drops the job) leaves the old value in place
//! until it expires and sets its write time to the failure's time, so the
//! next attempt comes a period later.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::ptr::NonNull;
#[cfg(not(loom))]
use std::{future::Future, pin::Pin};

use crate::cache::Cache;
use crate::entry::Entry;
use crate::expiry::WRITTEN;
use crate::load::Lead;
use crate::loader::Pending;
use crate::shard::Loading;
use crate::slab::trailer;
use crate::sync::epoch::{self, Guard};
use crate::sync::{Arc, Ordering};
/// The reload and executor: immutable once built, so a std `Arc` under
/// loom too (loom's cannot hold a `dyn`).
use std::sync::Arc as StdArc;

/// The write time of an entry whose refresh is claimed.
pub(crate) const REFRESHING: u64 = u64::MAX;

/// A refresh job handed to an executor: run it on any thread, once.
/// Dropping it unrun is allowed and counts as a failed refresh.
pub type RefreshJob = Box<dyn FnOnce() + Send + 'static>;

/// A refresh future handed to a spawner: poll it to completion on any
/// runtime. Dropping it unfinished counts as a failed refresh.
#[cfg(not(loom))]
pub type RefreshTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

type BlockingFn<K, V> = dyn Fn(&K, &V) -> Result<V, ()> + Send + Sync;
type Executor = dyn Fn(RefreshJob) + Send + Sync;
#[cfg(not(loom))]
type AsyncFn<K, V> =
    dyn Fn(K, V) -> Pin<Box<dyn Future<Output = Result<V, ()>> + Send>> + Send + Sync;
#[cfg(not(loom))]
type Spawner = dyn Fn(RefreshTask) + Send + Sync;

enum Run<K, V> {
    Blocking {
        reload: StdArc<BlockingFn<K, V>>,
        executor: StdArc<Executor>,
    },
    #[cfg(not(loom))]
    Async {
        reload: StdArc<AsyncFn<K, V>>,
        spawn: StdArc<Spawner>,
    },
}

/// How a cache built with
/// [`CacheBuilder::refresh_after`](crate::CacheBuilder::refresh_after)
/// reloads an entry: a function from the key and its current value to the
/// new value, run off the reader's path, blocking (on a thread per refresh,
/// or on an executor of the caller's) or async (on a runtime of the
/// caller's).
///
/// The function's error is dropped (the old value stays until it expires):
/// log it inside the function if it matters.
///
/// ```
/// use clockcache::{Cache, MockClock, Refresh};
/// use std::time::Duration;
///
/// let clock = MockClock::new();
/// let cache: Cache<u32, String> = Cache::builder()
///     .capacity(100)
///     .time_to_live(Duration::from_secs(60))
///     // Run the reload on the reader's thread, so the example is
///     // deterministic (the default runs it on a thread of its own).
///     .refresh_after(
///         Duration::from_secs(30),
///         Refresh::with_executor(
///             |k: &u32, _old: &String| Ok::<_, std::io::Error>(format!("user {k}, reloaded")),
///             |job| job(),
///         ),
///     )
///     .clock(clock.clone())
///     .build();
/// cache.insert(7, "user 7".to_string());
/// clock.advance(Duration::from_secs(30));
/// // Due: this hit still returns the cached value, and starts the reload.
/// assert_eq!(cache.get(&7).unwrap(), "user 7");
/// assert_eq!(cache.get(&7).unwrap(), "user 7, reloaded");
/// ```
pub struct Refresh<K, V> {
    clone_key: fn(&K) -> K,
    run: Run<K, V>,
}

impl<K, V> fmt::Debug for Refresh<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.run {
            Run::Blocking { .. } => "blocking",
            #[cfg(not(loom))]
            Run::Async { .. } => "async",
        };
        f.debug_struct("Refresh")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

/// The default executor: a thread per refresh.
fn spawn_thread(job: RefreshJob) {
    // A failed spawn drops the job, which counts as a failed refresh.
    let _ = std::thread::Builder::new()
        .name("clockcache-refresh".into())
        .spawn(job);
}

impl<K, V> Refresh<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// A blocking reload run on a thread of its own for each refresh (one
    /// per key at a time, and only for keys being read: for a pool, see
    /// [`with_executor`](Self::with_executor)).
    pub fn new<F, E>(reload: F) -> Self
    where
        F: Fn(&K, &V) -> Result<V, E> + Send + Sync + 'static,
    {
        Self::with_executor(reload, spawn_thread)
    }

    /// A blocking reload run by `executor`, which gets each refresh as a
    /// job to run once on any thread (a pool's spawn, tokio's
    /// `spawn_blocking`, or `|job| job()` to run it on the reading thread
    /// before its `get` returns). A job holds a handle on its cache until it
    /// is run or dropped: an executor that keeps jobs forever keeps the
    /// cache alive.
    pub fn with_executor<F, E, X>(reload: F, executor: X) -> Self
    where
        F: Fn(&K, &V) -> Result<V, E> + Send + Sync + 'static,
        X: Fn(RefreshJob) + Send + Sync + 'static,
    {
        Self {
            clone_key: K::clone,
            run: Run::Blocking {
                reload: StdArc::new(move |k: &K, v: &V| reload(k, v).map_err(drop)),
                executor: StdArc::new(executor),
            },
        }
    }

    /// An async reload, given an owned key and the current value, spawned
    /// by `spawn` on the caller's runtime (for tokio:
    /// `|task| { tokio::spawn(task); }`). The engine depends on no runtime.
    ///
    /// ```
    /// use clockcache::{Cache, Refresh};
    /// use std::time::Duration;
    ///
    /// # async fn fetch_user(id: u32) -> Result<String, std::io::Error> { Ok(format!("user {id}")) }
    /// # let rt = tokio::runtime::Runtime::new().unwrap();
    /// # let _enter = rt.enter();
    /// let cache: Cache<u32, String> = Cache::builder()
    ///     .capacity(10_000)
    ///     .time_to_live(Duration::from_secs(300))
    ///     .refresh_after(
    ///         Duration::from_secs(240),
    ///         Refresh::future(
    ///             |id: u32, _old: String| fetch_user(id),
    ///             |task| {
    ///                 tokio::spawn(task);
    ///             },
    ///         ),
    ///     )
    ///     .build();
    /// # drop(cache);
    /// ```
    #[cfg(not(loom))]
    pub fn future<F, Fut, E, Sp>(reload: F, spawn: Sp) -> Self
    where
        F: Fn(K, V) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        Sp: Fn(RefreshTask) + Send + Sync + 'static,
    {
        let reload = move |k: K, v: V| {
            let fut = reload(k, v);
            Box::pin(async move { fut.await.map_err(drop) })
                as Pin<Box<dyn Future<Output = Result<V, ()>> + Send>>
        };
        Self {
            clone_key: K::clone,
            run: Run::Async {
                reload: StdArc::new(reload),
                spawn: StdArc::new(spawn),
            },
        }
    }
}

/// A cache's refresh setting.
pub(crate) struct RefreshConfig<K, V> {
    /// Nanoseconds after its write at which a hit refreshes an entry.
    pub(crate) period: u64,
    refresh: Refresh<K, V>,
}

impl<K, V> RefreshConfig<K, V> {
    pub(crate) fn new(period: u64, refresh: Refresh<K, V>) -> Self {
        Self { period, refresh }
    }
}

/// The error a failed refresh ends its load with: private, so a caller
/// that waited for the key (whatever its error type) starts over instead.
struct RefreshFailed;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// After a hit on `p` (found through the table while `guard` is pinned)
    /// that returns `value`: starts its refresh if it is due and this
    /// caller claims it. Takes the guard, so that the reload never runs
    /// pinned.
    #[inline]
    pub(crate) fn refresh_if_due(
        &self,
        config: &RefreshConfig<K, V>,
        p: NonNull<Entry<K, V>>,
        hash: u64,
        value: &V,
        guard: Guard,
    ) {
        // SAFETY: a refreshing cache's slabs carry trailers; `p` is the
        // table's pointer (the slab's own, see `RawTable::find_raw`) to an
        // entry that stays allocated while `guard` is pinned.
        let stamp = unsafe { trailer(p, WRITTEN) };
        let written = stamp.load(Ordering::Relaxed);
        if written == REFRESHING
            || self.core.clock.now() < written.saturating_add(config.period)
            || stamp
                .compare_exchange(written, REFRESHING, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.start_refresh(config, p, written, hash, value, guard);
    }

    /// Registers the claimed refresh of `p` as its key's load, and hands the
    /// reload to the executor.
    #[cold]
    #[inline(never)]
    fn start_refresh(
        &self,
        config: &RefreshConfig<K, V>,
        p: NonNull<Entry<K, V>>,
        written: u64,
        hash: u64,
        value: &V,
        guard: Guard,
    ) {
        let shard = self.shard(hash);
        // SAFETY: as in `refresh_if_due`: reachable while `guard` is pinned.
        let e = unsafe { p.as_ref() };
        let (key, pending) = {
            let mut inner = shard.inner.lock();
            // A write since the read replaced or removed `p`: a replacement
            // carries its own write time, and a removed entry is not
            // refreshed.
            if shard.table(&guard).find_raw(hash, e.key(), &guard) != Some(p) {
                return;
            }
            if inner
                .loading
                .iter()
                .any(|l| l.hash == hash && l.key == *e.key())
            {
                // A load of the key runs (it started after a write made the
                // key absent, and this entry was inserted over it): let it
                // end, and let a later hit try again.
                // SAFETY: as above.
                unsafe { trailer(p, WRITTEN) }.store(written, Ordering::Relaxed);
                return;
            }
            let pending = Arc::new(Pending::new());
            inner.loading.push(Loading {
                hash,
                key: (config.refresh.clone_key)(e.key()),
                pending: pending.clone(),
                superseded: false,
            });
            ((config.refresh.clone_key)(e.key()), pending)
        };
        drop(guard);
        let job = Reload {
            cache: self.clone(),
            hash,
            key,
            pending: Some(pending),
            done: false,
        };
        match &config.refresh.run {
            Run::Blocking { reload, executor } => {
                let reload = StdArc::clone(reload);
                let old = value.clone();
                executor(Box::new(move || job.run(&*reload, &old)));
            }
            #[cfg(not(loom))]
            Run::Async { reload, spawn } => {
                let fut = reload((config.refresh.clone_key)(&job.key), value.clone());
                spawn(Box::pin(job.run_async(fut)));
            }
        }
    }

    /// After a failed refresh of `key`: its live entry, if its refresh is
    /// still claimed, counts as written now (the next attempt comes a
    /// period later; the value stays until it expires).
    fn refresh_failed(&self, hash: u64, key: &K) {
        let guard = epoch::pin();
        if let Some(p) = self.shard(hash).table(&guard).find_raw(hash, key, &guard) {
            // SAFETY: as in `refresh_if_due`.
            let stamp = unsafe { trailer(p, WRITTEN) };
            let now = self.core.clock.now();
            let _ = stamp.compare_exchange(REFRESHING, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// One refresh, from its registration to its end. Dropped before it ends
/// (the executor dropped the job, the reload panicked, the runtime dropped
/// the task), it withdraws its load, releases the waiters, and counts as a
/// failed refresh.
struct Reload<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    cache: Cache<K, V, S>,
    hash: u64,
    key: K,
    /// The load record's, until a `Lead` takes it over.
    pending: Option<Arc<Pending<V>>>,
    /// Whether the reload succeeded.
    done: bool,
}

impl<K, V, S> Reload<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    fn run(mut self, reload: &BlockingFn<K, V>, old: &V) {
        let pending = self.pending.take().expect("a refresh runs once");
        let lead = Lead::new(&self.cache, self.hash, pending);
        let r = {
            let _active = lead.pending.enter();
            reload(&self.key, old)
        };
        self.done = Self::end(lead, r);
    }

    #[cfg(not(loom))]
    async fn run_async(mut self, reload: Pin<Box<dyn Future<Output = Result<V, ()>> + Send>>) {
        let pending = self.pending.take().expect("a refresh runs once");
        let lead = Lead::new(&self.cache, self.hash, pending);
        let mut reload = reload;
        let r = crate::loader::Tracked {
            pending: &lead.pending,
            future: Pin::new(&mut reload),
        }
        .await;
        self.done = Self::end(lead, r);
    }

    /// Ends the load as a load ends; returns whether it succeeded.
    fn end(mut lead: Lead<'_, K, V, S>, r: Result<V, ()>) -> bool {
        match r {
            Ok(v) => {
                lead.succeed(v);
                true
            }
            Err(()) => {
                let _ = lead.end(Err::<V, _>(RefreshFailed));
                false
            }
        }
    }
}

impl<K, V, S> Drop for Reload<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            // Never run: withdrawing a `Lead` releases the waiters.
            drop(Lead::new(&self.cache, self.hash, pending));
        }
        if !self.done {
            self.cache.refresh_failed(self.hash, &self.key);
        }
    }
}
