//! A load test of the `vendure_service` example: its router on a loopback port, driven by N
//! concurrent HTTP/1.1 keep-alive clients over a Zipf mix of sessions, for each session cache
//! strategy (none, in-memory, Redis, tiered), on SQLite and, when `DATABASE_URL` names one, on
//! PostgreSQL.
//!
//! ```text
//! cargo run --release -p clockcache-session --example vendure_load \
//!     --features sqlx-sqlite,sqlx-postgres,axum -- --clients 32 --sessions 10000 --seconds 5
//! ```
//!
//! Each run: a fresh database (a SQLite file in the temp directory; a database created on the
//! `DATABASE_URL` server and dropped after), seeded as the example seeds it, plus `--sessions`
//! authenticated sessions of the seeded administrator written straight to the database; the
//! app on 127.0.0.1 with the strategy; `--clients` tasks, each on its own keep-alive
//! connection, sending `GET /admin/products` (the extractor, the session lookup and a
//! permission check) with the bearer token of a session drawn from a Zipf distribution
//! (exponent `--zipf`, 1.0 by default) over the sessions. First (unless `--prewarm false`)
//! every session is requested once, so the caches start warm; then `--warmup` seconds
//! unrecorded, then `--seconds` recorded. Prints one Markdown row per run: requests per second, latency
//! percentiles (client-side, per request) and database statements per request (counted by the
//! loader). Redis and tiered use `REDIS_URL`, or a `redis-server` this program starts on a free
//! loopback port (and stops), or are skipped with a note when there is none. Clients and server
//! share the process and its Tokio runtime. Every loop is bounded by time; it stops by itself.
//! It exits non-zero when any recorded response was not 200 (CI smoke-runs it for that).

#[path = "vendure_service/app.rs"]
mod app;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use app::{AppState, CacheKind};
use clockcache_session::db::{generate_session_token, NewSession, NATIVE_AUTH_STRATEGY};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::Zipf;
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Params {
    clients: usize,
    sessions: usize,
    seconds: f64,
    warmup: f64,
    zipf: f64,
    prewarm: bool,
    strategies: Vec<CacheKind>,
    /// Where to write the chart of the runs (SVG), if anywhere.
    svg: Option<std::path::PathBuf>,
}

fn usage() -> String {
    "flags: --clients N (32) --sessions N (10000) --seconds S (5) --warmup S (1) --zipf E (1.0) \
     --prewarm true|false (true) --strategies none,memory,redis,tiered --svg PATH (none)"
        .to_owned()
}

fn parse_args() -> Result<Params, BoxError> {
    let mut p = Params {
        clients: 32,
        sessions: 10_000,
        seconds: 5.0,
        warmup: 1.0,
        zipf: 1.0,
        prewarm: true,
        strategies: vec![
            CacheKind::None,
            CacheKind::Memory,
            CacheKind::Redis,
            CacheKind::Tiered,
        ],
        svg: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args
            .get(i + 1)
            .ok_or_else(|| format!("{} needs a value; {}", args[i], usage()))?;
        let bad = |what: &str| format!("{}: not {what}: {value:?}", args[i]);
        match args[i].as_str() {
            "--clients" => p.clients = value.parse().map_err(|_| bad("a count"))?,
            "--sessions" => p.sessions = value.parse().map_err(|_| bad("a count"))?,
            "--seconds" => p.seconds = value.parse().map_err(|_| bad("a number"))?,
            "--warmup" => p.warmup = value.parse().map_err(|_| bad("a number"))?,
            "--zipf" => p.zipf = value.parse().map_err(|_| bad("a number"))?,
            "--prewarm" => p.prewarm = value.parse().map_err(|_| bad("true or false"))?,
            "--svg" => p.svg = Some(value.into()),
            "--strategies" => {
                p.strategies = value
                    .split(',')
                    .map(CacheKind::parse)
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown flag {other:?}; {}", usage()).into()),
        }
        i += 2;
    }
    if p.clients == 0 || p.sessions == 0 {
        return Err("--clients and --sessions must be at least 1".into());
    }
    if !(p.seconds > 0.0 && p.seconds <= 600.0 && p.warmup >= 0.0 && p.warmup <= 60.0) {
        return Err("--seconds must be in (0, 600] and --warmup in [0, 60]".into());
    }
    if !(p.zipf > 0.0 && p.zipf.is_finite()) {
        return Err("--zipf must be a positive number".into());
    }
    Ok(p)
}

/// One keep-alive HTTP/1.1 connection.
struct Client {
    stream: BufReader<TcpStream>,
    line: String,
    body: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream: BufReader::new(stream),
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// Sends a GET with the bearer token; returns the status.
    async fn get(&mut self, path: &str, token: &str) -> std::io::Result<u16> {
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: load\r\nAuthorization: Bearer {token}\r\n\r\n");
        self.stream.get_mut().write_all(req.as_bytes()).await?;
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
        self.line.clear();
        self.stream.read_line(&mut self.line).await?;
        let status: u16 = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut length = None;
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                return Err(bad("connection closed in the headers"));
            }
            let l = self.line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.ok_or_else(|| bad("no content-length"))?;
        self.body.resize(length, 0);
        self.stream.read_exact(&mut self.body).await?;
        Ok(status)
    }
}

