//! `RedisSessionCacheStrategy`: sessions in Redis, shared by every instance of a service.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo};
use time::OffsetDateTime;

use crate::error::SessionCacheError;
use crate::model::{validate_token, CachedSession};
use crate::strategy::SessionCacheStrategy;

/// The key namespace Vendure's Redis session cache uses.
pub const DEFAULT_NAMESPACE: &str = "vendure-session-cache";

/// Settings of a [`RedisSessionCacheStrategy`] (and of the Redis side of a
/// [`TieredSessionCacheStrategy`](crate::TieredSessionCacheStrategy)).
#[derive(Clone, Debug)]
pub struct RedisSessionCacheOptions {
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://...` with the `tls` feature.
    pub url: String,
    /// Keys are `"{namespace}:{token}"`, as in Vendure. Default [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// Upper bound on one Redis call; a slower call is an error (a miss for `get`). Default 1 s.
    pub op_timeout: Duration,
    /// Upper bound on establishing a connection. Default 1 s.
    pub connect_timeout: Duration,
    /// Keys per `SCAN`/`UNLINK` round in [`clear`](SessionCacheStrategy::clear). Default 500.
    pub scan_batch: usize,
    /// PEM root certificate(s) to trust for `rediss://` instead of the system trust store
    /// (a private CA, or a self-signed server certificate). Feature `tls`.
    #[cfg(feature = "tls")]
    pub tls_root_cert: Option<Vec<u8>>,
}

impl RedisSessionCacheOptions {
    /// Options for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        RedisSessionCacheOptions {
            url: url.into(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            op_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            scan_batch: 500,
            #[cfg(feature = "tls")]
            tls_root_cert: None,
        }
    }

    /// Trusts this PEM root certificate for `rediss://` (feature `tls`).
    #[cfg(feature = "tls")]
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_cert = Some(pem.into());
        self
    }

    /// Sets the key namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the per-call timeout.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub(crate) fn validate(&self) -> Result<redis::ConnectionInfo, SessionCacheError> {
        if self.namespace.is_empty() {
            return Err(SessionCacheError::Config("the namespace is empty".into()));
        }
        if self.scan_batch == 0 {
            return Err(SessionCacheError::Config("scan_batch is 0".into()));
        }
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| SessionCacheError::Config(format!("bad Redis URL: {e}")))?;
        #[cfg(feature = "tls")]
        if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            // rustls needs a process-wide crypto provider; install ring unless the application
            // already installed one (then this is a harmless no-op).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        Ok(info)
    }
}

/// A client for `info`, with the configured TLS roots when there are any.
pub(crate) fn client(
    opts: &RedisSessionCacheOptions,
    info: redis::ConnectionInfo,
) -> Result<Client, SessionCacheError> {
    let bad = |e: redis::RedisError| SessionCacheError::Config(format!("bad Redis URL: {e}"));
    #[cfg(feature = "tls")]
    if let Some(pem) = &opts.tls_root_cert {
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        };
        return Client::build_with_tls(info, certs).map_err(bad);
    }
    let _ = opts;
    Client::open(info).map_err(bad)
}

/// The Redis key of a token.
pub(crate) fn key(namespace: &str, token: &str) -> String {
    let mut k = String::with_capacity(namespace.len() + 1 + token.len());
    k.push_str(namespace);
    k.push(':');
    k.push_str(token);
    k
}

