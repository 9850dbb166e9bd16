//! RedisSessionCacheStrategy against a real redis-server started by the test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use clockcache_session::{
    to_iso_string, FnLoader, LoaderError, RedisSessionCacheOptions, RedisSessionCacheStrategy,
    SessionCache, SessionCacheConfig, SessionCacheError, SessionCacheStrategy, DEFAULT_NAMESPACE,
};
use common::{anonymous, init_tracing, session, RedisServer};
use redis::Commands;
use time::OffsetDateTime;

fn strategy(server: &RedisServer) -> RedisSessionCacheStrategy {
    RedisSessionCacheStrategy::new(&server.url()).unwrap()
}

#[tokio::test]
async fn set_get_delete_with_vendure_keys_json_and_ttl() {
    init_tracing();
    let Some(server) = RedisServer::start("set_get_delete_with_vendure_keys_json_and_ttl") else {
        return;
    };
    let store = strategy(&server);
    store.init().await.unwrap();
    let s = Arc::new(session("tok-1", 7));
    store.set(s.clone()).await.unwrap();
    assert_eq!(store.get("tok-1").await, Some(s.clone()));

    let mut raw = server.conn();
    let key = format!("{DEFAULT_NAMESPACE}:tok-1");
    let json: String = raw.get(&key).unwrap();
    assert_eq!(json, s.to_json().unwrap());
    // The Redis TTL runs to the copy's cache_expiry (300 s, in whole seconds), not to the
    // session's `expires` (an hour).
    let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut raw).unwrap();
    assert!(pttl > 250_000 && pttl <= 300_000, "PTTL {pttl}");

    store.delete("tok-1").await.unwrap();
    assert_eq!(store.get("tok-1").await, None);
    let exists: bool = raw.exists(&key).unwrap();
    assert!(!exists);
    // Deleting an absent token is fine.
    store.delete("tok-1").await.unwrap();
}

/// A key lives until the session's `cache_expiry` or `expires`, whichever is first; a session
/// past either is not kept.
#[tokio::test]
async fn the_key_ttl_is_the_smaller_of_cache_expiry_and_expires() {
    let Some(server) = RedisServer::start("the_key_ttl_is_the_smaller_of_cache_expiry_and_expires")
    else {
        return;
    };
    let store = strategy(&server);
    let mut raw = server.conn();
    let pttl = |raw: &mut redis::Connection, token: &str| -> i64 {
        redis::cmd("PTTL")
            .arg(format!("{DEFAULT_NAMESPACE}:{token}"))
            .query(raw)
            .unwrap()
    };
    // An anonymous session expiring in a year, cache-fresh for 300 s.
    store
        .set(Arc::new(anonymous("anon", 365 * 24 * 3600)))
        .await
        .unwrap();
    let t = pttl(&mut raw, "anon");
    assert!(t > 250_000 && t <= 300_000, "PTTL {t}");
    // `expires` before `cache_expiry`: the session's end bounds the key.
    store.set(Arc::new(anonymous("short", 60))).await.unwrap();
    let t = pttl(&mut raw, "short");
    assert!(t > 50_000 && t <= 60_000, "PTTL {t}");
    // Past `cache_expiry`: not written, and an older copy is removed.
    let mut stale = anonymous("short", 3600);
    stale.cache_expiry -= 3600.0;
    store.set(Arc::new(stale)).await.unwrap();
    assert_eq!(pttl(&mut raw, "short"), -2, "the key is gone");
    assert_eq!(store.get("short").await, None);

    // A load's conditional write (set_if_mark) is bounded the same way: by the cache TTL.
    let loader = FnLoader(|token: String| async move {
        Ok::<_, LoaderError>(Some(anonymous(&token, 365 * 24 * 3600)))
    });
    let cache = SessionCache::with_config(
        Arc::new(strategy(&server)),
        Arc::new(loader),
        SessionCacheConfig {
            cache_ttl: Duration::from_secs(120),
            budget: Duration::from_secs(5),
        },
    );
    cache.get("loaded").await.unwrap().unwrap();
    let t = pttl(&mut raw, "loaded");
    assert!(t > 100_000 && t <= 120_000, "PTTL {t}");
}

