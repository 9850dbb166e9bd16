//! `SessionCache`: what Vendure's `SessionService` does with its cache strategy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::epochs::{Epochs, Snapshot};
use crate::error::SessionCacheError;
use crate::model::{truncate_to_millis, unix_now, validate_token, CachedSession, Id};
use crate::strategy::SessionCacheStrategy;

/// The error type a [`SessionLoader`] returns.
pub type LoaderError = Box<dyn std::error::Error + Send + Sync>;

/// The source of truth for sessions (the database), consulted on a cache miss.
#[async_trait]
pub trait SessionLoader: Send + Sync + 'static {
    /// The session with this token, or `None` when there is no valid one. The returned
    /// session's `token` must equal `token`; its `cache_expiry` is overwritten by the cache.
    async fn load(&self, token: &str) -> Result<Option<CachedSession>, LoaderError>;

    /// Tokens of every session of the user, according to the source of truth. The cache adds
    /// them to those of its own index in [`SessionCache::delete_sessions_by_user`], so sessions
    /// cached by other instances are found too. Default: none (the local index only).
    async fn tokens_by_user(&self, _user_id: &Id) -> Result<Vec<String>, LoaderError> {
        Ok(Vec::new())
    }

    /// Tokens of every session whose active order is `order_id` (see
    /// [`tokens_by_user`](Self::tokens_by_user)). Default: none.
    async fn tokens_by_active_order(&self, _order_id: &Id) -> Result<Vec<String>, LoaderError> {
        Ok(Vec::new())
    }
}

/// Settings of a [`SessionCache`].
#[derive(Clone, Debug)]
pub struct SessionCacheConfig {
    /// Time budget of each strategy call (Vendure: 50 ms). A `get` that takes longer is a miss;
    /// a `set` or `delete` that takes longer is logged, goes on in the background, and is
    /// reported as [`SessionCacheError::Pending`] (its outcome is unknown).
    pub budget: Duration,
    /// How long a loaded session may be served from the cache before it is reloaded (Vendure's
    /// `authOptions.sessionCacheTTL`, 300 s by default). Written into `cache_expiry`.
    pub cache_ttl: Duration,
}

impl Default for SessionCacheConfig {
    fn default() -> Self {
        SessionCacheConfig {
            budget: Duration::from_millis(50),
            cache_ttl: Duration::from_secs(300),
        }
    }
}

type LoadResult = Result<Option<Arc<CachedSession>>, SessionCacheError>;

/// The most sessions the secondary indexes hold over a strategy that reports no capacity.
const DEFAULT_INDEX_CAPACITY: usize = 100_000;

/// A session cache service over any [`SessionCacheStrategy`], with a [`SessionLoader`] behind it.
///
/// Cheap to clone (a handle on shared state). Must be used inside a Tokio runtime with timers
/// enabled (`#[tokio::main]` does that).
///
/// * [`get`](Self::get) serves a cached session unless it is past `cache_expiry` or `expires`,
///   and otherwise loads it through the loader, one load per token at a time (single flight).
/// * Each strategy call gets [`SessionCacheConfig::budget`].
/// * [`delete_sessions_by_user`](Self::delete_sessions_by_user) and
///   [`delete_sessions_by_active_order`](Self::delete_sessions_by_active_order) use secondary
///   indexes of the sessions this instance has stored, plus whatever the loader reports. The
///   indexes are bounded: an entry goes when its session is deleted through this cache, found
///   gone by a load, or passes its `cache_expiry` or `expires` (a copy past `cache_expiry` is
///   never served without a reload); and they hold at most as many sessions as the strategy
///   ([`SessionCacheStrategy::capacity`]; 100 000 when it reports no bound), dropping those
///   whose copies go stale first.
#[derive(Clone)]
pub struct SessionCache {
    inner: Arc<Inner>,
}

