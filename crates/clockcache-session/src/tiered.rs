//! `TieredSessionCacheStrategy`: an in-process near cache in front of Redis, kept coherent with
//! Redis server-assisted client-side caching (RESP3 `CLIENT TRACKING ... BCAST`).

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use clockcache::Cache;
use parking_lot::{Mutex, MutexGuard, RwLock};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, Value};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::epochs::{Epochs, Snapshot};
use crate::error::SessionCacheError;
use crate::model::{validate_token, CachedSession};
use crate::redis_strategy::{self as rs, RedisSessionCacheOptions};
use crate::strategy::SessionCacheStrategy;

/// Settings of a [`TieredSessionCacheStrategy`].
#[derive(Clone, Debug)]
pub struct TieredOptions {
    /// The Redis side (URL, namespace, timeouts).
    pub redis: RedisSessionCacheOptions,
    /// Most sessions in the near cache. Default 10 000.
    pub near_capacity: u64,
    /// Optional cap on how long an entry stays in the near cache. Entries never outlive the
    /// session's `cache_expiry` or `expires` regardless.
    pub near_max_ttl: Option<Duration>,
    /// How often the invalidation connection is checked with `PING`. A check that fails because
    /// the connection broke counts as a lost connection (near cache flushed, tracking re-armed);
    /// one that merely times out (Redis slow or paused, the network silent) flushes nothing, but
    /// the near cache is not served until a later check is answered. Default 1 s.
    pub health_check_interval: Duration,
    /// First delay between reconnection attempts (doubling up to `reconnect_max_delay`).
    /// Default 50 ms.
    pub reconnect_min_delay: Duration,
    /// Longest delay between reconnection attempts. Default 2 s.
    pub reconnect_max_delay: Duration,
}

impl TieredOptions {
    /// Options for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        TieredOptions {
            redis: RedisSessionCacheOptions::new(url),
            near_capacity: 10_000,
            near_max_ttl: None,
            health_check_interval: Duration::from_secs(1),
            reconnect_min_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_secs(2),
        }
    }

    /// Sets the Redis key namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.redis.namespace = namespace.into();
        self
    }

    /// Sets the near cache capacity.
    pub fn near_capacity(mut self, capacity: u64) -> Self {
        self.near_capacity = capacity;
        self
    }
}

struct Inner {
    opts: TieredOptions,
    prefix: String,
    client: Client,
    near: Cache<String, Arc<CachedSession>>,
    /// Invalidations that a concurrent fill must see (per token, and flushes).
    epochs: Epochs,
    /// Make a fill's epoch check and its insertion one step (see [`Inner::fill`]).
    stripes: Stripes,
    /// The connection that carries both commands and invalidations, with its generation.
    conn: RwLock<Option<(u64, MultiplexedConnection)>>,
    /// Generation of the armed connection (0: never connected).
    armed: watch::Sender<u64>,
    /// Whether the first connection attempt has ended (armed or failed).
    settled: watch::Sender<bool>,
    /// The last health check timed out: the connection may be silent, so the near cache is not
    /// served (nor flushed) until a check is answered or the connection is replaced.
    suspect: AtomicBool,
    health_check_timeouts: AtomicU64,
    invalidations: AtomicU64,
    flushes: AtomicU64,
}

/// Per-token locks, hashed to a fixed number of stripes. A token's epoch is only bumped under
/// its stripe (a flush holds every stripe), and a fill checks the epoch and inserts under it.
///
/// The engine's conditional writes do not fit here: `replace_if` only replaces a live entry
/// and a fill mostly lands on an empty key. Without the lock, a fill has to insert first and
/// check after, so a refused fill is served (and displaces the current copy) until it takes
/// itself back.
struct Stripes {
    hasher: RandomState,
    locks: Box<[Mutex<()>]>,
}

impl Stripes {
    fn new(n: usize) -> Self {
        Stripes {
            hasher: RandomState::new(),
            locks: (0..n.max(1)).map(|_| Mutex::new(())).collect(),
        }
    }

