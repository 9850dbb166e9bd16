//! Interop with a real Node peer: Vendure's Redis session cache strategy as the Vendure docs
//! give it (`tests/node/peer.js`, on ioredis), against the Rust strategies on one redis-server.
//!
//! Needs `node` and `npm` (the peer's package is installed with `npm ci` into `tests/node`,
//! once per run). Without them every test here says so loudly and passes, unless
//! `CLOCKCACHE_REQUIRE_NODE=1`, which makes that a failure.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clockcache_session::{
    to_iso_string, CachedSession, Id, RedisSessionCacheStrategy, SessionCacheStrategy,
    TieredSessionCacheStrategy,
};
use common::{session, RedisServer};
use redis::Commands;
use serde_json::{json, Value};
use time::OffsetDateTime;

fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

fn have(binary: &str) -> bool {
    Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the peer's package once per test process (the tests of this file run in parallel
/// threads of one process; the first one installs, the others wait for its outcome). `Err`
/// says why the peer cannot run.
fn install() -> Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            if !have("node") || !have("npm") {
                return Err("no node or npm binary on PATH (apt-get install -y nodejs npm)".into());
            }
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(peer_dir())
                .output()
                .map_err(|e| format!("cannot run npm ci: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "npm ci failed in tests/node: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        })
        .clone()
}

/// The Redis server and the peer for a test, or `None` after a loud message when either cannot
/// run. With `CLOCKCACHE_REQUIRE_NODE=1` a missing or failing Node install fails the test.
fn setup(test: &str) -> Option<(RedisServer, Peer)> {
    if let Err(why) = install() {
        if std::env::var("CLOCKCACHE_REQUIRE_NODE").as_deref() == Ok("1") {
            panic!("CLOCKCACHE_REQUIRE_NODE=1 but {test} cannot run: {why}");
        }
        // Not eprintln!: the test harness captures that; this goes straight to stderr.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!! SKIPPED {test}: {why}. Set CLOCKCACHE_REQUIRE_NODE=1 to make this a failure. !!!\n"
        );
        return None;
    }
    let server = RedisServer::start(test)?;
    let port = server
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the test server's URL ends with its port");
    Some((server, Peer { port }))
}

/// The Node peer, pointed at one redis-server.
struct Peer {
    port: u16,
}

impl Peer {
    /// Runs one peer command and returns the JSON it printed.
    fn run(&self, command: &str, arg: &str) -> Value {
        let out = Command::new("node")
            .arg("peer.js")
            .arg(command)
            .arg(self.port.to_string())
            .arg(arg)
            .current_dir(peer_dir())
            .output()
            .expect("cannot run node");
        assert!(
            out.status.success(),
            "node peer.js {command} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the peer prints JSON")
    }

    /// Vendure stores a session built from `input`; returns the exact string it stored.
    fn set(&self, input: &Value) -> String {
        let out = self.run("set", &input.to_string());
        assert_eq!(out["ttl"], 86400, "the docs' strategy stores with EX 86400");
        out["written"].as_str().expect("written").to_owned()
    }

    /// What Vendure's `get` returns (`JSON.parse` of the value), or `Value::Null`.
    fn get(&self, token: &str) -> Value {
        let out = self.run("get", token);
        if !out["session"].is_null() {
            // `new Date(expires).toISOString()` gives back the string: a valid JS date.
            assert_eq!(out["expiresIso"], out["session"]["expires"]);
        }
        out["session"].clone()
    }

    /// Vendure's `delete`; returns how many keys it removed.
    fn del(&self, token: &str) -> u64 {
        self.run("del", token)["deleted"].as_u64().expect("deleted")
    }
}

/// The input of the peer's `set`: an authenticated session in Vendure's shape.
fn vendure_session(token: &str, order: &str, expires: OffsetDateTime) -> Value {
    json!({
        "id": 41,
        "token": token,
        "expires": to_iso_string(expires),
        "activeOrderId": order,
        "activeChannelId": 1,
        "authenticationStrategy": "native",
        "user": {
            "id": 7,
            "identifier": "alice@example.com",
            "verified": true,
            "channelPermissions": [
                {"id": 1, "token": "default-channel", "code": "__default_channel__",
                 "permissions": ["Authenticated", "UpdateCustomer"]}
            ]
        }
    })
}

fn in_an_hour() -> OffsetDateTime {
    // A JS Date holds milliseconds; so does what the peer writes.
    clockcache_session::truncate_to_millis(OffsetDateTime::now_utc() + Duration::from_secs(3600))
}