struct Inner {
    strategy: Arc<dyn SessionCacheStrategy>,
    loader: Arc<dyn SessionLoader>,
    config: SessionCacheConfig,
    flights: Mutex<HashMap<String, Arc<OnceCell<LoadResult>>>>,
    index: Mutex<Index>,
    /// The most sessions the indexes hold.
    index_capacity: usize,
    /// Deletes, sets and clears that a load in flight must see: a load that read the database
    /// before one of them must not cache what it read.
    epochs: Epochs,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl SessionCache {
    /// A cache with the default configuration (50 ms budget, 300 s cache TTL).
    pub fn new(strategy: Arc<dyn SessionCacheStrategy>, loader: Arc<dyn SessionLoader>) -> Self {
        Self::with_config(strategy, loader, SessionCacheConfig::default())
    }

    /// A cache with the given configuration.
    pub fn with_config(
        strategy: Arc<dyn SessionCacheStrategy>,
        loader: Arc<dyn SessionLoader>,
        config: SessionCacheConfig,
    ) -> Self {
        let index_capacity = strategy
            .capacity()
            .map_or(DEFAULT_INDEX_CAPACITY, |c| {
                usize::try_from(c).unwrap_or(usize::MAX)
            })
            .max(1);
        SessionCache {
            inner: Arc::new(Inner {
                index_capacity,
                strategy,
                loader,
                config,
                flights: Mutex::new(HashMap::new()),
                index: Mutex::new(Index::default()),
                // Loads wait on the database (say 50 ms): with 4,096 slots (32 KiB), 1,000
                // deletes and sets a second leave about 1% of loads uncached for nothing.
                epochs: Epochs::new(4096),
            }),
        }
    }

    /// The strategy behind this cache.
    pub fn strategy(&self) -> &Arc<dyn SessionCacheStrategy> {
        &self.inner.strategy
    }

    /// The session for `token`: from the cache when fresh, else from the loader (then cached).
    /// `Ok(None)` when there is no valid session. Errors: an invalid token, or a loader failure.
    pub async fn get(&self, token: &str) -> Result<Option<Arc<CachedSession>>, SessionCacheError> {
        validate_token(token)?;
        let cached = self.timed_get(token).await;
        let had_cached = cached.is_some();
        let now = OffsetDateTime::now_utc();
        match cached {
            Some(s) if s.token == token && !s.is_unusable_at(now) => return Ok(Some(s)),
            Some(s) if s.token != token => {
                tracing::warn!(
                    token_len = token.len(),
                    "strategy returned a session with another token; treated as a miss"
                );
            }
            _ => {}
        }
        self.load_single_flight(token, had_cached).await
    }

    async fn timed_get(&self, token: &str) -> Option<Arc<CachedSession>> {
        let mut get = std::pin::pin!(self.inner.strategy.get(token));
        // In-process strategies answer on the first poll: skip arming a timer for them.
        let first = std::future::poll_fn(|cx| Poll::Ready(get.as_mut().poll(cx))).await;
        if let Poll::Ready(found) = first {
            return found;
        }
        match tokio::time::timeout(self.inner.config.budget, get).await {
            Ok(s) => s,
            Err(_) => {
                tracing::warn!(
                    budget_ms = self.inner.config.budget.as_millis() as u64,
                    "session cache get exceeded its time budget; treated as a miss"
                );
                None
            }
        }
    }

    async fn load_single_flight(&self, token: &str, had_cached: bool) -> LoadResult {
        let cell = {
            let mut flights = self.inner.flights.lock();
            flights.entry(token.to_owned()).or_default().clone()
        };
        // Leaves the map whether this call completes or is dropped mid-load (tokens are chosen
        // by clients: an entry left behind by every cancelled get would grow without bound).
        let guard = FlightGuard {
            inner: &self.inner,
            token,
            cell: Some(cell),
        };
        let cell = guard.cell.as_ref().expect("set above");
        // If the caller running the load is dropped, `OnceCell` lets one of the waiters run its
        // own load instead; they never wait on a load nobody runs.
        cell.get_or_init(|| self.load_and_store(token, had_cached))
            .await
            .clone()
    }

    async fn load_and_store(&self, token: &str, had_cached: bool) -> LoadResult {
        let before = self.inner.epochs.snapshot(token);
        // Read before the database is: a set or delete of the token on another instance from
        // here on changes it, and the write below is refused.
        let mark = self.timed_mark(token).await;
        let loaded = self
            .inner
            .loader
            .load(token)
            .await
            .map_err(|e| SessionCacheError::Loader(Arc::from(e)))?;
        let Some(mut session) = loaded else {
            // Nothing valid in the source of truth: drop the stale copy, if one was cached.
            self.index().forget(token);
            if had_cached {
                // A failed cache write must not fail the read: the answer is already known.
                if let Err(e) = self
                    .budgeted_write("delete", token, Write::Delete(token.to_owned()))
                    .await
                {
                    tracing::warn!(error = %e, "could not drop a stale cached session");
                }
            }
            return Ok(None);
        };
        if session.token != token {
            return Err(SessionCacheError::Loader(Arc::from(LoaderError::from(
                "the loader returned a session with a different token",
            ))));
        }
        if session.is_expired_at(OffsetDateTime::now_utc()) {
            return Ok(None);
        }
        session.cache_expiry = self.next_cache_expiry();
        session.expires = truncate_to_millis(session.expires);
        let session = Arc::new(session);
        // A delete, set or clear of this token since the load began may have changed the
        // database after the loader read it (a logout, say): what was read is answered to the
        // callers who asked before, but not cached.
        if self.inner.epochs.changed(token, before) {
            tracing::debug!("a loaded session was invalidated during its load; not cached");
            return Ok(Some(session));
        }
        let mark = match mark {
            Mark::NotKept => None,
            Mark::At(m) => Some(m),
            Mark::Unknown => {
                tracing::debug!("the token's write mark could not be read; not cached");
                return Ok(Some(session));
            }
        };
        // A failed cache write must not fail the read: the session comes from the loader. An
        // invalidation that arrives while the write is on its way is checked by the write.
        if let Err(e) = self.store(session.clone(), before, mark).await {
            tracing::warn!(error = %e, "could not cache a loaded session");
        }
        Ok(Some(session))
    }

    /// The strategy's write mark for `token`, within the budget.
    async fn timed_mark(&self, token: &str) -> Mark {
        let mut read = std::pin::pin!(self.inner.strategy.write_mark(token));
        // Strategies that keep no marks answer on the first poll: no timer for them.
        let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
        let r = match first {
            Poll::Ready(r) => r,
            Poll::Pending => match tokio::time::timeout(self.inner.config.budget, read).await {
                Ok(r) => r,
                Err(_) => Err(SessionCacheError::Timeout(self.inner.config.budget)),
            },
        };
        match r {
            Ok(None) => Mark::NotKept,
            Ok(Some(m)) => Mark::At(m),
            Err(e) => {
                tracing::debug!(error = %e, "could not read a token's write mark");
                Mark::Unknown
            }
        }
    }

    /// Makes every load of `token` in flight leave the cache alone, and later gets start a
    /// load of their own instead of joining one that read the database earlier.
    fn invalidate(&self, token: &str) {
        self.inner.epochs.invalidate(token);
        self.inner.flights.lock().remove(token);
    }

    fn next_cache_expiry(&self) -> f64 {
        unix_now().saturating_add(self.inner.config.cache_ttl.as_secs() as i64) as f64
    }

    /// The indexes, without the entries whose copies have gone stale.
    fn index(&self) -> parking_lot::MutexGuard<'_, Index> {
        let mut index = self.inner.index.lock();
        index.prune(OffsetDateTime::now_utc());
        index
    }

