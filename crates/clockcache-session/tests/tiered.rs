//! TieredSessionCacheStrategy: near caches kept coherent through Redis client tracking.

mod common;

use std::sync::Arc;
use std::time::Duration;

use clockcache_session::{
    SessionCacheStrategy, TieredOptions, TieredSessionCacheStrategy, DEFAULT_NAMESPACE,
};
use common::{anonymous, init_tracing, session, RedisServer};
use redis::Commands;

async fn tiered(server: &RedisServer) -> TieredSessionCacheStrategy {
    let t = TieredSessionCacheStrategy::new(&server.url()).unwrap();
    t.init().await.expect("tracking armed");
    t
}

/// Polls `f` until it is true (a readiness wait, bounded so that a broken build fails).
async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached after 3000 polls");
}

/// Waits until `t` has re-armed tracking on a connection newer than `generation`.
async fn wait_rearmed(t: &TieredSessionCacheStrategy, generation: u64) {
    wait_until(|| t.generation() > generation && t.is_connected()).await;
}

#[tokio::test]
async fn two_instances_invalidate_each_other() {
    init_tracing();
    let Some(server) = RedisServer::start("two_instances_invalidate_each_other") else {
        return;
    };
    let a = tiered(&server).await;
    let b = tiered(&server).await;

    let v1 = Arc::new(session("shared", 1));
    a.set(v1.clone()).await.unwrap();
    assert!(a.near_contains("shared"));
    // B applies the invalidation of A's write first; otherwise B's fill could race with it and
    // (correctly) be discarded.
    b.sync_invalidations().await.unwrap();
    assert_eq!(b.get("shared").await, Some(v1.clone()));
    assert!(b.near_contains("shared"), "B filled its near cache");

    // A updates: B's next read (after the invalidation barrier) sees the update.
    let mut v2 = (*v1).clone();
    v2.active_order_id = Some(99.into());
    let v2 = Arc::new(v2);
    a.set(v2.clone()).await.unwrap();
    b.sync_invalidations().await.unwrap();
    assert!(!b.near_contains("shared"));
    assert_eq!(b.get("shared").await, Some(v2.clone()));

    // NOLOOP: A's own write did not bounce back to evict A's fresh near entry.
    a.sync_invalidations().await.unwrap();
    assert!(a.near_contains("shared"));

    // B deletes (logout): A's next read misses.
    b.delete("shared").await.unwrap();
    a.sync_invalidations().await.unwrap();
    assert!(!a.near_contains("shared"));
    assert_eq!(a.get("shared").await, None);

    // clear on one instance empties the other's near cache for the namespace.
    for i in 0..20 {
        a.set(Arc::new(anonymous(&format!("c{i}"), 600)))
            .await
            .unwrap();
    }
    b.sync_invalidations().await.unwrap();
    for i in 0..20 {
        assert!(b.get(&format!("c{i}")).await.is_some());
    }
    assert_eq!(b.near_len(), 20);
    a.clear().await.unwrap();
    b.sync_invalidations().await.unwrap();
    assert_eq!(b.near_len(), 0);
    assert_eq!(b.get("c3").await, None);
    assert!(b.invalidations_received() > 0);
}

