//! Support for the widget store's end-to-end tests: the real binary in a fresh working
//! directory (SQLite) or on a fresh Postgres database, on its own free port, in its own process
//! group so a test can SIGKILL the supervisor and its worker at once; a tiny HTTP client; and a
//! read-only look at the store's tables.

pub mod http;

pub use http::{request, Response};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Order statuses, as the store stores them.
pub const CANCELLED: i64 = -1;
pub const PENDING: i64 = 0;
pub const DISPATCHED: i64 = 1;
pub const PAID: i64 = 2;

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The default: `widget_store.sqlite` in the store's working directory.
    Sqlite,
    /// A fresh Postgres database (`DBOS_DATABASE_URL`).
    Postgres,
}

/// The Postgres server tests use (`DBOS_TEST_POSTGRES_URL`, default the local trust-auth server).
fn postgres_server() -> String {
    std::env::var("DBOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A running widget store: the supervisor (leader of its own process group) and its worker.
/// Dropping it SIGKILLs the group.
#[derive(Debug)]
pub struct Store {
    /// The database it runs on.
    pub backend: Backend,
    /// Its working directory, which holds its log (`store.log`) and, on SQLite, its database;
    /// removed after a passing test.
    pub dir: PathBuf,
    /// Where it serves.
    pub addr: SocketAddr,
    /// The database URL (set as `DBOS_DATABASE_URL` on Postgres; the default file on SQLite).
    pub db_url: String,
    supervisor: Option<Child>,
}

impl Store {
    /// Starts the store on a fresh database named after `name`, on a free port, and waits until
    /// it serves. Panics when Postgres is unreachable: Postgres tests never skip themselves.
    pub async fn start(backend: Backend, name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("widget-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the store's working directory");
        let db_url = match backend {
            Backend::Sqlite => format!("sqlite://{}/widget_store.sqlite", dir.display()),
            Backend::Postgres => fresh_postgres_database(&format!("ws_{name}")).await,
        };
        let mut store = Store {
            backend,
            dir,
            addr: free_addr(),
            db_url,
            supervisor: None,
        };
        store.launch().await;
        store
    }

    /// Starts the supervisor (again) on the same port and database, and waits until it serves.
    pub async fn launch(&mut self) {
        self.launch_with(true).await;
    }

    /// Like [`Store::launch`], but at once: without first waiting for a killed store to let go
    /// of the port (the store must cope with that itself).
    #[allow(dead_code)]
    pub async fn launch_at_once(&mut self) {
        self.launch_with(false).await;
    }

    async fn launch_with(&mut self, wait_for_port: bool) {
        assert!(self.supervisor.is_none(), "the store is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("store.log"))
            .expect("open the store's log");
        // A killed worker holds the listening socket until its last thread has exited.
        let deadline = Instant::now() + Duration::from_secs(10);
        while wait_for_port && TcpListener::bind(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "port {} still taken 10 s after the store was killed",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_widget-store"));
        cmd.current_dir(&self.dir)
            .env("HOST", self.addr.ip().to_string())
            .env("PORT", self.addr.port().to_string())
            .env("RUST_LOG", "info,sqlx=warn")
            .env("DBOS_ADMIN_PORT", "off")
            .env_remove("DBOS_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .process_group(0);
        if self.backend == Backend::Postgres {
            cmd.env("DBOS_DATABASE_URL", &self.db_url);
        }
        self.supervisor = Some(cmd.spawn().expect("start the widget store"));
        self.wait_serving(Duration::from_secs(60)).await;
    }

    /// Waits until `GET /product` answers 200; panics if the supervisor exits or time runs out.
    pub async fn wait_serving(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = request(self.addr, "GET", "/product").await {
                if r.status == 200 {
                    return;
                }
            }
            if let Some(child) = self.supervisor.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.supervisor = None;
                    panic!(
                        "the widget store exited ({status}) before serving; log:\n{}",
                        self.log_tail(40)
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "the widget store did not serve within {timeout:?}; log:\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs the supervisor and its worker (the whole process group) and reaps the supervisor.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.supervisor.take() {
            // SAFETY: signals the process group this store's supervisor leads.
            unsafe {
                libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// The worker's process ID (the supervisor's child), if it runs.
    #[allow(dead_code)]
    pub fn worker_pid(&self) -> Option<u32> {
        let supervisor = self.supervisor.as_ref()?.id();
        child_pids(supervisor).into_iter().next()
    }

    /// A request to this store; `Err` only for transport failures.
    pub async fn call(&self, method: &str, path: &str) -> std::io::Result<Response> {
        request(self.addr, method, path).await
    }

    /// A request that must be answered; panics on transport failures.
    pub async fn req(&self, method: &str, path: &str) -> Response {
        self.call(method, path)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `GET /product`'s inventory.
    #[allow(dead_code)]
    pub async fn inventory(&self) -> i64 {
        let r = self.req("GET", "/product").await;
        assert_eq!(r.status, 200, "GET /product: {r:?}");
        r.json()["inventory"]
            .as_i64()
            .expect("inventory is a number")
    }

    /// `GET /order/{id}` as (status, progress_remaining).
    #[allow(dead_code)]
    pub async fn order(&self, order_id: &str) -> (i64, i64) {
        let r = self.req("GET", &format!("/order/{order_id}")).await;
        assert_eq!(r.status, 200, "GET /order/{order_id}: {r:?}");
        let o = r.json();
        (
            o["order_status"].as_i64().expect("order_status"),
            o["progress_remaining"].as_i64().expect("progress"),
        )
    }

    /// A read-only connection to the store's database.
    pub async fn db(&self) -> Db {
        match self.backend {
            Backend::Sqlite => Db::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect(&self.db_url)
                    .await
                    .expect("open the store's SQLite file"),
            ),
            Backend::Postgres => Db::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&self.db_url)
                    .await
                    .expect("connect to the store's database"),
            ),
        }
    }

    /// The last `n` lines of the store's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("store.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "widget store log ({}):\n{}",
                self.dir.join("store.log").display(),
                self.log_tail(30)
            );
        }
        self.kill();
    }
}

/// Drops and creates the Postgres database `name`; returns its URL.
async fn fresh_postgres_database(name: &str) -> String {
    use sqlx::Connection;
    let server = postgres_server();
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| {
            panic!("Postgres tests need a server at {server} (set DBOS_TEST_POSTGRES_URL): {e}")
        });
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .expect("drop the old test database");
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .expect("create the test database");
    let _ = conn.close().await;
    format!("{server}/{name}")
}

/// A local address with a port nobody listens on now.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
}

/// The children of process `pid`, from `/proc`.
pub fn child_pids(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so split after its closing paren.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid.and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            children.push(child);
        }
    }
    children
}

