//! Sessions served while they reload: a session cache whose copies go stale
//! after `cacheExpiry` (here 300 s) reloads a session that is being used
//! from 240 s on, in the background, so no request waits on the database
//! for a session it uses often. Time is a mock clock, so the example runs
//! in a moment; the database is a map behind a 20 ms sleep that counts its
//! queries.
//!
//! Run with `cargo run -p clockcache --example session_refresh`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clockcache::{Cache, MockClock, Refresh};

#[derive(Clone, Debug, PartialEq)]
struct Session {
    user: String,
    permissions: Vec<String>,
}

#[derive(Default)]
struct Database {
    sessions: Mutex<HashMap<String, Session>>,
    queries: AtomicUsize,
}

impl Database {
    /// The multi-join query a session lookup costs.
    async fn find_session(&self, token: &str) -> Result<Session, String> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let found = self.sessions.lock().unwrap().get(token).cloned();
        found.ok_or_else(|| format!("no session {token}"))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let db = Arc::new(Database::default());
    db.sessions.lock().unwrap().insert(
        "token-1".into(),
        Session {
            user: "alice".into(),
            permissions: vec!["ReadCatalog".into()],
        },
    );
    let clock = MockClock::new();
    let reload_db = Arc::clone(&db);
    let sessions: Cache<String, Arc<Session>> = Cache::builder()
        .capacity(10_000)
        .time_to_live(Duration::from_secs(300))
        .refresh_after(
            Duration::from_secs(240),
            Refresh::future(
                move |token: String, _old: Arc<Session>| {
                    let db = Arc::clone(&reload_db);
                    async move { db.find_session(&token).await.map(Arc::new) }
                },
                |task| {
                    tokio::spawn(task);
                },
            ),
        )
        .clock(clock.clone())
        .build();

    let get = |token: &'static str| {
        let (sessions, db) = (sessions.clone(), Arc::clone(&db));
        async move {
            let start = Instant::now();
            let s = sessions
                .get_or_try_insert_async_by_ref(token, async move {
                    db.find_session(token).await.map(Arc::new)
                })
                .await
                .expect("the session exists");
            (s, start.elapsed())
        }
    };

    let (s, took) = get("token-1").await;
    println!("first request: loaded {s:?} in {took:?} (a query)");

    // The user's roles change in the database; the cached copy is 250 s
    // old, past the refresh period but not yet stale.
    db.sessions
        .lock()
        .unwrap()
        .get_mut("token-1")
        .unwrap()
        .permissions
        .push("UpdateCustomer".into());
    clock.advance(Duration::from_secs(250));
    let mut slowest = Duration::ZERO;
    for _ in 0..100 {
        let (s, took) = get("token-1").await;
        assert_eq!(s.permissions.len(), 1, "served from the cache at once");
        slowest = slowest.max(took);
    }
    println!("100 requests at 250 s: served the cached copy, slowest {slowest:?}");

    // The one reload lands in the background.
    let start = Instant::now();
    let fresh = loop {
        let (s, _) = get("token-1").await;
        if s.permissions.len() == 2 {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no reload");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    println!("after the reload: {fresh:?}");
    let queries = db.queries.load(Ordering::SeqCst);
    assert_eq!(queries, 2, "the first load and one reload");
    println!("database queries for 100+ requests: {queries}");
}