    fn lock(&self, token: &str) -> MutexGuard<'_, ()> {
        let i = (self.hasher.hash_one(token) as usize) % self.locks.len();
        self.locks[i].lock()
    }

    /// Every stripe, taken in index order (the only order two holders of several ever use).
    fn lock_all(&self) -> Vec<MutexGuard<'_, ()>> {
        self.locks.iter().map(|l| l.lock()).collect()
    }
}

impl Inner {
    /// Drops `token` from the near cache, and makes every fill that started earlier discard
    /// what it read.
    fn invalidate_local(&self, token: &str) {
        {
            let _stripe = self.stripes.lock(token);
            self.epochs.invalidate(token);
        }
        // A fill that checked before the bump has inserted by now (it held the stripe): this
        // removes it. One that checks after the bump sees it and inserts nothing.
        self.near.remove(token);
    }

    fn flush(&self) {
        {
            let _all = self.stripes.lock_all();
            self.epochs.invalidate_all();
        }
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.near.clear();
    }

    /// How long `session` may stay in the near cache; `None`: not at all.
    fn near_ttl(&self, session: &CachedSession) -> Option<Duration> {
        let mut ttl = session.remaining_cache_life(OffsetDateTime::now_utc())?;
        if let Some(max) = self.opts.near_max_ttl {
            ttl = ttl.min(max);
        }
        (!ttl.is_zero()).then_some(ttl)
    }

    /// Inserts what a fill read, unless an invalidation raced with it.
    ///
    /// The check and the insertion happen under the token's stripe, and every bump of the
    /// token's epoch takes that stripe: so either the bump came first and the fill inserts
    /// nothing, or the fill's copy is in place before the bump, and the invalidation that
    /// bumped removes it afterwards. A refused fill is never seen by a reader, and never
    /// displaces the copy already there.
    fn fill(&self, session: &Arc<CachedSession>, before: Snapshot) {
        let Some(ttl) = self.near_ttl(session) else {
            return;
        };
        let _stripe = self.stripes.lock(&session.token);
        if !self.epochs.changed(&session.token, before) {
            self.near
                .insert_with_ttl(session.token.clone(), session.clone(), ttl);
        }
    }

    /// After this instance's own write of `session` has landed: refuses every fill whose
    /// snapshot is older (see [`Epochs::advance`]) and installs `session`, in one step under the
    /// token's stripe. Returns `false`, and installs nothing, when the token was invalidated
    /// since `before`.
    fn fill_own_write(&self, session: &Arc<CachedSession>, before: Snapshot) -> bool {
        let token = &session.token;
        let _stripe = self.stripes.lock(token);
        if self.epochs.advance(token, before).is_none() {
            return false;
        }
        // Under the stripe nothing can invalidate the token between the advance and this.
        match self.near_ttl(session) {
            Some(ttl) => self
                .near
                .insert_with_ttl(token.clone(), session.clone(), ttl),
            None => {
                self.near.remove(token.as_str());
            }
        }
        true
    }

    /// Runs inline in the connection's reader, in stream order with the replies.
    fn on_push(&self, generation: u64, info: &PushInfo) {
        match info.kind {
            PushKind::Invalidate => {
                self.invalidations.fetch_add(1, Ordering::Relaxed);
                for v in &info.data {
                    self.invalidate_value(v);
                }
            }
            PushKind::Disconnection => self.drop_connection(generation),
            _ => {}
        }
    }

    fn invalidate_value(&self, v: &Value) {
        match v {
            // A null key list: the whole database was flushed.
            Value::Nil => self.flush(),
            Value::Array(keys) | Value::Set(keys) => {
                for k in keys {
                    self.invalidate_value(k);
                }
            }
            Value::BulkString(bytes) => self.invalidate_key(bytes),
            Value::SimpleString(s) => self.invalidate_key(s.as_bytes()),
            _ => {}
        }
    }