    /// Caches `session`, valid as of `since`: if its token is invalidated after that, the write
    /// takes its copy back out once it has landed (see [`Write::Set`]). With a write `mark`,
    /// the strategy stores it only if the mark has not changed.
    async fn store(
        &self,
        session: Arc<CachedSession>,
        since: Snapshot,
        mark: Option<u64>,
    ) -> Result<(), SessionCacheError> {
        self.index().record(&session, self.inner.index_capacity);
        let token = session.token.clone();
        self.budgeted_write("set", &token, Write::Set(session, since, mark))
            .await
    }

    /// Runs a write on its own task and waits for it up to the budget; a slower write is logged
    /// and left to finish in the background (a cancelled delete could leave a logged-out session
    /// behind, so writes are never cancelled), and reported as [`SessionCacheError::Pending`]:
    /// it may still fail, so the caller must not take it as done.
    async fn budgeted_write(
        &self,
        what: &'static str,
        token: &str,
        write: Write,
    ) -> Result<(), SessionCacheError> {
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let strategy = &inner.strategy;
            match write {
                Write::Set(s, since, mark) => {
                    let token = s.token.clone();
                    let r = match mark {
                        None => strategy.set(s).await,
                        Some(m) => strategy.set_if_mark(s, m).await.map(|stored| {
                            if !stored {
                                tracing::debug!(
                                    "the token was set or deleted elsewhere during its load; not cached"
                                );
                            }
                        }),
                    };
                    if inner.epochs.changed(&token, since) {
                        // A delete, set or clear came after the copy was valid and may have
                        // reached the strategy before this write did: take the copy back out.
                        // The next get reloads it.
                        if let Err(e) = strategy.delete(&token).await {
                            tracing::warn!(error = %e, "could not drop a session invalidated during its write");
                        }
                    }
                    r
                }
                Write::Delete(t) => strategy.delete(&t).await,
            }
        });
        match tokio::time::timeout(self.inner.config.budget, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(SessionCacheError::Backend(format!(
                "session cache {what} task failed: {join}"
            ))),
            Err(_) => {
                tracing::warn!(
                    op = what,
                    token_len = token.len(),
                    budget_ms = self.inner.config.budget.as_millis() as u64,
                    "session cache call exceeded its time budget; it continues in the background"
                );
                Err(SessionCacheError::Pending {
                    op: what,
                    budget: self.inner.config.budget,
                })
            }
        }
    }

    /// Caches a session the application has just created or changed (its `cache_expiry` is set
    /// from the configured cache TTL). Returns the stored session, or
    /// [`SessionCacheError::Pending`] when the write ran past its budget (it goes on in the
    /// background; until it lands, the cache may still serve the previous copy).
    pub async fn set(
        &self,
        session: CachedSession,
    ) -> Result<Arc<CachedSession>, SessionCacheError> {
        validate_token(&session.token)?;
        let mut session = session;
        session.cache_expiry = self.next_cache_expiry();
        session.expires = truncate_to_millis(session.expires);
        let session = Arc::new(session);
        self.invalidate(&session.token);
        let since = self.inner.epochs.snapshot(&session.token);
        self.store(session.clone(), since, None).await?;
        Ok(session)
    }

    /// Removes one session from the cache. `Ok` once the strategy has removed it;
    /// [`SessionCacheError::Pending`] when the delete ran past its budget (it goes on in the
    /// background, and may still fail: the session may still be served from the cache).
    pub async fn delete(&self, token: &str) -> Result<(), SessionCacheError> {
        validate_token(token)?;
        self.invalidate(token);
        self.index().forget(token);
        self.budgeted_write("delete", token, Write::Delete(token.to_owned()))
            .await
    }

    /// Removes every session from the cache (and the indexes).
    pub async fn clear(&self) -> Result<(), SessionCacheError> {
        self.inner.epochs.invalidate_all();
        self.inner.flights.lock().clear();
        *self.index() = Index::default();
        self.inner.strategy.clear().await
    }

    /// Removes every cached session of a user (e.g. after a password change). Returns how many
    /// tokens were deleted (tokens already absent from the cache included). Every token is
    /// tried; if a delete failed or ran past its budget ([`SessionCacheError::Pending`]), the
    /// first such error is returned instead of the count.
    pub async fn delete_sessions_by_user(&self, user_id: &Id) -> Result<usize, SessionCacheError> {
        let mut tokens = self.index().tokens(IndexKind::User, user_id);
        match self.inner.loader.tokens_by_user(user_id).await {
            Ok(more) => tokens.extend(more),
            Err(e) => {
                tracing::warn!(error = %e, "loader could not list the user's sessions; using the local index only")
            }
        }
        self.delete_all(tokens).await
    }

    /// Removes every cached session whose active order is `order_id` (e.g. after the order is
    /// placed). Returns how many tokens were deleted (tokens already absent included), or the
    /// first error, as [`delete_sessions_by_user`](Self::delete_sessions_by_user) does.
    pub async fn delete_sessions_by_active_order(
        &self,
        order_id: &Id,
    ) -> Result<usize, SessionCacheError> {
        let mut tokens = self.index().tokens(IndexKind::Order, order_id);
        match self.inner.loader.tokens_by_active_order(order_id).await {
            Ok(more) => tokens.extend(more),
            Err(e) => {
                tracing::warn!(error = %e, "loader could not list the order's sessions; using the local index only")
            }
        }
        self.delete_all(tokens).await
    }

    async fn delete_all(&self, tokens: HashSet<String>) -> Result<usize, SessionCacheError> {
        let mut first_error = None;
        let mut deleted = 0;
        for token in tokens {
            if validate_token(&token).is_err() {
                continue;
            }
            self.invalidate(&token);
            self.index().forget(&token);
            match self
                .budgeted_write("delete", &token, Write::Delete(token.clone()))
                .await
            {
                Ok(()) => deleted += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(deleted),
        }
    }

    /// Sets the session's active order and caches the updated session (the caller has already
    /// written it to the database). Returns the updated session.
    pub async fn set_active_order(
        &self,
        session: &CachedSession,
        order_id: Id,
    ) -> Result<Arc<CachedSession>, SessionCacheError> {
        self.update(session, |s| s.active_order_id = Some(order_id))
            .await
    }

    /// Clears the session's active order and caches the updated session.
    pub async fn unset_active_order(
        &self,
        session: &CachedSession,
    ) -> Result<Arc<CachedSession>, SessionCacheError> {
        self.update(session, |s| s.active_order_id = None).await
    }

    /// Sets the session's active channel and caches the updated session.
    pub async fn set_active_channel(
        &self,
        session: &CachedSession,
        channel_id: Id,
    ) -> Result<Arc<CachedSession>, SessionCacheError> {
        self.update(session, |s| s.active_channel_id = Some(channel_id))
            .await
    }

    async fn update(
        &self,
        session: &CachedSession,
        change: impl FnOnce(&mut CachedSession),
    ) -> Result<Arc<CachedSession>, SessionCacheError> {
        let mut s = session.clone();
        change(&mut s);
        self.set(s).await
    }

    /// Number of tokens in the secondary indexes (sessions this instance has stored and not yet
    /// seen deleted, past their `cache_expiry` or `expires`, or dropped for room). At most
    /// [`index_capacity`](Self::index_capacity).
    pub fn indexed_sessions(&self) -> usize {
        self.index().by_token.len()
    }

    /// The most sessions the secondary indexes hold: the strategy's
    /// [`capacity`](SessionCacheStrategy::capacity), or 100 000 when it reports none.
    pub fn index_capacity(&self) -> usize {
        self.inner.index_capacity
    }

    /// Number of tokens with a load in flight (the single-flight map): 0 whenever no `get` is
    /// loading.
    pub fn loads_in_flight(&self) -> usize {
        self.inner.flights.lock().len()
    }
}

