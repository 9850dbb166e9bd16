//! `InMemorySessionCacheStrategy`: a bounded in-process session cache on the clockcache engine,
//! with the options of express' `memorystore`.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use clockcache::{Cache, Clock, EvictionPolicy, RemovalCause, SystemClock};
use parking_lot::Mutex;
use time::OffsetDateTime;

use crate::error::SessionCacheError;
use crate::model::{validate_token, CachedSession};
use crate::strategy::SessionCacheStrategy;

/// A session's time to live in the cache (memorystore's `ttl`): fixed, or computed per session.
/// The entry never outlives the session's `expires` either way.
#[derive(Clone)]
pub enum Ttl {
    /// The same TTL for every session.
    Fixed(Duration),
    /// A TTL computed from the session.
    Fn(Arc<dyn Fn(&CachedSession) -> Duration + Send + Sync>),
}

impl std::fmt::Debug for Ttl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ttl::Fixed(d) => f.debug_tuple("Fixed").field(d).finish(),
            Ttl::Fn(_) => f.write_str("Fn(..)"),
        }
    }
}

/// The callback memorystore calls `dispose`: told the token, the session and why it left.
pub type DisposeFn = Arc<dyn Fn(&str, &Arc<CachedSession>, RemovalCause) + Send + Sync>;

/// Settings of an [`InMemorySessionCacheStrategy`]. The names follow memorystore.
#[derive(Clone)]
pub struct InMemoryOptions {
    /// The most sessions held (memorystore `max`, Vendure's `cacheSize`). Default 1000. Beyond
    /// it the least recently used sessions are evicted first.
    pub max: u64,
    /// TTL of each entry; `None` (the default) means "until the session's `expires`".
    pub ttl: Option<Ttl>,
    /// Run [`prune`](InMemorySessionCacheStrategy::prune) on a background thread this often
    /// (memorystore `checkPeriod`). Pruning never changes recency. Default: off.
    pub check_period: Option<Duration>,
    /// Called when a session leaves the cache (evicted, expired, deleted or cleared) and, unless
    /// [`no_dispose_on_set`](Self::no_dispose_on_set) is set, when a `set` of the same token (or
    /// a [`touch`](InMemorySessionCacheStrategy::touch), which rewrites the entry, as in
    /// memorystore) replaces it, with [`RemovalCause::Replaced`]. memorystore `dispose`. In
    /// `stale` mode a session removed past its deadline (a stale read, a prune, or a delete of
    /// an expired entry) is reported as [`RemovalCause::Expired`].
    pub dispose: Option<DisposeFn>,
    /// Do not call `dispose` for a session replaced by a newer copy of the same token
    /// (memorystore `noDisposeOnSet`). Default false: a replaced session is disposed of, with
    /// [`RemovalCause::Replaced`].
    pub no_dispose_on_set: bool,
    /// Return an expired session once, removing it (memorystore `stale`). Expired entries then
    /// stay until read, pruned or evicted. Default false.
    pub stale: bool,
    clock: Option<Arc<dyn Clock>>,
}

impl Default for InMemoryOptions {
    fn default() -> Self {
        InMemoryOptions {
            max: 1000,
            ttl: None,
            check_period: None,
            dispose: None,
            no_dispose_on_set: false,
            stale: false,
            clock: None,
        }
    }
}

impl std::fmt::Debug for InMemoryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryOptions")
            .field("max", &self.max)
            .field("ttl", &self.ttl)
            .field("check_period", &self.check_period)
            .field("dispose", &self.dispose.is_some())
            .field("no_dispose_on_set", &self.no_dispose_on_set)
            .field("stale", &self.stale)
            .finish_non_exhaustive()
    }
}

impl InMemoryOptions {
    /// Sets `max`.
    pub fn max(mut self, max: u64) -> Self {
        self.max = max;
        self
    }

    /// Sets a fixed TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(Ttl::Fixed(ttl));
        self
    }

    /// Sets a TTL computed per session.
    pub fn ttl_fn(
        mut self,
        f: impl Fn(&CachedSession) -> Duration + Send + Sync + 'static,
    ) -> Self {
        self.ttl = Some(Ttl::Fn(Arc::new(f)));
        self
    }

    /// Sets the background prune period.
    pub fn check_period(mut self, period: Duration) -> Self {
        self.check_period = Some(period);
        self
    }

    /// Sets the dispose callback.
    pub fn dispose(
        mut self,
        f: impl Fn(&str, &Arc<CachedSession>, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.dispose = Some(Arc::new(f));
        self
    }

    /// Sets `no_dispose_on_set` (memorystore `noDisposeOnSet`).
    pub fn no_dispose_on_set(mut self, no_dispose_on_set: bool) -> Self {
        self.no_dispose_on_set = no_dispose_on_set;
        self
    }

    /// Sets `stale`.
    pub fn stale(mut self, stale: bool) -> Self {
        self.stale = stale;
        self
    }

    /// Uses this clock for TTLs instead of the system clock (tests pass a
    /// `clockcache::MockClock`). Session `expires` dates are still compared with the wall clock
    /// when the TTL is computed at insertion.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }
}

