//! Test support: the databases a database test runs on. Always a fresh SQLite file; also a
//! fresh PostgreSQL database when `DATABASE_URL` names a server (created on it, dropped after).
//! Without `DATABASE_URL` the PostgreSQL half is skipped with a printed note, unless
//! `CLOCKCACHE_REQUIRE_POSTGRES=1`, which makes it fail.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// One database for one test.
pub struct TestDb {
    /// `sqlite` or `postgres`.
    pub label: &'static str,
    /// The URL to connect to.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    #[cfg(feature = "sqlx-postgres")]
    Database {
        admin_url: String,
        name: String,
    },
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn unique(test: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let test: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    format!("cc_{test}_{}_{n}", std::process::id())
}

/// A fresh SQLite file in the temp directory.
pub fn sqlite(test: &str) -> TestDb {
    let path = std::env::temp_dir().join(format!("{}.sqlite", unique(test)));
    let _ = std::fs::remove_file(&path);
    TestDb {
        label: "sqlite",
        url: format!("sqlite:{}", path.display()),
        cleanup: Cleanup::File(path),
    }
}

/// Whether PostgreSQL tests must run (fail rather than skip).
fn postgres_required() -> bool {
    std::env::var("CLOCKCACHE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// A fresh PostgreSQL database on the `DATABASE_URL` server, or `None` (with a note) when
/// `DATABASE_URL` is unset or not a PostgreSQL URL.
pub async fn postgres(test: &str) -> Option<TestDb> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
    let Some(admin_url) = url else {
        assert!(
            !postgres_required(),
            "{test}: CLOCKCACHE_REQUIRE_POSTGRES=1 but DATABASE_URL names no PostgreSQL server"
        );
        eprintln!("SKIPPED (postgres half) {test}: DATABASE_URL is not set to a postgres:// URL");
        return None;
    };
    create_postgres(test, admin_url).await
}

#[cfg(feature = "sqlx-postgres")]
async fn create_postgres(test: &str, admin_url: String) -> Option<TestDb> {
    use sqlx::Connection;
    let name = unique(test);
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot connect to DATABASE_URL: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot create database {name}: {e}"));
    let _ = conn.close().await;
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (admin_url.clone(), String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => base[..scheme_end + i].to_owned(),
        None => base,
    };
    Some(TestDb {
        label: "postgres",
        url: format!("{base}/{name}{query}"),
        cleanup: Cleanup::Database { admin_url, name },
    })
}

#[cfg(not(feature = "sqlx-postgres"))]
async fn create_postgres(test: &str, _admin_url: String) -> Option<TestDb> {
    assert!(
        !postgres_required(),
        "{test}: CLOCKCACHE_REQUIRE_POSTGRES=1 but the sqlx-postgres feature is off"
    );
    eprintln!("SKIPPED (postgres half) {test}: built without the sqlx-postgres feature");
    None
}

/// SQLite, and PostgreSQL when available.
pub async fn all(test: &str) -> Vec<TestDb> {
    let mut dbs = vec![sqlite(test)];
    dbs.extend(postgres(test).await);
    dbs
}

impl TestDb {
    /// Removes the database (call after the store is closed).
    pub async fn drop_db(self) {
        match self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            #[cfg(feature = "sqlx-postgres")]
            Cleanup::Database { admin_url, name } => {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            }
        }
    }
}
