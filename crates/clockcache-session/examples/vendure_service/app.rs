//! The router, state and seeding of the `vendure_service` example (also used by its tests).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use async_trait::async_trait;
use axum::extract::{FromRef, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clockcache_session::axum::{Session, AUTH_TOKEN_HEADER, SESSION_COOKIE};
use clockcache_session::db::{
    generate_session_token, DbError, DbSessionService, DbSessionStore, NATIVE_AUTH_STRATEGY,
};
use clockcache_session::{
    CachedSession, InMemoryOptions, InMemorySessionCacheStrategy, RedisSessionCacheStrategy,
    SessionCache, SessionCacheConfig, SessionCacheError, SessionCacheStrategy,
    TieredSessionCacheStrategy,
};
use serde::Deserialize;
use serde_json::json;

/// The code of the seeded channel (Vendure's default channel code).
pub const DEFAULT_CHANNEL: &str = "__default_channel__";
/// The seeded administrator (Vendure's default superadmin credentials; for local demos only).
pub const ADMIN_USER: (&str, &str) = ("superadmin", "superadmin");
/// The seeded customer: logs in, but lacks `ReadCatalog`.
pub const CUSTOMER_USER: (&str, &str) = ("customer@example.com", "customer");
/// The permission `GET /admin/products` requires on the default channel.
pub const READ_CATALOG: &str = "ReadCatalog";

/// Which session cache strategy the app runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKind {
    /// No cache: every request reads the database.
    None,
    /// The in-process clockcache strategy (one instance).
    Memory,
    /// Redis (several instances).
    Redis,
    /// A near cache per instance in front of Redis, kept coherent by Redis (several instances).
    Tiered,
}

impl CacheKind {
    /// Parses `none`, `memory`, `redis` or `tiered`.
    pub fn parse(s: &str) -> Result<CacheKind, String> {
        match s {
            "none" => Ok(CacheKind::None),
            "memory" => Ok(CacheKind::Memory),
            "redis" => Ok(CacheKind::Redis),
            "tiered" => Ok(CacheKind::Tiered),
            other => Err(format!(
                "unknown session cache {other:?}: expected none, memory, redis or tiered"
            )),
        }
    }
}

/// A strategy that keeps nothing: every get is a miss, so every request reads the database.
pub struct NoCache;

#[async_trait]
impl SessionCacheStrategy for NoCache {
    async fn set(&self, _session: Arc<CachedSession>) -> Result<(), SessionCacheError> {
        Ok(())
    }
    async fn get(&self, _token: &str) -> Option<Arc<CachedSession>> {
        None
    }
    async fn delete(&self, _token: &str) -> Result<(), SessionCacheError> {
        Ok(())
    }
    async fn clear(&self) -> Result<(), SessionCacheError> {
        Ok(())
    }
}

/// The state of the app: the session service (database and cache).
#[derive(Clone)]
pub struct AppState {
    /// Vendure's session service over the database and the cache.
    pub service: DbSessionService,
    /// The tiered strategy, when the app runs on one (tests use its invalidation barrier).
    pub tiered: Option<Arc<TieredSessionCacheStrategy>>,
}

impl FromRef<AppState> for SessionCache {
    fn from_ref(state: &AppState) -> SessionCache {
        state.service.cache().clone()
    }
}

/// Opens the database (applying the migrations), connects the cache, seeds the demo users if
/// the database has none.
pub async fn start(
    database_url: &str,
    cache: CacheKind,
    redis_url: &str,
) -> Result<AppState, Box<dyn std::error::Error + Send + Sync>> {
    let store = Arc::new(DbSessionStore::connect(database_url).await?);
    let mut tiered = None;
    let strategy: Arc<dyn SessionCacheStrategy> = match cache {
        CacheKind::None => Arc::new(NoCache),
        // 10,000 sessions, as the tiered strategy's near cache (Vendure's default is 1,000).
        CacheKind::Memory => Arc::new(InMemorySessionCacheStrategy::with_options(
            InMemoryOptions::default().max(10_000),
        )),
        CacheKind::Redis => {
            let r = RedisSessionCacheStrategy::new(redis_url)?;
            r.init().await?;
            Arc::new(r)
        }
        CacheKind::Tiered => {
            let t = Arc::new(TieredSessionCacheStrategy::new(redis_url)?);
            t.init().await?;
            tiered = Some(t.clone());
            t
        }
    };
    seed(&store).await?;
    let service = DbSessionService::new(store, strategy, SessionCacheConfig::default());
    Ok(AppState { service, tiered })
}

fn hash_password(password: &str) -> Result<String, DbError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| DbError::Invalid(format!("cannot hash the password: {e}")))
}

