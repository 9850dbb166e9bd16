//! Test support: a real `redis-server` child process per test, and session builders.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clockcache_session::{CachedSession, CachedSessionUser, Id};
use time::OffsetDateTime;

/// A `redis-server` started by the test (loopback only, no persistence) and killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// For a TLS server: the directory holding its self-signed certificate and key.
    tls_dir: Option<std::path::PathBuf>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn have_redis_server() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl RedisServer {
    /// Starts a server, or returns `None` after a loud message when no `redis-server` binary is
    /// installed. With `CLOCKCACHE_REQUIRE_REDIS=1` a missing binary fails the test instead.
    pub fn start(test: &str) -> Option<RedisServer> {
        if !have_redis_server() {
            skip(
                test,
                "no redis-server binary on PATH (apt-get install -y redis-server)",
            );
            return None;
        }
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            tls_dir: None,
        };
        server.spawn();
        Some(server)
    }

    /// Starts a TLS-only server with a fresh self-signed certificate for 127.0.0.1 (made with
    /// the `openssl` binary). Returns the server and the certificate (PEM) to trust.
    pub fn start_tls(test: &str) -> Option<(RedisServer, Vec<u8>)> {
        if !have_redis_server() {
            skip(
                test,
                "no redis-server binary on PATH (apt-get install -y redis-server)",
            );
            return None;
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "clockcache-session-tls-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        if !make_certificates(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            skip(test, "cannot make certificates with the openssl binary");
            return None;
        }
        let pem = std::fs::read(dir.join("ca.pem")).expect("CA certificate");
        let mut server = RedisServer {
            child: None,
            port,
            tls_dir: Some(dir),
        };
        server.spawn();
        Some((server, pem))
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        match &self.tls_dir {
            None => {
                cmd.args(["--port", &self.port.to_string()]);
            }
            Some(dir) => {
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(dir.join("cert.pem"))
                    .arg("--tls-key-file")
                    .arg(dir.join("key.pem"))
                    .arg("--tls-ca-cert-file")
                    .arg(dir.join("ca.pem"))
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server");
        self.child = Some(child);
        // Readiness poll (not a timing assertion): wait for the port to accept connections.
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start listening on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls_dir.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills the server (by its pid) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// A plain synchronous connection for inspecting or corrupting the server's data.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("cannot connect to the test redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.tls_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A test CA (`ca.pem`) and a server certificate it signed for 127.0.0.1 (`cert.pem`,
/// `key.pem`), made with the `openssl` binary. WebPKI rejects a self-signed CA certificate used
/// as the server's own, hence the two steps.
fn make_certificates(dir: &std::path::Path) -> bool {
    let ext = dir.join("ext.cnf");
    if std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .is_err()
    {
        return false;
    }
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=clockcache-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "cert.pem",
            "-extfile",
            "ext.cnf",
        ],
    ];
    steps.iter().all(|args| {
        Command::new("openssl")
            .args(*args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Says loudly that a test is skipped, or fails it under `CLOCKCACHE_REQUIRE_REDIS=1`.
fn skip(test: &str, why: &str) {
    if std::env::var("CLOCKCACHE_REQUIRE_REDIS").as_deref() == Ok("1") {
        panic!("CLOCKCACHE_REQUIRE_REDIS=1 but {test} cannot run: {why}");
    }
    // Not eprintln!: the test harness captures that; this goes straight to stderr.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!! SKIPPED {test}: {why}. Set CLOCKCACHE_REQUIRE_REDIS=1 to make this a failure. !!!\n"
    );
}

/// An authenticated session of `user_id`, expiring in an hour, cache-fresh for 300 s.
pub fn session(token: &str, user_id: i64) -> CachedSession {
    let mut s = CachedSession::new(
        Id::Int(user_id * 100),
        token,
        OffsetDateTime::now_utc() + Duration::from_secs(3600),
        Duration::from_secs(300),
    );
    s.active_channel_id = Some(Id::Int(1));
    s.authentication_strategy = Some("native".into());
    s.user = Some(CachedSessionUser {
        id: Id::Int(user_id),
        identifier: format!("user{user_id}@example.com"),
        verified: true,
        channel_permissions: vec![],
    });
    s
}

/// An anonymous session expiring `secs` seconds from now.
pub fn anonymous(token: &str, secs: i64) -> CachedSession {
    let expires = OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    CachedSession::new(
        Id::Str(format!("s-{token}")),
        token,
        expires,
        Duration::from_secs(300),
    )
}

/// Installs a tracing subscriber once so that logged errors show up with `--nocapture`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Two instances, each a `SessionCache` over its own strategy (`a`, `b`) on the same Redis, and
/// one database. A's load reads the row, then waits; meanwhile the user logs out on B (the row
/// is deleted, then the cached session). A's load then answers its caller, but must not put the
/// logged-out session into Redis, where every instance would serve it.
pub async fn logout_elsewhere_during_a_load(
    server: &RedisServer,
    a: std::sync::Arc<dyn clockcache_session::SessionCacheStrategy>,
    b: std::sync::Arc<dyn clockcache_session::SessionCacheStrategy>,
) {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use clockcache_session::{FnLoader, LoaderError, SessionCache, SessionCacheConfig};
    use redis::Commands;
    use tokio::sync::Semaphore;

    let db: Arc<Mutex<HashMap<String, CachedSession>>> = Arc::default();
    db.lock().unwrap().insert("t".into(), session("t", 1));
    db.lock().unwrap().insert("u".into(), session("u", 2));
    let gate = Arc::new(Semaphore::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let loader_a = {
        let (db, gate, reads) = (db.clone(), gate.clone(), reads.clone());
        FnLoader(move |token: String| {
            let (db, gate, reads) = (db.clone(), gate.clone(), reads.clone());
            async move {
                let row = db.lock().unwrap().get(&token).cloned();
                reads.fetch_add(1, Ordering::SeqCst);
                if token == "t" {
                    let _permit = gate.acquire().await?;
                }
                Ok::<_, LoaderError>(row)
            }
        })
    };
    let loader_b = {
        let db = db.clone();
        FnLoader(move |token: String| {
            let row = db.lock().unwrap().get(&token).cloned();
            async move { Ok::<_, LoaderError>(row) }
        })
    };
    // Budgets far above a loopback round trip: writes finish within them.
    let config = SessionCacheConfig {
        budget: Duration::from_secs(2),
        ..SessionCacheConfig::default()
    };
    let on_a = SessionCache::with_config(a, Arc::new(loader_a), config.clone());
    let on_b = SessionCache::with_config(b, Arc::new(loader_b), config);
    let mut raw = server.conn();
    let cached = |raw: &mut redis::Connection, token: &str| -> bool {
        let v: Option<String> = raw.get(format!("vendure-session-cache:{token}")).unwrap();
        v.is_some()
    };

    // Without a logout, A's load is cached for everyone.
    assert!(on_a.get("u").await.unwrap().is_some());
    assert!(cached(&mut raw, "u"), "a plain load is cached");

    let load = {
        let on_a = on_a.clone();
        tokio::spawn(async move { on_a.get("t").await })
    };
    let mut polls = 0;
    while reads.load(Ordering::SeqCst) < 2 {
        polls += 1;
        assert!(polls < 2000, "A's load never read the database");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The logout on B: database first, then the cache.
    db.lock().unwrap().remove("t");
    on_b.delete("t").await.unwrap();
    // The delete bumped the token's write mark, which expires an hour after its last bump.
    let mark: Option<u64> = raw.get("vendure-session-cache-write-mark:t").unwrap();
    assert!(mark.is_some_and(|m| m > 0), "{mark:?}");
    let pttl: i64 = raw.pttl("vendure-session-cache-write-mark:t").unwrap();
    assert!((1..=3_600_000).contains(&pttl), "{pttl}");
    gate.add_permits(1);
    let answered = load.await.unwrap().unwrap();
    assert_eq!(
        answered.map(|s| s.token.clone()).as_deref(),
        Some("t"),
        "A answers the caller who asked before the logout"
    );
    assert!(
        !cached(&mut raw, "t"),
        "the logged-out session was put back into Redis by A's load"
    );
    assert_eq!(on_b.get("t").await.unwrap(), None);
    assert_eq!(on_a.get("t").await.unwrap(), None);
}

/// A port nothing listens on (bound, then released).
pub fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// With nothing listening, 10 gets (each a miss) and 10 sets (each an error) on `store` finish
/// within 10 `connect_timeout`s in all: a bound, not a measurement.
pub async fn calls_fail_fast(
    store: &dyn clockcache_session::SessionCacheStrategy,
    connect_timeout: Duration,
) {
    let n = 10u32;
    let start = Instant::now();
    for i in 0..n {
        assert_eq!(store.get(&format!("t{i}")).await, None);
        assert!(store
            .set(std::sync::Arc::new(session("t", 1)))
            .await
            .is_err());
    }
    let took = start.elapsed();
    assert!(
        took < connect_timeout * (2 * n) / 2,
        "{} calls took {took:?}",
        2 * n
    );
}