/// One participant of a single flight. On drop (the get finished, or was cancelled), removes
/// the token's entry if it is still this flight's and either the load is done or no other
/// participant remains to run it; a waiter still there keeps the entry, takes the load over,
/// and removes the entry when it drops in turn.
struct FlightGuard<'a> {
    inner: &'a Inner,
    token: &'a str,
    cell: Option<Arc<OnceCell<LoadResult>>>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let Some(cell) = self.cell.take() else {
            return;
        };
        let mut flights = self.inner.flights.lock();
        // Participants clone the cell under this lock, and drop their clone under it (below):
        // the count cannot change while it is read. 2: the map's and this one.
        let ours = flights
            .get(self.token)
            .is_some_and(|c| Arc::ptr_eq(c, &cell));
        if ours && (cell.initialized() || Arc::strong_count(&cell) == 2) {
            flights.remove(self.token);
        }
        drop(cell);
    }
}

/// A strategy write, run on its own task.
enum Write {
    /// Caches the session, then deletes it again if its token was invalidated after the
    /// snapshot: a write that outlives its budget must not land over a later delete. With a
    /// write mark (a load's write), only if the strategy's mark for the token is unchanged.
    Set(Arc<CachedSession>, Snapshot, Option<u64>),
    Delete(String),
}

/// A token's write mark as a load read it.
enum Mark {
    /// The strategy keeps none: the load's write is unconditional.
    NotKept,
    At(u64),
    /// It could not be read: the load's result is not cached.
    Unknown,
}