/// Seeds the default channel, two roles and the two demo users, unless the channel exists.
pub async fn seed(store: &DbSessionStore) -> Result<(), DbError> {
    if store.channel_id(DEFAULT_CHANNEL).await?.is_some() {
        return Ok(());
    }
    let channel = match store
        .create_channel(DEFAULT_CHANNEL, "default-channel")
        .await
    {
        Ok(id) => id,
        Err(e) => {
            // Another instance seeding the same database at the same time: wait for it.
            for _ in 0..100 {
                if store.native_credentials(CUSTOMER_USER.0).await?.is_some() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return Err(e);
        }
    };
    let admin = store
        .create_role(
            "__super_admin_role__",
            &["SuperAdmin", "Authenticated", READ_CATALOG, "UpdateCatalog"],
            &[channel],
        )
        .await?;
    let customer = store
        .create_role("__customer_role__", &["Authenticated"], &[channel])
        .await?;
    let admin_hash = hash_password(ADMIN_USER.1)?;
    store
        .create_user(ADMIN_USER.0, true, Some(&admin_hash), &[admin])
        .await?;
    let customer_hash = hash_password(CUSTOMER_USER.1)?;
    store
        .create_user(CUSTOMER_USER.0, true, Some(&customer_hash), &[customer])
        .await?;
    Ok(())
}

/// The app's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/admin/products", get(admin_products))
        .route("/cart", get(cart))
        .route("/cart/items", post(add_to_cart))
        .with_state(state)
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(json!({ "error": code, "message": message.to_string() })),
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e)
}

/// The headers that hand a client its token: `vendure-auth-token` and the `session` cookie.
fn token_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(token) {
        h.insert(AUTH_TOKEN_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax"
    )) {
        h.insert(SET_COOKIE, v);
    }
    h
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    guest: Option<Session>,
    Json(body): Json<Login>,
) -> Response {
    let store = state.service.store();
    let creds = match store.native_credentials(&body.username).await {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let Some(creds) = creds else {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "unknown user or wrong password",
        );
    };
    let hash = creds.password_hash.clone();
    // Argon2 is deliberately slow: off the async workers.
    let ok = tokio::task::spawn_blocking(move || {
        Argon2::default().verify_password(body.password.as_bytes(), hash.as_str())
    })
    .await;
    if !matches!(ok, Ok(Ok(()))) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "unknown user or wrong password",
        );
    }
    let previous = guest.as_ref().map(|s| &*s.0);
    match state
        .service
        .create_authenticated_session(creds.user_id, NATIVE_AUTH_STRATEGY, previous)
        .await
    {
        Ok(session) => (
            token_headers(&session.token),
            Json(json!({ "token": session.token, "userId": creds.user_id })),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

async fn logout(State(state): State<AppState>, session: Session) -> Response {
    match state.service.delete_session(&session.token).await {
        Ok(_) => (
            StatusCode::NO_CONTENT,
            [(SET_COOKIE, format!("{SESSION_COOKIE}=; Path=/; Max-Age=0"))],
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

async fn me(session: Session) -> Response {
    match serde_json::to_value(&*session.0) {
        Ok(v) => Json(v).into_response(),
        Err(e) => internal(e),
    }
}

/// Whether the session's user has `permission` on the default channel.
fn has_permission(session: &CachedSession, permission: &str) -> bool {
    session.user.as_ref().is_some_and(|u| {
        u.channel_permissions
            .iter()
            .any(|c| c.code == DEFAULT_CHANNEL && c.permissions.iter().any(|p| p == permission))
    })
}

async fn admin_products(session: Session) -> Response {
    if !has_permission(&session, READ_CATALOG) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this endpoint needs the {READ_CATALOG} permission"),
        );
    }
    Json(json!({ "products": [{ "id": 1, "name": "Laptop" }, { "id": 2, "name": "Tablet" }] }))
        .into_response()
}

async fn cart(session: Session) -> Response {
    Json(json!({ "activeOrderId": session.active_order_id })).into_response()
}

/// Puts an item in the cart: a guest without a session gets an anonymous one, and a session
/// without an active order gets a new order, written to the database.
async fn add_to_cart(State(state): State<AppState>, session: Option<Session>) -> Response {
    let service = &state.service;
    let (session, new_token) = match session {
        Some(s) => (s.0, false),
        None => match service.create_anonymous_session().await {
            Ok(s) => (s, true),
            Err(e) => return internal(e),
        },
    };
    let session = if session.active_order_id.is_some() {
        session
    } else {
        let code = match generate_session_token() {
            Ok(t) => t[..16].to_uppercase(),
            Err(e) => return internal(e),
        };
        let order = match service.store().create_order(&code).await {
            Ok(id) => id,
            Err(e) => return internal(e),
        };
        match service.set_active_order(&session, Some(order)).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_session_token",
                    "the session was deleted",
                )
            }
            Err(e) => return internal(e),
        }
    };
    let body = Json(json!({ "token": session.token, "activeOrderId": session.active_order_id }));
    if new_token {
        (StatusCode::CREATED, token_headers(&session.token), body).into_response()
    } else {
        body.into_response()
    }
}