#[tokio::test]
async fn rust_reads_what_vendure_wrote_field_for_field() {
    let Some((server, peer)) = setup("rust_reads_what_vendure_wrote_field_for_field") else {
        return;
    };
    let expires = in_an_hour();
    let written = peer.set(&vendure_session("from-node", "order-9", expires));
    let strategy = RedisSessionCacheStrategy::new(&server.url()).unwrap();
    let s = strategy
        .get("from-node")
        .await
        .expect("Rust reads Vendure's session");

    let raw: Value = serde_json::from_str(&written).unwrap();
    // cacheExpiry is Date.now() / 1000 + 300: a fraction, kept exactly as Node wrote it.
    let node_expiry = raw["cacheExpiry"].as_f64().unwrap();
    assert_eq!(s.cache_expiry, node_expiry);
    let now = OffsetDateTime::now_utc().unix_timestamp() as f64;
    assert!((now + 200.0..now + 400.0).contains(&s.cache_expiry));
    assert_eq!(s.id, Id::Int(41));
    assert_eq!(s.token, "from-node");
    // `expires` was a Date; JSON.stringify wrote its ISO string.
    assert_eq!(raw["expires"], to_iso_string(expires));
    assert_eq!(s.expires, expires);
    assert_eq!(s.active_order_id, Some(Id::Str("order-9".into())));
    assert_eq!(s.active_channel_id, Some(Id::Int(1)));
    assert_eq!(s.authentication_strategy.as_deref(), Some("native"));
    let user = s.user.as_ref().expect("the user");
    assert_eq!(user.id, Id::Int(7));
    assert_eq!(user.identifier, "alice@example.com");
    assert!(user.verified);
    assert_eq!(user.channel_permissions.len(), 1);
    assert_eq!(user.channel_permissions[0].code, "__default_channel__");
    assert_eq!(
        user.channel_permissions[0].permissions,
        ["Authenticated", "UpdateCustomer"]
    );
    assert_eq!(s.data, None);
    // Re-encoded, it is byte for byte what Node wrote (key order, number and date forms).
    assert_eq!(s.to_json().unwrap(), written);
}

#[tokio::test]
async fn vendure_reads_what_rust_wrote() {
    let Some((server, peer)) = setup("vendure_reads_what_rust_wrote") else {
        return;
    };
    let strategy = RedisSessionCacheStrategy::new(&server.url()).unwrap();
    let mut s = session("from-rust", 3);
    s.active_order_id = Some(Id::Str("order-1".into()));
    // A fractional cacheExpiry, as a session first written by Node and then by Rust has.
    s.cache_expiry += 0.125;
    strategy.set(Arc::new(s.clone())).await.unwrap();

    let parsed = peer.get("from-rust");
    let ours: Value = serde_json::from_str(&s.to_json().unwrap()).unwrap();
    assert_eq!(parsed, ours, "JSON.parse gives the object Rust encoded");
    assert_eq!(parsed["expires"], to_iso_string(s.expires));
    assert_eq!(parsed["cacheExpiry"].as_f64(), Some(s.cache_expiry));
    assert_eq!(parsed["user"]["identifier"], "user3@example.com");
    // And what Vendure would put back is read by Rust as the same session.
    let back = CachedSession::from_json(parsed.to_string().as_bytes()).unwrap();
    assert_eq!(back, s);

    // Vendure's delete removes what Rust wrote.
    assert_eq!(peer.del("from-rust"), 1);
    assert_eq!(strategy.get("from-rust").await, None);
    let mut raw = server.conn();
    let left: Option<String> = raw.get("vendure-session-cache:from-rust").unwrap();
    assert_eq!(left, None);
}

#[tokio::test]
async fn a_tiered_near_copy_follows_vendures_set_and_delete() {
    let Some((server, peer)) = setup("a_tiered_near_copy_follows_vendures_set_and_delete") else {
        return;
    };
    let tiered = TieredSessionCacheStrategy::new(&server.url()).unwrap();
    tiered.init().await.expect("tracking armed");

    let v1 = Arc::new(session("shared", 1));
    tiered.set(v1.clone()).await.unwrap();
    assert!(tiered.near_contains("shared"));
    assert_eq!(tiered.get("shared").await, Some(v1.clone()));

    // Vendure writes a new version of the session: the near copy must go.
    let invalidations = tiered.invalidations_received();
    let written = peer.set(&vendure_session("shared", "order-2", in_an_hour()));
    // The peer's SET has completed: after the barrier its invalidation has been applied.
    tiered.sync_invalidations().await.expect("barrier");
    assert!(
        !tiered.near_contains("shared"),
        "Node's SET dropped the near copy"
    );
    let got = tiered
        .get("shared")
        .await
        .expect("the new version, read from Redis");
    assert_eq!(got.to_json().unwrap(), written);
    assert_eq!(got.active_order_id, Some(Id::Str("order-2".into())));
    assert!(tiered.invalidations_received() > invalidations);
    assert!(tiered.near_contains("shared"), "the new version is cached");

    // Vendure deletes it (a logout): the tiered strategy stops serving it.
    let invalidations = tiered.invalidations_received();
    assert_eq!(peer.del("shared"), 1);
    tiered.sync_invalidations().await.expect("barrier");
    assert!(
        !tiered.near_contains("shared"),
        "Node's DEL dropped the near copy"
    );
    assert!(tiered.invalidations_received() > invalidations);
    assert_eq!(tiered.get("shared").await, None);
}
