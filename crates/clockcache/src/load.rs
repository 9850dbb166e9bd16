//! The loading calls: a value for a key, computed once on a miss however
//! many callers ask for it at the same time (single flight), from blocking
//! or async code, with an owned or a borrowed key, or as a placeholder the
//! caller fills itself.
//!
//! The record of a load in flight, and what its waiters learn when it ends,
//! live in [`crate::loader`]; this file holds the cache's side: finding the
//! value or the load under the shard lock, leading a load, and ending it.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc as StdArc;
#[cfg(not(loom))]
use std::time::{Duration, Instant};

use equivalent::Equivalent;

use crate::cache::Cache;
#[cfg(not(loom))]
use crate::loader::Tracked;
use crate::loader::{Outcome, Pending, SharedError};
use crate::shard::{Inner, Loading};
use crate::stats::WriteCounters;
use crate::sync::epoch;
use crate::sync::Arc;

/// Where a loading call's key comes from: owned, moved into the load record
/// if this call leads a load, or borrowed, cloned only then.
pub(crate) trait KeySource<K> {
    /// The form the key is looked up in.
    type Q: Hash + Equivalent<K> + ?Sized;
    /// The key to look up.
    fn get(&self) -> &Self::Q;
    /// The owned key, for the load record (called at most once).
    fn take(&mut self) -> K;
}

/// An owned key (`None` once a load took it).
pub(crate) struct Owned<K>(pub(crate) Option<K>);

impl<K: Hash + Eq> KeySource<K> for Owned<K> {
    type Q = K;
    fn get(&self) -> &K {
        self.0
            .as_ref()
            .expect("the key is kept until a load starts")
    }
    fn take(&mut self) -> K {
        self.0.take().expect("the key is taken once")
    }
}

/// A borrowed key, cloned into the load record.
pub(crate) struct Borrowed<'q, Q: ?Sized>(pub(crate) &'q Q);

impl<K, Q> KeySource<K> for Borrowed<'_, Q>
where
    Q: Hash + Equivalent<K> + ToOwned<Owned = K> + ?Sized,
{
    type Q = Q;
    fn get(&self) -> &Q {
        self.0
    }
    fn take(&mut self) -> K {
        self.0.to_owned()
    }
}

/// What a loading call found under the shard lock.
pub(crate) enum Flight<V> {
    /// No value and no load: this caller leads one.
    Lead(Arc<Pending<V>>),
    /// Another caller's load of the key, to wait for.
    Join(Arc<Pending<V>>),
    /// A live value.
    Found(V),
}

/// What [`Cache::get_value_or_guard`] found.
#[cfg(not(loom))]
pub enum GuardResult<'a, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// The key's value: cached, or loaded by the caller this one waited for.
    Value(V),
    /// Neither: this caller holds the key's load and fills it with
    /// [`Placeholder::insert`].
    Guard(Placeholder<'a, K, V, S>),
    /// Another caller's load of the key did not end within the timeout.
    Timeout,
}

/// The right, and the duty, to load one key: other callers of the key wait
/// for it. [`insert`](Self::insert) ends the load with a value; dropping the
/// placeholder unfilled releases the waiters, who start over (one of them
/// becomes the next loader).
///
/// Waiting for a key whose placeholder the same thread holds never ends
/// (give `get_value_or_guard` a timeout, or fill the placeholder first).
#[cfg(not(loom))]
pub struct Placeholder<'a, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    lead: Lead<'a, K, V, S>,
}

#[cfg(not(loom))]
impl<K, V, S> Placeholder<'_, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Ends the load with `value`: it is inserted (unless a write of the key
    /// was made since the placeholder was handed out: that write wins, as
    /// with the loading calls) and every waiter gets a clone.
    pub fn insert(mut self, value: V) {
        self.lead.succeed(value);
    }
}