#[derive(Clone)]
struct Entry {
    session: Arc<CachedSession>,
    /// Expiry on the strategy's clock, in nanoseconds.
    deadline: u64,
}

struct SharedClock(Arc<dyn Clock>);

impl Clock for SharedClock {
    fn now_nanos(&self) -> u64 {
        self.0.now_nanos()
    }
}

#[derive(Clone)]
struct Core {
    cache: Cache<String, Entry>,
    clock: Arc<dyn Clock>,
    stale: bool,
}

impl Core {
    fn prune(&self) -> usize {
        let mut n = 0;
        if self.stale {
            // Entries carry no engine TTL in stale mode; drop the ones past their deadline.
            let now = self.clock.now_nanos();
            self.cache.retain(|_, e| {
                let keep = e.deadline > now;
                n += usize::from(!keep);
                keep
            });
        }
        n + self.cache.purge_expired()
    }
}

/// The background prune thread (memorystore's `checkPeriod`); stopped on drop.
struct Pruner {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Pruner {
    fn start(core: Core, period: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("clockcache-session-prune".into())
            .spawn(move || loop {
                match rx.recv_timeout(period) {
                    Err(RecvTimeoutError::Timeout) => {
                        let n = core.prune();
                        if n > 0 {
                            tracing::trace!(pruned = n, "pruned expired sessions");
                        }
                    }
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            });
        match thread {
            Ok(t) => Pruner {
                stop: Some(tx),
                thread: Some(t),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the session prune thread; expired sessions are pruned on access only");
                Pruner {
                    stop: None,
                    thread: None,
                }
            }
        }
    }

    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Pruner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sessions in this process, on the clockcache engine (Vendure's `InMemorySessionCacheStrategy`,
/// plus eviction and memorystore's options).
///
/// Bounded by `max` (default 1000, least recently used first out); each entry lives until its
/// session's `expires` (or the configured TTL, if shorter).
///
/// ```
/// use std::time::Duration;
/// use clockcache_session::{InMemoryOptions, InMemorySessionCacheStrategy};
///
/// let store = InMemorySessionCacheStrategy::with_options(
///     InMemoryOptions::default()
///         .max(10_000)
///         .check_period(Duration::from_secs(60)),
/// );
/// assert_eq!(store.length(), 0);
/// store.stop_pruning();
/// ```
pub struct InMemorySessionCacheStrategy {
    core: Core,
    ttl: Option<Ttl>,
    /// The background prune period (`check_period`, zero left out).
    check_period: Option<Duration>,
    pruner: Mutex<Option<Pruner>>,
}

impl std::fmt::Debug for InMemorySessionCacheStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemorySessionCacheStrategy")
            .field("len", &self.core.cache.len())
            .field("capacity", &self.core.cache.capacity())
            .field("stale", &self.core.stale)
            .finish_non_exhaustive()
    }
}

impl Default for InMemorySessionCacheStrategy {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemorySessionCacheStrategy {
    /// A store of up to 1000 sessions.
    pub fn new() -> Self {
        Self::with_options(InMemoryOptions::default())
    }

    /// A store with the given options (starts the prune thread when `check_period` is set).
    pub fn with_options(opts: InMemoryOptions) -> Self {
        let mut builder = Cache::<String, Entry>::builder()
            .capacity(opts.max.max(1))
            // CLOCK approximates LRU, which is what session stores promise (the engine's default,
            // S3-FIFO, favours frequency).
            .eviction_policy(EvictionPolicy::Clock);
        // Without a configured clock the engine keeps its own (statically dispatched) system
        // clock, and the stale-mode deadlines read the same one.
        let clock: Arc<dyn Clock> = match opts.clock.clone() {
            Some(c) => {
                builder = builder.clock(SharedClock(c.clone()));
                c
            }
            None => Arc::new(SystemClock),
        };
        if let Some(dispose) = opts.dispose.clone() {
            let (stale, clock) = (opts.stale, clock.clone());
            let no_dispose_on_set = opts.no_dispose_on_set;
            builder = builder.eviction_listener(move |k: &String, e: &Entry, cause| {
                let cause = match cause {
                    RemovalCause::Replaced if no_dispose_on_set => return,
                    // Stale mode keeps deadlines itself (no engine TTL), and removes what is
                    // past them with `remove_if` or `retain`, which the engine reports as
                    // `Removed`: an entry that left past its deadline expired.
                    RemovalCause::Removed if stale && e.deadline <= clock.now_nanos() => {
                        RemovalCause::Expired
                    }
                    other => other,
                };
                dispose(k, &e.session, cause);
            });
        }
        let core = Core {
            cache: builder.build(),
            clock,
            stale: opts.stale,
        };
        let check_period = opts.check_period.filter(|p| !p.is_zero());
        let pruner = check_period.map(|p| Pruner::start(core.clone(), p));
        InMemorySessionCacheStrategy {
            core,
            ttl: opts.ttl,
            check_period,
            pruner: Mutex::new(pruner),
        }
    }

