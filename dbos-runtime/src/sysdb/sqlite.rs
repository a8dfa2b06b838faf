//! SQLite: one file in WAL mode, one writer connection (every write serializes there, so no
//! busy errors between our own writers) and a pool of readers.

use super::sqlite_readers::Readers;
use super::sqlite_writer::Writer;
use super::{retry_connect, Change, SCHEMA_VERSION};
use crate::config::DbosConfig;
use crate::error::{Error, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::Row;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::watch;

const DDL: &str = include_str!("sqlite.sql");

#[derive(Clone, Debug)]
pub(crate) struct SqliteDb {
    pub(crate) writer: Writer,
    pub(crate) reader: Readers,
    /// An in-memory database: no other connection can write it.
    memory: bool,
    /// Every operation of the runtime passes it (see `gate.rs`).
    pub(crate) gate: std::sync::Arc<super::gate::Gate>,
}

/// How often the change watcher looks at the file while someone waits.
const WATCH_EVERY: Duration = Duration::from_secs(1);

impl SqliteDb {
    pub(crate) async fn connect(url: &str, cfg: &DbosConfig) -> Result<SqliteDb> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::Config(format!("malformed SQLite URL {url:?}: {e}")))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            .journal_mode(if memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(if cfg.sqlite_synchronous_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .statement_cache_capacity(256);
        let what = format!("SQLite database {url:?}");
        let writer = retry_connect(&what, || Writer::connect(&opts)).await?;
        // sqlx names an in-memory database and shares its cache, so reader connections see
        // the writer's database (which lives as long as the writer connection).
        let reader_opts = if memory {
            opts.clone()
        } else {
            opts.clone().read_only(true)
        };
        let reader = retry_connect(&what, || Readers::connect(reader_opts.clone(), 4)).await?;
        Ok(SqliteDb {
            writer,
            reader,
            memory,
            gate: Default::default(),
        })
    }

    /// Watches the file for commits by other processes (and other connections) while
    /// `waiting` is non-zero, reporting each as [`Change::Unknown`]; `None` for an in-memory
    /// database, which nobody else can write.
    ///
    /// One `PRAGMA data_version` a second replaces a poll per waiter. It runs on the writer
    /// connection, which makes every commit of this runtime: SQLite changes that connection's
    /// `data_version` only for commits made by others, so our own writes (which wake their
    /// waiters directly) never wake everyone.
    pub(crate) fn watch(
        &self,
        mut waiting: watch::Receiver<usize>,
        on_change: impl Fn(Change<'_>) + Send + Sync + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if self.memory {
            return None;
        }
        let db = self.clone();
        Some(tokio::spawn(async move {
            // Kept while idle: a change made while nobody waited is harmless, one made between a
            // new waiter's first check and our next look shows as a difference.
            let mut seen = db.data_version().await;
            loop {
                if waiting.wait_for(|n| *n > 0).await.is_err() {
                    return;
                }
                loop {
                    let now = db.data_version().await;
                    if now.is_none() || now != seen {
                        on_change(Change::Unknown);
                    }
                    seen = now;
                    tokio::time::sleep(WATCH_EVERY).await;
                    if *waiting.borrow() == 0 {
                        break;
                    }
                }
            }
        }))
    }

    /// `PRAGMA data_version` of the connection that makes all of this runtime's writes: it
    /// changes only when another connection commits. `None` when it cannot be read.
    async fn data_version(&self) -> Option<i64> {
        // Closed at shutdown, when this watcher is stopped too.
        let mut guard = self.writer.take().await.ok()?;
        let version = guard.data_version().await;
        guard.abandon().await;
        match version {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::debug!("reading PRAGMA data_version failed: {e}");
                None
            }
        }
    }

    /// Creates DBOS's tables at version 108 when the file has none (SYSDB.md §2).
    pub(crate) async fn migrate(&self) -> Result<()> {
        let mut guard = self.writer.begin_savepoint("dbos_migrate").await?;
        match self.migrate_in(&mut guard).await {
            Ok(()) => guard.commit().await,
            Err(e) => {
                guard.abandon().await;
                Err(e)
            }
        }
    }

    async fn migrate_in(&self, tx: &mut sqlx::SqliteConnection) -> Result<()> {
        let exists = sqlx::query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dbos_migrations'",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::db("migrating the system database"))?
        .is_some();
        let version = if exists {
            sqlx::query("SELECT MAX(version) FROM dbos_migrations")
                .fetch_one(&mut *tx)
                .await
                .map_err(Error::db("reading dbos_migrations"))?
                .try_get::<Option<i64>, _>(0)
                .map_err(Error::db("reading dbos_migrations"))?
        } else {
            None
        };
        match version {
            None => {
                if !exists {
                    sqlx::raw_sql(DDL)
                        .execute(&mut *tx)
                        .await
                        .map_err(Error::db("creating the system tables"))?;
                }
                sqlx::query("INSERT INTO dbos_migrations (version) VALUES ($1)")
                    .bind(SCHEMA_VERSION)
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::db("recording the migration"))?;
            }
            Some(v) if v >= SCHEMA_VERSION => {}
            Some(v) if v >= 99 => {
                for n in (v + 1)..=SCHEMA_VERSION {
                    if let Some(sql) = shared_migration(n) {
                        sqlx::raw_sql(sql)
                            .execute(&mut *tx)
                            .await
                            .map_err(Error::db("applying a shared DBOS migration"))?;
                    }
                    sqlx::query("UPDATE dbos_migrations SET version = $1")
                        .bind(n)
                        .execute(&mut *tx)
                        .await
                        .map_err(Error::db("recording the migration"))?;
                }
            }
            Some(v) => {
                return Err(Error::Migration {
                    found: v,
                    why: "another DBOS SDK's private migrations are unfinished; upgrade the database with that SDK first",
                })
            }
        }
        Ok(())
    }

    pub(crate) async fn create_transaction_outputs(&self) -> Result<()> {
        let mut guard = self.writer.begin().await?;
        let created = sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS transaction_outputs (workflow_uuid TEXT NOT NULL, \
             function_id INTEGER NOT NULL, output TEXT, error TEXT, txn_id TEXT, txn_snapshot TEXT NOT NULL, \
             executor_id TEXT, function_name TEXT NOT NULL DEFAULT '', \
             created_at INTEGER NOT NULL DEFAULT (strftime('%s','now') * 1000), \
             PRIMARY KEY (workflow_uuid, function_id)); \
             CREATE INDEX IF NOT EXISTS transaction_outputs_created_at_index ON transaction_outputs (created_at);",
        )
        .execute(&mut *guard)
        .await
        .map_err(Error::db("creating transaction_outputs"));
        match created {
            Ok(_) => guard.commit().await,
            Err(e) => {
                guard.abandon().await;
                Err(e)
            }
        }
    }
}