    fn invalidate_key(&self, key: &[u8]) {
        let Some(token) = key.strip_prefix(self.prefix.as_bytes()) else {
            return;
        };
        match std::str::from_utf8(token) {
            Ok(token) => self.invalidate_local(token),
            // Not a key this crate writes; to be safe, forget everything.
            Err(_) => self.flush(),
        }
    }

    fn health_check_timed_out(&self, timeout: Duration) {
        self.health_check_timeouts.fetch_add(1, Ordering::Relaxed);
        self.suspect.store(true, Ordering::Release);
        tracing::warn!(
            timeout_ms = timeout.as_millis() as u64,
            "tiered session cache: health check timed out; near cache bypassed until Redis answers"
        );
    }

    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.conn.read().clone()
    }

    fn drop_connection(&self, generation: u64) {
        // Flush before the connection is seen as gone, so that no one who
        // sees it gone can still find an entry cached while it was up (and
        // again after, for a fill that raced with the first flush; fills
        // after that need a connection, and there is none).
        self.flush();
        let mut conn = self.conn.write();
        if conn.as_ref().is_some_and(|(g, _)| *g == generation) {
            *conn = None;
        }
        drop(conn);
        self.flush();
    }
}

/// Connects, arms tracking, and serves until the connection is lost; then retries with backoff.
async fn supervise(weak: Weak<Inner>) {
    let mut generation = 0u64;
    let mut delay: Option<Duration> = None;
    loop {
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let Some(inner) = weak.upgrade() else { return };
        generation += 1;
        let armed = serve(&inner, &weak, generation).await;
        inner.settled.send_replace(true);
        let (min, max) = (
            inner.opts.reconnect_min_delay,
            inner.opts.reconnect_max_delay,
        );
        drop(inner);
        delay = Some(match (armed, delay) {
            (true, _) | (false, None) => min,
            (false, Some(d)) => (d * 2).min(max),
        });
    }
}