    fn ttl_for(&self, session: &CachedSession) -> Option<Duration> {
        let remaining = session.remaining_lifetime(OffsetDateTime::now_utc())?;
        let ttl = match &self.ttl {
            None => remaining,
            Some(Ttl::Fixed(d)) => remaining.min(*d),
            Some(Ttl::Fn(f)) => remaining.min(f(session)),
        };
        (!ttl.is_zero()).then_some(ttl)
    }

    /// The entry to store for `session` and its engine TTL, or `None` when it has no lifetime
    /// left.
    fn entry_for(&self, session: Arc<CachedSession>) -> Option<(Entry, Duration)> {
        let ttl = self.ttl_for(&session)?;
        let nanos = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        let deadline = self.core.clock.now_nanos().saturating_add(nanos);
        Some((Entry { session, deadline }, ttl))
    }

    fn insert(&self, session: Arc<CachedSession>) {
        let token = session.token.clone();
        let Some((entry, ttl)) = self.entry_for(session) else {
            // Already expired: make sure no older copy lingers.
            self.core.cache.remove(&token);
            return;
        };
        if self.core.stale {
            self.core.cache.insert(token, entry);
        } else {
            self.core.cache.insert_with_ttl(token, entry, ttl);
        }
    }

    fn lookup(&self, token: &str) -> Option<Arc<CachedSession>> {
        let entry = self.core.cache.get(token)?;
        if !self.core.stale {
            return Some(entry.session);
        }
        let now = self.core.clock.now_nanos();
        if entry.deadline > now {
            return Some(entry.session);
        }
        // Stale: hand it out once, to whoever removes it. The removal checks the deadline under
        // the engine's lock, so a fresh copy written since the read stays, and is the answer.
        match self.core.cache.remove_if(token, |e| e.deadline <= now) {
            Some(stale) => Some(stale.session),
            None => self
                .core
                .cache
                .get(token)
                .filter(|e| e.deadline > now)
                .map(|e| e.session),
        }
    }

    /// Resets the lifetime of a cached session from `session`'s `expires` (memorystore `touch`).
    /// Returns whether it did.
    ///
    /// `session` is the copy the caller read, with a new `expires`: the touch applies only while
    /// the cached entry is still that copy (the same value, or one equal to `session` in every
    /// field but `expires`). The new lifetime is written with a compare-and-swap against the
    /// entry it checked, so a [`set`](SessionCacheStrategy::set) that got in between, even one
    /// of the same data, keeps its own data and expiry: the touch then returns `false`, and
    /// neither rewrites, removes nor re-creates the entry. It also returns `false` when the
    /// token is not cached. A touch to an `expires` already past removes the copy it checked.
    /// In `stale` mode a stale copy is revived, as memorystore does.
    pub fn touch(&self, token: &str, session: &CachedSession) -> bool {
        if validate_token(token).is_err() {
            return false;
        }
        let Some(current) = self.core.cache.get(token) else {
            return false;
        };
        if !is_touched_copy(&current.session, session) {
            return false;
        }
        let same = |e: &Entry| Arc::ptr_eq(&e.session, &current.session);
        let mut updated = (*current.session).clone();
        updated.expires = session.expires;
        match self.entry_for(Arc::new(updated)) {
            // The new expiry is already past: the session is gone.
            None => self.core.cache.remove_if(token, same).is_some(),
            Some((entry, _)) if self.core.stale => {
                self.core.cache.replace_if(token.to_owned(), entry, same)
            }
            Some((entry, ttl)) => {
                self.core
                    .cache
                    .replace_with_ttl_if(token.to_owned(), entry, ttl, same)
            }
        }
    }

    /// Every live session (memorystore `all`). Weakly consistent under concurrent writes.
    pub fn all(&self) -> Vec<Arc<CachedSession>> {
        let now = self.core.clock.now_nanos();
        self.core
            .cache
            .iter()
            .filter(|(_, e)| e.deadline > now)
            .map(|(_, e)| e.session)
            .collect()
    }

