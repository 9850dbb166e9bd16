//! Vendure's session flow as an axum service: sessions in a database (SQLite by default, or
//! PostgreSQL), cached through a `SessionCache`, resolved per request by the
//! `clockcache_session::axum::Session` extractor.
//!
//! ```text
//! cargo run -p clockcache-session --example vendure_service --features sqlx-sqlite,axum
//! ```
//!
//! starts on `sqlite:vendure_service.db` (created and seeded on first start) with the
//! in-memory cache, listening on 127.0.0.1:3000. Settings, from the environment (or the
//! flags `--database-url`, `--cache`, `--redis-url`, `--bind`):
//!
//! * `DATABASE_URL`: `sqlite:PATH`, or `postgres://...` (build with
//!   `--features sqlx-sqlite,sqlx-postgres,axum`);
//! * `SESSION_CACHE`: `memory` (default), `redis`, `tiered` or `none`;
//! * `REDIS_URL`: default `redis://127.0.0.1:6379`;
//! * `BIND`: default `127.0.0.1:3000`.
//!
//! Two instances over one PostgreSQL and one Redis:
//!
//! ```text
//! export DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres SESSION_CACHE=tiered
//! cargo run -p clockcache-session --example vendure_service --features sqlx-sqlite,sqlx-postgres,axum -- --bind 127.0.0.1:3001 &
//! cargo run -p clockcache-session --example vendure_service --features sqlx-sqlite,sqlx-postgres,axum -- --bind 127.0.0.1:3002 &
//! T=$(curl -s -XPOST 127.0.0.1:3001/login -H 'content-type: application/json' \
//!       -d '{"username":"superadmin","password":"superadmin"}' | sed 's/.*"token":"\([0-9a-f]*\)".*/\1/')
//! curl -i 127.0.0.1:3002/admin/products -H "Authorization: Bearer $T"   # 200
//! curl -i -XPOST 127.0.0.1:3001/logout -H "Authorization: Bearer $T"    # 204
//! curl -i 127.0.0.1:3002/admin/products -H "Authorization: Bearer $T"   # 401
//! ```
//!
//! Routes: `POST /login` (`{"username","password"}`; demo users `superadmin`/`superadmin` and
//! `customer@example.com`/`customer`), `POST /logout`, `GET /me`, `GET /admin/products` (needs
//! `ReadCatalog`: 403 for the customer), `POST /cart/items` (a guest gets an anonymous session
//! and an active order), `GET /cart`.

mod app;

use app::CacheKind;

fn setting(args: &[String], flag: &str, env: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("vendure_service: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let known = ["--database-url", "--cache", "--redis-url", "--bind"];
    let mut i = 0;
    while i < args.len() {
        if !known.contains(&args[i].as_str()) || i + 1 >= args.len() {
            return Err(format!(
                "unexpected argument {:?}; flags: --database-url URL, --cache none|memory|redis|tiered, --redis-url URL, --bind ADDR",
                args[i]
            )
            .into());
        }
        i += 2;
    }
    let database_url = setting(
        &args,
        "--database-url",
        "DATABASE_URL",
        "sqlite:vendure_service.db",
    );
    let cache = CacheKind::parse(&setting(&args, "--cache", "SESSION_CACHE", "memory"))?;
    let redis_url = setting(&args, "--redis-url", "REDIS_URL", "redis://127.0.0.1:6379");
    let bind = setting(&args, "--bind", "BIND", "127.0.0.1:3000");

    let state = app::start(&database_url, cache, &redis_url).await?;
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        database = ?state.service.store().backend(),
        cache = ?cache,
        "vendure_service listening"
    );
    axum::serve(listener, app::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