/// One connection's life. Returns whether it was armed (so the next retry starts quickly).
async fn serve(inner: &Arc<Inner>, weak: &Weak<Inner>, generation: u64) -> bool {
    let (lost_tx, mut lost_rx) = mpsc::unbounded_channel::<()>();
    let push_weak = weak.clone();
    let push = move |info: PushInfo| -> Result<(), ()> {
        if let Some(inner) = push_weak.upgrade() {
            inner.on_push(generation, &info);
        }
        if info.kind == PushKind::Disconnection {
            let _ = lost_tx.send(());
        }
        Ok(())
    };
    let opts = &inner.opts.redis;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(opts.connect_timeout))
        .set_response_timeout(Some(opts.op_timeout))
        .set_push_sender(push);
    let mut conn = match rs::timed(
        opts.connect_timeout + opts.op_timeout,
        inner
            .client
            .get_multiplexed_async_connection_with_config(&config),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "tiered session cache: cannot connect to Redis; retrying");
            return false;
        }
    };
    let mut arm = redis::cmd("CLIENT");
    arm.arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(&inner.prefix)
        .arg("NOLOOP");
    if let Err(e) = rs::timed(opts.op_timeout, arm.query_async::<()>(&mut conn)).await {
        tracing::warn!(error = %e, "tiered session cache: CLIENT TRACKING failed; retrying");
        return false;
    }
    // Anything cached before this point may have missed invalidations.
    inner.flush();
    inner.suspect.store(false, Ordering::Release);
    *inner.conn.write() = Some((generation, conn.clone()));
    inner.armed.send_replace(generation);
    inner.settled.send_replace(true);
    tracing::debug!(
        generation,
        "tiered session cache: invalidation tracking armed"
    );
    let mut tick = tokio::time::interval(inner.opts.health_check_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = lost_rx.recv() => break,
            _ = tick.tick() => {
                let ping = redis::cmd("PING");
                match tokio::time::timeout(opts.op_timeout, ping.query_async::<String>(&mut conn)).await {
                    Ok(Ok(_)) => inner.suspect.store(false, Ordering::Release),
                    // No answer in time, but the connection still stands: the invalidations
                    // Redis sends on it arrive in order, ahead of the answer to a later check,
                    // so none is lost. Keep the near cache, but serve nothing from it until a
                    // check is answered.
                    Err(_) => inner.health_check_timed_out(opts.op_timeout),
                    Ok(Err(e)) if e.is_timeout() => inner.health_check_timed_out(opts.op_timeout),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "tiered session cache: health check failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }
    inner.drop_connection(generation);
    tracing::warn!(
        generation,
        "tiered session cache: invalidation connection lost; near cache flushed, reconnecting"
    );
    true
}

/// Sessions in Redis with an in-process near cache (the clockcache engine) on each instance.
///
/// Reads are served from the near cache when possible; misses read Redis and fill it. The
/// strategy owns one RESP3 connection that both carries its commands and receives invalidations:
/// it sends `CLIENT TRACKING ON BCAST PREFIX {namespace}: NOLOOP`, so any write to a session
/// key by any other client (another instance, a Vendure server) makes Redis push an
/// invalidation, and the entry is dropped here. Near entries expire at the session's
/// `cache_expiry` or `expires`, whichever is first.
///
/// The near cache is flushed only when invalidations may have been lost: the connection
/// dropped (closed, killed, a health check failing on it with an error other than a timeout), a
/// new connection was armed in its place, or Redis reported a flush of the database. Commands
/// fail (misses) until a connection is back, and tracking is re-armed on the new one before the
/// near cache is used again. A health check (`PING`) that merely times out flushes nothing: the
/// connection still stands, and what Redis pushes on it arrives in order. Until a later check
/// is answered, gets bypass the near cache (and read Redis), so a silent connection does not
/// serve near entries for longer than `health_check_interval + op_timeout`.
///
/// The connection is made in the background and retried with backoff
/// (`reconnect_min_delay` doubling up to `reconnect_max_delay`). A call made while none is up
/// fails at once (a miss, for `get`), except that calls made during the very first connection
/// attempt wait for its outcome, at most `op_timeout`: with Redis down at start, requests are
/// not each held for `connect_timeout`.
///
/// A fill that raced with an invalidation is discarded (per-token epochs), so an invalidation is
/// never lost to a concurrent read. See [`sync_invalidations`](Self::sync_invalidations) for a
/// read-your-others'-writes barrier.
pub struct TieredSessionCacheStrategy {
    inner: Arc<Inner>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    started: AtomicBool,
}

impl std::fmt::Debug for TieredSessionCacheStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredSessionCacheStrategy")
            .field("namespace", &self.inner.opts.redis.namespace)
            .field("near_len", &self.inner.near.len())
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Drop for TieredSessionCacheStrategy {
    fn drop(&mut self) {
        if let Some(h) = self.supervisor.lock().take() {
            h.abort();
        }
    }
}

impl TieredSessionCacheStrategy {
    /// A strategy for `url` with default options. No I/O here: the connection is made by
    /// [`init`](SessionCacheStrategy::init), or on first use.
    pub fn new(url: &str) -> Result<Self, SessionCacheError> {
        Self::with_options(TieredOptions::new(url))
    }

    /// A strategy with the given options.
    pub fn with_options(opts: TieredOptions) -> Result<Self, SessionCacheError> {
        let info = opts.redis.validate()?;
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(resp3);
        let client = rs::client(&opts.redis, info)?;
        let prefix = format!("{}:", opts.redis.namespace);
        let near = Cache::builder().capacity(opts.near_capacity.max(1)).build();
        let (armed, _) = watch::channel(0);
        let (settled, _) = watch::channel(false);
        Ok(TieredSessionCacheStrategy {
            inner: Arc::new(Inner {
                prefix,
                client,
                near,
                // Fills wait on one Redis round trip: 256 slots drop a needless fill in well
                // under 1% even at 1,000 invalidations a second.
                epochs: Epochs::new(256),
                // A stripe is held for one epoch check and one insertion.
                stripes: Stripes::new(64),
                conn: RwLock::new(None),
                armed,
                settled,
                suspect: AtomicBool::new(false),
                health_check_timeouts: AtomicU64::new(0),
                invalidations: AtomicU64::new(0),
                flushes: AtomicU64::new(0),
                opts,
            }),
            supervisor: Mutex::new(None),
            started: AtomicBool::new(false),
        })
    }

    fn ensure_started(&self) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let mut sup = self.supervisor.lock();
        if sup.is_none() && !self.started.load(Ordering::Acquire) {
            *sup = Some(tokio::spawn(supervise(Arc::downgrade(&self.inner))));
            self.started.store(true, Ordering::Release);
        }
    }

    /// The armed connection, `None` while there is none. Only while the first connection
    /// attempt is under way does it wait, for that attempt's outcome and at most `op_timeout`
    /// (or `connect_timeout`, if shorter); later attempts run in the background unwaited.
    async fn connection(&self) -> Option<MultiplexedConnection> {
        self.ensure_started();
        if let Some((_, c)) = self.inner.current() {
            return Some(c);
        }
        let mut settled = self.inner.settled.subscribe();
        if !*settled.borrow() {
            let redis = &self.inner.opts.redis;
            let wait = redis.op_timeout.min(redis.connect_timeout);
            let _ = tokio::time::timeout(wait, settled.wait_for(|s| *s)).await;
        }
        self.inner.current().map(|(_, c)| c)
    }

    fn no_connection() -> SessionCacheError {
        SessionCacheError::Backend("Redis is unreachable (invalidation connection down)".into())
    }

    /// Whether the invalidation connection is up and tracking is armed.
    pub fn is_connected(&self) -> bool {
        self.inner.conn.read().is_some()
    }

    /// Waits until the invalidation connection is armed, at most `timeout`. Returns whether it is.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        self.ensure_started();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.is_connected() {
                return true;
            }
            let mut rx = self.inner.armed.subscribe();
            let seen = *rx.borrow_and_update();
            if self.is_connected() {
                return true;
            }
            let changed = tokio::time::timeout_at(deadline, async {
                rx.wait_for(|g| *g != seen).await.is_ok()
            })
            .await;
            if !matches!(changed, Ok(true)) {
                return self.is_connected();
            }
        }
    }

    /// A barrier: when it returns `Ok`, every invalidation for writes that completed (on any
    /// instance) before it was called has been applied to this near cache. It sends a `PING` on
    /// the invalidation connection; Redis queues invalidations ahead of later replies on that
    /// connection, and they are applied in stream order.
    pub async fn sync_invalidations(&self) -> Result<(), SessionCacheError> {
        let mut c = self.connection().await.ok_or_else(Self::no_connection)?;
        rs::timed(
            self.inner.opts.redis.op_timeout,
            redis::cmd("PING").query_async::<String>(&mut c),
        )
        .await
        .map(drop)
    }

    /// How many times tracking has been armed on a fresh connection (0 before the first).
    /// Grows by one on every reconnection.
    pub fn generation(&self) -> u64 {
        *self.inner.armed.borrow()
    }

    /// Sessions in the near cache now.
    pub fn near_len(&self) -> usize {
        self.inner.near.len()
    }

    /// Whether `token` is in the near cache (without changing recency).
    pub fn near_contains(&self, token: &str) -> bool {
        self.inner.near.contains_key(token)
    }

    /// Invalidation messages received so far.
    pub fn invalidations_received(&self) -> u64 {
        self.inner.invalidations.load(Ordering::Relaxed)
    }

    /// Times the whole near cache was flushed (connection armed or lost, `FLUSHALL`, `clear`).
    /// A health check that times out is not one of them.
    pub fn flushes(&self) -> u64 {
        self.inner.flushes.load(Ordering::Relaxed)
    }

    /// Health checks that timed out (no flush; the near cache is bypassed until one is
    /// answered).
    pub fn health_check_timeouts(&self) -> u64 {
        self.inner.health_check_timeouts.load(Ordering::Relaxed)
    }

    /// The write protocol of `set` and `set_if_mark`; `write` makes the Redis write and says
    /// whether Redis took the session. The near copy is dropped before the write, so no reader
    /// is served the old value once the write may have landed. NOLOOP: Redis sends this
    /// instance no invalidation for its own write, so the write must refuse, itself, the fills
    /// of gets that snapshotted before it landed (their GET may have been queued ahead of the
    /// SET and read the older value). It bumps the token's epoch now that the SET has been
    /// answered: a get that snapshots after this sends its GET after the SET was applied. The
    /// bump is a compare-and-swap against the snapshot taken before the write, so an
    /// invalidation that came in while the write was on its way (another instance's write of
    /// the token, applied in Redis after ours) is not hidden by it. A write Redis refused or
    /// that failed leaves no near copy.
    async fn write_through<Fut>(
        &self,
        session: &Arc<CachedSession>,
        write: impl FnOnce(MultiplexedConnection) -> Fut,
    ) -> Result<bool, SessionCacheError>
    where
        Fut: Future<Output = Result<bool, SessionCacheError>>,
    {
        validate_token(&session.token)?;
        let c = self.connection().await.ok_or_else(Self::no_connection)?;
        let inner = &self.inner;
        let token = &session.token;
        inner.invalidate_local(token);
        let before = inner.epochs.snapshot(token);
        let written = write(c).await;
        if written.as_ref().is_ok_and(|&took| took) {
            if !inner.fill_own_write(session, before) {
                // Something invalidated the token during the write: which value Redis holds is
                // unknown here, so keep neither.
                inner.invalidate_local(token);
            }
        } else {
            inner.invalidate_local(token);
        }
        written
    }

    fn log<T>(op: &'static str, r: Result<T, SessionCacheError>) -> Result<T, SessionCacheError> {
        if let Err(e) = &r {
            tracing::warn!(op, error = %e, "tiered session cache call failed");
        }
        r
    }
}

