//! SessionCache: staleness, single flight, time budgets and secondary indexes.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clockcache_session::{
    CachedSession, Id, InMemorySessionCacheStrategy, LoaderError, SessionCache, SessionCacheConfig,
    SessionCacheError, SessionCacheStrategy, SessionLoader,
};
use common::{anonymous, session};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

/// A fake database: sessions by token, a load counter, and an optional gate that holds loads.
#[derive(Default)]
struct Db {
    sessions: Mutex<HashMap<String, CachedSession>>,
    loads: AtomicUsize,
    gate: Option<Arc<Semaphore>>,
    fail: bool,
    extra_user_tokens: Vec<String>,
}

impl Db {
    fn with(sessions: impl IntoIterator<Item = CachedSession>) -> Db {
        Db {
            sessions: Mutex::new(sessions.into_iter().map(|s| (s.token.clone(), s)).collect()),
            ..Db::default()
        }
    }
}

#[async_trait]
impl SessionLoader for Db {
    async fn load(&self, token: &str) -> Result<Option<CachedSession>, LoaderError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        if let Some(g) = &self.gate {
            let _permit = g.acquire().await?;
        }
        if self.fail {
            return Err("database is down".into());
        }
        Ok(self.sessions.lock().get(token).cloned())
    }

    async fn tokens_by_user(&self, _user_id: &Id) -> Result<Vec<String>, LoaderError> {
        Ok(self.extra_user_tokens.clone())
    }
}

fn cache(db: Arc<Db>) -> (SessionCache, Arc<InMemorySessionCacheStrategy>) {
    let store = Arc::new(InMemorySessionCacheStrategy::new());
    (SessionCache::new(store.clone(), db), store)
}

#[tokio::test]
async fn a_miss_loads_once_then_hits() {
    let db = Arc::new(Db::with([session("t", 1)]));
    let (c, store) = cache(db.clone());
    let first = c.get("t").await.unwrap().unwrap();
    assert_eq!(db.loads.load(Ordering::SeqCst), 1);
    assert_eq!(store.get_now("t"), Some(first.clone()));
    assert_eq!(c.get("t").await.unwrap(), Some(first));
    assert_eq!(db.loads.load(Ordering::SeqCst), 1);
    // Unknown token: Ok(None), nothing cached.
    assert_eq!(c.get("unknown").await.unwrap(), None);
    assert_eq!(store.get_now("unknown"), None);
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_misses_share_one_load() {
    let gate = Arc::new(Semaphore::new(0));
    let db = Arc::new(Db {
        gate: Some(gate.clone()),
        ..Db::with([session("t", 1)])
    });
    let (c, _) = cache(db.clone());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get("t").await })
        })
        .collect();
    // On this single-threaded runtime, yielding lets every task run up to the shared load.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(1000);
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().unwrap().token, "t");
    }
    assert_eq!(db.loads.load(Ordering::SeqCst), 1);
}

/// A `Db` whose loads wait at a gate, and a spawned `get("t")` that is waiting there (the
/// database still holds "t": the load stands for one that read it before what the test does
/// next).
async fn a_load_in_flight() -> (
    SessionCache,
    Arc<InMemorySessionCacheStrategy>,
    Arc<Db>,
    Arc<Semaphore>,
    tokio::task::JoinHandle<Result<Option<Arc<CachedSession>>, SessionCacheError>>,
) {
    let gate = Arc::new(Semaphore::new(0));
    let db = Arc::new(Db {
        gate: Some(gate.clone()),
        ..Db::with([session("t", 1)])
    });
    let (c, store) = cache(db.clone());
    let load = {
        let c = c.clone();
        tokio::spawn(async move { c.get("t").await })
    };
    settle().await;
    assert_eq!(
        db.loads.load(Ordering::SeqCst),
        1,
        "the load waits at the gate"
    );
    (c, store, db, gate, load)
}