#[derive(Clone, Copy)]
enum IndexKind {
    User,
    Order,
}

struct IndexEntry {
    user: Option<String>,
    order: Option<String>,
    /// Its key in [`Index::by_deadline`].
    deadline: (OffsetDateTime, u64),
}

/// Secondary indexes: user id -> tokens, active order id -> tokens. IDs are compared by their
/// string form (Vendure's `idsAreEqual`). Each entry lapses when its copy does (at the
/// session's `cache_expiry` or `expires`, whichever is first); lapsed entries are dropped, in
/// deadline order, whenever the index is used, and when it is full the entry that lapses first
/// makes room.
#[derive(Default)]
struct Index {
    by_user: HashMap<String, HashSet<String>>,
    by_order: HashMap<String, HashSet<String>>,
    by_token: HashMap<String, IndexEntry>,
    /// Tokens by the time their entry lapses, then by when they were recorded.
    by_deadline: BTreeMap<(OffsetDateTime, u64), String>,
    recorded: u64,
}

impl Index {
    /// Indexes `s`, keeping at most `capacity` entries.
    fn record(&mut self, s: &CachedSession, capacity: usize) {
        self.forget(&s.token);
        let now = OffsetDateTime::now_utc();
        // A copy already stale is reloaded before it is served: nothing to index.
        let Some(life) = s.remaining_cache_life(now) else {
            return;
        };
        let user = s.user.as_ref().map(|u| u.id.to_string());
        let order = s.active_order_id.as_ref().map(Id::to_string);
        if user.is_none() && order.is_none() {
            return;
        }
        if let Some(u) = &user {
            self.by_user
                .entry(u.clone())
                .or_default()
                .insert(s.token.clone());
        }
        if let Some(o) = &order {
            self.by_order
                .entry(o.clone())
                .or_default()
                .insert(s.token.clone());
        }
        self.recorded += 1;
        let deadline = (now + life, self.recorded);
        self.by_deadline.insert(deadline, s.token.clone());
        self.by_token.insert(
            s.token.clone(),
            IndexEntry {
                user,
                order,
                deadline,
            },
        );
        while self.by_token.len() > capacity {
            let Some((_, token)) = self.by_deadline.pop_first() else {
                break;
            };
            self.forget(&token);
        }
    }