#[async_trait]
impl SessionCacheStrategy for TieredSessionCacheStrategy {
    /// Starts the invalidation connection and waits (up to the connect timeout) until tracking
    /// is armed; the error says Redis is unreachable (the strategy keeps retrying).
    async fn init(&self) -> Result<(), SessionCacheError> {
        let ok = self
            .wait_connected(self.inner.opts.redis.connect_timeout)
            .await;
        Self::log(
            "init",
            if ok {
                Ok(())
            } else {
                Err(Self::no_connection())
            },
        )
    }

    /// Stops the invalidation connection and empties the near cache. The strategy is unusable
    /// afterwards (every call fails or misses).
    async fn destroy(&self) -> Result<(), SessionCacheError> {
        if let Some(h) = self.supervisor.lock().take() {
            h.abort();
        }
        self.inner.flush();
        *self.inner.conn.write() = None;
        self.inner.flush();
        Ok(())
    }

    async fn set(&self, session: Arc<CachedSession>) -> Result<(), SessionCacheError> {
        let (opts, s) = (&self.inner.opts.redis, &session);
        let r = self
            .write_through(s, |mut c| async move {
                rs::write_session(&mut c, opts, s).await.map(|()| true)
            })
            .await;
        Self::log("set", r.map(drop))
    }