    /// Tokens of every live session (memorystore `ids`): expired entries not yet pruned are left
    /// out. Weakly consistent under concurrent writes.
    pub fn ids(&self) -> Vec<String> {
        let now = self.core.clock.now_nanos();
        self.core
            .cache
            .iter()
            .filter(|(_, e)| e.deadline > now)
            .map(|(token, _)| token)
            .collect()
    }

    /// Number of entries held, expired ones not yet pruned included (memorystore `length`).
    pub fn length(&self) -> usize {
        self.core.cache.len()
    }

    /// Removes every expired entry now, without changing recency (memorystore `prune`). Returns
    /// how many were removed.
    pub fn prune(&self) -> usize {
        self.core.prune()
    }

    /// Stops the background prune thread (memorystore `stopInterval`); a no-op when none runs.
    /// When it returns the thread has exited: no prune runs until
    /// [`start_interval`](Self::start_interval).
    pub fn stop_interval(&self) {
        if let Some(mut p) = self.pruner.lock().take() {
            p.stop();
        }
    }

    /// (Re)starts the background prune thread, pruning every `check_period` (memorystore
    /// `startInterval`); a no-op when it already runs. Returns whether it runs afterwards:
    /// `false` when no (non-zero) `check_period` was configured, or the thread could not be
    /// started.
    pub fn start_interval(&self) -> bool {
        let Some(period) = self.check_period else {
            return false;
        };
        let mut pruner = self.pruner.lock();
        if pruner.as_ref().is_none_or(|p| p.thread.is_none()) {
            *pruner = Some(Pruner::start(self.core.clone(), period));
        }
        pruner.as_ref().is_some_and(|p| p.thread.is_some())
    }

    /// The same as [`stop_interval`](Self::stop_interval).
    pub fn stop_pruning(&self) {
        self.stop_interval();
    }

    /// The engine's counters (hits, misses, evictions, expirations, ...).
    pub fn stats(&self) -> clockcache::CacheStats {
        self.core.cache.stats()
    }

    /// Whether the background prune thread is running (started by `check_period` or
    /// [`start_interval`](Self::start_interval), and not stopped since).
    pub fn is_pruning(&self) -> bool {
        self.pruner
            .lock()
            .as_ref()
            .is_some_and(|p| p.thread.is_some())
    }

    /// Synchronous [`get`](SessionCacheStrategy::get) (the store does no I/O).
    pub fn get_now(&self, token: &str) -> Option<Arc<CachedSession>> {
        validate_token(token).ok()?;
        self.lookup(token)
    }

    /// Synchronous [`set`](SessionCacheStrategy::set).
    pub fn set_now(&self, session: Arc<CachedSession>) -> Result<(), SessionCacheError> {
        validate_token(&session.token)?;
        self.insert(session);
        Ok(())
    }

    /// Synchronous [`delete`](SessionCacheStrategy::delete).
    pub fn delete_now(&self, token: &str) -> Result<(), SessionCacheError> {
        validate_token(token)?;
        self.core.cache.remove(token);
        Ok(())
    }
}

/// Whether `cached` is the copy a touch was given: the same value, or equal to `touched` in
/// every field but `expires` (the one a touch changes).
fn is_touched_copy(cached: &CachedSession, touched: &CachedSession) -> bool {
    if std::ptr::eq(cached, touched) {
        return true;
    }
    // Destructured, so that a new field has to be considered here.
    let CachedSession {
        cache_expiry,
        id,
        token,
        expires: _,
        active_order_id,
        active_channel_id,
        authentication_strategy,
        user,
        data,
    } = touched;
    cached.cache_expiry == *cache_expiry
        && cached.id == *id
        && cached.token == *token
        && cached.active_order_id == *active_order_id
        && cached.active_channel_id == *active_channel_id
        && cached.authentication_strategy == *authentication_strategy
        && cached.user == *user
        && cached.data == *data
}

#[async_trait]
impl SessionCacheStrategy for InMemorySessionCacheStrategy {
    async fn destroy(&self) -> Result<(), SessionCacheError> {
        self.stop_pruning();
        Ok(())
    }

    /// `max`.
    fn capacity(&self) -> Option<u64> {
        Some(self.core.cache.capacity())
    }

    async fn set(&self, session: Arc<CachedSession>) -> Result<(), SessionCacheError> {
        self.set_now(session)
    }

    async fn get(&self, token: &str) -> Option<Arc<CachedSession>> {
        if let Err(e) = validate_token(token) {
            tracing::debug!(error = %e, "in-memory session cache get with an invalid token");
            return None;
        }
        self.lookup(token)
    }

    async fn delete(&self, token: &str) -> Result<(), SessionCacheError> {
        self.delete_now(token)
    }

    async fn clear(&self) -> Result<(), SessionCacheError> {
        self.core.cache.clear();
        Ok(())
    }
}
