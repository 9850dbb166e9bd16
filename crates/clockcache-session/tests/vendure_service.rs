//! The axum extractor and the `vendure_service` example's routes, driven with
//! `tower::ServiceExt::oneshot`; and two instances of the example over one database and one
//! Redis with the tiered strategy.
#![cfg(all(feature = "sqlx-sqlite", feature = "axum"))]

mod common;
mod dbcommon;

#[path = "../examples/vendure_service/app.rs"]
mod app;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use clockcache_session::axum::{token_from_headers, TokenSource};
use clockcache_session::db::NewSession;
use clockcache_session::{CachedSession, TieredSessionCacheStrategy};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tower::ServiceExt;

use app::{AppState, CacheKind, ADMIN_USER, CUSTOMER_USER};

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    (status, headers, body)
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::builder().method("GET").uri(path)
}

fn bearer(path: &str, method: &str, token: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

async fn login(router: &Router, user: (&str, &str)) -> String {
    let (status, headers, body) = send(
        router,
        Request::builder()
            .method("POST")
            .uri("/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({ "username": user.0, "password": user.1 }).to_string(),
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().expect("a token").to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(headers["vendure-auth-token"], token.as_str());
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with(&format!("session={token};")), "{cookie}");
    token
}

async fn app_on(url: &str, cache: CacheKind, redis_url: &str) -> (AppState, Router) {
    let state = app::start(url, cache, redis_url).await.expect("app starts");
    let router = app::router(state.clone());
    (state, router)
}

#[tokio::test]
async fn the_extractor_rejects_missing_unknown_and_expired_tokens_with_401() {
    let db = dbcommon::sqlite("extractor_401");
    let (state, router) = app_on(&db.url, CacheKind::Memory, "").await;

    // No token anywhere.
    let (status, headers, body) = send(&router, get("/me").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing_session_token", "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    // An empty bearer and an empty cookie are no token either.
    let (status, _, body) = send(
        &router,
        get("/me")
            .header(header::AUTHORIZATION, "Bearer ")
            .header(header::COOKIE, "session=")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing_session_token");

    // A token that names no session, and one that is not a usable token at all.
    let unknown = "0".repeat(64);
    for token in [unknown.as_str(), "x\ty"] {
        let req = get("/me")
            .header("vendure-auth-token", token)
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(&router, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(body["error"], "invalid_session_token", "{body}");
    }
    let (status, _, body) = send(&router, bearer("/me", "GET", &"z".repeat(5000))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_session_token");

    // Expired in the database.
    let store = state.service.store();
    let expired = "e".repeat(64);
    store
        .insert_session(&NewSession::anonymous(
            expired.clone(),
            OffsetDateTime::now_utc() - time::Duration::seconds(1),
        ))
        .await
        .unwrap();
    let (status, _, body) = send(&router, bearer("/me", "GET", &expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_session_token");

    // Expired while cached: the copy was served, then its `expires` passes.
    let short = "5".repeat(64);
    store
        .insert_session(&NewSession::anonymous(
            short.clone(),
            OffsetDateTime::now_utc() + time::Duration::milliseconds(1500),
        ))
        .await
        .unwrap();
    let cached = CachedSession::new(
        1_000_000,
        short.clone(),
        OffsetDateTime::now_utc() + time::Duration::milliseconds(1500),
        Duration::from_secs(300),
    );
    state.service.cache().set(cached).await.unwrap();
    let (status, _, _) = send(&router, bearer("/me", "GET", &short)).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (status, _, body) = send(&router, bearer("/me", "GET", &short)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_session_token");
    db.drop_db().await;
}

#[tokio::test]
async fn the_extractor_reads_each_of_the_three_token_sources() {
    let db = dbcommon::sqlite("extractor_sources");
    let (_state, router) = app_on(&db.url, CacheKind::Memory, "").await;
    let token = login(&router, ADMIN_USER).await;
    let other = login(&router, CUSTOMER_USER).await;

    let requests = [
        (
            "bearer",
            get("/me").header(header::AUTHORIZATION, format!("Bearer {token}")),
        ),
        (
            "lowercase bearer",
            get("/me").header(header::AUTHORIZATION, format!("bearer {token}")),
        ),
        (
            "vendure-auth-token",
            get("/me").header("vendure-auth-token", token.as_str()),
        ),
        (
            "cookie",
            get("/me").header(
                header::COOKIE,
                format!("theme=dark; session={token}; lang=en"),
            ),
        ),
    ];
    for (what, req) in requests {
        let (status, _, body) = send(&router, req.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{what}: {body}");
        assert_eq!(body["token"], token.as_str(), "{what}");
        assert_eq!(body["user"]["identifier"], ADMIN_USER.0, "{what}");
    }

    // Precedence: the bearer token over the header over the cookie.
    let mut req = get("/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("vendure-auth-token", other.as_str())
        .header(header::COOKIE, format!("session={other}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        token_from_headers(req.headers()),
        Some((token.clone(), TokenSource::Bearer))
    );
    req.headers_mut().remove(header::AUTHORIZATION);
    assert_eq!(
        token_from_headers(req.headers()),
        Some((other.clone(), TokenSource::AuthTokenHeader))
    );
    req.headers_mut().remove("vendure-auth-token");
    assert_eq!(
        token_from_headers(req.headers()),
        Some((other.clone(), TokenSource::Cookie))
    );
    let (status, _, body) = send(&router, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"]["identifier"], CUSTOMER_USER.0);
    db.drop_db().await;
}

#[tokio::test]
async fn login_permissions_guest_cart_and_logout() {
    let db = dbcommon::sqlite("example_routes");
    let (state, router) = app_on(&db.url, CacheKind::Memory, "").await;

    // Wrong password, unknown user, malformed body.
    for (user, password) in [(ADMIN_USER.0, "wrong"), ("nobody", "x")] {
        let (status, _, body) = send(
            &router,
            Request::builder()
                .method("POST")
                .uri("/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({ "username": user, "password": password }).to_string(),
                ))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{user}");
        assert_eq!(body["error"], "invalid_credentials");
    }
    let bad = Request::builder()
        .method("POST")
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"username\":1}"))
        .unwrap();
    let resp = router.clone().oneshot(bad).await.unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());

    // Passwords are stored as Argon2id PHC strings.
    let creds = state
        .service
        .store()
        .native_credentials(ADMIN_USER.0)
        .await
        .unwrap()
        .unwrap();
    assert!(
        creds.password_hash.starts_with("$argon2id$"),
        "{}",
        creds.password_hash
    );
    assert!(!creds.password_hash.contains(ADMIN_USER.1));

    // The permission check: the admin has ReadCatalog, the customer does not.
    let admin = login(&router, ADMIN_USER).await;
    let (status, _, body) = send(&router, bearer("/admin/products", "GET", &admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["products"].as_array().unwrap().len(), 2);
    let customer = login(&router, CUSTOMER_USER).await;
    let (status, _, body) = send(&router, bearer("/admin/products", "GET", &customer)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "forbidden");

    // A guest: an anonymous session with an active order, in the database.
    let (status, headers, body) = send(
        &router,
        Request::builder()
            .method("POST")
            .uri("/cart/items")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let guest = body["token"].as_str().unwrap().to_owned();
    assert_eq!(headers["vendure-auth-token"], guest.as_str());
    let order = body["activeOrderId"].as_i64().expect("an order");
    let record = state
        .service
        .store()
        .find_session(&guest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.active_order_id, Some(order));
    assert_eq!(record.user, None);
    // An unknown token on a guest route: a fresh anonymous session, not a 401.
    let (status, _, body) = send(&router, bearer("/cart/items", "POST", &"0".repeat(64))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_ne!(body["token"], "0".repeat(64).as_str());
    // The same guest again: the same order.
    let (status, _, body) = send(&router, bearer("/cart/items", "POST", &guest)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["activeOrderId"], order);
    let (_, _, body) = send(&router, bearer("/cart", "GET", &guest)).await;
    assert_eq!(body["activeOrderId"], order);
    // A guest cannot see the admin endpoint.
    let (status, _, _) = send(&router, bearer("/admin/products", "GET", &guest)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Logging in from the guest session carries the cart over.
    let (status, _, body) = send(
        &router,
        Request::builder()
            .method("POST")
            .uri("/login")
            .header(header::AUTHORIZATION, format!("Bearer {guest}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({ "username": CUSTOMER_USER.0, "password": CUSTOMER_USER.1 }).to_string(),
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let carried = body["token"].as_str().unwrap().to_owned();
    let (_, _, body) = send(&router, bearer("/cart", "GET", &carried)).await;
    assert_eq!(body["activeOrderId"], order);

    // Logout: 204, then the token is refused.
    let (status, headers, _) = send(&router, bearer("/logout", "POST", &admin)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let (status, _, body) = send(&router, bearer("/admin/products", "GET", &admin)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_session_token");
    let (status, _, _) = send(&router, bearer("/logout", "POST", &admin)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The other sessions are untouched.
    let (status, _, _) = send(&router, bearer("/me", "GET", &customer)).await;
    assert_eq!(status, StatusCode::OK);

    // A restart on the same database: seeding is skipped, the sessions are still there.
    let (_state2, router2) = app_on(&db.url, CacheKind::Memory, "").await;
    let (status, _, _) = send(&router2, bearer("/me", "GET", &customer)).await;
    assert_eq!(status, StatusCode::OK);
    login(&router2, ADMIN_USER).await;
    db.drop_db().await;
}

#[tokio::test]
async fn a_failing_loader_is_503_not_401() {
    use clockcache_session::{FnLoader, InMemorySessionCacheStrategy, LoaderError, SessionCache};
    let loader = FnLoader(|_t: String| async {
        Err::<Option<CachedSession>, LoaderError>("db down".into())
    });
    let cache = SessionCache::new(
        Arc::new(InMemorySessionCacheStrategy::new()),
        Arc::new(loader),
    );
    async fn me(s: clockcache_session::axum::Session) -> String {
        s.token.clone()
    }
    async fn guest(s: Option<clockcache_session::axum::Session>) -> String {
        format!("{}", s.is_some())
    }
    let router: Router = Router::new()
        .route("/me", axum::routing::get(me))
        .route("/guest", axum::routing::get(guest))
        .with_state(cache);
    for path in ["/me", "/guest"] {
        let (status, _, body) = send(&router, bearer(path, "GET", &"1".repeat(64))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(body["error"], "session_store_unavailable", "{path}");
    }
    // Without a token the loader is not asked: 401, and `None` for the optional extractor.
    let (status, _, _) = send(&router, get("/me").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = router
        .clone()
        .oneshot(get("/guest").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"false");
}

async fn tiered_barrier(state: &AppState) {
    let t: &TieredSessionCacheStrategy = state.tiered.as_deref().expect("tiered");
    t.sync_invalidations().await.expect("barrier");
}

#[tokio::test]
async fn a_logout_on_one_instance_is_refused_on_the_other() {
    common::init_tracing();
    let Some(redis) =
        common::RedisServer::start("a_logout_on_one_instance_is_refused_on_the_other")
    else {
        return;
    };
    for db in dbcommon::all("logout_two_instances").await {
        // Each backend gets a namespace of its own in the one Redis: flush between them.
        let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
        let (a, router_a) = app_on(&db.url, CacheKind::Tiered, &redis.url()).await;
        let (b, router_b) = app_on(&db.url, CacheKind::Tiered, &redis.url()).await;

        let token = login(&router_a, ADMIN_USER).await;
        let keep = login(&router_a, ADMIN_USER).await;
        tiered_barrier(&b).await;
        for t in [&token, &keep] {
            let (status, _, body) = send(&router_b, bearer("/admin/products", "GET", t)).await;
            assert_eq!(status, StatusCode::OK, "{}: {body}", db.label);
        }
        let tb = b.tiered.as_ref().unwrap();
        assert!(
            tb.near_contains(&token),
            "{}: B serves from its near cache",
            db.label
        );
        let queries = b.service.store().queries();
        let (status, _, _) = send(&router_b, bearer("/admin/products", "GET", &token)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(b.service.store().queries(), queries, "a near hit: no query");

        // Logout on A; B refuses the token once Redis's invalidation has reached it (the
        // barrier: B's PING is answered after the invalidation pushed ahead of it).
        let (status, _, _) = send(&router_a, bearer("/logout", "POST", &token)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        tiered_barrier(&b).await;
        assert!(
            !tb.near_contains(&token),
            "{}: B dropped its copy",
            db.label
        );
        let (status, _, body) = send(&router_b, bearer("/admin/products", "GET", &token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}: {body}", db.label);
        assert_eq!(body["error"], "invalid_session_token");
        // The other session of the same user is still served by both.
        for router in [&router_a, &router_b] {
            let (status, _, _) = send(router, bearer("/admin/products", "GET", &keep)).await;
            assert_eq!(status, StatusCode::OK, "{}", db.label);
        }

        // Without the barrier: B refuses a logged-out token within a bounded wait, counting
        // how many requests it still served meanwhile (the push is one network hop away).
        let (status, _, _) = send(&router_b, bearer("/me", "GET", &keep)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = send(&router_a, bearer("/logout", "POST", &keep)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let mut served_after = 0;
        loop {
            let (status, _, _) = send(&router_b, bearer("/me", "GET", &keep)).await;
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            served_after += 1;
            assert!(
                served_after < 500,
                "{}: B still serves the session",
                db.label
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "{}: B served a logged-out session {served_after} times after A's logout returned",
            db.label
        );
        a.service.store().close().await;
        b.service.store().close().await;
        db.drop_db().await;
    }
}
