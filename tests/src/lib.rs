//! Test support: fresh databases per test on both backends, and helpers to run real processes.

pub mod http;
pub mod webdriver;

use dbos_runtime::DbosConfig;
use std::path::PathBuf;
use std::time::Duration;

/// The Postgres server tests use (`DBOS_TEST_POSTGRES_URL`, default the local trust-auth server).
pub fn postgres_server() -> String {
    std::env::var("DBOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a fresh temporary directory.
    Sqlite,
    /// A fresh Postgres database.
    Postgres,
}

/// A fresh database for one test: its URL, and for SQLite the directory that holds it.
#[derive(Debug)]
pub struct TestDb {
    /// The database URL.
    pub url: String,
    /// The backend.
    pub backend: Backend,
    /// The directory of the SQLite file (kept for inspection on failure).
    pub dir: Option<PathBuf>,
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    // Postgres identifiers are at most 63 bytes.
    let tail = if s.len() > 50 {
        &s[s.len() - 50..]
    } else {
        &s[..]
    };
    format!("t_{tail}")
}

impl TestDb {
    /// A fresh database named after `name` (a test's path), dropped first if it exists.
    /// Fails (panics) when Postgres is unreachable: Postgres tests never skip themselves.
    pub async fn fresh(backend: Backend, name: &str) -> TestDb {
        Self::fresh_named(backend, &sanitize(name)).await
    }

    async fn fresh_named(backend: Backend, db: &str) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir =
                    std::env::temp_dir().join(format!("dbos-tests-{}-{db}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).expect("create the test directory");
                TestDb {
                    url: format!("sqlite://{}/app.sqlite", dir.display()),
                    backend,
                    dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let server = postgres_server();
                let admin = format!("{server}/postgres");
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("Postgres tests need a server at {server} (set DBOS_TEST_POSTGRES_URL): {e}")
                    });
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .expect("drop the old test database");
                sqlx::raw_sql(&format!("CREATE DATABASE \"{db}\""))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
                TestDb {
                    url: format!("{server}/{db}"),
                    backend,
                    dir: None,
                }
            }
        }
    }

    /// A second fresh database for the same test (for separate system/app databases).
    pub async fn sibling(&self, suffix: &str) -> TestDb {
        match self.backend {
            Backend::Sqlite => {
                let dir = self.dir.clone().expect("sqlite test db has a dir");
                TestDb {
                    url: format!("sqlite://{}/{suffix}.sqlite", dir.display()),
                    backend: self.backend,
                    dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let name = self.url.rsplit('/').next().unwrap_or("t");
                Self::fresh_named(Backend::Postgres, &format!("{name}_{suffix}")).await
            }
        }
    }

    /// A configuration for this database.
    pub fn config(&self, app: &str) -> DbosConfig {
        DbosConfig::new(app).with_database_url(&self.url)
    }

    /// A plain sqlx connection pool to inspect rows.
    pub async fn inspect(&self) -> Inspect {
        match self.backend {
            Backend::Sqlite => Inspect::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect(&self.url)
                    .await
                    .expect("open the sqlite file"),
            ),
            Backend::Postgres => Inspect::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&self.url)
                    .await
                    .expect("connect to the test database"),
            ),
        }
    }

    /// `"dbos."` on Postgres, `""` on SQLite.
    pub fn sys(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => "dbos.",
        }
    }
}

/// A connection pool for reading rows back in assertions.
#[derive(Debug, Clone)]
pub enum Inspect {
    /// SQLite.
    Sqlite(sqlx::SqlitePool),
    /// Postgres.
    Postgres(sqlx::PgPool),
}

impl Inspect {
    /// Runs a query returning one i64.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self {
            Inspect::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
            Inspect::Postgres(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a query returning rows of text columns (NULL as None).
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        use sqlx::Row;
        fn cell<R: Row>(r: &R, i: usize) -> Option<String>
        where
            usize: sqlx::ColumnIndex<R>,
            String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            i32: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            bool: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        {
            if let Ok(v) = r.try_get::<Option<String>, _>(i) {
                return v;
            }
            if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
                return v.map(|v| v.to_string());
            }
            if let Ok(v) = r.try_get::<Option<i32>, _>(i) {
                return v.map(|v| v.to_string());
            }
            r.try_get::<Option<bool>, _>(i)
                .ok()
                .flatten()
                .map(|v| v.to_string())
        }
        macro_rules! collect {
            ($rows:expr) => {
                $rows
                    .iter()
                    .map(|r| (0..r.columns().len()).map(|i| cell(r, i)).collect())
                    .collect()
            };
        }
        match self {
            Inspect::Sqlite(p) => {
                let rows = sqlx::query(sql)
                    .fetch_all(p)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                collect!(rows)
            }
            Inspect::Postgres(p) => {
                let rows = sqlx::query(sql)
                    .fetch_all(p)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                collect!(rows)
            }
        }
    }

    /// Executes a statement.
    pub async fn exec(&self, sql: &str) {
        match self {
            Inspect::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Inspect::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// The longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// Awaits `fut`, panicking with `what` if it takes longer than [`WAIT`].
pub async fn within<F: std::future::IntoFuture>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut.into_future())
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?}: {what}"))
}

/// Waits for `cond` to hold, checking every 20 ms, up to `timeout`; panics with `what` otherwise.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Defines `<name>_sqlite` and `<name>_postgres` tests from one async body taking a
/// [`TestDb`]. Every test runs under a 120 s timeout.
#[macro_export]
macro_rules! both_backends {
    ($(#[$m:meta])* async fn $name:ident($db:ident: TestDb) $body:block) => {
        $(#[$m])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($db: $crate::TestDb) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::TestDb::fresh($crate::Backend::Sqlite, concat!(module_path!(), "_sqlite")).await;
                tokio::time::timeout(std::time::Duration::from_secs(120), run(db)).await.expect("test timed out");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::TestDb::fresh($crate::Backend::Postgres, concat!(module_path!(), "_pg")).await;
                tokio::time::timeout(std::time::Duration::from_secs(120), run(db)).await.expect("test timed out");
            }
        }
    };
}

/// Per-test counters and gates, keyed by a string the test passes as a workflow argument (the
/// SQLite and Postgres variants of a test run at once in one process).
pub mod probe {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    use tokio::sync::watch;

    fn counts() -> &'static Mutex<HashMap<String, u32>> {
        static C: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
        C.get_or_init(Default::default)
    }

    /// Counts one more run of `key`; returns the new count.
    pub fn bump(key: &str) -> u32 {
        let mut c = counts().lock().expect("probe lock");
        let n = c.entry(key.to_owned()).or_default();
        *n += 1;
        *n
    }

    /// How often `key` ran.
    pub fn count(key: &str) -> u32 {
        counts()
            .lock()
            .expect("probe lock")
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    fn gate(key: &str) -> Arc<watch::Sender<bool>> {
        static G: OnceLock<Mutex<HashMap<String, Arc<watch::Sender<bool>>>>> = OnceLock::new();
        let mut g = G.get_or_init(Default::default).lock().expect("gate lock");
        g.entry(key.to_owned())
            .or_insert_with(|| Arc::new(watch::channel(false).0))
            .clone()
    }

    /// Waits until gate `key` is open.
    pub async fn pass(key: &str) {
        let mut rx = gate(key).subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }

    /// Opens gate `key` for good.
    pub fn open(key: &str) {
        gate(key).send_replace(true);
    }
}
