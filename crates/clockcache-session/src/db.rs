//! The Vendure session flow on a real database (features `sqlx-sqlite`, `sqlx-postgres`).
//!
//! [`DbSessionStore`] holds the tables Vendure's `SessionService` reads (sessions, users, roles,
//! channels and their join tables, created by the crate's sqlx migrations) and is the
//! [`SessionLoader`] of a [`SessionCache`]: on a cache miss it runs the query Vendure runs (the
//! session by token, left-joined to its user, the user's roles and the roles' channels) and
//! folds the rows into [`CachedSession::user`]'s `channel_permissions`, as Vendure's
//! `getUserChannelsPermissions` does. [`DbSessionService`] is the rest of Vendure's
//! `SessionService`: sessions are created in the database and then cached, and the active order
//! and channel updates write the database and re-read the session from it before caching it.
//!
//! SQLite (bundled) is the default; a `postgres://` or `postgresql://` URL selects PostgreSQL
//! (feature `sqlx-postgres`). The queries are the same text on both; the schemas differ only in
//! their types (two migration folders, `migrations/sqlite` and `migrations/postgres`).
//!
//! ```
//! # #[cfg(feature = "sqlx-sqlite")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use clockcache_session::db::{DbSessionService, DbSessionStore};
//! use clockcache_session::{InMemorySessionCacheStrategy, SessionCacheConfig};
//!
//! let store = Arc::new(DbSessionStore::connect("sqlite::memory:").await?);
//! let service = DbSessionService::new(
//!     store.clone(),
//!     Arc::new(InMemorySessionCacheStrategy::new()),
//!     SessionCacheConfig::default(),
//! );
//! let guest = service.create_anonymous_session().await?;
//! assert_eq!(guest.token.len(), 64);
//! let before = store.queries();
//! // Served from the cache: no query.
//! assert_eq!(service.get(&guest.token).await?.as_deref(), Some(&*guest));
//! assert_eq!(store.queries(), before);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "sqlx-sqlite"))]
//! # fn main() {}
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use time::OffsetDateTime;

use crate::error::SessionCacheError;
use crate::model::{truncate_to_millis, CachedSession, CachedSessionUser, Id};
use crate::model::{UserChannelPermissions, MAX_TOKEN_LEN};
use crate::service::{LoaderError, SessionCache, SessionCacheConfig, SessionLoader};
use crate::strategy::SessionCacheStrategy;

#[cfg(feature = "sqlx-sqlite")]
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
#[cfg(feature = "sqlx-postgres")]
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The authentication strategy name of username and password logins (Vendure's
/// `NATIVE_AUTH_STRATEGY_NAME`), also the `type` of their `authentication_method` rows.
pub const NATIVE_AUTH_STRATEGY: &str = "native";

/// What went wrong in a database session operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum DbError {
    /// The database URL or an option is unusable (unknown scheme, a backend this build lacks).
    Config(String),
    /// The database failed (connection, query, constraint).
    Database(sqlx::Error),
    /// The schema migrations could not be applied.
    Migrate(sqlx::migrate::MigrateError),
    /// The operating system's random number generator failed.
    Random(getrandom::Error),
    /// An argument was rejected before reaching the database.
    Invalid(String),
    /// The session cache failed; the database has the change, the cache may not.
    Cache(SessionCacheError),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Config(m) => write!(f, "invalid session database configuration: {m}"),
            DbError::Database(e) => write!(f, "session database error: {e}"),
            DbError::Migrate(e) => write!(f, "session database migration failed: {e}"),
            DbError::Random(e) => write!(f, "cannot draw a session token: {e}"),
            DbError::Invalid(m) => write!(f, "invalid argument: {m}"),
            DbError::Cache(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbError::Database(e) => Some(e),
            DbError::Migrate(e) => Some(e),
            DbError::Cache(e) => Some(e),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        DbError::Database(e)
    }
}

impl From<sqlx::migrate::MigrateError> for DbError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        DbError::Migrate(e)
    }
}

impl From<SessionCacheError> for DbError {
    fn from(e: SessionCacheError) -> Self {
        DbError::Cache(e)
    }
}

/// A new session token: 32 bytes from the operating system's CSPRNG, hex-encoded (64
/// characters), as Vendure's `generateSessionToken` (`randomBytes(32).toString('hex')`).
pub fn generate_session_token() -> Result<String, DbError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(DbError::Random)?;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut token = String::with_capacity(64);
    for b in bytes {
        token.push(HEX[usize::from(b >> 4)] as char);
        token.push(HEX[usize::from(b & 15)] as char);
    }
    Ok(token)
}