/// On a single-threaded runtime, yielding lets every spawned task run until it waits.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// A logout (delete) while a load is in flight: the load answers the caller who asked before,
/// but its session is not cached, so the logged-out session is not served afterwards.
#[tokio::test(flavor = "current_thread")]
async fn a_delete_during_a_load_keeps_the_loaded_session_out_of_the_cache() {
    let (c, store, _db, gate, load) = a_load_in_flight().await;
    c.delete("t").await.unwrap();
    gate.add_permits(1000);
    assert_eq!(load.await.unwrap().unwrap().unwrap().token, "t");
    assert_eq!(store.get_now("t"), None);
    assert_eq!(c.indexed_sessions(), 0);
}

/// A get after a delete does not join a load that began before it: it loads for itself.
#[tokio::test(flavor = "current_thread")]
async fn a_get_after_a_delete_does_not_join_an_earlier_load() {
    let (c, _store, db, gate, first) = a_load_in_flight().await;
    c.delete("t").await.unwrap();
    let second = {
        let c = c.clone();
        tokio::spawn(async move { c.get("t").await })
    };
    settle().await;
    assert_eq!(db.loads.load(Ordering::SeqCst), 2);
    gate.add_permits(1000);
    assert!(first.await.unwrap().unwrap().is_some());
    assert!(second.await.unwrap().unwrap().is_some());
}

/// The application sets a changed session while a load of the older database row is in
/// flight: the load does not overwrite the newer copy.
#[tokio::test(flavor = "current_thread")]
async fn a_set_during_a_load_is_not_overwritten_by_it() {
    let (c, store, _db, gate, load) = a_load_in_flight().await;
    let mut changed = session("t", 1);
    changed.active_order_id = Some(9.into());
    let stored = c.set(changed).await.unwrap();
    gate.add_permits(1000);
    assert_eq!(load.await.unwrap().unwrap().unwrap().active_order_id, None);
    assert_eq!(store.get_now("t"), Some(stored.clone()));
    assert_eq!(c.get("t").await.unwrap(), Some(stored));
}

/// The caller of a get is dropped while its load waits (the client went away, a timeout layer
/// fired): its single-flight entry goes with it, and a later get loads again.
#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_load_leaves_no_flight_behind() {
    let gate = Arc::new(Semaphore::new(0));
    let db = Arc::new(Db {
        gate: Some(gate.clone()),
        ..Db::with([session("t", 1)])
    });
    let (c, store) = cache(db.clone());
    let cancelled = tokio::time::timeout(Duration::from_millis(20), c.get("t")).await;
    assert!(cancelled.is_err(), "the load waited at the gate");
    assert_eq!(db.loads.load(Ordering::SeqCst), 1);
    assert_eq!(c.loads_in_flight(), 0, "the cancelled load left its entry");
    gate.add_permits(1000);
    assert_eq!(c.get("t").await.unwrap().unwrap().token, "t");
    assert_eq!(db.loads.load(Ordering::SeqCst), 2);
    assert!(store.get_now("t").is_some());
    assert_eq!(c.loads_in_flight(), 0);
}

/// A get waiting on a load whose leader is cancelled takes the load over (it neither hangs nor
/// fails), and no entry is left once it is done.
#[tokio::test(flavor = "current_thread")]
async fn a_waiter_takes_over_from_a_cancelled_leader() {
    let gate = Arc::new(Semaphore::new(0));
    let db = Arc::new(Db {
        gate: Some(gate.clone()),
        ..Db::with([session("t", 1)])
    });
    let (c, _store) = cache(db.clone());
    let leader = {
        let c = c.clone();
        tokio::spawn(async move { c.get("t").await })
    };
    settle().await;
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.get("t").await })
    };
    settle().await;
    assert_eq!(db.loads.load(Ordering::SeqCst), 1, "the waiter joined");
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    settle().await;
    assert_eq!(db.loads.load(Ordering::SeqCst), 2, "the waiter took over");
    assert_eq!(c.loads_in_flight(), 1, "the waiter's load is in flight");
    gate.add_permits(1000);
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter finished")
        .unwrap()
        .unwrap();
    assert_eq!(got.unwrap().token, "t");
    assert_eq!(c.loads_in_flight(), 0);
}

