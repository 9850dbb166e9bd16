//! Get latency of each strategy next to a raw Redis round trip.
//!
//! `cargo bench -p clockcache-session --bench session_get` (starts its own redis-server; the
//! Redis and tiered groups are skipped, loudly, when none is installed).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;

use clockcache_session::{
    FnLoader, InMemorySessionCacheStrategy, LoaderError, RedisSessionCacheStrategy, SessionCache,
    SessionCacheStrategy, TieredSessionCacheStrategy,
};
use common::{session, RedisServer};
use criterion::{criterion_group, criterion_main, Criterion};

const TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn gets(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("session_get");

    // The engine alone, for the strategy's overhead.
    let engine: clockcache::Cache<String, Arc<clockcache_session::CachedSession>> =
        clockcache::Cache::new(1000);
    engine.insert(TOKEN.to_owned(), Arc::new(session(TOKEN, 1)));
    g.bench_function("engine_string_key_hit", |b| {
        b.iter(|| black_box(engine.get(black_box(TOKEN))))
    });

    // The engine configured as the in-memory strategy configures it (CLOCK, per-entry TTL).
    let engine_ttl: clockcache::Cache<String, Arc<clockcache_session::CachedSession>> =
        clockcache::Cache::builder()
            .capacity(1000)
            .eviction_policy(clockcache::EvictionPolicy::Clock)
            .build();
    engine_ttl.insert_with_ttl(
        TOKEN.to_owned(),
        Arc::new(session(TOKEN, 1)),
        std::time::Duration::from_secs(3600),
    );
    g.bench_function("engine_clock_ttl_hit", |b| {
        b.iter(|| black_box(engine_ttl.get(black_box(TOKEN))))
    });
    g.bench_function("validate_token", |b| {
        b.iter(|| black_box(clockcache_session::validate_token(black_box(TOKEN))))
    });

    let mem = Arc::new(InMemorySessionCacheStrategy::new());
    mem.set_now(Arc::new(session(TOKEN, 1))).expect("set");
    g.bench_function("in_memory_sync_hit", |b| {
        b.iter(|| black_box(mem.get_now(black_box(TOKEN))))
    });
    g.bench_function("in_memory_trait_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(mem.get(black_box(TOKEN)).await) })
    });
    let loader = FnLoader(|_t: String| async { Ok::<_, LoaderError>(None) });
    let cache = SessionCache::new(mem.clone(), Arc::new(loader));
    g.bench_function("session_cache_in_memory_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cache.get(black_box(TOKEN)).await) })
    });

    let Some(server) = RedisServer::start("bench session_get redis groups") else {
        g.finish();
        return;
    };
    let redis = RedisSessionCacheStrategy::new(&server.url()).expect("url");
    let tiered = TieredSessionCacheStrategy::new(&server.url()).expect("url");
    rt.block_on(async {
        redis.init().await.expect("redis up");
        tiered.init().await.expect("tracking armed");
        redis.set(Arc::new(session(TOKEN, 1))).await.expect("set");
        tiered.get(TOKEN).await.expect("filled");
    });
    let client = redis::Client::open(server.url()).expect("url");
    let raw = rt
        .block_on(client.get_multiplexed_async_connection())
        .expect("connect");
    g.bench_function("redis_ping_round_trip", |b| {
        b.to_async(&rt).iter(|| {
            let mut c = raw.clone();
            async move { black_box(redis::cmd("PING").query_async::<String>(&mut c).await) }
        })
    });
    let key = format!("vendure-session-cache:{TOKEN}");
    g.bench_function("redis_raw_get_bytes", |b| {
        b.to_async(&rt).iter(|| {
            let mut c = raw.clone();
            let key = key.clone();
            async move {
                black_box(
                    redis::cmd("GET")
                        .arg(key)
                        .query_async::<Option<Vec<u8>>>(&mut c)
                        .await,
                )
            }
        })
    });
    let manager = rt
        .block_on(redis::aio::ConnectionManager::new(client.clone()))
        .expect("connect");
    g.bench_function("redis_connection_manager_get_bytes", |b| {
        b.to_async(&rt).iter(|| {
            let mut c = manager.clone();
            let key = key.clone();
            async move {
                black_box(
                    redis::cmd("GET")
                        .arg(key)
                        .query_async::<Option<Vec<u8>>>(&mut c)
                        .await,
                )
            }
        })
    });
    g.bench_function("redis_strategy_get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(redis.get(black_box(TOKEN)).await) })
    });
    g.bench_function("tiered_near_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(tiered.get(black_box(TOKEN)).await) })
    });
    g.finish();
    drop(server);
}

criterion_group!(benches, gets);
criterion_main!(benches);
