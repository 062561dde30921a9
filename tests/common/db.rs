//! A store for each test: a SQLite file in the test's directory, or a fresh PostgreSQL database
//! created on 127.0.0.1:5432 (`AIOPS_TEST_PG_URL` overrides the server URL) and dropped
//! afterwards. Without PostgreSQL the PostgreSQL variants skip, except in CI (`CI=true`), where a
//! missing service is a failure.

use std::path::Path;

/// Which store backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs an async test body on both backends: `both_backends!(name);` expects
/// `async fn name(db: Db)` in scope and generates `name::on_sqlite` and `name::on_postgres`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name($crate::common::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                if let Some(()) = $crate::common::postgres_available().await {
                    super::$name($crate::common::Db::Postgres).await
                }
            }
        }
    };
}

/// Whether a missing service or tool fails the test (CI) rather than skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The PostgreSQL server the PostgreSQL variants use.
pub fn pg_server_url() -> String {
    std::env::var("AIOPS_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `Some(())` when PostgreSQL answers; `None` (skip) when it does not, outside CI.
pub async fn postgres_available() -> Option<()> {
    match pg_connect(&pg_server_url()).await {
        Ok(_) => Some(()),
        Err(e) => {
            if in_ci() {
                panic!(
                    "PostgreSQL is required in CI but {} is unreachable: {e}",
                    pg_server_url()
                );
            }
            eprintln!(
                "skipping: PostgreSQL unreachable at {}: {e}",
                pg_server_url()
            );
            None
        }
    }
}

async fn pg_connect(url: &str) -> Result<sqlx::AnyConnection, sqlx::Error> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url).await
}

/// A pool of the test's own on a test database, to arrange what the store's API never writes
/// (backdated or bulk history): the store keeps its connections and SQL to itself.
pub async fn raw_db(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}

/// The cutoffs of a pruning pass at `now` with the default windows (`retention.*`), but
/// `repairs_days` for repairs.
pub fn cutoffs(now: i64, repairs_days: i64) -> aiops::store::Cutoffs {
    let day = aiops::store::DAY_MS;
    aiops::store::Cutoffs {
        alerts: now - 30 * day,
        repairs: now - repairs_days * day,
        stats: now - 730 * day,
        audit: now - 365 * day,
        activity: now - day,
    }
}

/// The rows of `table`, counted through a [`raw_db`] pool.
pub async fn count_rows(raw: &sqlx::AnyPool, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(raw)
        .await
        .unwrap();
    sqlx::Row::get(&row, "n")
}

/// A database for one test; a PostgreSQL one is dropped when this is dropped.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
}

impl TestDb {
    /// A SQLite file in `dir`, or a new PostgreSQL database with a unique name.
    pub async fn new(db: Db, dir: &Path) -> TestDb {
        match db {
            Db::Sqlite => TestDb {
                url: format!("sqlite://{}?mode=rwc", dir.join("aiops.db").display()),
                pg_name: None,
            },
            Db::Postgres => {
                use sqlx::Executor;
                let name = format!("aiops_t_{}", uuid::Uuid::new_v4().simple());
                let mut conn = pg_connect(&pg_server_url()).await.unwrap();
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .unwrap();
                let base = pg_server_url();
                let (prefix, _) = base.rsplit_once('/').unwrap();
                TestDb {
                    url: format!("{prefix}/{name}"),
                    pg_name: Some(name),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop needs its own runtime: the test's may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Executor;
                if let Ok(mut c) = pg_connect(&pg_server_url()).await {
                    let _ = c
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}
