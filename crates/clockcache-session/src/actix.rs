//! An actix-session [`SessionStore`] over any [`SessionCacheStrategy`] (feature `actix-session`).
//!
//! ```
//! use std::sync::Arc;
//! use clockcache_session::{actix::ActixSessionStore, InMemorySessionCacheStrategy};
//!
//! let store = ActixSessionStore::new(Arc::new(InMemorySessionCacheStrategy::new()));
//! // actix_session::SessionMiddleware::new(store, key) wraps an actix-web App with it.
//! # let _ = store;
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use actix_session::storage::{
    generate_session_key, LoadError, SaveError, SessionKey, SessionStore, UpdateError,
};
use time::{Duration, OffsetDateTime};

use crate::model::{truncate_to_millis, CachedSession, Id};
use crate::strategy::SessionCacheStrategy;

/// Stores actix-session states in a session cache strategy (in-memory, Redis or tiered).
///
/// A state becomes a [`CachedSession`] whose token is the session key, whose `expires` and
/// `cache_expiry` are now plus the ttl (to the millisecond, as the Vendure JSON holds dates), and
/// whose `data` holds each state entry as a JSON string. Sessions past their expiry date are
/// never returned.
#[derive(Clone)]
pub struct ActixSessionStore {
    strategy: Arc<dyn SessionCacheStrategy>,
}

impl std::fmt::Debug for ActixSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActixSessionStore").finish_non_exhaustive()
    }
}

impl ActixSessionStore {
    /// A store over `strategy`.
    pub fn new(strategy: Arc<dyn SessionCacheStrategy>) -> Self {
        ActixSessionStore { strategy }
    }

    /// The strategy behind the store.
    pub fn strategy(&self) -> &Arc<dyn SessionCacheStrategy> {
        &self.strategy
    }

    async fn store(
        &self,
        key: &str,
        state: &HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<(), crate::SessionCacheError> {
        self.strategy
            .set(Arc::new(state_to_session(key, state, *ttl)))
            .await
    }
}

/// The cached form of an actix-session state stored under `key` for `ttl` from now.
pub fn state_to_session(
    key: &str,
    state: &HashMap<String, String>,
    ttl: Duration,
) -> CachedSession {
    let expires = truncate_to_millis(OffsetDateTime::now_utc() + ttl);
    CachedSession {
        cache_expiry: expires.unix_timestamp() as f64,
        id: Id::Str(key.to_owned()),
        token: key.to_owned(),
        expires,
        active_order_id: None,
        active_channel_id: None,
        authentication_strategy: None,
        user: None,
        data: Some(
            state
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        ),
    }
}

/// The actix-session state of a cached session: its `data` entries, each of which must be a
/// JSON string (no `data` is an empty state). `Err` names the first entry that is not a string.
pub fn session_to_state(session: &CachedSession) -> Result<HashMap<String, String>, String> {
    let Some(data) = &session.data else {
        return Ok(HashMap::new());
    };
    data.iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(format!(
                "session data entry {k:?} is {other}, not the JSON string actix-session stores"
            )),
        })
        .collect()
}

impl SessionStore for ActixSessionStore {
    async fn load(
        &self,
        session_key: &SessionKey,
    ) -> Result<Option<HashMap<String, String>>, LoadError> {
        let Some(s) = self.strategy.get(session_key.as_ref()).await else {
            return Ok(None);
        };
        if s.is_expired_at(OffsetDateTime::now_utc()) {
            return Ok(None);
        }
        session_to_state(&s)
            .map(Some)
            .map_err(|e| LoadError::Deserialization(anyhow::anyhow!(e)))
    }

    /// Saves the state under a fresh key (a new random key while the drawn one is taken).
    async fn save(
        &self,
        session_state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, SaveError> {
        let mut key = generate_session_key();
        while self.strategy.get(key.as_ref()).await.is_some() {
            key = generate_session_key();
        }
        self.store(key.as_ref(), &session_state, ttl)
            .await
            .map_err(|e| SaveError::Other(e.into()))?;
        Ok(key)
    }

    /// Replaces the state under `session_key`; when that key holds no session (it expired or
    /// was deleted), saves the state under a fresh key instead, as actix-session's Redis store
    /// does.
    async fn update(
        &self,
        session_key: SessionKey,
        session_state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let live = self
            .strategy
            .get(session_key.as_ref())
            .await
            .is_some_and(|s| !s.is_expired_at(OffsetDateTime::now_utc()));
        if !live {
            return self.save(session_state, ttl).await.map_err(|e| match e {
                SaveError::Serialization(e) => UpdateError::Serialization(e),
                SaveError::Other(e) => UpdateError::Other(e),
            });
        }
        self.store(session_key.as_ref(), &session_state, ttl)
            .await
            .map_err(|e| UpdateError::Other(e.into()))?;
        Ok(session_key)
    }

    /// Moves the expiry of the session under `session_key` to now plus `ttl`, keeping its
    /// state; a key that holds no session is left alone.
    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        ttl: &Duration,
    ) -> Result<(), anyhow::Error> {
        let Some(s) = self.strategy.get(session_key.as_ref()).await else {
            return Ok(());
        };
        if s.is_expired_at(OffsetDateTime::now_utc()) {
            return Ok(());
        }
        let mut renewed = (*s).clone();
        renewed.expires = truncate_to_millis(OffsetDateTime::now_utc() + *ttl);
        renewed.cache_expiry = renewed.expires.unix_timestamp() as f64;
        self.strategy.set(Arc::new(renewed)).await?;
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        self.strategy.delete(session_key.as_ref()).await?;
        Ok(())
    }
}