#[tokio::test]
async fn reads_what_vendure_wrote() {
    let Some(server) = RedisServer::start("reads_what_vendure_wrote") else {
        return;
    };
    // The fixture as Vendure stores it, with `expires` moved into the future.
    let fixture = include_str!("fixtures/vendure-authenticated.json");
    let expires = to_iso_string(OffsetDateTime::now_utc() + Duration::from_secs(600));
    let json = fixture.replace("2026-12-22T10:16:13.000Z", &expires);
    let token = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    let mut raw = server.conn();
    let _: () = raw
        .set_ex(format!("vendure-session-cache:{token}"), &json, 600)
        .unwrap();
    let store = strategy(&server);
    let s = store.get(token).await.expect("Vendure's value decodes");
    assert_eq!(
        s.user.as_ref().unwrap().identifier,
        "hayden.zieme12@hotmail.com"
    );
    assert_eq!(s.to_json().unwrap(), json);
}

#[tokio::test]
async fn malformed_values_are_logged_misses() {
    init_tracing();
    let Some(server) = RedisServer::start("malformed_values_are_logged_misses") else {
        return;
    };
    let store = strategy(&server);
    let mut raw = server.conn();
    let _: () = raw.set("vendure-session-cache:bad", "{not json").unwrap();
    let _: () = raw
        .set("vendure-session-cache:bin", &[0xffu8, 0x00, 0xfe][..])
        .unwrap();
    // Valid JSON of another token under this key.
    let other = session("someone-else", 1).to_json().unwrap();
    let _: () = raw.set("vendure-session-cache:swapped", other).unwrap();
    // A hash where a string is expected: Redis answers WRONGTYPE.
    let _: () = raw.hset("vendure-session-cache:hash", "f", "v").unwrap();
    for token in ["bad", "bin", "swapped", "hash"] {
        assert_eq!(store.get(token).await, None, "{token}");
    }
    // The strategy still works afterwards, and the bad values were not touched.
    let s = Arc::new(session("good", 2));
    store.set(s.clone()).await.unwrap();
    assert_eq!(store.get("good").await, Some(s));
    let bad: String = raw.get("vendure-session-cache:bad").unwrap();
    assert_eq!(bad, "{not json");
}

#[tokio::test]
async fn sessions_past_expires_are_not_served_or_stored() {
    let Some(server) = RedisServer::start("sessions_past_expires_are_not_served_or_stored") else {
        return;
    };
    let store = strategy(&server);
    // Setting an expired session removes any older copy instead of storing it.
    store.set(Arc::new(anonymous("old", 3600))).await.unwrap();
    store.set(Arc::new(anonymous("old", -5))).await.unwrap();
    assert_eq!(store.get("old").await, None);
    let mut raw = server.conn();
    let exists: bool = raw.exists("vendure-session-cache:old").unwrap();
    assert!(!exists);
    // A value whose `expires` has passed but whose key has no TTL (written by someone else).
    let stale = anonymous("stale", -60).to_json().unwrap();
    let _: () = raw.set("vendure-session-cache:stale", stale).unwrap();
    assert_eq!(store.get("stale").await, None);
}

#[tokio::test]
async fn clear_removes_only_the_namespace_in_batches() {
    let Some(server) = RedisServer::start("clear_removes_only_the_namespace_in_batches") else {
        return;
    };
    let mut opts = RedisSessionCacheOptions::new(server.url()).namespace("app*[1]");
    opts.scan_batch = 64;
    let store = RedisSessionCacheStrategy::with_options(opts).unwrap();
    for i in 0..1500 {
        store
            .set(Arc::new(anonymous(&format!("t{i}"), 600)))
            .await
            .unwrap();
    }
    let mut raw = server.conn();
    // Keys a glob-unescaped namespace would match, and unrelated keys.
    let _: () = raw.set("app1:x", "keep").unwrap();
    let _: () = raw.set("appX[1]:x", "keep").unwrap();
    let _: () = raw.set("app*[1]x", "keep").unwrap();
    let _: () = raw.set("vendure-session-cache:x", "keep").unwrap();
    store.clear().await.unwrap();
    // Left: the four unrelated keys, and the write marks of the 1500 sets (outside the
    // namespace's prefix; they expire on their own).
    let mut left: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    left.retain(|k| !k.starts_with("app*[1]-write-mark:t"));
    left.sort();
    assert_eq!(
        left,
        ["app*[1]x", "app1:x", "appX[1]:x", "vendure-session-cache:x"]
    );
    assert_eq!(store.get("t1").await, None);
}

