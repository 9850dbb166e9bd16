//! The actix-session adapter.
#![cfg(feature = "actix-session")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::Key;
use actix_web::{test as actix_test, web, App, HttpResponse};
use clockcache_session::actix::{session_to_state, state_to_session, ActixSessionStore};
use clockcache_session::{
    CachedSession, InMemorySessionCacheStrategy, RedisSessionCacheStrategy, SessionCacheStrategy,
};
use common::RedisServer;
use time::{Duration, OffsetDateTime};

fn state() -> HashMap<String, String> {
    let mut s = HashMap::new();
    s.insert("visits".to_owned(), "3".to_owned());
    s.insert("cart".to_owned(), r#"{"items":[1,2]}"#.to_owned());
    s
}

fn key(k: &str) -> SessionKey {
    k.to_owned().try_into().unwrap()
}

async fn round_trip(store: ActixSessionStore) {
    let ttl = Duration::minutes(10);
    let k = store.save(state(), &ttl).await.unwrap();
    assert_eq!(
        k.as_ref().len(),
        64,
        "an actix-session key: 64 random characters"
    );
    assert_eq!(store.load(&k).await.unwrap(), Some(state()));
    let cached = store.strategy().get(k.as_ref()).await.unwrap();
    let now = OffsetDateTime::now_utc();
    assert!(cached.expires > now + Duration::minutes(9) && cached.expires <= now + ttl);

    // Two saves never share a key.
    let other = store.save(state(), &ttl).await.unwrap();
    assert_ne!(other, k);

    // update replaces the state and keeps the key.
    let mut changed = state();
    changed.insert("visits".into(), "4".into());
    let before = k.as_ref().to_owned();
    let k = store.update(k, changed.clone(), &ttl).await.unwrap();
    assert_eq!(k.as_ref(), before);
    assert_eq!(store.load(&k).await.unwrap(), Some(changed.clone()));

    // update_ttl moves the expiry and keeps the state.
    store.update_ttl(&k, &Duration::hours(2)).await.unwrap();
    let renewed = store.strategy().get(k.as_ref()).await.unwrap();
    assert!(renewed.expires > OffsetDateTime::now_utc() + Duration::minutes(119));
    assert_eq!(store.load(&k).await.unwrap(), Some(changed.clone()));

    // delete removes it; an update of a deleted key saves under a fresh key.
    store.delete(&k).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap(), None);
    let fresh = store
        .update(key(k.as_ref()), changed.clone(), &ttl)
        .await
        .unwrap();
    assert_ne!(fresh, k);
    assert_eq!(store.load(&fresh).await.unwrap(), Some(changed));
    assert_eq!(store.load(&k).await.unwrap(), None);
    // update_ttl of a key that holds nothing leaves it empty.
    store.update_ttl(&k, &ttl).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap(), None);

    // Expired sessions are not returned.
    let expired = store.save(state(), &Duration::seconds(-5)).await.unwrap();
    assert_eq!(store.load(&expired).await.unwrap(), None);
}

#[tokio::test]
async fn in_memory_round_trip() {
    round_trip(ActixSessionStore::new(Arc::new(
        InMemorySessionCacheStrategy::new(),
    )))
    .await;
}

#[tokio::test]
async fn redis_round_trip() {
    let Some(server) = RedisServer::start("actix redis_round_trip") else {
        return;
    };
    let strategy = Arc::new(RedisSessionCacheStrategy::new(&server.url()).unwrap());
    strategy.init().await.unwrap();
    round_trip(ActixSessionStore::new(strategy)).await;
}

