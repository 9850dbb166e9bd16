//! Coherence of the tiered session cache across two instances, and the cost of its near hit.
//!
//! Two [`TieredSessionCacheStrategy`] instances, A and B, share one `redis-server` that this
//! module starts on a loopback port. In each trial B holds a session in its near cache, A
//! deletes or overwrites it, and a task on B calls `get` in a loop until B no longer serves the
//! old copy. The figure is the time from the start of A's call to that moment: what a user of
//! B sees after a logout or a change made through A. The near-hit latency is B's `get` of a
//! session it holds, timed one call at a time.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clockcache_session::{
    CachedSession, Id, RedisSessionCacheStrategy, SessionCacheStrategy, TieredSessionCacheStrategy,
};
use hdrhistogram::Histogram;
use serde::Serialize;
use time::OffsetDateTime;

/// What one run measures.
#[derive(Clone, Copy, Debug)]
pub struct SessionsParams {
    /// Trials of each kind (delete, overwrite).
    pub trials: usize,
    /// Near hits timed one by one.
    pub hits: usize,
}

/// Percentiles of one distribution, in nanoseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Spread {
    /// How many values were recorded.
    pub count: u64,
    /// The median.
    pub p50_ns: u64,
    /// The 99th percentile.
    pub p99_ns: u64,
    /// The largest value.
    pub max_ns: u64,
}

impl Spread {
    fn of(h: &Histogram<u64>) -> Spread {
        Spread {
            count: h.len(),
            p50_ns: h.value_at_quantile(0.5),
            p99_ns: h.value_at_quantile(0.99),
            max_ns: h.max(),
        }
    }
}

/// The coherence of one kind of write made on A, as seen from B.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Coherence {
    /// From the start of A's call until B stops serving the old session.
    pub window: Spread,
    /// Trials in which B still served the old session after A's call had returned.
    pub served_after_ack: u64,
    /// The longest time B served the old session after A's call returned, in nanoseconds.
    pub max_after_ack_ns: u64,
}

/// Everything a run measures.
#[derive(Clone, Debug, Serialize)]
pub struct SessionsReport {
    /// A deletes the session (a logout).
    pub delete: Coherence,
    /// A writes a newer version of the session.
    pub overwrite: Coherence,
    /// B's `get` of a session in its near cache.
    pub near_hit: Spread,
    /// The Redis strategy's `get` (one round trip), for scale.
    pub redis_get: Spread,
    /// The redis-server version the run used.
    pub redis_version: String,
}