#[tokio::test]
async fn stale_or_expired_entries_are_reloaded() {
    let db = Arc::new(Db::with([session("stale", 1)]));
    let (c, store) = cache(db.clone());
    // Cached copy past cache_expiry: reloaded, and stored with a fresh cache_expiry.
    let mut old = session("stale", 1);
    old.cache_expiry -= 3600.0;
    old.active_order_id = Some(1.into());
    store.set_now(Arc::new(old.clone())).unwrap();
    let got = c.get("stale").await.unwrap().unwrap();
    assert_eq!(db.loads.load(Ordering::SeqCst), 1);
    assert_eq!(got.active_order_id, None, "the database copy wins");
    assert!(got.cache_expiry > old.cache_expiry);
    assert_eq!(store.get_now("stale"), Some(got));

    // The database no longer has a session the cache still holds past its cache_expiry: the
    // stale copy is dropped.
    let mut gone = session("gone", 2);
    gone.cache_expiry -= 3600.0;
    store.set_now(Arc::new(gone)).unwrap();
    assert_eq!(c.get("gone").await.unwrap(), None);
    assert_eq!(store.get_now("gone"), None);

    // The loader returns an expired session: not served, not cached.
    db.sessions
        .lock()
        .insert("dead".into(), anonymous("dead", -10));
    assert_eq!(c.get("dead").await.unwrap(), None);
    assert_eq!(store.get_now("dead"), None);
}

#[tokio::test]
async fn loader_failures_and_bad_tokens_are_errors() {
    let db = Arc::new(Db {
        fail: true,
        ..Db::default()
    });
    let (c, store) = cache(db);
    let err = c.get("t").await.unwrap_err();
    assert!(matches!(err, SessionCacheError::Loader(_)));
    assert!(err.to_string().contains("database is down"));
    assert_eq!(store.length(), 0);
    assert!(matches!(
        c.get(&"x".repeat(1 << 20)).await,
        Err(SessionCacheError::InvalidToken(_))
    ));
    assert!(matches!(
        c.get("a\0b").await,
        Err(SessionCacheError::InvalidToken(_))
    ));
}

/// Wraps a strategy and delays its calls by 200 ms (in Tokio time, which the tests pause):
/// every call but `clear`, or only sets.
struct Slow {
    inner: InMemorySessionCacheStrategy,
    sets_only: bool,
}

impl Slow {
    const DELAY: Duration = Duration::from_millis(200);

    /// A strategy slowed down as `sets_only` says, and a cache over it with a 50 ms budget.
    fn with_cache(sets_only: bool, db: Arc<Db>) -> (Arc<Slow>, SessionCache) {
        let slow = Arc::new(Slow {
            inner: InMemorySessionCacheStrategy::new(),
            sets_only,
        });
        let config = SessionCacheConfig {
            budget: Duration::from_millis(50),
            ..SessionCacheConfig::default()
        };
        (slow.clone(), SessionCache::with_config(slow, db, config))
    }

    async fn delay(&self, is_set: bool) {
        if is_set || !self.sets_only {
            tokio::time::sleep(Self::DELAY).await;
        }
    }
}

#[async_trait]
impl SessionCacheStrategy for Slow {
    async fn set(&self, s: Arc<CachedSession>) -> Result<(), SessionCacheError> {
        self.delay(true).await;
        self.inner.set(s).await
    }
    async fn get(&self, token: &str) -> Option<Arc<CachedSession>> {
        self.delay(false).await;
        self.inner.get(token).await
    }
    async fn delete(&self, token: &str) -> Result<(), SessionCacheError> {
        self.delay(false).await;
        self.inner.delete(token).await
    }
    async fn clear(&self) -> Result<(), SessionCacheError> {
        self.inner.clear().await
    }
}

#[tokio::test(start_paused = true)]
async fn slow_strategy_calls_respect_the_budget() {
    let db = Arc::new(Db::with([session("t", 1)]));
    let (slow, c) = Slow::with_cache(false, db.clone());
    // The slow set is logged and finishes in the background; the caller gets the session.
    let s = c.get("t").await.unwrap().unwrap();
    assert_eq!(db.loads.load(Ordering::SeqCst), 1);
    assert_eq!(slow.inner.get_now("t"), None, "the set is still running");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slow.inner.get_now("t"), Some(s.clone()), "and it completed");
    // A slow get is a miss: the session comes from the loader although it is cached.
    assert_eq!(c.get("t").await.unwrap().unwrap().token, "t");
    assert_eq!(db.loads.load(Ordering::SeqCst), 2);
    // A slow delete is not cancelled (and says its outcome is unknown).
    assert!(matches!(
        c.delete("t").await,
        Err(SessionCacheError::Pending { op: "delete", .. })
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slow.inner.get_now("t"), None);
}