#[cfg(not(loom))]
impl<K, V, S> std::fmt::Debug for Placeholder<'_, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placeholder").finish_non_exhaustive()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// The value for `key`, computing and inserting it with `init` on a miss.
    ///
    /// Single flight: while one caller runs `init` for a key, other callers
    /// for the same key (sync or async) wait for its value instead of
    /// running their own. If `init` panics, the waiters are released and one
    /// of them runs its own `init`. A write of the key while `init` runs
    /// (`insert`, `remove`, `replace_if`, `clear`) wins: the loaded value is
    /// returned but not inserted over it.
    ///
    /// `init` must not load its own key through this cache: that would wait
    /// for itself, so it panics with a message saying so (and the key is not
    /// left stuck).
    ///
    /// ```
    /// use clockcache::Cache;
    ///
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// let v = cache.get_or_insert_with(7, || "seven".to_string());
    /// assert_eq!(v, "seven");
    /// // A hit: `init` does not run.
    /// assert_eq!(cache.get_or_insert_with(7, || unreachable!()), "seven");
    /// ```
    pub fn get_or_insert_with<F>(&self, key: K, init: F) -> V
    where
        F: FnOnce() -> V,
    {
        infallible(self.load(Owned(Some(key)), || Ok(init())))
    }

    /// Like [`get_or_insert_with`](Self::get_or_insert_with) with a fallible
    /// `init`. An error inserts nothing and is shared: this caller and every
    /// caller that waited on the same load with the same error type get the
    /// same `Arc` of it, and `init` ran once for all of them. (A waiter whose
    /// error type differs starts over.)
    ///
    /// ```
    /// use clockcache::Cache;
    ///
    /// let cache: Cache<u32, u32> = Cache::new(100);
    /// let r = cache.get_or_try_insert_with(1, || Err::<u32, _>("database down"));
    /// assert_eq!(*r.unwrap_err(), "database down");
    /// assert!(cache.get(&1).is_none());
    /// ```
    pub fn get_or_try_insert_with<E, F>(&self, key: K, init: F) -> Result<V, StdArc<E>>
    where
        F: FnOnce() -> Result<V, E>,
        E: Send + Sync + 'static,
    {
        self.load(Owned(Some(key)), init)
    }

    /// [`get_or_insert_with`](Self::get_or_insert_with) with a borrowed key,
    /// cloned (with `ToOwned`) only when this call starts a load: a hit on a
    /// `String`-keyed cache allocates nothing.
    ///
    /// ```
    /// use clockcache::Cache;
    ///
    /// let cache: Cache<String, usize> = Cache::new(100);
    /// assert_eq!(cache.get_or_insert_with_by_ref("seven", || 7), 7);
    /// assert_eq!(cache.get_or_insert_with_by_ref("seven", || unreachable!()), 7);
    /// ```
    pub fn get_or_insert_with_by_ref<Q, F>(&self, key: &Q, init: F) -> V
    where
        Q: Hash + Equivalent<K> + ToOwned<Owned = K> + ?Sized,
        F: FnOnce() -> V,
    {
        infallible(self.load(Borrowed(key), || Ok(init())))
    }

    /// [`get_or_try_insert_with`](Self::get_or_try_insert_with) with a
    /// borrowed key, cloned only when this call starts a load.
    pub fn get_or_try_insert_with_by_ref<Q, E, F>(&self, key: &Q, init: F) -> Result<V, StdArc<E>>
    where
        Q: Hash + Equivalent<K> + ToOwned<Owned = K> + ?Sized,
        F: FnOnce() -> Result<V, E>,
        E: Send + Sync + 'static,
    {
        self.load(Borrowed(key), init)
    }

    /// The value for `key`, else the right to load it: a [`Placeholder`] that
    /// other callers of the key (loading calls included) wait for until it is
    /// filled or dropped. `timeout` bounds the wait for another caller's
    /// placeholder or load (wall time; `None` waits as long as it takes); a
    /// wait that runs out returns [`GuardResult::Timeout`] and leaves that
    /// load alone.
    ///
    /// A hit or a wait for another caller's load counts as with
    /// [`get_or_insert_with`](Self::get_or_insert_with): a hit if the value
    /// was cached, else one miss.
    ///
    /// ```
    /// use clockcache::{Cache, GuardResult};
    /// use std::time::Duration;
    ///
    /// let cache: Cache<String, u32> = Cache::new(100);
    /// match cache.get_value_or_guard("k", Some(Duration::from_millis(10))) {
    ///     GuardResult::Guard(placeholder) => placeholder.insert(5),
    ///     GuardResult::Value(_) | GuardResult::Timeout => unreachable!(),
    /// }
    /// assert!(matches!(cache.get_value_or_guard("k", None), GuardResult::Value(5)));
    /// ```
    #[cfg(not(loom))]
    pub fn get_value_or_guard<Q>(
        &self,
        key: &Q,
        timeout: Option<Duration>,
    ) -> GuardResult<'_, K, V, S>
    where
        Q: Hash + Equivalent<K> + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(v) = self.lookup::<Q, false>(key) {
            return GuardResult::Value(v);
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let hash = self.hash(key);
        let mut key = Borrowed(key);
        loop {
            match self.begin_load(hash, &mut key) {
                Flight::Found(v) => return GuardResult::Value(v),
                Flight::Join(p) => match p.wait_until(deadline) {
                    None => return GuardResult::Timeout,
                    Some(Outcome::Value(v)) => return GuardResult::Value(v),
                    // The load failed, panicked or was given up: start over
                    // (this caller has no error type to be handed).
                    Some(Outcome::Error(_) | Outcome::Retry) => {}
                },
                Flight::Lead(p) => {
                    return GuardResult::Guard(Placeholder {
                        lead: Lead::new(self, hash, p),
                    })
                }
            }
        }
    }

    /// The async form of [`get_value_or_guard`](Self::get_value_or_guard):
    /// the key's value, else its [`Placeholder`]. A waiter `.await`s instead
    /// of blocking; bound the wait with the runtime's own timeout (dropping
    /// this future leaves the other caller's load alone).
    #[cfg(not(loom))]
    pub async fn get_value_or_guard_async<'a, Q>(
        &'a self,
        key: &Q,
    ) -> Result<V, Placeholder<'a, K, V, S>>
    where
        Q: Hash + Equivalent<K> + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(v) = self.lookup::<Q, false>(key) {
            return Ok(v);
        }
        let hash = self.hash(key);
        let mut key = Borrowed(key);
        loop {
            let flight = self.begin_load(hash, &mut key);
            match flight {
                Flight::Found(v) => return Ok(v),
                Flight::Join(p) => match p.wait_async().await {
                    Outcome::Value(v) => return Ok(v),
                    Outcome::Error(_) | Outcome::Retry => {}
                },
                Flight::Lead(p) => {
                    return Err(Placeholder {
                        lead: Lead::new(self, hash, p),
                    })
                }
            }
        }
    }

    /// The blocking loading calls' one body.
    fn load<KS, E, F>(&self, mut key: KS, init: F) -> Result<V, StdArc<E>>
    where
        KS: KeySource<K>,
        F: FnOnce() -> Result<V, E>,
        E: Send + Sync + 'static,
    {
        if let Some(v) = self.lookup::<KS::Q, false>(key.get()) {
            return Ok(v);
        }
        let hash = self.hash(key.get());
        let mut init = Some(init);
        loop {
            match self.begin_load(hash, &mut key) {
                Flight::Found(v) => return Ok(v),
                Flight::Join(p) => {
                    if let Some(r) = waited(p.wait()) {
                        return r;
                    }
                }
                Flight::Lead(p) => {
                    let lead = Lead::new(self, hash, p);
                    let init = init.take().expect("a caller leads at most one load");
                    let r = {
                        let _active = lead.pending.enter();
                        init()
                    };
                    return lead.end(r);
                }
            }
        }
    }

    /// The value for `key`, computing and inserting it with the future
    /// `init` on a miss: the async form of
    /// [`get_or_insert_with`](Self::get_or_insert_with), with the same
    /// single flight, shared with the blocking form. Waiters `.await`
    /// instead of blocking their thread, and the engine needs no particular
    /// runtime.
    ///
    /// Cancellation-safe: if the leading caller's future is dropped before
    /// `init` finishes (a client gone, a timeout), its load is withdrawn and
    /// one of the waiters runs its own `init`; no waiter hangs and nothing
    /// stays behind.
    ///
    /// ```
    /// use clockcache::Cache;
    ///
    /// # async fn fetch(id: u32) -> String { format!("user {id}") }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// // Any runtime: the engine only awaits its own wake-ups.
    /// let v = cache.get_or_insert_async(42, fetch(42)).await;
    /// assert_eq!(v, "user 42");
    /// # });
    /// ```
    #[cfg(not(loom))]
    pub async fn get_or_insert_async<F>(&self, key: K, init: F) -> V
    where
        F: std::future::Future<Output = V>,
    {
        infallible(
            self.load_async(Owned(Some(key)), async { Ok(init.await) })
                .await,
        )
    }

    /// The async form of
    /// [`get_or_try_insert_with`](Self::get_or_try_insert_with): an error
    /// inserts nothing and every waiter of the same error type gets the same
    /// `Arc` of it. Cancellation-safe, as
    /// [`get_or_insert_async`](Self::get_or_insert_async).
    #[cfg(not(loom))]
    pub async fn get_or_try_insert_async<E, F>(&self, key: K, init: F) -> Result<V, StdArc<E>>
    where
        F: std::future::Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        self.load_async(Owned(Some(key)), init).await
    }

    /// [`get_or_insert_async`](Self::get_or_insert_async) with a borrowed
    /// key, cloned only when this call starts a load.
    #[cfg(not(loom))]
    pub async fn get_or_insert_async_by_ref<Q, F>(&self, key: &Q, init: F) -> V
    where
        Q: Hash + Equivalent<K> + ToOwned<Owned = K> + Sync + ?Sized,
        F: std::future::Future<Output = V>,
    {
        infallible(
            self.load_async(Borrowed(key), async { Ok(init.await) })
                .await,
        )
    }

    /// [`get_or_try_insert_async`](Self::get_or_try_insert_async) with a
    /// borrowed key, cloned only when this call starts a load.
    #[cfg(not(loom))]
    pub async fn get_or_try_insert_async_by_ref<Q, E, F>(
        &self,
        key: &Q,
        init: F,
    ) -> Result<V, StdArc<E>>
    where
        Q: Hash + Equivalent<K> + ToOwned<Owned = K> + Sync + ?Sized,
        F: std::future::Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        self.load_async(Borrowed(key), init).await
    }

    /// The async loading calls' one body.
    #[cfg(not(loom))]
    async fn load_async<KS, E, F>(&self, mut key: KS, init: F) -> Result<V, StdArc<E>>
    where
        KS: KeySource<K>,
        F: std::future::Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        if let Some(v) = self.lookup::<KS::Q, false>(key.get()) {
            return Ok(v);
        }
        let hash = self.hash(key.get());
        let mut init = Some(init);
        loop {
            let flight = self.begin_load(hash, &mut key);
            match flight {
                Flight::Found(v) => return Ok(v),
                Flight::Join(p) => {
                    if let Some(r) = waited(p.wait_async().await) {
                        return r;
                    }
                }
                Flight::Lead(p) => {
                    let lead = Lead::new(self, hash, p);
                    let init = init.take().expect("a caller leads at most one load");
                    let mut init = std::pin::pin!(init);
                    let r = Tracked {
                        pending: &lead.pending,
                        future: init.as_mut(),
                    }
                    .await;
                    return lead.end(r);
                }
            }
        }
    }

    /// Under the shard lock: the live value (a hit), else the load of `key`
    /// to join, else a new load that this caller leads (taking the key).
    pub(crate) fn begin_load<KS: KeySource<K>>(&self, hash: u64, key: &mut KS) -> Flight<V> {
        let shard = self.shard(hash);
        let guard = epoch::pin();
        let mut inner = shard.inner.lock();
        let k = key.get();
        let found = shard.table(&guard).find_raw(hash, k, &guard);
        if let Some(p) = found.filter(|&p| self.live_for_read(p)) {
            // SAFETY: the table's live entry (shard lock held).
            let e = unsafe { p.as_ref() };
            // Found under the lock: a hit like any other (recency, time to
            // idle, statistics).
            e.touch();
            self.core.reads.hit();
            return Flight::Found(e.value().clone());
        }
        self.core.reads.miss();
        if let Some(l) = inner
            .loading
            .iter()
            .find(|l| l.hash == hash && k.equivalent(&l.key))
        {
            return Flight::Join(l.pending.clone());
        }
        let pending = Arc::new(Pending::new());
        inner.loading.push(Loading {
            hash,
            key: key.take(),
            pending: pending.clone(),
            superseded: false,
        });
        Flight::Lead(pending)
    }
}

