//! The system database: DBOS's tables (SYSDB.md) on SQLite or Postgres.
//!
//! This is the only module that knows which database it is on. Everything above it speaks in
//! the row types defined here. Most statements are the same text on both backends (only the
//! schema prefix differs); the `on_*!` macros instantiate one body for each pool type.
//!
//! This file holds the [`SysDb`] façade (opening, migrating, closing, the change feed) and
//! re-exports what the rest of the crate uses. The rest, by concept: `backend` (the connection
//! sets and the `on_*!` macros), `rows` (row types and their decoding), `queries` (the SQL
//! text), the `impl SysDb` operations in `workflows`, `messages`, `events` and `transactions`,
//! and `tx` (the application transaction [`Tx`]).

mod backend;
mod events;
mod gate;
mod liveness;
mod manage;
mod messages;
mod postgres;
mod queries;
mod queues;
mod rows;
mod sqlite;
mod sqlite_readers;
mod sqlite_writer;
mod streams;
mod transactions;
mod tx;
mod workflows;

pub(crate) use manage::NewFork;
pub use manage::{StepInfo, WorkflowFilter, WorkflowInfo};
pub(crate) use messages::NULL_TOPIC;
pub(crate) use queries::QUEUE_CHANNEL;
pub(crate) use queues::QueueLimits;
pub(crate) use rows::{Claimed, NewWorkflow, Outcome, StepRow, StepWrite, WorkflowRow};
pub(crate) use streams::StreamValue;
pub use tx::{FromRow, Isolation, Numeric, Param, Tx, TxOptions, TxQuery};

use crate::config::{DatabaseUrl, DbosConfig};
use crate::error::{Error, Result};
use backend::Backend;
use queries::Queries;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The DBOS system-schema version we create and require.
pub(crate) const SCHEMA_VERSION: i64 = 108;

/// Milliseconds since the Unix epoch, from the application clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// A `CREATE … IF NOT EXISTS` that lost the race to another process creating the same object:
/// Postgres reports a catalog unique violation (23505), or that the table's row type or the
/// relation already exists (42710, 42P07).
pub(crate) fn lost_create_race(err: &sqlx::Error) -> bool {
    unique_violation(err)
        || matches!(err, sqlx::Error::Database(db)
            if matches!(db.code().as_deref(), Some("42710") | Some("42P07")))
}

fn is_fk_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation)
}

