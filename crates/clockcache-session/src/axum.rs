//! An axum extractor for the request's session (feature `axum`).
//!
//! [`Session`] reads the session token from, in this order:
//!
//! 1. `Authorization: Bearer <token>` (Vendure's `bearer` token method),
//! 2. the `vendure-auth-token` header (the header Vendure sends new tokens in; a client may
//!    send it back as is),
//! 3. the cookie named [`SESSION_COOKIE`] (`session`),
//!
//! and resolves it through the [`SessionCache`] held in the application state (any state `S`
//! with `SessionCache: FromRef<S>`). It rejects a request with `401 Unauthorized` and a JSON
//! body whose `error` tells the cases apart: `missing_session_token` (no token in any of the
//! three places) or `invalid_session_token` (a token that names no valid session: unknown,
//! logged out, expired, or not a usable token). A failing loader (the database down) is
//! `503 Service Unavailable` with `error` `session_store_unavailable`.
//!
//! `Option<Session>` never rejects a missing or invalid token (it gives `None`, for endpoints a
//! guest may use); it still answers 503 when the session cannot be looked up.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use clockcache_session::axum::Session;
//! use clockcache_session::{FnLoader, InMemorySessionCacheStrategy, LoaderError, SessionCache};
//!
//! async fn me(Session(session): Session) -> String {
//!     format!("session {}", session.id)
//! }
//!
//! let loader = FnLoader(|_token: String| async { Ok::<_, LoaderError>(None) });
//! let cache = SessionCache::new(Arc::new(InMemorySessionCacheStrategy::new()), Arc::new(loader));
//! let app: Router = Router::new().route("/me", get(me)).with_state(cache);
//! # let _ = app;
//! ```

use std::sync::Arc;

use ::axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use ::axum::http::header::{AUTHORIZATION, COOKIE, WWW_AUTHENTICATE};
use ::axum::http::request::Parts;
use ::axum::http::{HeaderMap, HeaderValue, StatusCode};
use ::axum::response::{IntoResponse, Response};
use ::axum::Json;

use crate::error::SessionCacheError;
use crate::model::CachedSession;
use crate::service::SessionCache;

/// The name of the cookie the extractor reads a token from.
pub const SESSION_COOKIE: &str = "session";

/// The header Vendure sends a new session token in, also read by the extractor.
pub const AUTH_TOKEN_HEADER: &str = "vendure-auth-token";

/// Where a request's token was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// The `vendure-auth-token` header.
    AuthTokenHeader,
    /// The `session` cookie.
    Cookie,
}

/// The session token of a request and where it was found, without looking it up: the bearer
/// token, else the `vendure-auth-token` header, else the `session` cookie. Empty values and
/// headers that are not visible ASCII count as absent.
pub fn token_from_headers(headers: &HeaderMap) -> Option<(String, TokenSource)> {
    for value in headers.get_all(AUTHORIZATION) {
        let Ok(v) = value.to_str() else { continue };
        let v = v.trim();
        if let Some((scheme, token)) = v.split_once(' ') {
            let token = token.trim();
            if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() {
                return Some((token.to_owned(), TokenSource::Bearer));
            }
        }
    }
    for value in headers.get_all(AUTH_TOKEN_HEADER) {
        let Ok(v) = value.to_str() else { continue };
        let v = v.trim();
        if !v.is_empty() {
            return Some((v.to_owned(), TokenSource::AuthTokenHeader));
        }
    }
    for value in headers.get_all(COOKIE) {
        let Ok(v) = value.to_str() else { continue };
        for pair in v.split(';') {
            let Some((name, val)) = pair.split_once('=') else {
                continue;
            };
            let val = val.trim().trim_matches('"');
            if name.trim() == SESSION_COOKIE && !val.is_empty() {
                return Some((val.to_owned(), TokenSource::Cookie));
            }
        }
    }
    None
}

/// Why a request has no session.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionRejection {
    /// No token in the `Authorization` header, the `vendure-auth-token` header or the
    /// `session` cookie (401, `missing_session_token`).
    MissingToken,
    /// The token names no valid session: unknown, logged out, expired, or unusable as a token
    /// (401, `invalid_session_token`).
    InvalidToken,
    /// The session could not be looked up (the loader failed; 503,
    /// `session_store_unavailable`).
    Unavailable(SessionCacheError),
}

impl SessionRejection {
    /// The HTTP status of this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            SessionRejection::MissingToken | SessionRejection::InvalidToken => {
                StatusCode::UNAUTHORIZED
            }
            SessionRejection::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `error` code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            SessionRejection::MissingToken => "missing_session_token",
            SessionRejection::InvalidToken => "invalid_session_token",
            SessionRejection::Unavailable(_) => "session_store_unavailable",
        }
    }

    fn message(&self) -> &'static str {
        match self {
            SessionRejection::MissingToken => {
                "no session token: send Authorization: Bearer <token>, a vendure-auth-token \
                 header or a session cookie"
            }
            SessionRejection::InvalidToken => {
                "the session token is unknown or expired (or was logged out): log in again"
            }
            SessionRejection::Unavailable(_) => "the session store is unavailable; try again",
        }
    }
}

impl std::fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionRejection::Unavailable(e) => write!(f, "{}: {e}", self.message()),
            _ => f.write_str(self.message()),
        }
    }
}

impl std::error::Error for SessionRejection {}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        if let SessionRejection::Unavailable(e) = &self {
            tracing::warn!(error = %e, "session lookup failed");
        }
        let body = serde_json::json!({ "error": self.code(), "message": self.message() });
        let mut response = (self.status(), Json(body)).into_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The request's valid session, resolved through the state's [`SessionCache`].
#[derive(Clone, Debug)]
pub struct Session(pub Arc<CachedSession>);

impl std::ops::Deref for Session {
    type Target = CachedSession;

    fn deref(&self) -> &CachedSession {
        &self.0
    }
}

async fn resolve<S>(parts: &Parts, state: &S) -> Result<Session, SessionRejection>
where
    SessionCache: FromRef<S>,
{
    let (token, _source) =
        token_from_headers(&parts.headers).ok_or(SessionRejection::MissingToken)?;
    let cache = SessionCache::from_ref(state);
    match cache.get(&token).await {
        Ok(Some(session)) => Ok(Session(session)),
        Ok(None) | Err(SessionCacheError::InvalidToken(_)) => Err(SessionRejection::InvalidToken),
        Err(e) => Err(SessionRejection::Unavailable(e)),
    }
}

impl<S> FromRequestParts<S> for Session
where
    SessionCache: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        resolve(parts, state).await
    }
}

impl<S> OptionalFromRequestParts<S> for Session
where
    SessionCache: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match resolve(parts, state).await {
            Ok(s) => Ok(Some(s)),
            Err(SessionRejection::MissingToken | SessionRejection::InvalidToken) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