/// What a loading call returns after waiting for another caller's load:
/// its value, its error if of this call's error type, else `None`: start
/// over (the loader panicked or was cancelled, or failed with another type).
fn waited<V, E: Send + Sync + 'static>(o: Outcome<V>) -> Option<Result<V, StdArc<E>>> {
    match o {
        Outcome::Value(v) => Some(Ok(v)),
        Outcome::Error(e) => e.downcast::<E>().ok().map(Err),
        Outcome::Retry => None,
    }
}

fn infallible<V>(r: Result<V, StdArc<std::convert::Infallible>>) -> V {
    match r {
        Ok(v) => v,
        Err(never) => match *never {},
    }
}

/// The caller running a load. Dropped unfinished (the loader panicked, or
/// its future was dropped), it withdraws the load and releases the waiters,
/// who start over.
pub(crate) struct Lead<'a, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    cache: &'a Cache<K, V, S>,
    hash: u64,
    pub(crate) pending: Arc<Pending<V>>,
    done: bool,
    /// When the load started, for the load-time statistics.
    started: std::time::Instant,
}

impl<'a, K, V, S> Lead<'a, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    pub(crate) fn new(cache: &'a Cache<K, V, S>, hash: u64, pending: Arc<Pending<V>>) -> Self {
        Lead {
            cache,
            hash,
            pending,
            done: false,
            started: std::time::Instant::now(),
        }
    }

    /// Counts the load's end (shard lock held: the counters are the
    /// shard's).
    fn count(&self, succeeded: bool) {
        let c = &self.cache.shard(self.hash).counters;
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        WriteCounters::add(&c.load_nanos, nanos);
        WriteCounters::add(
            if succeeded {
                &c.loads
            } else {
                &c.load_failures
            },
            1,
        );
    }

    /// Withdraws the load record.
    fn withdraw(&self, inner: &mut Inner<K, V>) -> Option<Loading<K, V>> {
        let i = inner
            .loading
            .iter()
            .position(|l| Arc::ptr_eq(&l.pending, &self.pending))?;
        Some(inner.loading.swap_remove(i))
    }

    /// Ends the load with the loader's result, returned to the caller.
    pub(crate) fn end<E: Send + Sync + 'static>(mut self, r: Result<V, E>) -> Result<V, StdArc<E>> {
        match r {
            Ok(v) => {
                self.succeed(v.clone());
                Ok(v)
            }
            Err(e) => {
                let e = StdArc::new(e);
                let shared: SharedError = e.clone();
                let record = {
                    let mut inner = self.cache.shard(self.hash).inner.lock();
                    self.count(false);
                    self.withdraw(&mut inner)
                };
                // The key is dropped outside the lock.
                drop(record);
                self.done = true;
                self.pending.fail(shared);
                Err(e)
            }
        }
    }

    /// Inserts the loaded value and withdraws the load in one critical
    /// section (so no caller can see neither), unless a write superseded the
    /// load, then hands the value to the waiters.
    pub(crate) fn succeed(&mut self, value: V) {
        let cache = self.cache;
        let shard = cache.shard(self.hash);
        let now = cache.writer_now(false);
        let guard = epoch::pin();
        let mut retired = cache.retired();
        let mut inner = shard.inner.lock();
        let record = self
            .withdraw(&mut inner)
            .expect("only the leader withdraws its load");
        self.count(true);
        if record.superseded {
            drop(inner);
            self.done = true;
            self.pending.succeed(value);
            drop(record);
            return;
        }
        let (change, new) = cache.insert_built(
            &mut inner,
            self.hash,
            record.key,
            value.clone(),
            None,
            now,
            &mut retired,
            &guard,
        );
        drop(inner);
        self.done = true;
        self.pending.succeed(value);
        cache.settle(change, new, now, &mut retired, &guard);
        cache.release(retired, guard);
    }
}

impl<K, V, S> Drop for Lead<'_, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let shard = self.cache.shard(self.hash);
        let record = {
            let mut inner = shard.inner.lock();
            self.count(false);
            self.withdraw(&mut inner)
        };
        drop(record);
        self.pending.abandon();
    }
}