/// A `redis-server` child on a free loopback port, killed on drop.
struct RedisChild(Child);

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<(RedisChild, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut child = RedisChild(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        // A child that exited could not start (its port taken meanwhile, say).
        if Instant::now() > deadline || !matches!(child.0.try_wait(), Ok(None)) {
            eprintln!("note: the redis-server started on port {port} did not come up");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !matches!(child.0.try_wait(), Ok(None)) {
        eprintln!("note: port {port} answers, but the redis-server started there exited");
        return None;
    }
    Some((child, format!("redis://127.0.0.1:{port}")))
}

/// A fresh database: (label, URL, how to drop it).
enum Fresh {
    File(std::path::PathBuf),
    #[cfg(feature = "sqlx-postgres")]
    Postgres {
        admin: String,
        name: String,
    },
}

fn fresh_sqlite(n: usize) -> (String, Fresh) {
    let path = std::env::temp_dir().join(format!("vendure_load_{}_{n}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    (format!("sqlite:{}", path.display()), Fresh::File(path))
}

#[cfg(feature = "sqlx-postgres")]
async fn fresh_postgres(admin: &str, n: usize) -> Result<(String, Fresh), BoxError> {
    use sqlx::Connection;
    let name = format!("vendure_load_{}_{n}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    let base = admin.split('?').next().unwrap_or(admin);
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    Ok((
        format!("{base}/{name}"),
        Fresh::Postgres {
            admin: admin.to_owned(),
            name,
        },
    ))
}

impl Fresh {
    async fn drop_db(self) {
        match self {
            Fresh::File(p) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
                }
            }
            #[cfg(feature = "sqlx-postgres")]
            Fresh::Postgres { admin, name } => {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            }
        }
    }
}

struct Row {
    requests: u64,
    errors: u64,
    rps: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    queries_per_request: f64,
}

async fn seed_sessions(state: &AppState, n: usize) -> Result<Vec<String>, BoxError> {
    let store = state.service.store();
    let admin = store
        .native_credentials(app::ADMIN_USER.0)
        .await?
        .ok_or("the seeded administrator is missing")?;
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let token = generate_session_token()?;
        store
            .insert_session(&NewSession {
                token: token.clone(),
                expires: OffsetDateTime::now_utc() + time::Duration::days(300),
                authentication_strategy: Some(NATIVE_AUTH_STRATEGY.into()),
                user_id: Some(admin.user_id),
                active_order_id: None,
                active_channel_id: None,
            })
            .await?;
        tokens.push(token);
    }
    Ok(tokens)
}

async fn run_one(url: &str, kind: CacheKind, redis_url: &str, p: &Params) -> Result<Row, BoxError> {
    let state = app::start(url, kind, redis_url).await?;
    let tokens = Arc::new(seed_sessions(&state, p.sessions).await?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = app::router(state.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    if p.prewarm {
        // Every session requested once, by `clients` connections: the caches start warm.
        let mut warm = Vec::new();
        for c in 0..p.clients {
            let tokens = tokens.clone();
            let clients = p.clients;
            warm.push(tokio::spawn(async move {
                let mut client = Client::connect(addr).await?;
                for token in tokens.iter().skip(c).step_by(clients) {
                    client.get("/admin/products", token).await?;
                }
                Ok::<_, BoxError>(())
            }));
        }
        for w in warm {
            w.await??;
        }
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(p.warmup);
    let end = measure_from + Duration::from_secs_f64(p.seconds);
    let queries_at = {
        let store = state.service.store().clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            store.queries()
        })
    };
    let mut tasks = Vec::new();
    for c in 0..p.clients {
        let tokens = tokens.clone();
        let zipf = Zipf::new(tokens.len() as f64, p.zipf)?;
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(0x5eed ^ (c as u64).wrapping_mul(0x9E37_79B9));
            let mut hist = Histogram::<u64>::new(3).expect("3 significant figures");
            let mut errors = 0u64;
            let mut client = Client::connect(addr).await?;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let rank: f64 = rng.sample(zipf);
                let token = &tokens[(rank as usize).saturating_sub(1).min(tokens.len() - 1)];
                let sent = Instant::now();
                let status = client.get("/admin/products", token).await?;
                let took = sent.elapsed();
                if sent >= measure_from {
                    hist.record(took.as_micros().max(1) as u64)?;
                    if status != 200 {
                        errors += 1;
                    }
                }
            }
            Ok::<_, BoxError>((hist, errors))
        }));
    }
    let mut hist = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await??;
        hist.add(&h)?;
        errors += e;
    }
    let queries_end = state.service.store().queries();
    let queries_start = queries_at.await?;
    server.abort();
    state.service.store().close().await;
    let requests = hist.len();
    Ok(Row {
        requests,
        errors,
        rps: requests as f64 / p.seconds,
        p50: hist.value_at_quantile(0.5),
        p99: hist.value_at_quantile(0.99),
        p999: hist.value_at_quantile(0.999),
        queries_per_request: (queries_end - queries_start) as f64 / requests.max(1) as f64,
    })
}

