//! The one error type of the crate.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What went wrong in a session cache operation.
///
/// Strategies log every error through `tracing` as well, so a caller that treats an error as a
/// cache miss (as Vendure does) loses nothing by ignoring it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SessionCacheError {
    /// The token cannot be used as a key (empty, too long, or with control characters).
    InvalidToken(String),
    /// The session could not be encoded.
    Encode(String),
    /// Stored data could not be decoded as a session.
    Decode(String),
    /// The backend (Redis) failed or is unreachable.
    Backend(String),
    /// The call did not finish within its time budget.
    Timeout(Duration),
    /// A [`SessionCache`](crate::SessionCache) write (`set` or `delete`) did not finish within
    /// its time budget. It was not cancelled: it goes on in the background and may still
    /// succeed or fail, so whether the cache holds the change is unknown. For a delete (a
    /// logout) that means the session may still be served from the cache.
    Pending {
        /// `"set"` or `"delete"`.
        op: &'static str,
        /// The budget it ran past.
        budget: Duration,
    },
    /// The [`SessionLoader`](crate::SessionLoader) failed.
    Loader(Arc<dyn std::error::Error + Send + Sync>),
    /// A configuration value is invalid (e.g. a malformed Redis URL).
    Config(String),
}

impl fmt::Display for SessionCacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionCacheError::InvalidToken(m) => write!(f, "invalid session token: {m}"),
            SessionCacheError::Encode(m) => write!(f, "cannot encode the session: {m}"),
            SessionCacheError::Decode(m) => write!(f, "cannot decode the cached session: {m}"),
            SessionCacheError::Backend(m) => write!(f, "session cache backend error: {m}"),
            SessionCacheError::Timeout(d) => {
                write!(
                    f,
                    "session cache call took longer than {} ms",
                    d.as_millis()
                )
            }
            SessionCacheError::Pending { op, budget } => write!(
                f,
                "session cache {op} did not finish within its {} ms budget; it goes on in the \
                 background and its outcome is unknown",
                budget.as_millis()
            ),
            SessionCacheError::Loader(e) => write!(f, "session loader failed: {e}"),
            SessionCacheError::Config(m) => write!(f, "invalid session cache configuration: {m}"),
        }
    }
}

impl std::error::Error for SessionCacheError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionCacheError::Loader(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<redis::RedisError> for SessionCacheError {
    fn from(e: redis::RedisError) -> Self {
        SessionCacheError::Backend(e.to_string())
    }
}
