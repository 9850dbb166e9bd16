//! The database session flow (features `sqlx-sqlite`, `sqlx-postgres`) on a real SQLite file,
//! and on PostgreSQL when `DATABASE_URL` names a server.
#![cfg(feature = "sqlx-sqlite")]

mod dbcommon;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clockcache_session::db::{
    generate_session_token, serialize_session, DbBackend, DbError, DbOptions, DbSessionService,
    DbSessionStore, NewSession, NATIVE_AUTH_STRATEGY,
};
use clockcache_session::{
    CachedSession, Id, InMemorySessionCacheStrategy, SessionCacheConfig, SessionCacheError,
    SessionCacheStrategy, SessionLoader, UserChannelPermissions,
};
use time::OffsetDateTime;

struct Seeded {
    ch1: i64,
    ch2: i64,
    user: i64,
}

/// Two channels and a user with three roles: `editor` (ReadCatalog, UpdateCatalog on both
/// channels), `clerk` (ReadOrder, ReadCatalog on the first) and `idle` (on no channel).
async fn seed(store: &DbSessionStore) -> Seeded {
    let ch1 = store.create_channel("eu", "eu-token").await.unwrap();
    let ch2 = store.create_channel("us", "us-token").await.unwrap();
    let editor = store
        .create_role("editor", &["ReadCatalog", "UpdateCatalog"], &[ch2, ch1])
        .await
        .unwrap();
    let clerk = store
        .create_role("clerk", &["ReadOrder", "ReadCatalog"], &[ch1])
        .await
        .unwrap();
    let idle = store.create_role("idle", &["Owner"], &[]).await.unwrap();
    let user = store
        .create_user(
            "ada@example.com",
            true,
            Some("$hash"),
            &[editor, clerk, idle],
        )
        .await
        .unwrap();
    Seeded { ch1, ch2, user }
}

fn service(store: &Arc<DbSessionStore>) -> DbSessionService {
    DbSessionService::new(
        store.clone(),
        Arc::new(InMemorySessionCacheStrategy::new()),
        SessionCacheConfig::default(),
    )
}

fn in_days(days: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::days(days)
}