/// `namespace` as a literal `SCAN MATCH` pattern prefix.
fn glob_escape(namespace: &str) -> String {
    let mut out = String::with_capacity(namespace.len() + 4);
    for c in namespace.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(crate) async fn timed<T>(
    op_timeout: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, SessionCacheError> {
    match tokio::time::timeout(op_timeout, fut).await {
        Ok(r) => r.map_err(SessionCacheError::from),
        Err(_) => Err(SessionCacheError::Timeout(op_timeout)),
    }
}

/// Decodes a stored value; a malformed value or one stored under another token is logged and
/// reported as `None`.
pub(crate) fn decode(token: &str, raw: &[u8]) -> Option<CachedSession> {
    match CachedSession::from_json(raw) {
        Ok(s) if s.token == token => Some(s),
        Ok(_) => {
            tracing::warn!("Redis session value belongs to another token; treated as a miss");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, bytes = raw.len(), "malformed session in Redis; treated as a miss");
            None
        }
    }
}

/// How long a token's write mark lives after its last bump: far longer than any load.
const WRITE_MARK_TTL_MS: u64 = 3_600_000;

/// The key of a token's write mark: a counter that every `set` and `delete` through this crate
/// bumps, in the same transaction as the write. A load reads it before it reads the database,
/// and its write is made conditional on it (see [`write_session_if_mark`]). Outside the
/// `{namespace}:` prefix, so that tracking, `clear` and Vendure never see it.
fn mark_key(namespace: &str, token: &str) -> String {
    format!("{namespace}-write-mark:{token}")
}

fn bump_mark(pipe: &mut redis::Pipeline, opts: &RedisSessionCacheOptions, token: &str) {
    let m = mark_key(&opts.namespace, token);
    pipe.cmd("INCR")
        .arg(&m)
        .ignore()
        .cmd("PEXPIRE")
        .arg(&m)
        .arg(WRITE_MARK_TTL_MS)
        .ignore();
}

/// The session's value and Redis TTL in milliseconds: until its `cache_expiry` or its
/// `expires`, whichever is first (a copy past `cache_expiry` is reloaded anyway), at least 1 ms.
/// `None` when it has no cache life left.
fn encode_for_redis(session: &CachedSession) -> Result<Option<(String, u64)>, SessionCacheError> {
    let Some(ttl) = session.remaining_cache_life(OffsetDateTime::now_utc()) else {
        return Ok(None);
    };
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    Ok(Some((session.to_json()?, ms)))
}

/// Writes a session with a TTL until its `cache_expiry` or `expires`, whichever is first (a
/// session past either is removed instead), and bumps the token's write mark in the same
/// transaction.
pub(crate) async fn write_session<C: ConnectionLike + Send>(
    conn: &mut C,
    opts: &RedisSessionCacheOptions,
    session: &CachedSession,
) -> Result<(), SessionCacheError> {
    validate_token(&session.token)?;
    let k = key(&opts.namespace, &session.token);
    let mut pipe = redis::pipe();
    pipe.atomic();
    match encode_for_redis(session)? {
        None => pipe.cmd("UNLINK").arg(&k).ignore(),
        Some((json, ms)) => pipe.cmd("SET").arg(&k).arg(json).arg("PX").arg(ms).ignore(),
    };
    bump_mark(&mut pipe, opts, &session.token);
    timed(opts.op_timeout, pipe.query_async::<()>(conn)).await
}

/// The token's write mark now (0 when it has none).
pub(crate) async fn read_mark<C: ConnectionLike + Send>(
    conn: &mut C,
    opts: &RedisSessionCacheOptions,
    token: &str,
) -> Result<u64, SessionCacheError> {
    validate_token(token)?;
    let mut cmd = redis::cmd("GET");
    cmd.arg(mark_key(&opts.namespace, token));
    let mark: Option<u64> = timed(opts.op_timeout, cmd.query_async(conn)).await?;
    Ok(mark.unwrap_or(0))
}

/// Compares the mark and writes in one step (a script runs atomically in Redis).
const SET_IF_MARK: &str = "\
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1";

/// Writes a session (as [`write_session`], without bumping the mark) only if the token's write
/// mark is still `mark`: no `set` or `delete` of the token through this crate, on any
/// instance, since `mark` was read. Returns whether it wrote; a session past its `cache_expiry`
/// or `expires` is not written.
pub(crate) async fn write_session_if_mark<C: ConnectionLike + Send>(
    conn: &mut C,
    opts: &RedisSessionCacheOptions,
    session: &CachedSession,
    mark: u64,
) -> Result<bool, SessionCacheError> {
    validate_token(&session.token)?;
    let Some((json, ms)) = encode_for_redis(session)? else {
        return Ok(false);
    };
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(SET_IF_MARK)
        .arg(2)
        .arg(key(&opts.namespace, &session.token))
        .arg(mark_key(&opts.namespace, &session.token))
        .arg(json)
        .arg(mark)
        .arg(ms);
    let wrote: i64 = timed(opts.op_timeout, cmd.query_async(conn)).await?;
    Ok(wrote == 1)
}

/// Reads and decodes a session (`Ok(None)` when absent, malformed or expired).
pub(crate) async fn read_session<C: ConnectionLike + Send>(
    conn: &mut C,
    opts: &RedisSessionCacheOptions,
    token: &str,
) -> Result<Option<CachedSession>, SessionCacheError> {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key(&opts.namespace, token));
    let raw: Option<Vec<u8>> = timed(opts.op_timeout, cmd.query_async(conn)).await?;
    Ok(raw
        .and_then(|raw| decode(token, &raw))
        .filter(|s| !s.is_expired_at(OffsetDateTime::now_utc())))
}

