//! The strategy trait every session store implements.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::SessionCacheError;
use crate::model::CachedSession;

/// Where cached sessions live (Vendure's `SessionCacheStrategy`).
///
/// Object safe: a service holds an `Arc<dyn SessionCacheStrategy>`. Implementations never panic
/// on bad input or a failing backend: `get` logs the problem and answers `None` (a miss), and
/// `set`, `delete` and `clear` log it and return the error.
///
/// ```
/// use std::sync::Arc;
/// use clockcache_session::{InMemorySessionCacheStrategy, SessionCacheStrategy};
///
/// let strategy: Arc<dyn SessionCacheStrategy> = Arc::new(InMemorySessionCacheStrategy::new());
/// # let _ = strategy;
/// ```
#[async_trait]
pub trait SessionCacheStrategy: Send + Sync + 'static {
    /// Called once before first use (connects, starts background work). Default: nothing.
    async fn init(&self) -> Result<(), SessionCacheError> {
        Ok(())
    }

    /// Called once at shutdown (stops background work, closes connections). Default: nothing.
    async fn destroy(&self) -> Result<(), SessionCacheError> {
        Ok(())
    }

    /// Stores (or replaces) the session under its token.
    async fn set(&self, session: Arc<CachedSession>) -> Result<(), SessionCacheError>;

    /// The session stored under `token`, or `None` (absent, expired, invalid token, or a backend
    /// error, which is logged).
    async fn get(&self, token: &str) -> Option<Arc<CachedSession>>;

    /// Removes the session stored under `token` (no error when absent).
    async fn delete(&self, token: &str) -> Result<(), SessionCacheError>;

    /// Removes every session of this cache.
    async fn clear(&self) -> Result<(), SessionCacheError>;

    /// The most sessions the store holds, when it is bounded (the in-memory strategy's `max`).
    /// [`SessionCache`](crate::SessionCache) holds no more than this many sessions in its
    /// secondary indexes. Default `None`: no bound known (Redis).
    fn capacity(&self) -> Option<u64> {
        None
    }

    /// For a store shared by several instances: the token's write mark, a number that changes
    /// with every [`set`](Self::set) and [`delete`](Self::delete) of the token made through a
    /// strategy of this crate, on any instance. [`SessionCache`](crate::SessionCache) reads it
    /// before a load reads the database, and stores what the load read with
    /// [`set_if_mark`](Self::set_if_mark), so that a logout on another instance during the load
    /// is not undone. Default `Ok(None)`: the store keeps no marks (in-process stores, where
    /// the cache's own in-process checks suffice).
    async fn write_mark(&self, _token: &str) -> Result<Option<u64>, SessionCacheError> {
        Ok(None)
    }

    /// Stores the session only if the token's write mark is still `mark` (no `set` or `delete`
    /// of it since `mark` was read by [`write_mark`](Self::write_mark)), in one step. Returns
    /// whether it stored. Default: [`set`](Self::set), then `Ok(true)`.
    async fn set_if_mark(
        &self,
        session: Arc<CachedSession>,
        _mark: u64,
    ) -> Result<bool, SessionCacheError> {
        self.set(session).await.map(|()| true)
    }
}

#[async_trait]
impl<S: SessionCacheStrategy + ?Sized> SessionCacheStrategy for Arc<S> {
    async fn init(&self) -> Result<(), SessionCacheError> {
        (**self).init().await
    }
    async fn destroy(&self) -> Result<(), SessionCacheError> {
        (**self).destroy().await
    }
    async fn set(&self, session: Arc<CachedSession>) -> Result<(), SessionCacheError> {
        (**self).set(session).await
    }
    async fn get(&self, token: &str) -> Option<Arc<CachedSession>> {
        (**self).get(token).await
    }
    async fn delete(&self, token: &str) -> Result<(), SessionCacheError> {
        (**self).delete(token).await
    }
    async fn clear(&self) -> Result<(), SessionCacheError> {
        (**self).clear().await
    }
    fn capacity(&self) -> Option<u64> {
        (**self).capacity()
    }
    async fn write_mark(&self, token: &str) -> Result<Option<u64>, SessionCacheError> {
        (**self).write_mark(token).await
    }
    async fn set_if_mark(
        &self,
        session: Arc<CachedSession>,
        mark: u64,
    ) -> Result<bool, SessionCacheError> {
        (**self).set_if_mark(session, mark).await
    }
}
