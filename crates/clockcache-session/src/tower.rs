//! A tower-sessions [`SessionStore`] over any [`SessionCacheStrategy`] (feature `tower-sessions`).
//!
//! ```
//! use std::sync::Arc;
//! use clockcache_session::{tower::SessionStoreAdapter, InMemorySessionCacheStrategy};
//! use tower_sessions::SessionManagerLayer;
//!
//! let store = SessionStoreAdapter::new(Arc::new(InMemorySessionCacheStrategy::new()));
//! let layer = SessionManagerLayer::new(store).with_secure(false);
//! # let _ = layer;
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions_core::session::{Id as SessionId, Record};
use tower_sessions_core::session_store::{self, SessionStore};

use crate::model::{CachedSession, Id};
use crate::strategy::SessionCacheStrategy;

/// Stores tower-sessions records in a session cache strategy (in-memory, Redis or tiered).
///
/// A record becomes a [`CachedSession`] whose token is the session id's string form, whose
/// `expires` and `cache_expiry` are the record's expiry date, and whose `data` is the record's
/// data. Records past their expiry date are never returned.
#[derive(Clone)]
pub struct SessionStoreAdapter {
    strategy: Arc<dyn SessionCacheStrategy>,
}

impl std::fmt::Debug for SessionStoreAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStoreAdapter")
            .finish_non_exhaustive()
    }
}

impl SessionStoreAdapter {
    /// An adapter over `strategy`.
    pub fn new(strategy: Arc<dyn SessionCacheStrategy>) -> Self {
        SessionStoreAdapter { strategy }
    }

    /// The strategy behind the adapter.
    pub fn strategy(&self) -> &Arc<dyn SessionCacheStrategy> {
        &self.strategy
    }
}

/// The cached form of a tower-sessions record.
pub fn record_to_session(record: &Record) -> CachedSession {
    let token = record.id.to_string();
    CachedSession {
        cache_expiry: record.expiry_date.unix_timestamp() as f64,
        id: Id::Str(token.clone()),
        token,
        expires: record.expiry_date,
        active_order_id: None,
        active_channel_id: None,
        authentication_strategy: None,
        user: None,
        data: Some(
            record
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
    }
}

/// The tower-sessions record of a cached session; `None` when the token is not a tower-sessions
/// id.
pub fn session_to_record(session: &CachedSession) -> Option<Record> {
    let id: SessionId = session.token.parse().ok()?;
    let data: HashMap<String, serde_json::Value> = session
        .data
        .as_ref()
        .map(|d| d.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Some(Record {
        id,
        data,
        expiry_date: session.expires,
    })
}

fn backend(e: crate::SessionCacheError) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for SessionStoreAdapter {
    /// Saves the record under a fresh id (a new random id while the current one is taken).
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        while self.strategy.get(&record.id.to_string()).await.is_some() {
            record.id = SessionId::default();
        }
        self.save(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.strategy
            .set(Arc::new(record_to_session(record)))
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &SessionId) -> session_store::Result<Option<Record>> {
        let Some(s) = self.strategy.get(&id.to_string()).await else {
            return Ok(None);
        };
        if s.is_expired_at(OffsetDateTime::now_utc()) {
            return Ok(None);
        }
        session_to_record(&s).map(Some).ok_or_else(|| {
            session_store::Error::Decode("the cached token is not a session id".into())
        })
    }

    async fn delete(&self, id: &SessionId) -> session_store::Result<()> {
        self.strategy.delete(&id.to_string()).await.map_err(backend)
    }
}