#[tokio::test]
async fn huge_and_odd_tokens() {
    init_tracing();
    let Some(server) = RedisServer::start("huge_and_odd_tokens") else {
        return;
    };
    let store = strategy(&server);
    store
        .set(Arc::new(anonymous("bystander", 600)))
        .await
        .unwrap();

    // A 1 MiB token: a clear error, nothing written.
    let huge = "h".repeat(1 << 20);
    let mut s = anonymous("x", 600);
    s.token = huge.clone();
    let err = store.set(Arc::new(s)).await.unwrap_err();
    assert!(matches!(err, SessionCacheError::InvalidToken(_)), "{err}");
    assert!(err.to_string().contains("1048576 bytes"));
    assert_eq!(store.get(&huge).await, None);
    assert!(store.delete(&huge).await.is_err());
    for bad in ["", "nul\0byte", "crlf\r\nSET injected 1", "\u{1b}[31m"] {
        assert!(store.delete(bad).await.is_err(), "{bad:?}");
        assert_eq!(store.get(bad).await, None);
    }

    // Odd but valid tokens: glob characters, separators, Unicode. Each is its own key.
    let odd = [
        "*",
        "?",
        "[a-z]",
        "a:b",
        "tok*",
        "ünïcödé✓",
        "sp ace",
        "\\",
        "%00",
    ];
    for t in odd {
        store.set(Arc::new(anonymous(t, 600))).await.unwrap();
    }
    for t in odd {
        assert_eq!(
            store.get(t).await.map(|s| s.token.clone()).as_deref(),
            Some(t)
        );
    }
    // Deleting "*" deletes that one key, not everything.
    store.delete("*").await.unwrap();
    assert_eq!(store.get("*").await, None);
    assert!(store.get("tok*").await.is_some());
    assert!(store.get("bystander").await.is_some());
    let mut raw = server.conn();
    let sessions: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("vendure-session-cache:*")
        .query(&mut raw)
        .unwrap();
    assert_eq!(sessions.len(), odd.len()); // the bystander plus the odd ones, minus "*"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_load_and_restarted() {
    init_tracing();
    let Some(mut server) = RedisServer::start("redis_stopped_mid_load_and_restarted") else {
        return;
    };
    let store = Arc::new(
        RedisSessionCacheStrategy::with_options(
            RedisSessionCacheOptions::new(server.url()).op_timeout(Duration::from_millis(200)),
        )
        .unwrap(),
    );
    store.init().await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (store, stop) = (store.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let token = format!("w{w}-{}", i % 50);
                let s = Arc::new(session(&token, w));
                match store.set(s.clone()).await {
                    Ok(()) => ok += 1,
                    Err(_) => failed += 1,
                }
                // A get is a hit, or a miss while Redis is down; never a wrong session.
                if let Some(got) = store.get(&token).await {
                    assert_eq!(got.token, token);
                }
                i += 1;
                tokio::task::yield_now().await;
            }
            (ok, failed)
        }));
    }
    // Let the load run, then pull Redis out from under it.
    wait_until(|| async { store.get("w0-0").await.is_some() }).await;
    server.stop();
    // While Redis is down every call fails cleanly: an error for set, a miss for get.
    assert!(store.set(Arc::new(session("down", 1))).await.is_err());
    assert_eq!(store.get("w0-0").await, None);
    server.restart();
    // Recovery: the same strategy works again once the server is back (it is empty now).
    wait_until(|| async { store.set(Arc::new(session("after", 1))).await.is_ok() }).await;
    assert!(store.get("after").await.is_some());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut failures = 0;
    for w in workers {
        let (ok, failed) = w.await.expect("a worker panicked");
        assert!(ok > 0);
        failures += failed;
    }
    assert!(failures > 0, "the load never saw Redis down");
}