/// A set that runs past its budget goes on in the background; a delete of the same token that
/// reaches the strategy before it lands still wins: the set takes its copy back out.
#[tokio::test(start_paused = true)]
async fn a_set_past_its_budget_does_not_land_over_a_later_delete() {
    let (slow, c) = Slow::with_cache(true, Arc::new(Db::default()));
    let pending = |r: Result<Arc<CachedSession>, SessionCacheError>| {
        matches!(r, Err(SessionCacheError::Pending { op: "set", .. }))
    };
    assert!(pending(c.set(session("t", 1)).await));
    assert_eq!(slow.inner.get_now("t"), None, "the set is still on its way");
    c.delete("t").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        slow.inner.get_now("t"),
        None,
        "the logged-out session stays out"
    );
    // A set with no delete after it stays.
    let mut kept = session("t", 1);
    kept.active_order_id = Some(3.into());
    assert!(pending(c.set(kept).await));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        slow.inner
            .get_now("t")
            .and_then(|s| s.active_order_id.clone()),
        Some(3.into())
    );
}

/// A delete that runs past its budget goes on in the background, so its outcome is not known
/// when the call returns: the caller (a logout) must not be told it succeeded.
#[tokio::test(start_paused = true)]
async fn a_write_past_its_budget_reports_its_outcome_unknown() {
    let (slow, c) = Slow::with_cache(false, Arc::new(Db::default()));
    slow.inner.set_now(Arc::new(session("t", 1))).unwrap();
    let r = c.delete("t").await;
    assert!(
        matches!(r, Err(SessionCacheError::Pending { op: "delete", budget }) if budget == Duration::from_millis(50)),
        "a delete past its budget reported {r:?}"
    );
    assert!(slow.inner.get_now("t").is_some(), "still on its way");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slow.inner.get_now("t"), None, "and it completed");
    // The same for a set, and for deletes by user (every token is still tried).
    let r = c.set(session("u", 7)).await;
    assert!(
        matches!(r, Err(SessionCacheError::Pending { op: "set", .. })),
        "a set past its budget reported {r:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(slow.inner.get_now("u").is_some(), "the set landed");
    let r = c.delete_sessions_by_user(&Id::Int(7)).await;
    assert!(
        matches!(r, Err(SessionCacheError::Pending { op: "delete", .. })),
        "{r:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slow.inner.get_now("u"), None);
    // Within the budget, the same calls succeed.
    let (fast, c) = Slow::with_cache(true, Arc::new(Db::default()));
    fast.inner.set_now(Arc::new(session("t", 1))).unwrap();
    c.delete("t").await.unwrap();
    assert_eq!(fast.inner.get_now("t"), None);
    assert_eq!(c.delete_sessions_by_user(&Id::Int(1)).await.unwrap(), 0);
}

#[tokio::test]
async fn delete_by_user_and_by_active_order_use_the_indexes() {
    let db = Arc::new(Db {
        extra_user_tokens: vec!["cached-elsewhere".into()],
        ..Db::with([session("u1-a", 1), session("u1-b", 1), session("u2", 2)])
    });
    let (c, store) = cache(db);
    for t in ["u1-a", "u1-b", "u2"] {
        c.get(t).await.unwrap().unwrap();
    }
    // A session of user 1 that another instance cached: known only to the database.
    store
        .set_now(Arc::new(session("cached-elsewhere", 1)))
        .unwrap();
    let user1 = c.set(session("u1-c", 1)).await.unwrap();
    assert_eq!(c.indexed_sessions(), 4);

    // Orders: u1-c moves from order 10 to order 11; u2 has order 10.
    let on10 = c.set_active_order(&user1, Id::Int(10)).await.unwrap();
    let on11 = c.set_active_order(&on10, Id::Int(11)).await.unwrap();
    assert_eq!(on11.active_order_id, Some(Id::Int(11)));
    let u2 = store.get_now("u2").unwrap();
    c.set_active_order(&u2, Id::Str("10".into())).await.unwrap();
    // IDs compare by string form, as Vendure's idsAreEqual does.
    assert_eq!(
        c.delete_sessions_by_active_order(&Id::Int(10))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.get_now("u2"), None);
    assert!(store.get_now("u1-c").is_some());

    assert_eq!(c.delete_sessions_by_user(&Id::Int(1)).await.unwrap(), 4);
    for t in ["u1-a", "u1-b", "u1-c", "cached-elsewhere"] {
        assert_eq!(store.get_now(t), None, "{t}");
    }
    assert_eq!(c.indexed_sessions(), 0);
    assert_eq!(c.delete_sessions_by_user(&Id::Int(1)).await.unwrap(), 1); // the db's token
}

#[tokio::test]
async fn active_order_and_channel_updates_are_cached() {
    let db = Arc::new(Db::with([session("t", 1)]));
    let (c, store) = cache(db.clone());
    let s = c.get("t").await.unwrap().unwrap();
    let s = c.set_active_order(&s, Id::Int(5)).await.unwrap();
    assert_eq!(
        store.get_now("t").unwrap().active_order_id,
        Some(Id::Int(5))
    );
    let s = c
        .set_active_channel(&s, Id::Str("ch-2".into()))
        .await
        .unwrap();
    assert_eq!(
        c.get("t").await.unwrap().unwrap().active_channel_id,
        Some(Id::Str("ch-2".into()))
    );
    let s = c.unset_active_order(&s).await.unwrap();
    assert_eq!(s.active_order_id, None);
    assert_eq!(store.get_now("t").unwrap().active_order_id, None);
    assert_eq!(db.loads.load(Ordering::SeqCst), 1);
    c.clear().await.unwrap();
    assert_eq!(store.length(), 0);
    assert_eq!(c.indexed_sessions(), 0);
}

/// The indexes hold no more sessions than the strategy (its `max`), dropping the entries whose
/// copies go stale first, and `delete_sessions_by_user` still finds the live ones.
#[tokio::test]
async fn the_indexes_are_bounded_by_the_strategy_capacity() {
    let store = Arc::new(InMemorySessionCacheStrategy::with_options(
        clockcache_session::InMemoryOptions::default().max(64),
    ));
    let c = SessionCache::new(store.clone(), Arc::new(Db::default()));
    assert_eq!(c.index_capacity(), 64);
    for i in 0..1000 {
        c.set(session(&format!("t{i}"), i % 10)).await.unwrap();
        assert!(
            c.indexed_sessions() <= 64,
            "{} at {i}",
            c.indexed_sessions()
        );
    }
    // The last sessions set are cached and indexed: a user's delete finds and removes them.
    let recent: Vec<String> = (950..1000)
        .filter(|i| i % 10 == 3)
        .map(|i| format!("t{i}"))
        .collect();
    for t in &recent {
        assert!(store.get_now(t).is_some(), "{t}");
    }
    assert!(c.delete_sessions_by_user(&Id::Int(3)).await.unwrap() >= recent.len());
    for t in &recent {
        assert_eq!(store.get_now(t), None, "{t}");
    }
}

/// An index entry lapses with its copy's `cache_expiry` (a stale copy is reloaded before it is
/// served), not at the session's `expires`.
#[tokio::test]
async fn index_entries_lapse_at_cache_expiry() {
    let store = Arc::new(InMemorySessionCacheStrategy::new());
    let config = SessionCacheConfig {
        cache_ttl: Duration::from_secs(1),
        ..SessionCacheConfig::default()
    };
    let c = SessionCache::with_config(store, Arc::new(Db::default()), config);
    for i in 0..10 {
        c.set(session(&format!("t{i}"), 1)).await.unwrap();
    }
    assert_eq!(c.indexed_sessions(), 10);
    // cache_expiry is in whole seconds: a copy stored now is stale within 2 s.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(c.indexed_sessions(), 0);
}
