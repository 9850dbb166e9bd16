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
    port: PortLease,
    /// For a TLS server: the directory holding its self-signed certificate and key.
    tls_dir: Option<std::path::PathBuf>,
    /// Where the server writes its log (its standard output), read back when it fails to start.
    log: std::path::PathBuf,
}

/// A loopback port that no other test holds, in this process or any other, for as long as the
/// lease lives. The OS picks a free TCP port; the lease is a UDP socket bound to the same port
/// number. Redis listens on TCP only, so the lease never stands in its way, while the kernel
/// lets one socket at a time hold UDP port P: a second lease of P fails in any process, and a
/// test that dies releases its leases with its sockets.
pub struct PortLease {
    port: u16,
    _socket: std::net::UdpSocket,
}

impl PortLease {
    /// Leases a free loopback port.
    pub fn new() -> PortLease {
        for _ in 0..1000 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("no free loopback port");
            if let Some(lease) = PortLease::try_port(port) {
                return lease;
            }
        }
        panic!("no loopback port could be leased in 1000 tries");
    }

    /// Leases `port`, or `None` while someone else holds it.
    pub fn try_port(port: u16) -> Option<PortLease> {
        let socket = std::net::UdpSocket::bind(("127.0.0.1", port)).ok()?;
        Some(PortLease {
            port,
            _socket: socket,
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

fn have_redis_server() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why a `redis-server` did not come up.
#[derive(Debug)]
pub enum StartError {
    /// The child exited before it served its port: its status and the end of its log.
    Exited(String),
    /// Something else answers on the port (another process took it): the pid it reported.
    NotOurs(String),
    /// It neither exited nor listened within the deadline.
    Timeout,
}

impl RedisServer {
    /// Whether a `redis-server` binary is installed; when not, says so loudly (or fails the
    /// test under `CLOCKCACHE_REQUIRE_REDIS=1`), as `start` does.
    pub fn available(test: &str) -> bool {
        if have_redis_server() {
            return true;
        }
        skip(
            test,
            "no redis-server binary on PATH (apt-get install -y redis-server)",
        );
        false
    }

    /// Starts a server, or returns `None` after a loud message when no `redis-server` binary is
    /// installed. With `CLOCKCACHE_REQUIRE_REDIS=1` a missing binary fails the test instead.
    /// A server that exits before it listens (its port taken by a process outside the lease, a
    /// bad option) is reported with its log, and the start is tried again on a new port.
    pub fn start(test: &str) -> Option<RedisServer> {
        if !have_redis_server() {
            skip(
                test,
                "no redis-server binary on PATH (apt-get install -y redis-server)",
            );
            return None;
        }
        let mut last = None;
        for _ in 0..5 {
            match RedisServer::start_on(PortLease::new(), None) {
                Ok(server) => return Some(server),
                Err(e) => last = Some(e),
            }
        }
        panic!("redis-server did not start in 5 tries: {last:?}");
    }

    /// Starts a plain server on the leased port, once, saying why it did not come up.
    pub fn start_on(
        port: PortLease,
        tls_dir: Option<std::path::PathBuf>,
    ) -> Result<RedisServer, StartError> {
        let log = std::env::temp_dir().join(format!(
            "clockcache-test-redis-{}-{}.log",
            std::process::id(),
            port.port()
        ));
        let mut server = RedisServer {
            child: None,
            port,
            tls_dir,
            log,
        };
        server.spawn()?;
        Ok(server)
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
        let port = PortLease::new();
        let dir = std::env::temp_dir().join(format!(
            "clockcache-session-tls-{}-{}",
            std::process::id(),
            port.port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        if !make_certificates(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            skip(test, "cannot make certificates with the openssl binary");
            return None;
        }
        let pem = std::fs::read(dir.join("ca.pem")).expect("CA certificate");
        match RedisServer::start_on(port, Some(dir)) {
            Ok(server) => Some((server, pem)),
            Err(e) => panic!("the TLS redis-server did not start: {e:?}"),
        }
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port.port()
    }

    fn spawn(&mut self) -> Result<(), StartError> {
        let port = self.port.port().to_string();
        let mut cmd = Command::new("redis-server");
        match &self.tls_dir {
            None => {
                cmd.args(["--port", &port]);
            }
            Some(dir) => {
                cmd.args(["--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(dir.join("cert.pem"))
                    .arg("--tls-key-file")
                    .arg(dir.join("key.pem"))
                    .arg("--tls-ca-cert-file")
                    .arg(dir.join("ca.pem"))
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        let log = std::fs::File::create(&self.log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", self.log.display()));
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stderr(log.try_clone().expect("log handle"))
            .stdout(log)
            .spawn()
            .expect("cannot start redis-server");
        let pid = child.id();
        self.child = Some(child);
        // Readiness poll (not a timing assertion): the child must be alive and its port must
        // accept connections. A child that exits first failed to start (a port taken by a
        // process outside the lease, a bad option): say so with its log, never wait for a port
        // that someone else may be serving.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let child = self.child.as_mut().expect("spawned above");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(StartError::Exited(format!(
                    "redis-server on port {port} exited with {status}: {}",
                    self.log_tail()
                )));
            }
            if TcpStream::connect(("127.0.0.1", self.port.port())).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(StartError::Timeout);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The listener must be this child: a plain server reports its pid.
        if self.tls_dir.is_none() {
            let reported = self.server_pid();
            if reported != Some(pid) {
                // Most often our child is exiting because it could not bind: say that.
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until {
                    let child = self.child.as_mut().expect("spawned above");
                    if let Ok(Some(status)) = child.try_wait() {
                        self.child = None;
                        return Err(StartError::Exited(format!(
                            "redis-server on port {port} exited with {status}: {}",
                            self.log_tail()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                self.stop();
                return Err(StartError::NotOurs(format!(
                    "port {port} is served by pid {reported:?}, not by our redis-server {pid}"
                )));
            }
        }
        Ok(())
    }

    /// The `process_id` that whatever serves the port reports to `INFO server`, asked over a raw
    /// connection with a read timeout (a listener that is not Redis answers nothing, or garbage).
    fn server_pid(&self) -> Option<u32> {
        use std::io::Read;
        let mut stream = TcpStream::connect(("127.0.0.1", self.port.port())).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream
            .write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            .ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&reply);
            if let Some((_, rest)) = text.split_once("process_id:") {
                if let Some((pid, _)) = rest.split_once(['\r', '\n']) {
                    return pid.trim().parse().ok();
                }
            }
        }
        None
    }

    /// The last lines of the server's log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls_dir.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port.port())
    }

    /// Kills the server (by its pid) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port (empty: no persistence). The lease is kept
    /// while it is down, so no other test can start a server there meanwhile.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("redis-server did not restart: {e:?}");
        }
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
        let _ = std::fs::remove_file(&self.log);
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

/// A port nothing listens on (bound, then released), leased for the rest of the process so that
/// no test server is started there.
pub fn dead_port() -> u16 {
    static HELD: std::sync::Mutex<Vec<PortLease>> = std::sync::Mutex::new(Vec::new());
    let lease = PortLease::new();
    let port = lease.port();
    HELD.lock().unwrap().push(lease);
    port
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