/// A horizontal bar chart of requests per second, one bar a run, each
/// labelled with its database statements per request.
fn chart(rows: &[(String, f64, f64)], p: &Params) -> String {
    let (left, bar_w, row_h, top) = (330.0, 420.0, 26.0, 58.0);
    let width = left + bar_w + 150.0;
    let height = top + row_h * rows.len() as f64 + 30.0;
    let max = rows.iter().map(|r| r.1).fold(1.0, f64::max);
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"16\" font-weight=\"bold\">Session requests per second, \
         by database and session cache</text>\n\
         <text x=\"10\" y=\"42\" fill=\"#555\">{} clients, {} sessions (Zipf {}), {} s recorded; \
         the label after each bar: database statements per request</text>\n",
        p.clients, p.sessions, p.zipf, p.seconds
    );
    for (i, (name, rps, qpr)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let w = (rps / max * bar_w).max(1.0);
        let fill = if name.ends_with("(database every request)") {
            "#c0504d"
        } else {
            "#4f81bd"
        };
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{left}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" fill=\"{fill}\"/>\n\
             <text x=\"{}\" y=\"{}\">{:.0} /s, {:.3} stmt/req</text>\n",
            left - 8.0,
            y + 17.0,
            esc(name),
            y + 4.0,
            row_h - 8.0,
            left + w + 6.0,
            y + 17.0,
            rps,
            qpr
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

fn label(kind: CacheKind) -> &'static str {
    match kind {
        CacheKind::None => "none (database every request)",
        CacheKind::Memory => "in-memory",
        CacheKind::Redis => "Redis",
        CacheKind::Tiered => "tiered",
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("vendure_load: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    let p = parse_args()?;
    let mut redis_child = None;
    let redis_url = match std::env::var("REDIS_URL") {
        Ok(u) => Some(u),
        Err(_) => match start_redis() {
            Some((child, url)) => {
                redis_child = Some(child);
                Some(url)
            }
            None => None,
        },
    };
    let mut databases = vec!["sqlite"];
    let pg_admin = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
    if pg_admin.is_some() {
        if cfg!(feature = "sqlx-postgres") {
            databases.push("postgres");
        } else {
            eprintln!("note: DATABASE_URL is set but this build lacks sqlx-postgres; SQLite only");
        }
    } else {
        eprintln!("note: DATABASE_URL names no PostgreSQL server; SQLite only");
    }
    println!(
        "{} clients, {} sessions, Zipf {}, prewarm {}, {} s recorded after {} s warm-up, GET /admin/products",
        p.clients, p.sessions, p.zipf, p.prewarm, p.seconds, p.warmup
    );
    println!();
    println!("| database | strategy | requests | non-200 | requests/s | p50 µs | p99 µs | p99.9 µs | DB statements / request |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut n = 0;
    let mut failed = 0;
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    for db in &databases {
        for &kind in &p.strategies {
            n += 1;
            if matches!(kind, CacheKind::Redis | CacheKind::Tiered) && redis_url.is_none() {
                eprintln!(
                    "note: no REDIS_URL and no redis-server binary: {} skipped",
                    label(kind)
                );
                continue;
            }
            let redis = redis_url.clone().unwrap_or_default();
            if !redis.is_empty() {
                // Each run starts with an empty cache.
                let client = redis::Client::open(redis.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await?;
            }
            let (url, fresh) = match *db {
                "sqlite" => fresh_sqlite(n),
                #[cfg(feature = "sqlx-postgres")]
                _ => fresh_postgres(pg_admin.as_deref().unwrap_or_default(), n).await?,
                #[cfg(not(feature = "sqlx-postgres"))]
                _ => continue,
            };
            let result = run_one(&url, kind, &redis, &p).await;
            fresh.drop_db().await;
            let r = result?;
            failed += r.errors;
            rows.push((
                format!("{db}, {}", label(kind)),
                r.rps,
                r.queries_per_request,
            ));
            println!(
                "| {db} | {} | {} | {} | {:.0} | {} | {} | {} | {:.3} |",
                label(kind),
                r.requests,
                r.errors,
                r.rps,
                r.p50,
                r.p99,
                r.p999,
                r.queries_per_request
            );
        }
    }
    drop(redis_child);
    if let Some(path) = &p.svg {
        std::fs::write(path, chart(&rows, &p))?;
        println!();
        println!("chart: {}", path.display());
    }
    if failed > 0 {
        return Err(format!("{failed} responses were not 200").into());
    }
    Ok(())
}