    async fn get(&self, token: &str) -> Option<Arc<CachedSession>> {
        if let Err(e) = validate_token(token) {
            tracing::debug!(error = %e, "tiered session cache get with an invalid token");
            return None;
        }
        let inner = &self.inner;
        // After a health check timed out, near entries are not served (see the type's doc).
        if !inner.suspect.load(Ordering::Acquire) {
            if let Some(s) = inner.near.get(token) {
                if !s.is_unusable_at(OffsetDateTime::now_utc()) {
                    return Some(s);
                }
            }
        }
        let r = async {
            let mut c = self.connection().await.ok_or_else(Self::no_connection)?;
            let before = inner.epochs.snapshot(token);
            let found = rs::read_session(&mut c, &inner.opts.redis, token).await?;
            Ok(found.map(|s| {
                let s = Arc::new(s);
                inner.fill(&s, before);
                s
            }))
        }
        .await;
        Self::log("get", r).ok().flatten()
    }

    async fn write_mark(&self, token: &str) -> Result<Option<u64>, SessionCacheError> {
        let r = async {
            validate_token(token)?;
            let mut c = self.connection().await.ok_or_else(Self::no_connection)?;
            rs::read_mark(&mut c, &self.inner.opts.redis, token)
                .await
                .map(Some)
        }
        .await;
        Self::log("write_mark", r)
    }

