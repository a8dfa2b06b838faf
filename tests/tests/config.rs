//! Configuration and the system database at launch (issue 2, items 2 and 3): clear errors for
//! bad URLs and unreachable databases, the default SQLite file, `from_env`, concurrent
//! launches, SQLite's pragmas, and databases migrated by another SDK.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::within;
use dbos_tests::{both_backends, eventually, postgres_server, Backend, Inspect, TestDb};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The longest any single wait in these tests may take.
const T: Duration = Duration::from_secs(20);

/// Launches and expects a failure; returns the error.
async fn launch_err(cfg: DbosConfig) -> Error {
    match within("a failing launch", Runtime::launch(cfg)).await {
        Ok(rt) => {
            rt.shutdown().await;
            panic!("the launch succeeded")
        }
        Err(e) => e,
    }
}

fn config_message(e: &Error) -> String {
    match e {
        Error::Config(msg) => msg.clone(),
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wf-config-{what}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The launcher binary, with no DBOS_* variables inherited from the test's environment.
fn launcher(cwd: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker_launch"));
    cmd.current_dir(cwd)
        .env_remove("DBOS_DATABASE_URL")
        .env_remove("DBOS_SYSTEM_DATABASE_URL")
        .env_remove("DBOS__VMID")
        .env_remove("DBOS__APPVERSION")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the launcher to completion; returns its `key\tvalue` lines.
async fn run_launcher(mut cmd: tokio::process::Command) -> Vec<(String, String)> {
    let out = within("the launcher", cmd.output())
        .await
        .expect("run the launcher");
    assert!(
        out.status.success(),
        "the launcher failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    lines(&out.stdout)
}

fn lines(stdout: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            l.split_once('\t')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn value<'a>(lines: &'a [(String, String)], key: &str) -> &'a str {
    lines
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
}

/// Runs `sql` on the test database before any launch (creating the SQLite file if needed).
async fn prepare(db: &TestDb, sql: &str) {
    match db.backend {
        Backend::Sqlite => {
            let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
                .expect("url")
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(opts)
                .await
                .expect("create the sqlite file");
            sqlx::raw_sql(sql).execute(&pool).await.expect("prepare");
            pool.close().await;
        }
        Backend::Postgres => db.inspect().await.exec(sql).await,
    }
}

/// Whether `table` exists in the system tables' place (schema `dbos` on Postgres).
async fn has_table(x: &Inspect, backend: Backend, table: &str) -> bool {
    let sql = match backend {
        Backend::Sqlite => {
            format!("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'")
        }
        Backend::Postgres => {
            format!("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'dbos' AND tablename = '{table}'")
        }
    };
    x.scalar(&sql).await > 0
}

async fn drop_postgres_database(url: &str) {
    let name = url.rsplit('/').next().expect("database name");
    let admin = format!("{}/postgres", postgres_server());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("admin connection");
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .expect("drop the database");
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn database_url_of_an_unknown_kind_is_a_config_error_naming_it() {
    for url in ["mysql://root@localhost/shop", "shop.sqlite"] {
        let msg = config_message(&launch_err(DbosConfig::new("cfg").with_database_url(url)).await);
        assert!(msg.contains(url), "the error names {url:?}: {msg}");
    }
    let msg = config_message(&launch_err(DbosConfig::new("cfg").with_database_url("")).await);
    assert!(msg.contains("\"\""), "the error shows the empty URL: {msg}");
    let bad_sys = "redis://cache:6379";
    let cfg = DbosConfig::new("cfg")
        .with_database_url("sqlite::memory:")
        .with_system_database_url(bad_sys);
    let msg = config_message(&launch_err(cfg).await);
    assert!(
        msg.contains(bad_sys),
        "a bad system database URL is named too: {msg}"
    );
}

both_backends! {
    async fn malformed_database_url_is_a_config_error_naming_it(db: TestDb) {
        let _ = &db;
        let url = match db.backend {
            Backend::Sqlite => "sqlite://",
            Backend::Postgres => "postgres://postgres@127.0.0.1:notaport/shop",
        };
        let msg = config_message(&launch_err(DbosConfig::new("cfg").with_database_url(url)).await);
        assert!(msg.contains(url), "the error names {url:?}: {msg}");
    }
}

both_backends! {
    async fn unreachable_database_is_a_clear_error_naming_where_it_looked(db: TestDb) {
        let started = std::time::Instant::now();
        match db.backend {
            Backend::Sqlite => {
                let missing = format!("/nonexistent-{}/deeper/app.sqlite", uuid::Uuid::new_v4());
                let url = format!("sqlite://{missing}");
                let msg = config_message(&launch_err(DbosConfig::new("cfg").with_database_url(&url)).await);
                assert!(msg.contains(&missing), "the error names the file: {msg}");
                assert!(msg.contains("unable to open"), "the error says what failed: {msg}");
            }
            Backend::Postgres => {
                // Nothing listens on port 1.
                let url = "postgres://postgres:hunter2@127.0.0.1:1/shop";
                let msg = config_message(&launch_err(DbosConfig::new("cfg").with_database_url(url)).await);
                assert!(msg.contains("127.0.0.1:1"), "the error names host and port: {msg}");
                assert!(!msg.contains("hunter2"), "the error does not leak the password: {msg}");
                // A server that refuses us names the role.
                let url = format!("{}/shop", postgres_server().replace("://postgres@", "://no_such_role_wf@"));
                let msg = config_message(&launch_err(DbosConfig::new("cfg").with_database_url(&url)).await);
                assert!(msg.contains("no_such_role_wf"), "the error names the role: {msg}");
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "failing took {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn sqlite_default_database_is_a_file_named_after_the_app_in_the_working_directory() {
    let dir = scratch_dir("default");
    let mut cmd = launcher(&dir);
    cmd.env("APP_NAME", "launch-default");
    let out = run_launcher(cmd).await;
    assert_eq!(
        value(&out, "database_url"),
        "sqlite://launch-default.sqlite"
    );
    assert_eq!(value(&out, "system_database_url"), "-");
    let file = dir.join("launch-default.sqlite");
    assert!(file.is_file(), "{} was created", file.display());

    let x = Inspect::Sqlite(
        sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display()))
            .await
            .expect("open the default file"),
    );
    assert_eq!(x.scalar("SELECT version FROM dbos_migrations").await, 108);
    let rows = x.rows("SELECT status, output FROM workflow_status").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0].as_deref(), Some("SUCCESS"));
    if let Inspect::Sqlite(p) = x {
        p.close().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

both_backends! {
    async fn from_env_reads_dbos_database_url_and_dbos_system_database_url(db: TestDb) {
        let cwd = scratch_dir("from-env");

        // DBOS_DATABASE_URL alone: everything goes there.
        let mut cmd = launcher(&cwd);
        cmd.env("APP_NAME", "from-env").env("DBOS_DATABASE_URL", &db.url);
        let out = run_launcher(cmd).await;
        assert_eq!(value(&out, "database_url"), db.url);
        assert_eq!(value(&out, "system_database_url"), "-");
        let x = db.inspect().await;
        let s = db.sys();
        assert_eq!(x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status WHERE status = 'SUCCESS'")).await, 1);

        // Both: workflow state goes to the system database; the app database gets only
        // transaction_outputs.
        let app = db.sibling("appdb").await;
        let sys = db.sibling("sysdb").await;
        let mut cmd = launcher(&cwd);
        cmd.env("APP_NAME", "from-env").env("DBOS_DATABASE_URL", &app.url).env("DBOS_SYSTEM_DATABASE_URL", &sys.url);
        let out = run_launcher(cmd).await;
        assert_eq!(value(&out, "database_url"), app.url);
        assert_eq!(value(&out, "system_database_url"), sys.url);
        let sx = sys.inspect().await;
        assert_eq!(sx.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status WHERE status = 'SUCCESS'")).await, 1);
        let ax = app.inspect().await;
        assert!(!has_table(&ax, db.backend, "workflow_status").await, "no system tables in the app database");
        assert!(has_table(&ax, db.backend, "transaction_outputs").await, "the app database has transaction_outputs");

        let stray: Vec<_> = std::fs::read_dir(&cwd).expect("cwd").flatten().map(|e| e.file_name()).collect();
        assert!(stray.is_empty(), "no default file when a URL is set: {stray:?}");
        let _ = std::fs::remove_dir_all(&cwd);
    }
}

both_backends! {
    async fn two_processes_launching_at_once_on_a_fresh_database_both_succeed(db: TestDb) {
        let dir = scratch_dir("race");
        // The race is narrow: SQLite rounds are cheap, so run more of them.
        let rounds = if db.backend == Backend::Sqlite { 10 } else { 3 };
        for round in 0..rounds {
            // A database that does not exist yet: both launchers must create and migrate it.
            match db.backend {
                Backend::Postgres => drop_postgres_database(&db.url).await,
                Backend::Sqlite => {
                    if let Some(d) = &db.dir {
                        for f in ["app.sqlite", "app.sqlite-wal", "app.sqlite-shm"] {
                            let _ = std::fs::remove_file(d.join(f));
                        }
                    }
                }
            }
            let go = dir.join(format!("go-{round}"));
            let mut children = Vec::new();
            for n in 0..2 {
                let ready = dir.join(format!("ready-{round}-{n}"));
                let mut cmd = launcher(&dir);
                // Processes sharing a database have distinct executor IDs (SYSDB rule 20).
                cmd.env("APP_NAME", "race")
                    .env("DBOS_DATABASE_URL", &db.url)
                    .env("DBOS__VMID", format!("launcher-{n}"))
                    .env("READY_FILE", &ready)
                    .env("GO_FILE", &go);
                children.push((ready, cmd.spawn().expect("spawn a launcher")));
            }
            eventually(T, "both launchers to be ready", || {
                let all = children.iter().all(|(ready, _)| ready.exists());
                async move { all }
            })
            .await;
            std::fs::write(&go, b"go").expect("go");
            for (_, child) in children {
                let out = within("a launcher", child.wait_with_output()).await.expect("wait for a launcher");
                assert!(
                    out.status.success(),
                    "round {round}: a launcher failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let x = db.inspect().await;
            let s = db.sys();
            let versions = x.rows(&format!("SELECT version FROM {s}dbos_migrations")).await;
            assert_eq!(versions, vec![vec![Some("108".to_owned())]], "round {round}: one migration row, 108");
            assert_eq!(
                x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status WHERE status = 'SUCCESS'")).await,
                2,
                "round {round}: both launchers ran their workflow"
            );
            match x {
                Inspect::Sqlite(p) => p.close().await,
                Inspect::Postgres(p) => p.close().await,
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

// ---------------------------------------------------------------------------------------------

#[transaction]
async fn pragmas(tx: &mut Tx) -> Result<(String, i64, i64, i64), Error> {
    let (journal,): (String,) = tx.query("PRAGMA journal_mode").fetch_one().await?;
    let (synchronous,): (i64,) = tx.query("PRAGMA synchronous").fetch_one().await?;
    let (foreign_keys,): (i64,) = tx.query("PRAGMA foreign_keys").fetch_one().await?;
    let (busy,): (i64,) = tx.query("PRAGMA busy_timeout").fetch_one().await?;
    Ok((journal, synchronous, foreign_keys, busy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_uses_wal_with_synchronous_normal_by_default_and_full_when_configured() {
    let db = TestDb::fresh(Backend::Sqlite, concat!(module_path!(), "_pragmas")).await;
    for (full, want) in [(false, 1), (true, 2)] {
        let mut cfg = db.config("pragmas");
        assert!(!cfg.sqlite_synchronous_full, "NORMAL is the default");
        cfg.sqlite_synchronous_full = full;
        let rt = within("launch", Runtime::launch(cfg))
            .await
            .expect("launch");
        let (journal, synchronous, foreign_keys, busy) = within("pragmas", rt.scope(pragmas()))
            .await
            .expect("read the pragmas");
        assert_eq!(journal, "wal");
        assert_eq!(
            synchronous, want,
            "synchronous with sqlite_synchronous_full = {full} (1 = NORMAL, 2 = FULL)"
        );
        assert_eq!(foreign_keys, 1, "foreign_keys=ON");
        assert_eq!(busy, 30000, "busy_timeout=30000");
        rt.shutdown().await;
    }
    let x = db.inspect().await;
    let mode = x.rows("PRAGMA journal_mode").await;
    assert_eq!(
        mode[0][0].as_deref(),
        Some("wal"),
        "the file itself is in WAL mode"
    );
}

// ---------------------------------------------------------------------------------------------

both_backends! {
    async fn database_at_dbos_version_5_is_refused_with_a_migration_error(db: TestDb) {
        let s = db.sys();
        let schema = if db.backend == Backend::Postgres { "CREATE SCHEMA dbos; " } else { "" };
        prepare(
            &db,
            &format!(
                "{schema}CREATE TABLE {s}dbos_migrations (version BIGINT NOT NULL PRIMARY KEY); \
                 INSERT INTO {s}dbos_migrations (version) VALUES (5);"
            ),
        )
        .await;
        let err = launch_err(db.config("old")).await;
        assert!(matches!(err, Error::Migration { found: 5, .. }), "{err:?}");
        assert!(err.to_string().contains('5'), "the error names the version: {err}");
        let x = db.inspect().await;
        assert_eq!(x.scalar(&format!("SELECT version FROM {s}dbos_migrations")).await, 5, "the version is untouched");
        assert!(!has_table(&x, db.backend, "workflow_status").await, "nothing was created");
    }
}

both_backends! {
    async fn database_migrated_past_108_by_a_newer_sdk_is_used_and_never_lowered(db: TestDb) {
        within("first launch", Runtime::launch(db.config("newer"))).await.expect("launch").shutdown().await;
        let x = db.inspect().await;
        let s = db.sys();
        x.exec(&format!("UPDATE {s}dbos_migrations SET version = 113")).await;
        let rt = within("launch on 113", Runtime::launch(db.config("newer"))).await.expect("a newer database is usable");
        rt.shutdown().await;
        assert_eq!(x.rows(&format!("SELECT version FROM {s}dbos_migrations")).await, vec![vec![Some("113".to_owned())]]);
    }
}