#[test]
fn conversion_keeps_key_state_and_expiry() {
    let before = OffsetDateTime::now_utc();
    let s = state_to_session("k1", &state(), Duration::minutes(5));
    assert_eq!(s.token, "k1");
    assert!(s.expires >= before + Duration::minutes(5) - Duration::milliseconds(1));
    assert_eq!(s.expires.nanosecond() % 1_000_000, 0, "whole milliseconds");
    assert_eq!(s.data.as_ref().unwrap()["cart"], r#"{"items":[1,2]}"#);
    assert_eq!(session_to_state(&s), Ok(state()));
    // And through the Vendure JSON.
    let back = CachedSession::from_json(s.to_json().unwrap().as_bytes()).unwrap();
    assert_eq!(session_to_state(&back), Ok(state()));
}

#[tokio::test]
async fn data_that_is_not_strings_is_a_load_error() {
    let strategy = Arc::new(InMemorySessionCacheStrategy::new());
    let store = ActixSessionStore::new(strategy.clone());
    let mut s = state_to_session("bad", &state(), Duration::minutes(5));
    s.data
        .as_mut()
        .unwrap()
        .insert("visits".into(), serde_json::json!(3));
    strategy.set(Arc::new(s)).await.unwrap();
    match store.load(&key("bad")).await {
        Err(LoadError::Deserialization(e)) => {
            assert!(e.to_string().contains("\"visits\""), "{e}")
        }
        other => panic!("expected a deserialization error, got {other:?}"),
    }
    // A session with no data at all is an empty state, not an error.
    let mut empty = state_to_session("empty", &HashMap::new(), Duration::minutes(5));
    empty.data = None;
    strategy.set(Arc::new(empty)).await.unwrap();
    assert_eq!(
        store.load(&key("empty")).await.unwrap(),
        Some(HashMap::new())
    );
}

async fn visit(session: Session) -> HttpResponse {
    let visits = session.get::<u32>("visits").unwrap().unwrap_or(0) + 1;
    session.insert("visits", visits).unwrap();
    HttpResponse::Ok().body(visits.to_string())
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    HttpResponse::Ok().finish()
}

#[actix_web::test]
async fn an_actix_web_app_keeps_its_session_in_the_strategy() {
    let strategy = Arc::new(InMemorySessionCacheStrategy::new());
    let store = ActixSessionStore::new(strategy.clone());
    let app = actix_test::init_service(
        App::new()
            .wrap(
                SessionMiddleware::builder(store, Key::generate())
                    .cookie_secure(false)
                    .build(),
            )
            .route("/visit", web::get().to(visit))
            .route("/logout", web::get().to(logout)),
    )
    .await;

    let res = actix_test::call_service(
        &app,
        actix_test::TestRequest::get().uri("/visit").to_request(),
    )
    .await;
    let cookie = res
        .response()
        .cookies()
        .next()
        .expect("a session cookie")
        .into_owned();
    assert_eq!(actix_test::read_body(res).await, "1");
    assert_eq!(strategy.length(), 1, "the session is in the strategy");

    let req = actix_test::TestRequest::get()
        .uri("/visit")
        .cookie(cookie.clone())
        .to_request();
    assert_eq!(actix_test::call_and_read_body(&app, req).await, "2");

    let req = actix_test::TestRequest::get()
        .uri("/logout")
        .cookie(cookie.clone())
        .to_request();
    actix_test::call_service(&app, req).await;
    assert_eq!(strategy.length(), 0, "logout deleted it from the strategy");

    let req = actix_test::TestRequest::get()
        .uri("/visit")
        .cookie(cookie)
        .to_request();
    assert_eq!(
        actix_test::call_and_read_body(&app, req).await,
        "1",
        "a fresh session"
    );
}

#[tokio::test]
async fn a_redis_that_is_down_is_an_error_from_each_write() {
    let Some(mut server) =
        RedisServer::start("actix a_redis_that_is_down_is_an_error_from_each_write")
    else {
        return;
    };
    let strategy = Arc::new(RedisSessionCacheStrategy::new(&server.url()).unwrap());
    strategy.init().await.unwrap();
    let store = ActixSessionStore::new(strategy);
    let ttl = Duration::minutes(10);
    let k = store.save(state(), &ttl).await.unwrap();
    server.stop();
    assert!(matches!(
        store.save(state(), &ttl).await,
        Err(SaveError::Other(_))
    ));
    assert!(store.delete(&k).await.is_err());
    // update cannot read the session, so it saves under a fresh key, which fails too.
    assert!(matches!(
        store.update(key(k.as_ref()), state(), &ttl).await,
        Err(UpdateError::Other(_))
    ));
    // update_ttl of a session it cannot read is a no-op, as for a missing key.
    store.update_ttl(&k, &ttl).await.unwrap();
    // A read of a session Redis cannot give is a miss, as for every strategy.
    assert_eq!(store.load(&k).await.unwrap(), None);
}