/// What the change feed saw another process (or connection) write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change<'a> {
    /// A message arrived for `<workflow>::<topic>`.
    Message(&'a str),
    /// Event `<workflow>::<key>` was set.
    Event(&'a str),
    /// Stream `<workflow>::<key>` has a new value.
    Stream(&'a str),
    /// Workflow `<workflow>` was cancelled (by our API in another process).
    Cancelled(&'a str),
    /// Queue `<queue>` has new work, or a free slot (another process enqueued or finished).
    Queue(&'a str),
    /// Something changed that no key names (another process wrote the SQLite file, or the
    /// `LISTEN` connection was lost and notifications may be missing): every waiter re-checks.
    Unknown,
}

/// The system database, plus the application database used by transactions.
#[derive(Debug)]
pub(crate) struct SysDb {
    sys: Backend,
    app: Backend,
    /// The application database is the system database: transaction checkpoints go in
    /// `operation_outputs` inside the app transaction (one commit).
    pub(crate) shared: bool,
    q: Queries,
    app_prefix: String,
    app_name: String,
    executor_id: String,
    app_version: String,
    schema: String,
    last_message_ms: std::sync::Mutex<i64>,
    pub(crate) metrics: crate::metrics::Metrics,
}

impl SysDb {
    /// Connects to (and creates, when missing) the databases, and migrates them.
    pub(crate) async fn open(cfg: &DbosConfig) -> Result<SysDb> {
        let app_url = DatabaseUrl::parse(&cfg.database_url)?;
        let sys_url = match &cfg.system_database_url {
            Some(u) => Some(DatabaseUrl::parse(u)?),
            None => None,
        };
        let app = Backend::connect(&app_url, cfg, cfg.create_database).await?;
        let (sys, shared) = match sys_url {
            Some(u) if u != app_url => {
                (Backend::connect(&u, cfg, cfg.create_database).await?, false)
            }
            _ => (app.clone(), true),
        };
        let prefix = sys.prefix(&cfg.system_schema);
        let db = SysDb {
            q: Queries::new(&prefix, sys.is_postgres(), &cfg.executor_id),
            app_prefix: app.prefix(&cfg.system_schema),
            sys,
            app,
            shared,
            app_name: cfg.name.clone(),
            executor_id: cfg.executor_id.clone(),
            app_version: cfg.application_version.clone(),
            schema: cfg.system_schema.clone(),
            last_message_ms: std::sync::Mutex::new(0),
            metrics: Default::default(),
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<()> {
        match &self.sys {
            Backend::Sqlite(b) => b.migrate().await?,
            Backend::Postgres(b) => b.migrate(&self.schema).await?,
        }
        if !self.shared {
            match &self.app {
                Backend::Sqlite(b) => b.create_transaction_outputs().await?,
                Backend::Postgres(b) => b.create_transaction_outputs(&self.schema).await?,
            }
        }
        Ok(())
    }

    /// The runtime's counters, with the SQLite writers' physical commits.
    pub(crate) fn metrics_snapshot(&self) -> crate::metrics::MetricsSnapshot {
        let mut m = self.metrics.snapshot();
        let batches = |b: &Backend| match b {
            Backend::Sqlite(s) => s.writer.batch_commits(),
            Backend::Postgres(_) => 0,
        };
        m.sqlite_batch_commits =
            batches(&self.sys) + if self.shared { 0 } else { batches(&self.app) };
        m
    }

    /// Refuses every operation that has not started yet (see [`SysDb::close`]).
    pub(crate) fn begin_close(&self) {
        self.sys.begin_close();
        self.app.begin_close();
    }

    /// Refuses new operations and waits for those in flight: when this returns, nothing this
    /// `SysDb` sent is still running on a server, so nothing changes afterwards.
    pub(crate) async fn close(&self) {
        self.begin_close();
        if self.shared {
            self.sys.close().await;
        } else {
            tokio::join!(self.sys.close(), self.app.close());
        }
    }

    /// Starts the change feed that wakes waiters for writes made by other processes: Postgres
    /// `LISTEN` on DBOS's channels, or on a SQLite file a watcher of `PRAGMA data_version` that
    /// runs once a second while `waiting` is non-zero. `None` when nothing else can write (an
    /// in-memory SQLite database).
    pub(crate) async fn listen(
        &self,
        waiting: tokio::sync::watch::Receiver<usize>,
        on_change: impl Fn(Change<'_>) + Send + Sync + 'static,
    ) -> Result<Option<tokio::task::JoinHandle<()>>> {
        match &self.sys {
            Backend::Postgres(b) => Ok(Some(b.listen(on_change).await?)),
            Backend::Sqlite(b) => Ok(b.watch(waiting, on_change)),
        }
    }
}

/// Retries `connect` for a short while: a database that is still starting is not an error.
pub(crate) async fn retry_connect<T, F, Fut>(what: &str, mut connect: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, sqlx::Error>>,
{
    let mut delay = Duration::from_millis(50);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match connect().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() + delay < deadline && is_transient(&e) => {
                tracing::debug!("connecting to {what} failed, retrying: {e}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                return Err(Error::Config(format!("cannot connect to {what}: {e}")));
            }
        }
    }
}

fn is_transient(e: &sqlx::Error) -> bool {
    // SQLite busy at connect: another process holds the lock while switching a fresh file to
    // WAL, which busy_timeout does not wait for.
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) || crate::error::is_conflict(e)
}