/// The shared DBOS migrations 100–108 for SQLite (SYSDB.md §3.3).
fn shared_migration(n: i64) -> Option<&'static str> {
    Some(match n {
        100 => "ALTER TABLE workflow_status ADD COLUMN application_name TEXT DEFAULT NULL",
        101 => "ALTER TABLE queues ADD COLUMN application_name TEXT DEFAULT NULL",
        102 => "ALTER TABLE workflow_schedules ADD COLUMN application_name TEXT DEFAULT NULL",
        103 => "ALTER TABLE application_versions ADD COLUMN application_name TEXT DEFAULT NULL",
        104 => "ALTER TABLE operation_outputs ADD COLUMN application_name TEXT DEFAULT NULL",
        106 => "CREATE UNIQUE INDEX IF NOT EXISTS uq_application_versions_owner_version ON application_versions (application_name, version_name) WHERE application_name IS NOT NULL",
        107 => "CREATE UNIQUE INDEX IF NOT EXISTS uq_application_versions_unclaimed_version ON application_versions (version_name) WHERE application_name IS NULL",
        108 => "ALTER TABLE queues ADD COLUMN partition_concurrency INTEGER DEFAULT NULL; \
                ALTER TABLE queues ADD COLUMN partition_worker_concurrency INTEGER DEFAULT NULL; \
                ALTER TABLE queues ADD COLUMN partition_rate_limit_max INTEGER DEFAULT NULL; \
                ALTER TABLE queues ADD COLUMN partition_rate_limit_period_sec REAL DEFAULT NULL;",
        _ => return None,
    })
}