#[tokio::test]
async fn writes_by_other_clients_invalidate() {
    let Some(server) = RedisServer::start("writes_by_other_clients_invalidate") else {
        return;
    };
    let a = tiered(&server).await;
    a.set(Arc::new(session("t", 1))).await.unwrap();
    // A Vendure server (or redis-cli) rewrites the key.
    let mut updated = session("t", 1);
    updated.active_channel_id = Some("other-channel".into());
    let mut raw = server.conn();
    let _: () = raw
        .set_ex("vendure-session-cache:t", updated.to_json().unwrap(), 600)
        .unwrap();
    a.sync_invalidations().await.unwrap();
    assert_eq!(a.get("t").await.as_deref(), Some(&updated));
    // Keys outside the namespace are not tracked.
    let before = a.invalidations_received();
    let _: () = raw.set("vendure-session-cache2:t", "x").unwrap();
    a.sync_invalidations().await.unwrap();
    assert_eq!(a.invalidations_received(), before);
    // FLUSHALL invalidates everything (a null key list).
    let flushes = a.flushes();
    let _: () = redis::cmd("FLUSHALL").query(&mut raw).unwrap();
    a.sync_invalidations().await.unwrap();
    assert!(a.flushes() > flushes);
    assert_eq!(a.near_len(), 0);
    assert_eq!(a.get("t").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_invalidation_connection_flushes_and_rearms() {
    init_tracing();
    let Some(mut server) = RedisServer::start("lost_invalidation_connection_flushes_and_rearms")
    else {
        return;
    };
    let a = tiered(&server).await;
    let b = tiered(&server).await;
    a.set(Arc::new(session("k", 1))).await.unwrap();
    assert!(a.near_contains("k"));

    // The server kills every client connection: A must not keep serving from its near cache,
    // since it may have missed invalidations.
    let (ga, gb) = (a.generation(), b.generation());
    let mut raw = server.conn();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut raw)
        .unwrap();
    // Meanwhile another writer changes the session.
    let mut changed = session("k", 1);
    changed.active_order_id = Some(5.into());
    let _: () = raw
        .set_ex("vendure-session-cache:k", changed.to_json().unwrap(), 600)
        .unwrap();
    wait_rearmed(&a, ga).await;
    wait_rearmed(&b, gb).await;
    assert!(
        !a.near_contains("k"),
        "near cache flushed on the lost connection"
    );
    assert_eq!(a.get("k").await.as_deref(), Some(&changed));
    // Tracking is re-armed: B's write reaches A.
    b.delete("k").await.unwrap();
    a.sync_invalidations().await.unwrap();
    assert_eq!(a.get("k").await, None);

    // Redis itself goes away: misses (not stale hits), then recovery on restart.
    a.set(Arc::new(session("k2", 2))).await.unwrap();
    let (ga, gb) = (a.generation(), b.generation());
    server.stop();
    wait_until(|| !a.is_connected()).await;
    assert_eq!(a.near_len(), 0);
    assert_eq!(a.get("k2").await, None);
    assert!(a.set(Arc::new(session("k3", 3))).await.is_err());
    server.restart();
    wait_rearmed(&a, ga).await;
    wait_rearmed(&b, gb).await;
    let fresh = Arc::new(session("k4", 4));
    b.set(fresh.clone()).await.unwrap();
    assert_eq!(a.get("k4").await, Some(fresh));
    let mut newer = session("k4", 4);
    newer.active_order_id = Some(6.into());
    b.set(Arc::new(newer.clone())).await.unwrap();
    a.sync_invalidations().await.unwrap();
    assert_eq!(a.get("k4").await.as_deref(), Some(&newer));
}

#[tokio::test]
async fn near_entries_never_outlive_cache_expiry() {
    let Some(server) = RedisServer::start("near_entries_never_outlive_cache_expiry") else {
        return;
    };
    let a = tiered(&server).await;
    // Stale for the cache (cache_expiry passed) but the session itself is still valid: the
    // near cache must not hold it, and neither does Redis (its key lives until cache_expiry;
    // SessionCache reloads it either way).
    let mut s = session("stale", 1);
    s.cache_expiry -= 3600.0;
    a.set(Arc::new(s.clone())).await.unwrap();
    assert!(!a.near_contains("stale"));
    assert_eq!(a.get("stale").await, None);
    assert!(!a.near_contains("stale"));
    // A fresh copy's Redis key lives until its cache_expiry (300 s), not its `expires` (1 h).
    a.set(Arc::new(session("fresh", 1))).await.unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{DEFAULT_NAMESPACE}:fresh"))
        .query(&mut server.conn())
        .unwrap();
    assert!(pttl > 250_000 && pttl <= 300_000, "PTTL {pttl}");
    // Past `expires`: neither tier serves it.
    a.set(Arc::new(anonymous("gone", -1))).await.unwrap();
    assert_eq!(a.get("gone").await, None);
    // Invalid tokens are rejected before any I/O.
    assert!(a.set(Arc::new(anonymous("bad\0", 60))).await.is_err());
    assert_eq!(a.get(&"x".repeat(1 << 20)).await, None);
}

#[tokio::test]
async fn unreachable_redis_is_a_miss_not_a_hang_or_panic() {
    // Nothing listens on this port (bound then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut opts = TieredOptions::new(format!("redis://127.0.0.1:{port}"));
    opts.redis.connect_timeout = Duration::from_millis(200);
    let a = TieredSessionCacheStrategy::with_options(opts).unwrap();
    assert!(a.init().await.is_err());
    assert_eq!(a.get("t").await, None);
    assert!(a.set(Arc::new(session("t", 1))).await.is_err());
    assert!(a.delete("t").await.is_err());
    a.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_fills_never_keep_a_stale_copy() {
    let Some(server) = RedisServer::start("racing_fills_never_keep_a_stale_copy") else {
        return;
    };
    let a = Arc::new(tiered(&server).await);
    let b = Arc::new(tiered(&server).await);
    let tokens: Vec<String> = (0..8).map(|i| format!("race{i}")).collect();
    let writer = {
        let (b, tokens) = (b.clone(), tokens.clone());
        tokio::spawn(async move {
            for version in 0..150i64 {
                for t in &tokens {
                    let mut s = session(t, 1);
                    s.active_order_id = Some(version.into());
                    b.set(Arc::new(s)).await.unwrap();
                }
            }
        })
    };
    let reader = {
        let (a, tokens) = (a.clone(), tokens.clone());
        tokio::spawn(async move {
            let mut reads = 0u64;
            while reads < 20_000 {
                for t in &tokens {
                    let _ = a.get(t).await;
                    reads += 1;
                }
            }
        })
    };
    writer.await.unwrap();
    reader.await.unwrap();
    // Once the invalidations are applied, every near copy A kept is the last version.
    a.sync_invalidations().await.unwrap();
    for t in &tokens {
        let got = a.get(t).await.expect("present");
        assert_eq!(got.active_order_id, Some(149.into()), "{t}");
    }
}

/// The session with `token` as raw Redis holds it now.
fn in_redis(server: &RedisServer, token: &str) -> Option<clockcache_session::CachedSession> {
    let raw: Option<Vec<u8>> = server
        .conn()
        .get(format!("vendure-session-cache:{token}"))
        .unwrap();
    raw.map(|r| clockcache_session::CachedSession::from_json(&r).unwrap())
}

fn versioned(token: &str, version: i64) -> Arc<clockcache_session::CachedSession> {
    let mut s = session(token, 1);
    s.active_order_id = Some(version.into());
    Arc::new(s)
}

/// One instance, getters spinning on a token while it sets the token once: a getter whose GET
/// was queued ahead of the SET must not fill the older value after the set's own. More workers
/// than cores (and three getters) make the losing interleaving common enough: on 2 cores, the
/// code before the fix failed 10 runs out of 10 (1 to 58 trials of 600 stale).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_get_racing_the_instances_own_set_never_keeps_the_older_copy() {
    let Some(server) =
        RedisServer::start("a_get_racing_the_instances_own_set_never_keeps_the_older_copy")
    else {
        return;
    };
    let a = Arc::new(tiered(&server).await);
    let trials = 600;
    let mut stale = Vec::new();
    for trial in 0..trials {
        let token = format!("own{trial}");
        a.set(versioned(&token, 0)).await.unwrap();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let getters: Vec<_> = (0..3)
            .map(|_| {
                let (a, token, done) = (a.clone(), token.clone(), done.clone());
                tokio::spawn(async move {
                    while !done.load(std::sync::atomic::Ordering::Acquire) {
                        let _ = a.get(&token).await;
                        // A near hit completes without awaiting: yield, so that the spinning
                        // getters leave the workers to the connection's reader.
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        // Let the getters start spinning on near hits, then write once.
        tokio::task::yield_now().await;
        a.set(versioned(&token, 1)).await.unwrap();
        done.store(true, std::sync::atomic::Ordering::Release);
        for g in getters {
            g.await.unwrap();
        }
        let redis = in_redis(&server, &token).expect("in Redis");
        assert_eq!(redis.active_order_id, Some(1.into()));
        // NOLOOP: no invalidation comes back for A's own write, so whatever A serves now it
        // would serve until cache_expiry.
        let served = a.get(&token).await.expect("present");
        if served.active_order_id != redis.active_order_id {
            stale.push(trial);
        }
    }
    assert!(
        stale.is_empty(),
        "{} of {trials} trials kept the older copy after the instance's own set (first: {:?})",
        stale.len(),
        &stale[..stale.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sets_on_two_instances_leave_no_stale_copy() {
    let Some(server) = RedisServer::start("concurrent_sets_on_two_instances_leave_no_stale_copy")
    else {
        return;
    };
    let a = Arc::new(tiered(&server).await);
    let b = Arc::new(tiered(&server).await);
    let trials = 200;
    let mut stale = Vec::new();
    for trial in 0..trials {
        let token = format!("both{trial}");
        let sa = {
            let (a, token) = (a.clone(), token.clone());
            tokio::spawn(async move { a.set(versioned(&token, 1)).await.unwrap() })
        };
        let sb = {
            let (b, token) = (b.clone(), token.clone());
            tokio::spawn(async move { b.set(versioned(&token, 2)).await.unwrap() })
        };
        sa.await.unwrap();
        sb.await.unwrap();
        // Both writes have completed: after the barrier each instance has applied the
        // invalidation of the other's write.
        a.sync_invalidations().await.unwrap();
        b.sync_invalidations().await.unwrap();
        let redis = in_redis(&server, &token).expect("in Redis");
        for (name, t) in [("A", &a), ("B", &b)] {
            let served = t.get(&token).await.expect("present");
            if served.active_order_id != redis.active_order_id {
                stale.push((trial, name));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{} stale copies after two concurrent sets (first: {:?})",
        stale.len(),
        &stale[..stale.len().min(10)]
    );
}

/// The same over tiered strategies (the load's write goes through A's near cache too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_another_instance_during_a_load_is_not_undone() {
    let Some(server) =
        RedisServer::start("tiered_a_logout_on_another_instance_during_a_load_is_not_undone")
    else {
        return;
    };
    common::logout_elsewhere_during_a_load(
        &server,
        Arc::new(tiered(&server).await),
        Arc::new(tiered(&server).await),
    )
    .await;
}

/// With Redis down from the start, calls fail (or miss) at once instead of each waiting for a
/// connection for `connect_timeout`: a correctness bound, not a measurement.
#[tokio::test]
async fn calls_while_redis_is_down_at_start_fail_fast() {
    let opts = TieredOptions::new(format!("redis://127.0.0.1:{}", common::dead_port()));
    let connect_timeout = opts.redis.connect_timeout;
    let a = TieredSessionCacheStrategy::with_options(opts).unwrap();
    common::calls_fail_fast(&a, connect_timeout).await;
    assert!(!a.is_connected());
}

/// A health check that merely times out (Redis paused past `op_timeout`) keeps the near cache:
/// nothing was lost on a connection that still stands. A connection that is killed still
/// flushes it.
#[tokio::test]
async fn a_health_check_timeout_does_not_flush_but_a_lost_connection_does() {
    init_tracing();
    let Some(server) =
        RedisServer::start("a_health_check_timeout_does_not_flush_but_a_lost_connection_does")
    else {
        return;
    };
    let mut opts = TieredOptions::new(server.url());
    opts.redis.op_timeout = Duration::from_millis(200);
    opts.health_check_interval = Duration::from_millis(50);
    let a = TieredSessionCacheStrategy::with_options(opts).unwrap();
    a.init().await.unwrap();
    let s = Arc::new(session("k", 1));
    a.set(s.clone()).await.unwrap();
    assert!(a.near_contains("k"));
    let (flushes, generation) = (a.flushes(), a.generation());

    let mut raw = server.conn();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query(&mut raw)
        .unwrap();
    let paused = std::time::Instant::now();
    wait_until(|| a.health_check_timeouts() > 0).await;
    // While the checks go unanswered, the near copy is kept but not served: the get reads the
    // paused Redis, and misses.
    assert!(a.near_contains("k"));
    assert_eq!(a.get("k").await, None);
    // The pause ends; the connection was never lost.
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(paused.elapsed())).await;
    a.sync_invalidations().await.unwrap();
    assert_eq!(a.flushes(), flushes, "a timed-out health check flushed");
    assert_eq!(a.generation(), generation);
    assert!(a.is_connected());
    assert!(a.near_contains("k"));
    assert_eq!(a.get("k").await, Some(s));

    // Killing the connection may lose invalidations: that flushes.
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(&mut raw)
        .unwrap();
    wait_rearmed(&a, generation).await;
    assert!(a.flushes() > flushes);
    assert!(!a.near_contains("k"));
}