/// Removes a session, and bumps the token's write mark in the same transaction.
pub(crate) async fn unlink<C: ConnectionLike + Send>(
    conn: &mut C,
    opts: &RedisSessionCacheOptions,
    token: &str,
) -> Result<(), SessionCacheError> {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("UNLINK")
        .arg(key(&opts.namespace, token))
        .ignore();
    bump_mark(&mut pipe, opts, token);
    timed(opts.op_timeout, pipe.query_async::<()>(conn)).await
}

/// Removes every key of the namespace with `SCAN` + `UNLINK` in batches: Redis stays
/// responsive (no `KEYS`, no `FLUSHDB`), and other namespaces in the same database are kept.
pub(crate) async fn clear_namespace<C: ConnectionLike + Send>(
    conn: &mut C,
    opts: &RedisSessionCacheOptions,
) -> Result<u64, SessionCacheError> {
    let pattern = format!("{}:*", glob_escape(&opts.namespace));
    let mut cursor: u64 = 0;
    let mut removed = 0u64;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(opts.scan_batch);
        let (next, keys): (u64, Vec<Vec<u8>>) =
            timed(opts.op_timeout, scan.query_async(conn)).await?;
        if !keys.is_empty() {
            let mut unlink = redis::cmd("UNLINK");
            unlink.arg(&keys);
            removed += timed(opts.op_timeout, unlink.query_async::<u64>(conn)).await?;
        }
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

/// Sessions in Redis (Vendure's `RedisSessionCacheStrategy`), for deployments of several
/// instances. Values are Vendure's JSON, so a Rust service and a Vendure server can share them.
///
/// A key lives until the session's `cache_expiry` or its `expires`, whichever is first: a copy
/// past `cache_expiry` is of no use (it is reloaded), so an anonymous session with a distant
/// `expires` does not occupy Redis for as long.
///
/// Built on the `redis` crate's [`ConnectionManager`] (one multiplexed connection that reconnects
/// on its own). The connection is opened on first use, or by [`init`](SessionCacheStrategy::init),
/// and closed by [`destroy`](SessionCacheStrategy::destroy) (Vendure's `quit()` at shutdown).
/// Every error (Redis down, timeout, malformed value) is logged through `tracing`; `get`
/// reports it as a miss.
pub struct RedisSessionCacheStrategy {
    opts: RedisSessionCacheOptions,
    client: Client,
    conn: Mutex<Conn>,
}

/// The connection's state: made on first use, dropped for good by `destroy`.
enum Conn {
    NotYet,
    Open(ConnectionManager),
    Destroyed,
}

impl std::fmt::Debug for RedisSessionCacheStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionCacheStrategy")
            .field("namespace", &self.opts.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisSessionCacheStrategy {
    /// A strategy for `url` with default options. Fails only on a malformed URL (no I/O here).
    pub fn new(url: &str) -> Result<Self, SessionCacheError> {
        Self::with_options(RedisSessionCacheOptions::new(url))
    }

    /// A strategy with the given options. Fails only on invalid options (no I/O here).
    pub fn with_options(opts: RedisSessionCacheOptions) -> Result<Self, SessionCacheError> {
        let info = opts.validate()?;
        let client = client(&opts, info)?;
        Ok(RedisSessionCacheStrategy {
            opts,
            client,
            conn: Mutex::new(Conn::NotYet),
        })
    }

    /// The options in use.
    pub fn options(&self) -> &RedisSessionCacheOptions {
        &self.opts
    }

    /// A handle on the connection (made lazily: it connects on its first command).
    async fn conn(&self) -> Result<ConnectionManager, SessionCacheError> {
        let mut conn = self.conn.lock();
        match &*conn {
            Conn::Open(c) => return Ok(c.clone()),
            Conn::Destroyed => {
                return Err(SessionCacheError::Backend(
                    "the Redis session cache strategy was destroyed".into(),
                ))
            }
            Conn::NotYet => {}
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.opts.connect_timeout))
            .set_response_timeout(Some(self.opts.op_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let c = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        *conn = Conn::Open(c.clone());
        Ok(c)
    }

    fn log<T>(op: &'static str, r: Result<T, SessionCacheError>) -> Result<T, SessionCacheError> {
        if let Err(e) = &r {
            tracing::warn!(op, error = %e, "Redis session cache call failed");
        }
        r
    }
}

#[async_trait]
impl SessionCacheStrategy for RedisSessionCacheStrategy {
    /// Connects and sends `PING`; the error (logged) says when Redis is unreachable.
    async fn init(&self) -> Result<(), SessionCacheError> {
        let r = async {
            let mut c = self.conn().await?;
            timed(
                self.opts.op_timeout,
                redis::cmd("PING").query_async::<String>(&mut c),
            )
            .await
            .map(drop)
        }
        .await;
        Self::log("init", r)
    }

    /// Closes the connection (Vendure's `quit()`): the socket closes once the calls in flight,
    /// which hold their own handle on it, have finished. Every later call fails (or misses, for
    /// `get`) with an error saying the strategy was destroyed; it never reconnects.
    async fn destroy(&self) -> Result<(), SessionCacheError> {
        let old = std::mem::replace(&mut *self.conn.lock(), Conn::Destroyed);
        drop(old);
        Ok(())
    }

    async fn set(&self, session: Arc<CachedSession>) -> Result<(), SessionCacheError> {
        let r = async {
            validate_token(&session.token)?;
            let mut c = self.conn().await?;
            write_session(&mut c, &self.opts, &session).await
        }
        .await;
        Self::log("set", r)
    }

    async fn get(&self, token: &str) -> Option<Arc<CachedSession>> {
        let r = async {
            validate_token(token)?;
            let mut c = self.conn().await?;
            read_session(&mut c, &self.opts, token).await
        }
        .await;
        Self::log("get", r).ok().flatten().map(Arc::new)
    }

    async fn write_mark(&self, token: &str) -> Result<Option<u64>, SessionCacheError> {
        let r = async {
            let mut c = self.conn().await?;
            read_mark(&mut c, &self.opts, token).await.map(Some)
        }
        .await;
        Self::log("write_mark", r)
    }

    async fn set_if_mark(
        &self,
        session: Arc<CachedSession>,
        mark: u64,
    ) -> Result<bool, SessionCacheError> {
        let r = async {
            let mut c = self.conn().await?;
            write_session_if_mark(&mut c, &self.opts, &session, mark).await
        }
        .await;
        Self::log("set_if_mark", r)
    }

    async fn delete(&self, token: &str) -> Result<(), SessionCacheError> {
        let r = async {
            validate_token(token)?;
            let mut c = self.conn().await?;
            unlink(&mut c, &self.opts, token).await
        }
        .await;
        Self::log("delete", r)
    }

    async fn clear(&self) -> Result<(), SessionCacheError> {
        let r = async {
            let mut c = self.conn().await?;
            clear_namespace(&mut c, &self.opts).await.map(drop)
        }
        .await;
        Self::log("clear", r)
    }
}
