//! The tower-sessions adapter.
#![cfg(feature = "tower-sessions")]

mod common;

use std::sync::Arc;

use clockcache_session::tower::{record_to_session, session_to_record, SessionStoreAdapter};
use clockcache_session::{
    InMemorySessionCacheStrategy, RedisSessionCacheStrategy, SessionCacheStrategy,
};
use common::RedisServer;
use time::{Duration, OffsetDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::SessionStore;

fn record(secs: i64) -> Record {
    let mut data = std::collections::HashMap::new();
    data.insert("visits".to_owned(), serde_json::json!(3));
    data.insert("cart".to_owned(), serde_json::json!({"items": [1, 2]}));
    Record {
        id: Id::default(),
        data,
        expiry_date: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
            + Duration::seconds(secs),
    }
}

async fn round_trip(store: SessionStoreAdapter) {
    let mut r = record(600);
    store.create(&mut r).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r.clone()));
    // create never overwrites an existing id.
    let mut clash = record(600);
    clash.id = r.id;
    store.create(&mut clash).await.unwrap();
    assert_ne!(clash.id, r.id);
    assert_eq!(store.load(&r.id).await.unwrap(), Some(r.clone()));
    r.data.insert("visits".into(), serde_json::json!(4));
    store.save(&r).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap().unwrap().data["visits"], 4);
    store.delete(&r.id).await.unwrap();
    assert_eq!(store.load(&r.id).await.unwrap(), None);
    // Expired records are not returned.
    let old = record(-5);
    store.save(&old).await.unwrap();
    assert_eq!(store.load(&old.id).await.unwrap(), None);
}

#[tokio::test]
async fn in_memory_round_trip() {
    round_trip(SessionStoreAdapter::new(Arc::new(
        InMemorySessionCacheStrategy::new(),
    )))
    .await;
}

#[tokio::test]
async fn redis_round_trip() {
    let Some(server) = RedisServer::start("tower redis_round_trip") else {
        return;
    };
    let strategy = Arc::new(RedisSessionCacheStrategy::new(&server.url()).unwrap());
    strategy.init().await.unwrap();
    round_trip(SessionStoreAdapter::new(strategy)).await;
}

#[test]
fn conversion_keeps_id_data_and_expiry() {
    let r = record(60);
    let s = record_to_session(&r);
    assert_eq!(s.token, r.id.to_string());
    assert_eq!(s.expires, r.expiry_date);
    assert_eq!(session_to_record(&s), Some(r));
    let mut foreign = s.clone();
    foreign.token = "not-a-tower-id".into();
    assert_eq!(session_to_record(&foreign), None);
}