/// Polls `f` until it is true (a readiness wait, bounded so that a broken build fails).
async fn wait_until<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..3000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached after 3000 polls");
}

#[test]
fn bad_urls_are_config_errors() {
    for url in ["http://localhost", "not a url", "redis://:70000"] {
        assert!(
            matches!(
                RedisSessionCacheStrategy::new(url),
                Err(SessionCacheError::Config(_))
            ),
            "{url}"
        );
    }
    let with_password = RedisSessionCacheStrategy::new("redis://:s3cret@127.0.0.1:6390/2");
    assert!(with_password.is_ok());
    let tls = RedisSessionCacheStrategy::new("rediss://127.0.0.1:6390");
    assert_eq!(tls.is_ok(), cfg!(feature = "tls"));
}

#[tokio::test]
async fn password_protected_server() {
    let Some(server) = RedisServer::start("password_protected_server") else {
        return;
    };
    let mut raw = server.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("p@ss w/rd")
        .query(&mut raw)
        .unwrap();
    let port = server.url().rsplit(':').next().unwrap().to_owned();
    let wrong = RedisSessionCacheStrategy::new(&format!("redis://:nope@127.0.0.1:{port}")).unwrap();
    assert!(wrong.init().await.is_err());
    assert_eq!(wrong.get("x").await, None);
    let right =
        RedisSessionCacheStrategy::new(&format!("redis://:p%40ss%20w%2Frd@127.0.0.1:{port}"))
            .unwrap();
    right.init().await.unwrap();
    right.set(Arc::new(session("pw", 1))).await.unwrap();
    assert!(right.get("pw").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cache_serves_from_the_loader_while_redis_is_down() {
    init_tracing();
    let Some(mut server) =
        RedisServer::start("session_cache_serves_from_the_loader_while_redis_is_down")
    else {
        return;
    };
    let store = Arc::new(
        RedisSessionCacheStrategy::with_options(
            RedisSessionCacheOptions::new(server.url()).op_timeout(Duration::from_millis(200)),
        )
        .unwrap(),
    );
    let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = loads.clone();
    let loader = FnLoader(move |token: String| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { Ok::<_, LoaderError>(Some(session(&token, 1))) }
    });
    // A budget above the strategy's own timeout, so that a slow CI machine cannot turn a set
    // into a background write that races the next get (budgets are tested in service.rs).
    let config = SessionCacheConfig {
        budget: Duration::from_secs(2),
        ..SessionCacheConfig::default()
    };
    let cache = SessionCache::with_config(store.clone(), Arc::new(loader), config);
    let loads = move || loads.load(std::sync::atomic::Ordering::SeqCst);
    assert!(cache.get("t").await.unwrap().is_some());
    assert_eq!(loads(), 1);
    assert!(cache.get("t").await.unwrap().is_some());
    assert_eq!(loads(), 1, "the second get is a Redis hit");
    server.stop();
    // Redis down: the cache misses and the loader answers; no error reaches the caller.
    assert_eq!(cache.get("t").await.unwrap().unwrap().token, "t");
    assert_eq!(loads(), 2);
    server.restart();
    wait_until(|| async { store.set(Arc::new(session("probe", 1))).await.is_ok() }).await;
    // (The set of "t" issued while Redis was down may complete after the restart: writes are
    // never cancelled. A fresh token shows the cache path working again.)
    let before = loads();
    assert!(cache.get("u").await.unwrap().is_some());
    assert!(cache.get("u").await.unwrap().is_some());
    assert_eq!(
        loads(),
        before + 1,
        "cached in Redis again after the restart"
    );
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn rediss_with_a_private_root_certificate() {
    use clockcache_session::{TieredOptions, TieredSessionCacheStrategy};
    init_tracing();
    let Some((server, pem)) = RedisServer::start_tls("rediss_with_a_private_root_certificate")
    else {
        return;
    };
    assert!(server.url().starts_with("rediss://"));
    // The system trust store does not know the self-signed certificate: a logged error and a
    // miss, no panic.
    let untrusted = RedisSessionCacheStrategy::with_options(
        RedisSessionCacheOptions::new(server.url()).connect_timeout(Duration::from_millis(500)),
    )
    .unwrap();
    assert!(untrusted.init().await.is_err());
    assert_eq!(untrusted.get("t").await, None);

    let opts = RedisSessionCacheOptions::new(server.url()).tls_root_cert(pem.clone());
    let store = RedisSessionCacheStrategy::with_options(opts.clone()).unwrap();
    store.init().await.unwrap();
    let s = Arc::new(session("over-tls", 1));
    store.set(s.clone()).await.unwrap();
    assert_eq!(store.get("over-tls").await, Some(s.clone()));

    // The tiered strategy tracks invalidations over TLS too.
    let mut topts = TieredOptions::new(server.url());
    topts.redis = opts;
    let tiered = TieredSessionCacheStrategy::with_options(topts).unwrap();
    tiered.init().await.unwrap();
    assert_eq!(tiered.get("over-tls").await, Some(s));
    store.delete("over-tls").await.unwrap();
    tiered.sync_invalidations().await.unwrap();
    assert_eq!(tiered.get("over-tls").await, None);
}

/// Connections the server has open now (`CLIENT LIST`, one line each).
fn clients(raw: &mut redis::Connection) -> usize {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(raw).unwrap();
    list.lines().count()
}

/// Vendure calls `destroy` at shutdown (its plugin `quit()`s the client): the connection
/// closes, and the strategy does not open a new one afterwards.
#[tokio::test]
async fn destroy_closes_the_connection() {
    let Some(server) = RedisServer::start("destroy_closes_the_connection") else {
        return;
    };
    let s = strategy(&server);
    s.init().await.unwrap();
    s.set(Arc::new(session("t", 1))).await.unwrap();
    let mut raw = server.conn();
    assert_eq!(
        clients(&mut raw),
        2,
        "the strategy's connection and this one"
    );
    s.destroy().await.unwrap();
    let mut polls = 0;
    while clients(&mut raw) > 1 {
        polls += 1;
        assert!(
            polls < 500,
            "the strategy's connection is still open after destroy"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = s.set(Arc::new(session("t", 2))).await.unwrap_err();
    assert!(err.to_string().contains("destroyed"), "{err}");
    assert_eq!(s.get("t").await, None);
    assert!(s.delete("t").await.is_err());
    assert!(s.init().await.is_err());
    assert_eq!(clients(&mut raw), 1, "nothing reconnected");
    // Destroying twice is harmless; the session written before is still in Redis.
    s.destroy().await.unwrap();
    let kept: Option<String> = raw.get("vendure-session-cache:t").unwrap();
    assert!(kept.is_some());
}

/// A logout on one instance while another loads the session: the load does not put the
/// logged-out session back into Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_another_instance_during_a_load_is_not_undone() {
    let Some(server) =
        RedisServer::start("a_logout_on_another_instance_during_a_load_is_not_undone")
    else {
        return;
    };
    common::logout_elsewhere_during_a_load(
        &server,
        Arc::new(strategy(&server)),
        Arc::new(strategy(&server)),
    )
    .await;
}

/// With nothing listening from the start, 10 gets (each a miss) and 10 sets (each an error)
/// finish within 10 connect timeouts in all: a bound, not a measurement.
#[tokio::test]
async fn calls_while_redis_is_down_at_start_fail_fast() {
    let opts = RedisSessionCacheOptions::new(format!("redis://127.0.0.1:{}", common::dead_port()));
    let connect_timeout = opts.connect_timeout;
    let store = RedisSessionCacheStrategy::with_options(opts).unwrap();
    common::calls_fail_fast(&store, connect_timeout).await;
}