    /// As [`set`](SessionCacheStrategy::set), with the write made conditional on the mark; the
    /// near cache gets the session only if Redis did.
    async fn set_if_mark(
        &self,
        session: Arc<CachedSession>,
        mark: u64,
    ) -> Result<bool, SessionCacheError> {
        let (opts, s) = (&self.inner.opts.redis, &session);
        let r = self
            .write_through(s, |mut c| async move {
                rs::write_session_if_mark(&mut c, opts, s, mark).await
            })
            .await;
        Self::log("set_if_mark", r)
    }

    async fn delete(&self, token: &str) -> Result<(), SessionCacheError> {
        let r = async {
            validate_token(token)?;
            self.inner.invalidate_local(token);
            let mut c = self.connection().await.ok_or_else(Self::no_connection)?;
            let r = rs::unlink(&mut c, &self.inner.opts.redis, token).await;
            self.inner.invalidate_local(token);
            r
        }
        .await;
        Self::log("delete", r)
    }

    async fn clear(&self) -> Result<(), SessionCacheError> {
        let r = async {
            self.inner.flush();
            let mut c = self.connection().await.ok_or_else(Self::no_connection)?;
            let r = rs::clear_namespace(&mut c, &self.inner.opts.redis).await;
            self.inner.flush();
            r.map(drop)
        }
        .await;
        Self::log("clear", r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versioned(version: i64) -> Arc<CachedSession> {
        let mut s = CachedSession::new(
            1,
            "t",
            OffsetDateTime::now_utc() + Duration::from_secs(3600),
            Duration::from_secs(300),
        );
        s.active_order_id = Some(version.into());
        Arc::new(s)
    }

    /// No I/O: the strategy connects on first use only, and these tests never use it.
    fn strategy() -> TieredSessionCacheStrategy {
        TieredSessionCacheStrategy::new("redis://127.0.0.1:1").unwrap()
    }

    #[test]
    fn a_refused_fill_leaves_the_near_cache_as_it_found_it() {
        let t = strategy();
        let inner = &t.inner;
        let old = inner.epochs.snapshot("t");
        inner.invalidate_local("t");
        let fresh = versioned(2);
        inner.fill(&fresh, inner.epochs.snapshot("t"));
        assert!(t.near_contains("t"));
        // A fill that read before the invalidation arrives last: it must not displace the
        // fresh copy (nor, in between, be served in its place).
        inner.fill(&versioned(1), old);
        assert_eq!(inner.near.get("t"), Some(fresh));
    }

    #[test]
    fn a_refused_fill_is_never_visible() {
        let t = strategy();
        let inner = t.inner.clone();
        let old = inner.epochs.snapshot("t");
        inner.invalidate_local("t");
        let fresh = versioned(2);
        inner.fill(&fresh, inner.epochs.snapshot("t"));
        let stop = Arc::new(AtomicBool::new(false));
        let filler = {
            let (inner, stop) = (inner.clone(), stop.clone());
            std::thread::spawn(move || {
                let stale = versioned(1);
                let mut fills = 0u64;
                while !stop.load(Ordering::Acquire) || fills < 10_000 {
                    inner.fill(&stale, old);
                    fills += 1;
                }
            })
        };
        let mut seen_stale = 0u64;
        for _ in 0..200_000 {
            if let Some(s) = inner.near.get("t") {
                if s.active_order_id != Some(2.into()) {
                    seen_stale += 1;
                }
            }
        }
        stop.store(true, Ordering::Release);
        filler.join().unwrap();
        assert_eq!(seen_stale, 0, "reads served a refused fill");
    }
}