#[tokio::test]
async fn the_loader_runs_vendures_session_query() {
    for db in dbcommon::all("the_loader_runs_vendures_session_query").await {
        let store = DbSessionStore::connect(&db.url).await.unwrap();
        let expected_backend = if db.label == "sqlite" {
            DbBackend::Sqlite
        } else {
            DbBackend::Postgres
        };
        assert_eq!(store.backend(), expected_backend);
        let s = seed(&store).await;
        let token = generate_session_token().unwrap();
        let id = store
            .insert_session(&NewSession {
                token: token.clone(),
                expires: in_days(300),
                authentication_strategy: Some(NATIVE_AUTH_STRATEGY.into()),
                user_id: Some(s.user),
                active_order_id: None,
                active_channel_id: Some(s.ch2),
            })
            .await
            .unwrap();

        let before = store.queries();
        let loaded = store.load(&token).await.unwrap().expect("the session");
        assert_eq!(store.queries(), before + 1, "{}: one query", db.label);
        assert_eq!(loaded.id, Id::Int(id));
        assert_eq!(loaded.token, token);
        assert_eq!(loaded.active_channel_id, Some(Id::Int(s.ch2)));
        assert_eq!(loaded.active_order_id, None);
        assert_eq!(loaded.authentication_strategy.as_deref(), Some("native"));
        let user = loaded.user.as_ref().expect("authenticated");
        assert_eq!(user.id, Id::Int(s.user));
        assert_eq!(user.identifier, "ada@example.com");
        assert!(user.verified);
        // Vendure's getChannelPermissions: per channel, the union of the roles' permissions in
        // first-seen order; channels by ID; a role on no channel grants nothing.
        assert_eq!(
            user.channel_permissions,
            vec![
                UserChannelPermissions {
                    id: Id::Int(s.ch1),
                    token: "eu-token".into(),
                    code: "eu".into(),
                    permissions: vec![
                        "ReadCatalog".into(),
                        "UpdateCatalog".into(),
                        "ReadOrder".into()
                    ],
                },
                UserChannelPermissions {
                    id: Id::Int(s.ch2),
                    token: "us-token".into(),
                    code: "us".into(),
                    permissions: vec!["ReadCatalog".into(), "UpdateCatalog".into()],
                },
            ],
            "{}",
            db.label
        );
        let json = loaded.to_json().unwrap();
        assert!(
            json.contains(&format!(
                r#""user":{{"id":{},"identifier":"ada@example.com","verified":true,"channelPermissions":[{{"id":{},"token":"eu-token","code":"eu","permissions":["ReadCatalog","UpdateCatalog","ReadOrder"]}}"#,
                s.user, s.ch1
            )),
            "{}: {json}",
            db.label
        );

        // An anonymous session: no user, no strategy.
        let guest = generate_session_token().unwrap();
        store
            .insert_session(&NewSession::anonymous(guest.clone(), in_days(300)))
            .await
            .unwrap();
        let g = store
            .load(&guest)
            .await
            .unwrap()
            .expect("the guest session");
        assert_eq!(g.user, None);
        assert_eq!(g.authentication_strategy, None);

        // Unknown, empty, oversized and expired tokens: no session, no error.
        assert_eq!(
            store
                .load(&generate_session_token().unwrap())
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.load("").await.unwrap(), None);
        assert_eq!(store.load(&"a".repeat(10_000)).await.unwrap(), None);
        let expired = generate_session_token().unwrap();
        store
            .insert_session(&NewSession::anonymous(
                expired.clone(),
                OffsetDateTime::now_utc() - time::Duration::seconds(1),
            ))
            .await
            .unwrap();
        assert_eq!(store.load(&expired).await.unwrap(), None, "{}", db.label);
        store.close().await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_session_read_in_the_second_half_of_its_life_is_extended_in_the_database() {
    for db in dbcommon::all("sliding_expiry").await {
        let options = DbOptions {
            session_duration: Duration::from_secs(10 * 24 * 3600),
            ..DbOptions::default()
        };
        let store = DbSessionStore::connect_with(&db.url, options)
            .await
            .unwrap();
        let token = generate_session_token().unwrap();
        let new = |token: &str, days| NewSession::anonymous(token.to_owned(), in_days(days));
        store.insert_session(&new(&token, 2)).await.unwrap();
        let before = store.queries();
        let first = store.find_session(&token).await.unwrap().unwrap();
        assert_eq!(store.queries(), before + 2, "the select and the update");
        assert!(
            first.expires > in_days(9),
            "{}: extended to 10 days",
            db.label
        );
        let reread = store.find_session(&token).await.unwrap().unwrap();
        assert_eq!(
            reread.expires, first.expires,
            "{}: written to the database",
            db.label
        );

        let fresh = generate_session_token().unwrap();
        store.insert_session(&new(&fresh, 8)).await.unwrap();
        let before = store.queries();
        let r = store.find_session(&fresh).await.unwrap().unwrap();
        assert_eq!(
            store.queries(),
            before + 1,
            "more than half left: no update"
        );
        assert!(r.expires < in_days(9));
        store.close().await;
        db.drop_db().await;
    }
}

#[test]
fn tokens_are_64_lowercase_hex_characters_and_unique() {
    let mut seen = HashSet::new();
    for _ in 0..20_000 {
        let t = generate_session_token().unwrap();
        assert_eq!(t.len(), 64);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{t}"
        );
        assert!(seen.insert(t), "a token repeated");
    }
    // 32 random bytes: every hex digit shows up across the tokens, at every position.
    for pos in [0, 31, 63] {
        let digits: HashSet<u8> = seen.iter().map(|t| t.as_bytes()[pos]).collect();
        assert_eq!(digits.len(), 16, "position {pos}");
    }
}

#[tokio::test]
async fn created_sessions_are_in_the_database_and_the_cache_and_serialize_round_trip() {
    for db in dbcommon::all("create_serialize_round_trip").await {
        let store = Arc::new(DbSessionStore::connect(&db.url).await.unwrap());
        let s = seed(&store).await;
        let svc = service(&store);

        let guest = svc.create_anonymous_session().await.unwrap();
        assert_eq!(guest.token.len(), 64);
        assert_eq!(guest.user, None);
        let order = store.create_order("ORDER-1").await.unwrap();
        let guest = svc
            .set_active_order(&guest, Some(order))
            .await
            .unwrap()
            .expect("still there");

        let authed = svc
            .create_authenticated_session(s.user, NATIVE_AUTH_STRATEGY, Some(&guest))
            .await
            .unwrap();
        assert_ne!(authed.token, guest.token);
        assert_eq!(
            authed.active_order_id,
            Some(Id::Int(order)),
            "the guest's order is carried over"
        );
        assert_eq!(authed.user.as_ref().unwrap().channel_permissions.len(), 2);

        for created in [&guest, &authed] {
            // In the database: serializing the row gives the session the service returned.
            let record = store
                .find_session(&created.token)
                .await
                .unwrap()
                .expect("row");
            let mut from_db = serialize_session(&record, Duration::ZERO);
            from_db.cache_expiry = created.cache_expiry;
            assert_eq!(&from_db, &**created, "{}", db.label);
            assert_eq!(svc.serialize_session(&record).user, created.user);
            // The JSON round-trips.
            let json = created.to_json().unwrap();
            assert_eq!(
                &CachedSession::from_json(json.as_bytes()).unwrap(),
                &**created
            );
            // In the cache: served without a query.
            let before = store.queries();
            let got = svc.get(&created.token).await.unwrap().expect("cached");
            assert_eq!(&*got, &**created);
            assert_eq!(store.queries(), before, "{}: a cache hit", db.label);
        }
        store.close().await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn the_active_order_and_channel_updates_reread_the_database() {
    for db in dbcommon::all("updates_reread_the_database").await {
        let store = Arc::new(DbSessionStore::connect(&db.url).await.unwrap());
        let s = seed(&store).await;
        let svc = service(&store);
        let stale = svc
            .create_authenticated_session(s.user, NATIVE_AUTH_STRATEGY, None)
            .await
            .unwrap();
        let id = match stale.id {
            Id::Int(n) => n,
            ref other => panic!("integer id expected, got {other}"),
        };
        // Another instance changes the session's channel behind this copy's back, and the
        // user gets a new role.
        assert!(store.update_active_channel(id, s.ch2).await.unwrap());
        let extra = store
            .create_role("auditor", &["ReadAudit"], &[s.ch2])
            .await
            .unwrap();
        let order = store.create_order("ORDER-2").await.unwrap();
        add_role(&db.url, s.user, extra).await;

        // Until then the cached copy is served as it was (no reload before its cache_expiry).
        let cached = svc.get(&stale.token).await.unwrap().unwrap();
        assert_eq!(cached.active_channel_id, None);
        assert_eq!(cached.user, stale.user);

        let before = store.queries();
        let updated = svc
            .set_active_order(&stale, Some(order))
            .await
            .unwrap()
            .expect("the session exists");
        assert_eq!(store.queries(), before + 2, "the update and the re-read");
        assert_eq!(updated.active_order_id, Some(Id::Int(order)));
        assert_eq!(
            updated.active_channel_id,
            Some(Id::Int(s.ch2)),
            "{}: the database's channel, not the stale copy's",
            db.label
        );
        let us = &updated.user.as_ref().unwrap().channel_permissions[1];
        assert!(
            us.permissions.contains(&"ReadAudit".to_owned()),
            "{}: {us:?}",
            db.label
        );
        // The cache holds what was re-read.
        assert_eq!(
            svc.get(&stale.token).await.unwrap().as_deref(),
            Some(&*updated)
        );

        let unset = svc.set_active_order(&updated, None).await.unwrap().unwrap();
        assert_eq!(unset.active_order_id, None);
        let moved = svc
            .set_active_channel(&unset, s.ch1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(moved.active_channel_id, Some(Id::Int(s.ch1)));
        assert_eq!(
            store
                .find_session(&stale.token)
                .await
                .unwrap()
                .unwrap()
                .active_channel_id,
            Some(s.ch1)
        );

        // A session deleted meanwhile: no update, nothing cached, no error.
        assert!(svc.delete_session(&stale.token).await.unwrap());
        assert_eq!(
            svc.set_active_order(&moved, Some(order)).await.unwrap(),
            None
        );
        assert_eq!(svc.get(&stale.token).await.unwrap(), None);
        store.close().await;
        db.drop_db().await;
    }
}

/// Adds a role to a user with a connection of its own (as another service would).
async fn add_role(url: &str, user: i64, role: i64) {
    let store = DbSessionStore::connect(url).await.unwrap();
    store.grant_role(user, role).await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn logout_and_delete_by_user_remove_the_rows_and_the_cached_copies() {
    for db in dbcommon::all("logout_and_delete_by_user").await {
        let store = Arc::new(DbSessionStore::connect(&db.url).await.unwrap());
        let s = seed(&store).await;
        let svc = service(&store);
        let a = svc
            .create_authenticated_session(s.user, NATIVE_AUTH_STRATEGY, None)
            .await
            .unwrap();
        let b = svc
            .create_authenticated_session(s.user, NATIVE_AUTH_STRATEGY, None)
            .await
            .unwrap();
        let c = svc
            .create_authenticated_session(s.user, NATIVE_AUTH_STRATEGY, None)
            .await
            .unwrap();
        assert!(svc.get(&a.token).await.unwrap().is_some());

        assert!(svc.delete_session(&a.token).await.unwrap());
        assert_eq!(svc.get(&a.token).await.unwrap(), None, "{}", db.label);
        assert_eq!(store.find_session(&a.token).await.unwrap(), None);
        assert!(!svc.delete_session(&a.token).await.unwrap(), "already gone");

        assert_eq!(svc.delete_sessions_by_user(s.user).await.unwrap(), 2);
        for t in [&b.token, &c.token] {
            assert_eq!(svc.get(t).await.unwrap(), None, "{}", db.label);
            assert_eq!(store.find_session(t).await.unwrap(), None);
        }
        store.close().await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn bad_urls_and_arguments_are_errors_not_panics() {
    for url in ["mysql://localhost/db", "", "redis://127.0.0.1"] {
        match DbSessionStore::connect(url).await {
            Err(DbError::Config(m)) => assert!(m.contains("unsupported database URL"), "{m}"),
            other => panic!("{url:?}: expected a configuration error, got {other:?}"),
        }
    }
    let zero = DbOptions {
        max_connections: 0,
        ..DbOptions::default()
    };
    assert!(matches!(
        DbSessionStore::connect_with("sqlite::memory:", zero).await,
        Err(DbError::Config(_))
    ));
    let dir = std::env::temp_dir().join(format!("cc-no-such-dir-{}", std::process::id()));
    let missing = format!("sqlite:{}/x/y.db", dir.display());
    assert!(matches!(
        DbSessionStore::connect(&missing).await,
        Err(DbError::Database(_))
    ));

    let store = DbSessionStore::connect("sqlite::memory:").await.unwrap();
    assert!(matches!(
        store.create_role("r", &["A,B"], &[]).await,
        Err(DbError::Invalid(_))
    ));
    assert!(matches!(
        store.create_user("", true, None, &[]).await,
        Err(DbError::Invalid(_))
    ));
    // A duplicate identifier: the database's constraint, reported.
    store.create_user("x", true, None, &[]).await.unwrap();
    assert!(matches!(
        store.create_user("x", true, None, &[]).await,
        Err(DbError::Database(_))
    ));
}

/// A cache whose writes all fail (a Redis that is down).
struct FailingWrites;

#[async_trait]
impl SessionCacheStrategy for FailingWrites {
    async fn set(&self, _s: Arc<CachedSession>) -> Result<(), SessionCacheError> {
        Err(SessionCacheError::Backend("down".into()))
    }
    async fn get(&self, _token: &str) -> Option<Arc<CachedSession>> {
        None
    }
    async fn delete(&self, _token: &str) -> Result<(), SessionCacheError> {
        Err(SessionCacheError::Backend("down".into()))
    }
    async fn clear(&self) -> Result<(), SessionCacheError> {
        Err(SessionCacheError::Backend("down".into()))
    }
}

#[tokio::test]
async fn a_failing_cache_fails_no_create_but_is_reported_on_logout() {
    let db = dbcommon::sqlite("failing_cache");
    let store = Arc::new(DbSessionStore::connect(&db.url).await.unwrap());
    let svc = DbSessionService::new(
        store.clone(),
        Arc::new(FailingWrites),
        SessionCacheConfig::default(),
    );
    let guest = svc
        .create_anonymous_session()
        .await
        .expect("the database has it");
    let before = store.queries();
    assert_eq!(
        svc.get(&guest.token).await.unwrap().unwrap().token,
        guest.token
    );
    assert_eq!(store.queries(), before + 1, "loaded from the database");
    match svc.delete_session(&guest.token).await {
        Err(DbError::Cache(SessionCacheError::Backend(m))) => assert_eq!(m, "down"),
        other => panic!("expected the cache's error, got {other:?}"),
    }
    assert_eq!(
        store.find_session(&guest.token).await.unwrap(),
        None,
        "the row is gone"
    );
    store.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn the_caches_deletes_by_user_and_order_find_sessions_other_instances_cached() {
    for db in dbcommon::all("deletes_find_other_instances").await {
        let store = Arc::new(DbSessionStore::connect(&db.url).await.unwrap());
        let s = seed(&store).await;
        // Two instances over one shared strategy (as over one Redis).
        let shared = Arc::new(InMemorySessionCacheStrategy::new());
        let a = DbSessionService::new(store.clone(), shared.clone(), SessionCacheConfig::default());
        let b = DbSessionService::new(store.clone(), shared.clone(), SessionCacheConfig::default());
        let order = store.create_order("ORDER-3").await.unwrap();
        let guest = b.create_anonymous_session().await.unwrap();
        let guest = b
            .set_active_order(&guest, Some(order))
            .await
            .unwrap()
            .unwrap();
        let user = b
            .create_authenticated_session(s.user, NATIVE_AUTH_STRATEGY, None)
            .await
            .unwrap();
        assert!(shared.get(&guest.token).await.is_some());
        assert!(shared.get(&user.token).await.is_some());
        assert_eq!(
            a.cache().indexed_sessions(),
            0,
            "A cached none of them itself"
        );

        assert_eq!(
            a.cache()
                .delete_sessions_by_active_order(&Id::Int(order))
                .await
                .unwrap(),
            1
        );
        assert!(shared.get(&guest.token).await.is_none(), "{}", db.label);
        assert_eq!(
            a.cache()
                .delete_sessions_by_user(&Id::Int(s.user))
                .await
                .unwrap(),
            1
        );
        assert!(shared.get(&user.token).await.is_none(), "{}", db.label);
        store.close().await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_sqlite_file_runs_in_wal_mode() {
    let db = dbcommon::sqlite("wal_mode");
    let store = DbSessionStore::connect(&db.url).await.unwrap();
    store.create_channel("c", "t").await.unwrap();
    let path = db.url.strip_prefix("sqlite:").unwrap();
    assert!(
        std::path::Path::new(&format!("{path}-wal")).exists(),
        "no write-ahead log beside {path}"
    );
    store.close().await;
    db.drop_db().await;
}