/// A `redis-server` child on a loopback port, with no persistence; killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Result<Server, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server ({e}); install it, e.g. apt-get install redis-server"))?;
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server did not listen on port {port} within 10 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_version() -> String {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is a valid histogram")
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn session(token: &str, version: i64) -> Arc<CachedSession> {
    let mut s = CachedSession::new(
        Id::Int(version),
        token,
        OffsetDateTime::now_utc() + Duration::from_secs(3600),
        Duration::from_secs(300),
    );
    s.authentication_strategy = Some("native".to_owned());
    Arc::new(s)
}

/// Which write A makes in a trial.
#[derive(Clone, Copy)]
enum Write {
    Delete,
    Overwrite,
}

/// Collects the trials of one kind of write.
struct Trials {
    window: Histogram<u64>,
    served_after_ack: u64,
    max_after_ack: Duration,
}

impl Trials {
    fn new() -> Trials {
        Trials {
            window: histogram(),
            served_after_ack: 0,
            max_after_ack: Duration::ZERO,
        }
    }

    fn finish(&self) -> Coherence {
        Coherence {
            window: Spread::of(&self.window),
            served_after_ack: self.served_after_ack,
            max_after_ack_ns: ns(self.max_after_ack),
        }
    }
}

/// One trial: B holds version 1 of `token` near, A deletes or overwrites it, B's watcher
/// records when it stops serving version 1.
async fn trial(
    a: &Arc<TieredSessionCacheStrategy>,
    b: &Arc<TieredSessionCacheStrategy>,
    token: &str,
    write: Write,
    into: &mut Trials,
) -> Result<(), String> {
    a.set(session(token, 1))
        .await
        .map_err(|e| format!("set on A: {e}"))?;
    // B reads the session; its near cache keeps the copy (a fill can be refused when an
    // invalidation races with it, so read until the copy is there).
    let deadline = Instant::now() + Duration::from_secs(2);
    while !b.near_contains(token) {
        if b.get(token).await.is_none() || Instant::now() > deadline {
            return Err(format!("B did not cache {token}"));
        }
    }
    let acked = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let watcher = {
        let b = b.clone();
        let token = token.to_owned();
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut polls = 0u32;
            let mut served_late = false;
            loop {
                let old = matches!(b.get(&token).await, Some(s) if s.id == Id::Int(1));
                if !old {
                    return (start.elapsed(), served_late);
                }
                // Read after the get: a get that saw the old copy and finished after A's call
                // returned served it after the acknowledgement.
                served_late |= acked.load(Ordering::Acquire);
                polls += 1;
                if polls.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let acked_at = match write {
        Write::Delete => a.delete(token).await,
        Write::Overwrite => a.set(session(token, 2)).await,
    }
    .map(|()| start.elapsed())
    .map_err(|e| format!("write on A: {e}"))?;
    acked.store(true, Ordering::Release);
    let (seen, after_ack) = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .map_err(|_| format!("B served the old {token} for 10 s"))?
        .map_err(|e| format!("watcher: {e}"))?;
    into.window
        .record(ns(seen).max(1))
        .map_err(|e| format!("histogram: {e}"))?;
    if after_ack {
        into.served_after_ack += 1;
        into.max_after_ack = into.max_after_ack.max(seen.saturating_sub(acked_at));
    }
    // Leave nothing for the next trial.
    a.delete(token)
        .await
        .map_err(|e| format!("delete on A: {e}"))?;
    Ok(())
}

async fn measure(url: &str, params: SessionsParams) -> Result<SessionsReport, String> {
    let a = Arc::new(TieredSessionCacheStrategy::new(url).map_err(|e| e.to_string())?);
    let b = Arc::new(TieredSessionCacheStrategy::new(url).map_err(|e| e.to_string())?);
    a.init().await.map_err(|e| format!("init A: {e}"))?;
    b.init().await.map_err(|e| format!("init B: {e}"))?;

    let mut deletes = Trials::new();
    let mut overwrites = Trials::new();
    for i in 0..params.trials {
        // Interleaved, so that both kinds see the same conditions.
        trial(
            &a,
            &b,
            &format!("coherence-d{i:06}"),
            Write::Delete,
            &mut deletes,
        )
        .await?;
        trial(
            &a,
            &b,
            &format!("coherence-o{i:06}"),
            Write::Overwrite,
            &mut overwrites,
        )
        .await?;
    }

    let token = "coherence-near-hit";
    a.set(session(token, 1)).await.map_err(|e| e.to_string())?;
    let mut near = histogram();
    b.get(token).await;
    for _ in 0..params.hits {
        let t = Instant::now();
        let got = b.get(token).await;
        let d = t.elapsed();
        if got.is_none() {
            return Err("B lost its near copy during the hit loop".to_owned());
        }
        near.record(ns(d).max(1)).map_err(|e| e.to_string())?;
    }

    let redis = RedisSessionCacheStrategy::new(url).map_err(|e| e.to_string())?;
    redis
        .init()
        .await
        .map_err(|e| format!("init Redis strategy: {e}"))?;
    let mut remote = histogram();
    for _ in 0..params.hits.min(10_000) {
        let t = Instant::now();
        let got = redis.get(token).await;
        let d = t.elapsed();
        if got.is_none() {
            return Err("the Redis strategy did not find the session".to_owned());
        }
        remote.record(ns(d).max(1)).map_err(|e| e.to_string())?;
    }
    for s in [&a, &b] {
        s.destroy().await.map_err(|e| e.to_string())?;
    }
    redis.destroy().await.map_err(|e| e.to_string())?;

    Ok(SessionsReport {
        delete: deletes.finish(),
        overwrite: overwrites.finish(),
        near_hit: Spread::of(&near),
        redis_get: Spread::of(&remote),
        redis_version: redis_version(),
    })
}

/// Starts a redis-server, runs the trials and the hit loops, and stops the server.
pub fn run(params: SessionsParams) -> Result<SessionsReport, String> {
    let server = Server::start()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let report = rt.block_on(measure(&server.url(), params));
    drop(rt);
    drop(server);
    report
}

fn us(ns: u64) -> String {
    format!("{:.1} us", ns as f64 / 1000.0)
}

fn ms(ns: u64) -> String {
    format!("{:.2} ms", ns as f64 / 1e6)
}

/// The report as Markdown: the coherence windows first, then the latencies.
pub fn render(r: &SessionsReport, params: SessionsParams) -> String {
    let mut out = String::new();
    out.push_str("# Tiered session cache: coherence across two instances\n\n");
    out.push_str(&format!(
        "Time from the start of a write on instance A until instance B no longer serves the \
         old session ({} trials each, redis-server {}, loopback):\n\n",
        params.trials, r.redis_version
    ));
    out.push_str("| write on A | p50 | p99 | max | served by B after A's call returned |\n");
    out.push_str("|---|---|---|---|---|\n");
    for (name, c) in [("delete", &r.delete), ("overwrite", &r.overwrite)] {
        let after = if c.served_after_ack == 0 {
            "never".to_owned()
        } else {
            format!(
                "{} trials, at most {}",
                c.served_after_ack,
                ms(c.max_after_ack_ns)
            )
        };
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {after} |\n",
            ms(c.window.p50_ns),
            ms(c.window.p99_ns),
            ms(c.window.max_ns)
        ));
    }
    out.push_str(&format!(
        "\nLatency of `get` ({} near hits, {} Redis gets):\n\n",
        r.near_hit.count, r.redis_get.count
    ));
    out.push_str("| get | p50 | p99 | max |\n|---|---|---|---|\n");
    for (name, s) in [
        ("tiered, near hit", &r.near_hit),
        ("Redis strategy (one round trip)", &r.redis_get),
    ] {
        out.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            us(s.p50_ns),
            us(s.p99_ns),
            us(s.max_ns)
        ));
    }
    out
}
