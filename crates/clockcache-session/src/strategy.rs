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
}
