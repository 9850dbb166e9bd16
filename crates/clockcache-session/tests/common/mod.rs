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
            if std::env::var("CLOCKCACHE_REQUIRE_REDIS").as_deref() == Ok("1") {
                panic!("CLOCKCACHE_REQUIRE_REDIS=1 but no redis-server binary is on PATH");
            }
            // Not eprintln!: the test harness captures that; this goes straight to stderr.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!! SKIPPED {test}: no redis-server binary on PATH (apt-get install -y \
                 redis-server). Set CLOCKCACHE_REQUIRE_REDIS=1 to make this a failure. !!!\n"
            );
            return None;
        }
        let mut server = RedisServer {
            child: None,
            port: free_port(),
        };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
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

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
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
    }
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
