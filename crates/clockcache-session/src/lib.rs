//! A session cache for Rust web services, compatible with Vendure's session cache.
//!
//! Sessions are [`CachedSession`]s, encoded as the same JSON Vendure's Node code writes, so a Rust
//! service and a Vendure server can share one Redis. Pick a [`SessionCacheStrategy`]:
//!
//! * [`InMemorySessionCacheStrategy`]: one process; on the clockcache engine, bounded, with
//!   per-session TTLs and the options of express' `memorystore`.
//! * [`RedisSessionCacheStrategy`]: several instances sharing Redis.
//! * [`TieredSessionCacheStrategy`]: several instances, each with an in-process near cache in
//!   front of Redis, kept coherent by Redis server-assisted client-side caching.
//!
//! and put a [`SessionCache`] over it, which reloads missing or stale sessions through your
//! [`SessionLoader`] (the database).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use clockcache_session::{
//!     CachedSession, FnLoader, InMemorySessionCacheStrategy, LoaderError, SessionCache,
//! };
//! use time::OffsetDateTime;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The loader stands for the database query that the cache saves.
//! let loader = FnLoader(|token: String| async move {
//!     let expires = OffsetDateTime::now_utc() + Duration::from_secs(3600);
//!     Ok::<_, LoaderError>(Some(CachedSession::new(1, token, expires, Duration::ZERO)))
//! });
//! let cache = SessionCache::new(
//!     Arc::new(InMemorySessionCacheStrategy::new()),
//!     Arc::new(loader),
//! );
//! let session = cache.get("4e2b7c").await?.expect("the loader knows every token");
//! assert_eq!(session.token, "4e2b7c");
//! // The second get is served from the cache.
//! assert_eq!(cache.get("4e2b7c").await?, Some(session));
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! * `sqlx-sqlite`, `sqlx-postgres`: the [`db`] module, Vendure's session flow on a real
//!   database (its session query as the [`SessionLoader`], session creation, the active order
//!   and channel updates), through `sqlx` (runtime queries; SQLite bundled) and `getrandom`
//!   (session tokens from the OS CSPRNG).
//! * `axum`: the [`axum`](mod@crate::axum) module, an extractor resolving the request's token
//!   (bearer, `vendure-auth-token` header or `session` cookie) through a [`SessionCache`].
//! * `tower-sessions`, `actix-session`: store adapters for those frameworks.
//! * `tls`: `rediss://` URLs.
//!
//! `docs/sessions.md` in the repository says why each dependency is there.
#![warn(missing_docs)]

mod epochs;
mod error;
mod memory;
mod model;
mod redis_strategy;
mod service;
mod strategy;
mod tiered;
#[cfg(feature = "tower-sessions")]
pub mod tower;

#[cfg(feature = "actix-session")]
pub mod actix;

#[cfg(any(feature = "sqlx-sqlite", feature = "sqlx-postgres"))]
pub mod db;

#[cfg(feature = "axum")]
pub mod axum;

pub use clockcache::{CacheStats, RemovalCause};
pub use error::SessionCacheError;
pub use memory::{InMemoryOptions, InMemorySessionCacheStrategy, Ttl};
pub use model::{
    to_iso_string, truncate_to_millis, validate_token, CachedSession, CachedSessionUser, Id,
    UserChannelPermissions, MAX_TOKEN_LEN,
};
pub use redis_strategy::{RedisSessionCacheOptions, RedisSessionCacheStrategy, DEFAULT_NAMESPACE};
pub use service::{FnLoader, LoaderError, SessionCache, SessionCacheConfig, SessionLoader};
pub use strategy::SessionCacheStrategy;
pub use tiered::{TieredOptions, TieredSessionCacheStrategy};
