//! An axum service whose tower-sessions live in a clockcache-session strategy.
//!
//! ```text
//! cargo run -p clockcache-session --example axum_sessions --features tower-sessions
//! REDIS_URL=redis://127.0.0.1:6379 cargo run ... -- --serve   # tiered, several instances
//! ```
//!
//! Without `--serve` it starts the server on a free loopback port, sends itself three requests
//! with the session cookie, prints what happened and exits (so CI can run it). With `--serve` it
//! listens on `$ADDR` (default 127.0.0.1:3000) until Ctrl-C. With `REDIS_URL` set it uses the
//! tiered strategy (near cache + Redis); otherwise the in-memory one.

use std::sync::Arc;

use axum::{routing::get, Router};
use clockcache_session::tower::SessionStoreAdapter;
use clockcache_session::{
    InMemoryOptions, InMemorySessionCacheStrategy, SessionCacheStrategy, TieredSessionCacheStrategy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_sessions::{Expiry, Session, SessionManagerLayer};

async fn visit(session: Session) -> String {
    let n: u64 = session.get("visits").await.ok().flatten().unwrap_or(0) + 1;
    if let Err(e) = session.insert("visits", n).await {
        return format!("could not save the session: {e}\n");
    }
    format!("visit number {n} in this session\n")
}

async fn logout(session: Session) -> &'static str {
    match session.flush().await {
        Ok(()) => "session deleted\n",
        Err(_) => "could not delete the session\n",
    }
}

/// One HTTP/1.1 request over a fresh connection; returns (status line, Set-Cookie value, body).
async fn request(
    addr: std::net::SocketAddr,
    path: &str,
    cookie: Option<&str>,
) -> std::io::Result<(String, Option<String>, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    let set_cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    Ok((status, set_cookie, body.to_owned()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let strategy: Arc<dyn SessionCacheStrategy> = match std::env::var("REDIS_URL") {
        Ok(url) => Arc::new(TieredSessionCacheStrategy::new(&url)?),
        Err(_) => Arc::new(InMemorySessionCacheStrategy::with_options(
            InMemoryOptions::default().max(100_000),
        )),
    };
    strategy.init().await?;
    let layer = SessionManagerLayer::new(SessionStoreAdapter::new(strategy.clone()))
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(1)));
    let app = Router::new()
        .route("/", get(visit))
        .route("/logout", get(logout))
        .layer(layer);

    let serve = std::env::args().any(|a| a == "--serve");
    let addr = if serve {
        std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into())
    } else {
        "127.0.0.1:0".into()
    };
    let listener = TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    if serve {
        println!("listening on http://{local}");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        strategy.destroy().await?;
        return Ok(());
    }

    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let (status, cookie, body) = request(local, "/", None).await?;
    print!("{status}: {body}");
    let cookie = cookie.ok_or("the first response set no session cookie")?;
    let (status, _, body) = request(local, "/", Some(&cookie)).await?;
    print!("{status}: {body}");
    if !body.contains("visit number 2") {
        return Err(format!("the session did not persist: {body:?}").into());
    }
    let (status, _, body) = request(local, "/logout", Some(&cookie)).await?;
    print!("{status}: {body}");
    let (status, _, body) = request(local, "/", Some(&cookie)).await?;
    print!("{status}: {body}");
    if !body.contains("visit number 1") {
        return Err(format!("the session survived logout: {body:?}").into());
    }
    server.abort();
    strategy.destroy().await?;
    println!("ok");
    Ok(())
}