/// The store's tables, for assertions.
#[derive(Debug)]
pub enum Db {
    /// SQLite.
    Sqlite(sqlx::SqlitePool),
    /// Postgres.
    Postgres(sqlx::PgPool),
}

impl Db {
    /// Runs a query returning one integer.
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self {
            Db::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
            Db::Postgres(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a query returning rows of two integers.
    #[allow(dead_code)]
    pub async fn pairs(&self, sql: &str) -> Vec<(i64, i64)> {
        match self {
            Db::Sqlite(p) => sqlx::query_as::<_, (i64, i64)>(sql).fetch_all(p).await,
            Db::Postgres(p) => sqlx::query_as::<_, (i64, i64)>(sql).fetch_all(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The system table `name` (`dbos.name` on Postgres).
    pub fn sys(&self, name: &str) -> String {
        match self {
            Db::Sqlite(_) => name.to_owned(),
            Db::Postgres(_) => format!("dbos.{name}"),
        }
    }

    /// The widget's inventory.
    pub async fn inventory(&self) -> i64 {
        self.scalar("SELECT CAST(inventory AS BIGINT) FROM products WHERE product_id = 1")
            .await
    }

    /// How many orders exist.
    pub async fn orders(&self) -> i64 {
        self.scalar("SELECT COUNT(*) FROM orders").await
    }

    /// How many orders have `status`.
    pub async fn orders_with(&self, status: i64) -> i64 {
        self.scalar(&format!(
            "SELECT COUNT(*) FROM orders WHERE order_status = {status}"
        ))
        .await
    }

    /// How many checkout workflows exist.
    pub async fn checkouts(&self) -> i64 {
        let table = self.sys("workflow_status");
        self.scalar(&format!(
            "SELECT COUNT(*) FROM {table} WHERE name = 'checkout_workflow'"
        ))
        .await
    }
}

/// `text` percent-encoded for a path segment.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Waits for `cond`, checking every 100 ms, up to `timeout`; panics with `what` otherwise.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Defines `<name>::sqlite` and `<name>::postgres` tests from one async body that gets a fresh
/// running [`Store`]. Each runs under `$secs` seconds.
#[macro_export]
macro_rules! both_backends {
    ($secs:expr, $(#[$m:meta])* async fn $name:ident($store:ident: Store) $body:block) => {
        $(#[$m])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[allow(unused_mut)]
            async fn run(mut $store: $crate::support::Store) $body

            async fn on(backend: $crate::support::Backend, tag: &str) {
                let name = format!("{}_{tag}", stringify!($name));
                let store = $crate::support::Store::start(backend, &name).await;
                let dir = store.dir.clone();
                let limit = std::time::Duration::from_secs($secs);
                if tokio::time::timeout(limit, run(store)).await.is_err() {
                    panic!("test timed out after {limit:?}; the store's log is in {}", dir.display());
                }
                // Passed: its working directory is of no more use (a failure keeps it).
                let _ = std::fs::remove_dir_all(&dir);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                on($crate::support::Backend::Sqlite, "sqlite").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                on($crate::support::Backend::Postgres, "pg").await;
            }
        }
    };
}
