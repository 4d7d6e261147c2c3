//! Test support shared by this crate's contract tests and the server's API tests: a fresh,
//! migrated database per test on every backend that is available. Compiled only with the
//! `testing` feature.

use std::sync::Arc;

use sqlx::{AnyPool, AssertSqlSafe};

use crate::{SqlStore, Store};

/// Where the PostgreSQL used by tests lives; override with `HITLHOOK_TEST_POSTGRES_URL`.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A throw-away database. The SQLite file or PostgreSQL database is removed on drop.
pub struct TestDb {
    pub name: &'static str,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(std::path::PathBuf),
    Postgres { admin_url: String, db: String },
}

impl TestDb {
    /// A fresh SQLite database in its own temporary directory.
    #[must_use]
    pub fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("hitlhook-test-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}/hitlhook.db", dir.display());
        TestDb {
            name: "sqlite",
            url,
            cleanup: Cleanup::Dir(dir),
        }
    }

    /// A fresh PostgreSQL database, or `None` (after a loud message) when PostgreSQL is not
    /// reachable. Under `CI=true` an unreachable PostgreSQL is a failure, never a skip.
    pub async fn postgres() -> Option<Self> {
        let admin_url = std::env::var("HITLHOOK_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_owned());
        sqlx::any::install_default_drivers();
        let admin = match AnyPool::connect(&admin_url).await {
            Ok(pool) => pool,
            Err(e) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
                assert!(
                    !ci,
                    "PostgreSQL at {admin_url} is required under CI=true: {e}"
                );
                eprintln!(
                    "\n!!!! SKIPPING PostgreSQL tests: cannot reach {admin_url} ({e}).\n\
                     !!!! Start PostgreSQL or set HITLHOOK_TEST_POSTGRES_URL.\n"
                );
                return None;
            }
        };
        let db = format!("hitlhook_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(AssertSqlSafe(format!("create database {db}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        let url = format!("{base}/{db}");
        Some(TestDb {
            name: "postgres",
            url,
            cleanup: Cleanup::Postgres { admin_url, db },
        })
    }

    /// Opens and migrates the store.
    pub async fn store(&self) -> Arc<dyn Store> {
        let store = SqlStore::open(&self.url).await.expect("open test store");
        store.migrate().await.expect("migrate test store");
        Arc::new(store)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin_url, db } => {
                // Drop runs outside async code: use a short-lived runtime on a helper thread.
                let (admin_url, db) = (admin_url.clone(), db.clone());
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async {
                        if let Ok(admin) = AnyPool::connect(&admin_url).await {
                            let sql = format!("drop database if exists {db} with (force)");
                            let _ = sqlx::query(AssertSqlSafe(sql)).execute(&admin).await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// Every backend available here: SQLite always, PostgreSQL when reachable.
pub async fn all_backends() -> Vec<TestDb> {
    let mut dbs = vec![TestDb::sqlite()];
    dbs.extend(TestDb::postgres().await);
    dbs
}