/// Settings of a [`DbSessionStore`].
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// How long a new session lives, and the sliding window of its expiry (Vendure's
    /// `authOptions.sessionDuration`, one year by default): a session read with less than half
    /// of it left is extended to this duration from now, in the database.
    pub session_duration: Duration,
    /// The most connections of the pool (an in-memory SQLite database always has one: each
    /// connection would see a database of its own).
    pub max_connections: u32,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            session_duration: Duration::from_secs(365 * 24 * 3600),
            max_connections: 10,
        }
    }
}

/// Which database a [`DbSessionStore`] is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbBackend {
    /// SQLite (feature `sqlx-sqlite`).
    Sqlite,
    /// PostgreSQL (feature `sqlx-postgres`).
    Postgres,
}

enum Pool {
    #[cfg(feature = "sqlx-sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "sqlx-postgres")]
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$p` bound to the pool, whichever database it is on: the SQL text is the
/// same on both, the row and argument types are checked for each.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            #[cfg(feature = "sqlx-sqlite")]
            Pool::Sqlite($p) => $body,
            #[cfg(feature = "sqlx-postgres")]
            Pool::Postgres($p) => $body,
        }
    };
}

/// The columns of Vendure's session query: the session, left-joined to its user, the user's
/// roles and the roles' channels (one row per role and channel).
macro_rules! session_select {
    () => {
        "SELECT s.id AS session_id, s.token, s.expires, s.authentication_strategy, \
                s.active_order_id, s.active_channel_id, s.user_id, \
                u.identifier, u.verified, r.id AS role_id, r.code AS role_code, r.permissions, \
                c.id AS channel_id, c.code AS channel_code, c.token AS channel_token \
         FROM session s \
         LEFT JOIN \"user\" u ON u.id = s.user_id \
         LEFT JOIN user_roles_role ur ON ur.user_id = u.id \
         LEFT JOIN role r ON r.id = ur.role_id \
         LEFT JOIN role_channels_channel rc ON rc.role_id = r.id \
         LEFT JOIN channel c ON c.id = rc.channel_id "
    };
}

const SESSION_BY_TOKEN: &str = concat!(
    session_select!(),
    "WHERE s.token = $1 AND s.invalidated = false ORDER BY r.id, c.id"
);
const SESSION_BY_ID: &str = concat!(
    session_select!(),
    "WHERE s.id = $1 AND s.invalidated = false ORDER BY r.id, c.id"
);

/// One row of the session query.
struct JoinedRow {
    session_id: i64,
    token: String,
    expires: OffsetDateTime,
    authentication_strategy: Option<String>,
    active_order_id: Option<i64>,
    active_channel_id: Option<i64>,
    user_id: Option<i64>,
    identifier: Option<String>,
    verified: Option<bool>,
    role_id: Option<i64>,
    role_code: Option<String>,
    permissions: Option<String>,
    channel_id: Option<i64>,
    channel_code: Option<String>,
    channel_token: Option<String>,
}

macro_rules! joined_row {
    ($r:expr) => {
        JoinedRow {
            session_id: $r.try_get("session_id")?,
            token: $r.try_get("token")?,
            expires: $r.try_get("expires")?,
            authentication_strategy: $r.try_get("authentication_strategy")?,
            active_order_id: $r.try_get("active_order_id")?,
            active_channel_id: $r.try_get("active_channel_id")?,
            user_id: $r.try_get("user_id")?,
            identifier: $r.try_get("identifier")?,
            verified: $r.try_get("verified")?,
            role_id: $r.try_get("role_id")?,
            role_code: $r.try_get("role_code")?,
            permissions: $r.try_get("permissions")?,
            channel_id: $r.try_get("channel_id")?,
            channel_code: $r.try_get("channel_code")?,
            channel_token: $r.try_get("channel_token")?,
        }
    };
}

/// A channel as the session query reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRecord {
    /// The channel ID.
    pub id: i64,
    /// The channel code.
    pub code: String,
    /// The channel token.
    pub token: String,
}

/// A role as the session query reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleRecord {
    /// The role ID.
    pub id: i64,
    /// The role code.
    pub code: String,
    /// Permission names, in the order stored.
    pub permissions: Vec<String>,
    /// The channels the role applies to.
    pub channels: Vec<ChannelRecord>,
}

/// A user as the session query reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// The user ID.
    pub id: i64,
    /// The login identifier.
    pub identifier: String,
    /// Whether the user has verified their account.
    pub verified: bool,
    /// The user's roles.
    pub roles: Vec<RoleRecord>,
}

/// A session row with its user, roles and channels (Vendure's `Session` entity with the
/// `user.roles.channels` relations loaded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session ID.
    pub id: i64,
    /// The session token.
    pub token: String,
    /// When the session expires.
    pub expires: OffsetDateTime,
    /// The authentication strategy of an authenticated session.
    pub authentication_strategy: Option<String>,
    /// The active order, if any.
    pub active_order_id: Option<i64>,
    /// The active channel, if any.
    pub active_channel_id: Option<i64>,
    /// The user of an authenticated session.
    pub user: Option<UserRecord>,
}

impl SessionRecord {
    /// Folds the joined rows (ordered by role, then channel) into one record.
    fn fold(rows: Vec<JoinedRow>) -> Option<SessionRecord> {
        let first = rows.first()?;
        let mut record = SessionRecord {
            id: first.session_id,
            token: first.token.clone(),
            expires: first.expires,
            authentication_strategy: first.authentication_strategy.clone(),
            active_order_id: first.active_order_id,
            active_channel_id: first.active_channel_id,
            user: match (first.user_id, &first.identifier) {
                (Some(id), Some(identifier)) => Some(UserRecord {
                    id,
                    identifier: identifier.clone(),
                    verified: first.verified.unwrap_or(false),
                    roles: Vec::new(),
                }),
                _ => None,
            },
        };
        if let Some(user) = &mut record.user {
            for row in rows {
                let Some(role_id) = row.role_id else { continue };
                if user.roles.last().map(|r| r.id) != Some(role_id) {
                    user.roles.push(RoleRecord {
                        id: role_id,
                        code: row.role_code.clone().unwrap_or_default(),
                        permissions: split_permissions(row.permissions.as_deref()),
                        channels: Vec::new(),
                    });
                }
                let role = user.roles.last_mut().expect("pushed above");
                if let (Some(id), Some(code), Some(token)) =
                    (row.channel_id, row.channel_code, row.channel_token)
                {
                    role.channels.push(ChannelRecord { id, code, token });
                }
            }
        }
        Some(record)
    }
}

fn split_permissions(stored: Option<&str>) -> Vec<String> {
    stored
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Permissions per channel, as Vendure's `getChannelPermissions` computes them: for each role,
/// for each of its channels, the union of the roles' permissions on that channel (first
/// occurrence order), the channels sorted by ID.
pub fn channel_permissions(roles: &[RoleRecord]) -> Vec<UserChannelPermissions> {
    let mut by_code: HashMap<&str, UserChannelPermissions> = HashMap::new();
    for role in roles {
        for channel in &role.channels {
            let entry =
                by_code
                    .entry(channel.code.as_str())
                    .or_insert_with(|| UserChannelPermissions {
                        id: Id::Int(channel.id),
                        token: channel.token.clone(),
                        code: channel.code.clone(),
                        permissions: Vec::new(),
                    });
            for p in &role.permissions {
                if !entry.permissions.contains(p) {
                    entry.permissions.push(p.clone());
                }
            }
        }
    }
    let mut out: Vec<_> = by_code.into_values().collect();
    out.sort_by_key(|c| match c.id {
        Id::Int(n) => n,
        Id::Str(_) => i64::MAX,
    });
    out
}

/// Vendure's `SessionService.serializeSession`: the cached form of a session record, with
/// `cache_expiry` set to `cache_ttl` from now. Anonymous sessions have no user and no
/// authentication strategy.
pub fn serialize_session(record: &SessionRecord, cache_ttl: Duration) -> CachedSession {
    let mut s = CachedSession::new(record.id, record.token.clone(), record.expires, cache_ttl);
    s.active_order_id = record.active_order_id.map(Id::Int);
    s.active_channel_id = record.active_channel_id.map(Id::Int);
    if let Some(user) = &record.user {
        s.authentication_strategy = record.authentication_strategy.clone();
        s.user = Some(CachedSessionUser {
            id: Id::Int(user.id),
            identifier: user.identifier.clone(),
            verified: user.verified,
            channel_permissions: channel_permissions(&user.roles),
        });
    }
    s
}

/// A user's native (username and password) credentials, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NativeCredentials {
    /// The user ID.
    pub user_id: i64,
    /// The stored password hash (a PHC string; this crate does not hash passwords).
    pub password_hash: String,
}

/// A new session row.
#[derive(Clone, Debug)]
pub struct NewSession {
    /// The token (see [`generate_session_token`]).
    pub token: String,
    /// When it expires.
    pub expires: OffsetDateTime,
    /// The authentication strategy (authenticated sessions only).
    pub authentication_strategy: Option<String>,
    /// The user (authenticated sessions only).
    pub user_id: Option<i64>,
    /// The active order.
    pub active_order_id: Option<i64>,
    /// The active channel.
    pub active_channel_id: Option<i64>,
}

impl NewSession {
    /// A guest session: no user, no authentication strategy, no active order or channel.
    pub fn anonymous(token: String, expires: OffsetDateTime) -> Self {
        Self {
            token,
            expires,
            authentication_strategy: None,
            user_id: None,
            active_order_id: None,
            active_channel_id: None,
        }
    }
}

/// The session tables on SQLite or PostgreSQL, and the [`SessionLoader`] that reads them.
///
/// Every statement it sends is counted ([`queries`](Self::queries)), so a test or a load test
/// can tell how many database round trips a request cost.
pub struct DbSessionStore {
    pool: Pool,
    options: DbOptions,
    queries: AtomicU64,
}

impl fmt::Debug for DbSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbSessionStore")
            .field("backend", &self.backend())
            .field("options", &self.options)
            .field("queries", &self.queries())
            .finish()
    }
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl DbSessionStore {
    /// Connects with the default [`DbOptions`] and applies the migrations. `url`:
    /// `sqlite:PATH` or `sqlite://PATH` (the file is created if missing), `sqlite::memory:`, or
    /// `postgres://...` / `postgresql://...` (feature `sqlx-postgres`).
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        Self::connect_with(url, DbOptions::default()).await
    }

    /// Connects with the given options and applies the migrations.
    pub async fn connect_with(url: &str, options: DbOptions) -> Result<Self, DbError> {
        if options.max_connections == 0 {
            return Err(DbError::Config("max_connections must be at least 1".into()));
        }
        let pool = if is_postgres_url(url) {
            Self::connect_postgres(url, &options).await?
        } else if url.starts_with("sqlite:") {
            Self::connect_sqlite(url, &options).await?
        } else {
            return Err(DbError::Config(format!(
                "unsupported database URL (expected sqlite:, postgres:// or postgresql://): {}",
                url.split(':').next().unwrap_or("")
            )));
        };
        Ok(DbSessionStore {
            pool,
            options,
            queries: AtomicU64::new(0),
        })
    }

    #[cfg(feature = "sqlx-postgres")]
    async fn connect_postgres(url: &str, options: &DbOptions) -> Result<Pool, DbError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(options.max_connections)
            .connect(url)
            .await?;
        POSTGRES_MIGRATOR.run(&pool).await?;
        Ok(Pool::Postgres(pool))
    }

    #[cfg(not(feature = "sqlx-postgres"))]
    async fn connect_postgres(_url: &str, _options: &DbOptions) -> Result<Pool, DbError> {
        Err(DbError::Config(
            "a PostgreSQL URL, but this build lacks the sqlx-postgres feature".into(),
        ))
    }

    #[cfg(feature = "sqlx-sqlite")]
    async fn connect_sqlite(url: &str, options: &DbOptions) -> Result<Pool, DbError> {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        use std::str::FromStr;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let mut pool = SqlitePoolOptions::new();
        if in_memory {
            // One connection, kept for the pool's life: the database lives in it.
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            // WAL: readers do not wait for the writer.
            // SQLite documents NORMAL as safe from corruption in WAL mode; a power loss may
            // drop the last commits.
            connect = connect
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            pool = pool.max_connections(options.max_connections);
        }
        let pool = pool.connect_with(connect).await?;
        SQLITE_MIGRATOR.run(&pool).await?;
        Ok(Pool::Sqlite(pool))
    }

    #[cfg(not(feature = "sqlx-sqlite"))]
    async fn connect_sqlite(_url: &str, _options: &DbOptions) -> Result<Pool, DbError> {
        Err(DbError::Config(
            "a SQLite URL, but this build lacks the sqlx-sqlite feature".into(),
        ))
    }

    /// The database this store is on.
    pub fn backend(&self) -> DbBackend {
        match &self.pool {
            #[cfg(feature = "sqlx-sqlite")]
            Pool::Sqlite(_) => DbBackend::Sqlite,
            #[cfg(feature = "sqlx-postgres")]
            Pool::Postgres(_) => DbBackend::Postgres,
        }
    }

    /// The options it was opened with.
    pub fn options(&self) -> &DbOptions {
        &self.options
    }

    /// How many SQL statements this store has sent since it was opened (the migrations not
    /// counted).
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes the pool (waits for the connections to be returned).
    pub async fn close(&self) {
        on_pool!(&self.pool, p => p.close().await)
    }

    /// The session with this token and its user, roles and channels (Vendure's
    /// `findSessionByToken`): `None` when there is none, it was invalidated, or it has
    /// expired. A session with less than half of `session_duration` left is extended in the
    /// database first (Vendure's `updateSessionExpiry`).
    pub async fn find_session(&self, token: &str) -> Result<Option<SessionRecord>, DbError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Ok(None);
        }
        self.find_where(SESSION_BY_TOKEN, Arg::Text(token)).await
    }

    /// The session with this ID, as [`find_session`](Self::find_session) reads it.
    pub async fn find_session_by_id(&self, id: i64) -> Result<Option<SessionRecord>, DbError> {
        self.find_where(SESSION_BY_ID, Arg::Int(id)).await
    }

    async fn find_where(&self, sql: &str, arg: Arg<'_>) -> Result<Option<SessionRecord>, DbError> {
        self.count();
        let rows: Vec<JoinedRow> = on_pool!(&self.pool, p => {
            let q = sqlx::query(sql);
            let q = match arg {
                Arg::Text(t) => q.bind(t),
                Arg::Int(n) => q.bind(n),
            };
            let rows = q.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(joined_row!(r));
            }
            out
        });
        let Some(mut record) = SessionRecord::fold(rows) else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc();
        if record.expires <= now {
            return Ok(None);
        }
        let duration = self.options.session_duration;
        if record.expires - now < duration / 2 {
            let expires = truncate_to_millis(now + duration);
            self.count();
            on_pool!(&self.pool, p => {
                sqlx::query("UPDATE session SET expires = $1 WHERE id = $2")
                    .bind(expires)
                    .bind(record.id)
                    .execute(p)
                    .await?;
            });
            record.expires = expires;
        }
        Ok(Some(record))
    }

    /// Inserts a session row; returns its ID.
    pub async fn insert_session(&self, new: &NewSession) -> Result<i64, DbError> {
        self.count();
        let expires = truncate_to_millis(new.expires);
        let id: i64 = on_pool!(&self.pool, p => {
            sqlx::query(
                "INSERT INTO session (token, expires, invalidated, authentication_strategy, \
                 user_id, active_order_id, active_channel_id) \
                 VALUES ($1, $2, false, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&new.token)
            .bind(expires)
            .bind(&new.authentication_strategy)
            .bind(new.user_id)
            .bind(new.active_order_id)
            .bind(new.active_channel_id)
            .fetch_one(p)
            .await?
            .try_get("id")?
        });
        Ok(id)
    }

    /// Sets (or, with `None`, clears) a session's active order. `false` when no such session.
    pub async fn update_active_order(
        &self,
        session_id: i64,
        order_id: Option<i64>,
    ) -> Result<bool, DbError> {
        self.count();
        let n = on_pool!(&self.pool, p => {
            sqlx::query("UPDATE session SET active_order_id = $1 WHERE id = $2")
                .bind(order_id)
                .bind(session_id)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Sets a session's active channel. `false` when no such session.
    pub async fn update_active_channel(
        &self,
        session_id: i64,
        channel_id: i64,
    ) -> Result<bool, DbError> {
        self.count();
        let n = on_pool!(&self.pool, p => {
            sqlx::query("UPDATE session SET active_channel_id = $1 WHERE id = $2")
                .bind(channel_id)
                .bind(session_id)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Deletes the session with this token. `false` when there was none.
    pub async fn delete_session(&self, token: &str) -> Result<bool, DbError> {
        self.count();
        let n = on_pool!(&self.pool, p => {
            sqlx::query("DELETE FROM session WHERE token = $1")
                .bind(token)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Deletes every session of the user; returns their tokens.
    pub async fn delete_sessions_of_user(&self, user_id: i64) -> Result<Vec<String>, DbError> {
        self.count();
        let tokens = on_pool!(&self.pool, p => {
            let rows = sqlx::query("DELETE FROM session WHERE user_id = $1 RETURNING token")
                .bind(user_id)
                .fetch_all(p)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(r.try_get::<String, _>("token")?);
            }
            out
        });
        Ok(tokens)
    }

    async fn tokens_where(&self, sql: &str, id: i64) -> Result<Vec<String>, DbError> {
        self.count();
        let tokens = on_pool!(&self.pool, p => {
            let rows = sqlx::query(sql).bind(id).fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(r.try_get::<String, _>("token")?);
            }
            out
        });
        Ok(tokens)
    }

    /// Creates a channel; returns its ID.
    pub async fn create_channel(&self, code: &str, token: &str) -> Result<i64, DbError> {
        self.count();
        let id: i64 = on_pool!(&self.pool, p => {
            sqlx::query("INSERT INTO channel (code, token) VALUES ($1, $2) RETURNING id")
                .bind(code)
                .bind(token)
                .fetch_one(p)
                .await?
                .try_get("id")?
        });
        Ok(id)
    }

    /// Creates a role with these permissions on these channels; returns its ID. Permission
    /// names must not contain commas (they are stored as a comma-separated list).
    pub async fn create_role(
        &self,
        code: &str,
        permissions: &[&str],
        channel_ids: &[i64],
    ) -> Result<i64, DbError> {
        if let Some(bad) = permissions
            .iter()
            .find(|p| p.contains(',') || p.trim().is_empty())
        {
            return Err(DbError::Invalid(format!(
                "permission name {bad:?} is empty or contains a comma"
            )));
        }
        let list = permissions.join(",");
        self.count();
        let id: i64 = on_pool!(&self.pool, p => {
            sqlx::query("INSERT INTO role (code, permissions) VALUES ($1, $2) RETURNING id")
                .bind(code)
                .bind(&list)
                .fetch_one(p)
                .await?
                .try_get("id")?
        });
        for channel in channel_ids {
            self.count();
            on_pool!(&self.pool, p => {
                sqlx::query("INSERT INTO role_channels_channel (role_id, channel_id) VALUES ($1, $2)")
                    .bind(id)
                    .bind(channel)
                    .execute(p)
                    .await?;
            });
        }
        Ok(id)
    }

    /// Creates a user with these roles and, when `password_hash` is given, a native
    /// authentication method (identifier and hash); returns the user's ID.
    pub async fn create_user(
        &self,
        identifier: &str,
        verified: bool,
        password_hash: Option<&str>,
        role_ids: &[i64],
    ) -> Result<i64, DbError> {
        if identifier.is_empty() {
            return Err(DbError::Invalid("empty user identifier".into()));
        }
        self.count();
        let id: i64 = on_pool!(&self.pool, p => {
            sqlx::query("INSERT INTO \"user\" (identifier, verified) VALUES ($1, $2) RETURNING id")
                .bind(identifier)
                .bind(verified)
                .fetch_one(p)
                .await?
                .try_get("id")?
        });
        for role in role_ids {
            self.grant_role(id, *role).await?;
        }
        if let Some(hash) = password_hash {
            self.count();
            on_pool!(&self.pool, p => {
                sqlx::query(
                    "INSERT INTO authentication_method (user_id, type, identifier, password_hash) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(NATIVE_AUTH_STRATEGY)
                .bind(identifier)
                .bind(hash)
                .execute(p)
                .await?;
            });
        }
        Ok(id)
    }

    /// Gives the user a role. Sessions already cached keep their permissions until they are
    /// reloaded (their `cache_expiry`) or re-read by an update.
    pub async fn grant_role(&self, user_id: i64, role_id: i64) -> Result<(), DbError> {
        self.count();
        on_pool!(&self.pool, p => {
            sqlx::query("INSERT INTO user_roles_role (user_id, role_id) VALUES ($1, $2)")
                .bind(user_id)
                .bind(role_id)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The native credentials stored for this identifier, if any.
    pub async fn native_credentials(
        &self,
        identifier: &str,
    ) -> Result<Option<NativeCredentials>, DbError> {
        self.count();
        let found = on_pool!(&self.pool, p => {
            match sqlx::query(
                "SELECT user_id, password_hash FROM authentication_method \
                 WHERE type = $1 AND identifier = $2",
            )
            .bind(NATIVE_AUTH_STRATEGY)
            .bind(identifier)
            .fetch_optional(p)
            .await?
            {
                Some(r) => Some(NativeCredentials {
                    user_id: r.try_get("user_id")?,
                    password_hash: r.try_get("password_hash")?,
                }),
                None => None,
            }
        });
        Ok(found)
    }

    /// Creates an order with this code; returns its ID.
    pub async fn create_order(&self, code: &str) -> Result<i64, DbError> {
        self.count();
        let id: i64 = on_pool!(&self.pool, p => {
            sqlx::query("INSERT INTO \"order\" (code) VALUES ($1) RETURNING id")
                .bind(code)
                .fetch_one(p)
                .await?
                .try_get("id")?
        });
        Ok(id)
    }

    /// The ID of the channel with this code, if any.
    pub async fn channel_id(&self, code: &str) -> Result<Option<i64>, DbError> {
        self.count();
        let id = on_pool!(&self.pool, p => {
            match sqlx::query("SELECT id FROM channel WHERE code = $1")
                .bind(code)
                .fetch_optional(p)
                .await?
            {
                Some(r) => Some(r.try_get::<i64, _>("id")?),
                None => None,
            }
        });
        Ok(id)
    }
}

enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

/// Parses an ID from the cache as a database key (IDs written by this module are integers).
fn int_id(id: &Id) -> Option<i64> {
    match id {
        Id::Int(n) => Some(*n),
        Id::Str(s) => s.parse().ok(),
    }
}

#[async_trait]
impl SessionLoader for DbSessionStore {
    async fn load(&self, token: &str) -> Result<Option<CachedSession>, LoaderError> {
        // cache_expiry is set by the cache.
        Ok(self
            .find_session(token)
            .await?
            .map(|r| serialize_session(&r, Duration::ZERO)))
    }

    async fn tokens_by_user(&self, user_id: &Id) -> Result<Vec<String>, LoaderError> {
        let Some(id) = int_id(user_id) else {
            return Ok(Vec::new());
        };
        Ok(self
            .tokens_where("SELECT token FROM session WHERE user_id = $1", id)
            .await?)
    }

    async fn tokens_by_active_order(&self, order_id: &Id) -> Result<Vec<String>, LoaderError> {
        let Some(id) = int_id(order_id) else {
            return Ok(Vec::new());
        };
        Ok(self
            .tokens_where("SELECT token FROM session WHERE active_order_id = $1", id)
            .await?)
    }
}

/// Vendure's `SessionService` over a [`DbSessionStore`] and a [`SessionCache`]: sessions are
/// written to the database, then cached; reads go through the cache, which loads from the
/// database on a miss.
///
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct DbSessionService {
    store: Arc<DbSessionStore>,
    cache: SessionCache,
    cache_ttl: Duration,
}

impl DbSessionService {
    /// A service whose cache runs on `strategy` with `config`, loading from `store`.
    pub fn new(
        store: Arc<DbSessionStore>,
        strategy: Arc<dyn SessionCacheStrategy>,
        config: SessionCacheConfig,
    ) -> Self {
        let cache_ttl = config.cache_ttl;
        let cache = SessionCache::with_config(strategy, store.clone(), config);
        DbSessionService {
            store,
            cache,
            cache_ttl,
        }
    }

    /// The session cache (for the axum extractor's state, say).
    pub fn cache(&self) -> &SessionCache {
        &self.cache
    }

    /// The database store.
    pub fn store(&self) -> &Arc<DbSessionStore> {
        &self.store
    }

    /// The session for `token`, from the cache or else the database (Vendure's
    /// `getSessionFromToken`). `Ok(None)` when there is no valid session.
    pub async fn get(&self, token: &str) -> Result<Option<Arc<CachedSession>>, SessionCacheError> {
        self.cache.get(token).await
    }

    /// Caches a session just read from the database. A failed cache write is logged, not
    /// returned: the database has the session, and the next get loads it from there.
    async fn cache_fresh(&self, record: &SessionRecord) -> Arc<CachedSession> {
        let session = serialize_session(record, self.cache_ttl);
        match self.cache.set(session.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not cache a session written to the database");
                Arc::new(session)
            }
        }
    }

    async fn create(&self, new: NewSession) -> Result<Arc<CachedSession>, DbError> {
        let id = self.store.insert_session(&new).await?;
        let record = SessionRecord {
            id,
            token: new.token,
            expires: truncate_to_millis(new.expires),
            authentication_strategy: new.authentication_strategy,
            active_order_id: new.active_order_id,
            active_channel_id: new.active_channel_id,
            user: None,
        };
        if new.user_id.is_none() {
            return Ok(self.cache_fresh(&record).await);
        }
        // The user's roles and channels: read back with the session query.
        let record = self.store.find_session_by_id(id).await?.ok_or_else(|| {
            DbError::Invalid("the new session was deleted before it could be read".into())
        })?;
        Ok(self.cache_fresh(&record).await)
    }

    /// Creates an anonymous (guest) session in the database and caches it (Vendure's
    /// `createAnonymousSession`).
    pub async fn create_anonymous_session(&self) -> Result<Arc<CachedSession>, DbError> {
        let new = NewSession::anonymous(
            generate_session_token()?,
            OffsetDateTime::now_utc() + self.store.options.session_duration,
        );
        self.create(new).await
    }

    /// Creates an authenticated session of `user_id` in the database and caches it (Vendure's
    /// `createNewAuthenticatedSession`). The active order and channel are carried over from
    /// `previous`, the guest session the user logged in from, if any (Vendure merges the guest
    /// order into the user's; here the guest's order becomes the active one).
    pub async fn create_authenticated_session(
        &self,
        user_id: i64,
        authentication_strategy: &str,
        previous: Option<&CachedSession>,
    ) -> Result<Arc<CachedSession>, DbError> {
        let new = NewSession {
            token: generate_session_token()?,
            expires: OffsetDateTime::now_utc() + self.store.options.session_duration,
            authentication_strategy: Some(authentication_strategy.to_owned()),
            user_id: Some(user_id),
            active_order_id: previous.and_then(|p| p.active_order_id.as_ref().and_then(int_id)),
            active_channel_id: previous.and_then(|p| p.active_channel_id.as_ref().and_then(int_id)),
        };
        self.create(new).await
    }

    /// Vendure's `serializeSession` with this service's cache TTL.
    pub fn serialize_session(&self, record: &SessionRecord) -> CachedSession {
        serialize_session(record, self.cache_ttl)
    }

    /// Writes the session's row, re-reads it (with its user, roles and channels) and caches
    /// what was read: the cached copy is the database's, not a patch of `session`, which may
    /// be stale. `Ok(None)` when the session is no longer in the database.
    async fn update_and_reread(
        &self,
        session: &CachedSession,
        updated: bool,
    ) -> Result<Option<Arc<CachedSession>>, DbError> {
        if !updated {
            return Ok(None);
        }
        let Some(id) = int_id(&session.id) else {
            return Ok(None);
        };
        match self.store.find_session_by_id(id).await? {
            Some(record) => Ok(Some(self.cache_fresh(&record).await)),
            None => Ok(None),
        }
    }

    fn session_id(session: &CachedSession) -> Result<i64, DbError> {
        int_id(&session.id)
            .ok_or_else(|| DbError::Invalid(format!("session ID {} is not an integer", session.id)))
    }

    /// Sets (or, with `None`, clears) the session's active order in the database, then caches
    /// the session as re-read from the database (Vendure's `setActiveOrder` /
    /// `unsetActiveOrder`). `Ok(None)` when the session no longer exists.
    pub async fn set_active_order(
        &self,
        session: &CachedSession,
        order_id: Option<i64>,
    ) -> Result<Option<Arc<CachedSession>>, DbError> {
        let id = Self::session_id(session)?;
        let updated = self.store.update_active_order(id, order_id).await?;
        self.update_and_reread(session, updated).await
    }

    /// Sets the session's active channel in the database, then caches the session as re-read
    /// from the database (Vendure's `setActiveChannel`). `Ok(None)` when the session no longer
    /// exists.
    pub async fn set_active_channel(
        &self,
        session: &CachedSession,
        channel_id: i64,
    ) -> Result<Option<Arc<CachedSession>>, DbError> {
        let id = Self::session_id(session)?;
        let updated = self.store.update_active_channel(id, channel_id).await?;
        self.update_and_reread(session, updated).await
    }

    /// Logs out: deletes the session from the database, then from the cache. `Ok(false)` when
    /// the database had no such session (it is dropped from the cache all the same). An error
    /// from the cache (`DbError::Cache`) means the database no longer has the session but a
    /// cached copy may still be served until the delete lands or the copy's `cache_expiry`.
    pub async fn delete_session(&self, token: &str) -> Result<bool, DbError> {
        let deleted = self.store.delete_session(token).await?;
        self.cache.delete(token).await?;
        Ok(deleted)
    }

    /// Deletes every session of the user from the database and the cache (Vendure's
    /// `deleteSessionsByUser`); returns how many the database had.
    pub async fn delete_sessions_by_user(&self, user_id: i64) -> Result<usize, DbError> {
        let tokens = self.store.delete_sessions_of_user(user_id).await?;
        let mut first_error = None;
        for token in &tokens {
            if let Err(e) = self.cache.delete(token).await {
                first_error.get_or_insert(e);
            }
        }
        // Copies another instance indexed under this user but the database no longer lists.
        if let Err(e) = self.cache.delete_sessions_by_user(&Id::Int(user_id)).await {
            first_error.get_or_insert(e);
        }
        match first_error {
            Some(e) => Err(DbError::Cache(e)),
            None => Ok(tokens.len()),
        }
    }
}