    fn forget(&mut self, token: &str) {
        let Some(e) = self.by_token.remove(token) else {
            return;
        };
        self.by_deadline.remove(&e.deadline);
        if let Some(u) = e.user {
            unlink(&mut self.by_user, &u, token);
        }
        if let Some(o) = e.order {
            unlink(&mut self.by_order, &o, token);
        }
    }

    /// Drops the entries that have lapsed by `now`.
    fn prune(&mut self, now: OffsetDateTime) {
        while let Some(entry) = self.by_deadline.first_entry() {
            if entry.key().0 > now {
                return;
            }
            let token = entry.remove();
            self.forget(&token);
        }
    }

    fn tokens(&self, kind: IndexKind, id: &Id) -> HashSet<String> {
        let map = match kind {
            IndexKind::User => &self.by_user,
            IndexKind::Order => &self.by_order,
        };
        map.get(&id.to_string()).cloned().unwrap_or_default()
    }
}

fn unlink(map: &mut HashMap<String, HashSet<String>>, key: &str, token: &str) {
    if let Some(set) = map.get_mut(key) {
        set.remove(token);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

/// A [`SessionLoader`] built from an async closure, handy in tests and small services.
pub struct FnLoader<F>(pub F);

#[async_trait]
impl<F, Fut> SessionLoader for FnLoader<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<CachedSession>, LoaderError>> + Send + 'static,
{
    async fn load(&self, token: &str) -> Result<Option<CachedSession>, LoaderError> {
        (self.0)(token.to_owned()).await
    }
}
