//! The system database: DBOS's tables (SYSDB.md) on SQLite or Postgres.
//!
//! This is the only module that knows which database it is on. Everything above it speaks in
//! the row types defined here. Most statements are the same text on both backends (only the
//! schema prefix differs); the `on_*!` macros instantiate one body for each pool type.

mod gate;
mod postgres;
mod sqlite;
mod sqlite_writer;
mod tx;

pub use tx::{FromRow, Isolation, Numeric, Param, Tx, TxOptions, TxQuery};

use crate::config::{DatabaseUrl, DbosConfig};
use crate::error::{Error, Result};
use crate::serialization::PORTABLE_JSON;
use sqlx::Row;
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

fn is_fk_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation)
}

/// One connection set: SQLite (a single writer connection and a reader pool) or a Postgres pool.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Sqlite(sqlite::SqliteDb),
    Postgres(postgres::PgDb),
}

/// Runs `$body` (one statement, evaluating to a `Result`) with `$p` bound to what takes
/// writes: the Postgres pool, or on SQLite the writer connection inside the current group
/// commit (the result is returned once that batch committed).
///
/// A statement that returns rows must be read to its end (`fetch_all`, never `fetch_one`):
/// Postgres sends the rows of an autocommit statement before it commits it, so a caller that
/// stops at the first row may act on a write that is not yet committed (and a shutdown may
/// return before it is).
macro_rules! on_writer {
    ($backend:expr, |$p:ident| $body:expr) => {
        match $backend {
            Backend::Sqlite(b) => {
                let _pass = b.gate.enter()?;
                let mut $p = b.writer.begin().await?;
                let out = $body;
                match out {
                    Ok(v) => $p.commit().await.map(|()| v),
                    Err(e) => {
                        $p.fail(&e).await;
                        Err(e)
                    }
                }
            }
            Backend::Postgres(b) => {
                let _pass = b.gate.enter()?;
                let mut $p = b
                    .pool
                    .acquire()
                    .await
                    .map_err(Error::db("acquiring a connection"))?;
                $body
            }
        }
    };
}

/// Runs `$body` with `$p` bound to a pool for reads.
macro_rules! on_reader {
    ($backend:expr, |$p:ident| $body:expr) => {
        match $backend {
            Backend::Sqlite(b) => {
                let mut $p = b
                    .reader
                    .acquire()
                    .await
                    .map_err(Error::db("acquiring a connection"))?;
                $body
            }
            Backend::Postgres(b) => {
                let mut $p = b
                    .pool
                    .acquire()
                    .await
                    .map_err(Error::db("acquiring a connection"))?;
                $body
            }
        }
    };
}

/// Runs `$body` atomically with `$t` bound to a connection, and keeps its writes when `$body`
/// returns `Ok`: a Postgres transaction, or on SQLite a savepoint inside the current group
/// commit (returning once that batch committed). `$body` evaluates to a `Result`.
macro_rules! in_write_tx {
    ($backend:expr, $doing:literal, |$t:ident| $body:expr) => {
        match $backend {
            Backend::Sqlite(b) => {
                let _pass = b.gate.enter()?;
                let mut $t = b.writer.begin().await?;
                $t.savepoint("dbos_op").await?;
                let out = $body;
                match out {
                    Ok(v) => $t.commit().await.map(|()| v),
                    Err(e) => {
                        $t.fail(&e).await;
                        Err(e)
                    }
                }
            }
            Backend::Postgres(b) => {
                let _pass = b.gate.enter()?;
                let mut $t = b.pool.begin().await.map_err(Error::db($doing))?;
                let out = $body;
                if out.is_ok() {
                    $t.commit().await.map_err(Error::db($doing))?;
                }
                out
            }
        }
    };
}

impl Backend {
    async fn connect(url: &DatabaseUrl, cfg: &DbosConfig, create: bool) -> Result<Backend> {
        match url {
            DatabaseUrl::Sqlite(u) => Ok(Backend::Sqlite(sqlite::SqliteDb::connect(u, cfg).await?)),
            DatabaseUrl::Postgres(u) => Ok(Backend::Postgres(
                postgres::PgDb::connect(u, cfg, create).await?,
            )),
        }
    }

    fn prefix(&self, schema: &str) -> String {
        match self {
            Backend::Sqlite(_) => String::new(),
            Backend::Postgres(_) => format!("{schema}."),
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres(_))
    }

    /// Refuses new work at once: a pool hands out no connection, the SQLite writer takes no
    /// operation ([`crate::Error::ShuttingDown`]). What holds a connection goes on.
    fn begin_close(&self) {
        self.gate().close();
        match self {
            Backend::Sqlite(b) => b.writer.begin_close(),
            Backend::Postgres(_) => {}
        }
    }

    /// Closes, and returns once every operation that passed the gate has ended (committed or
    /// rolled back on the server) and the connections are closed.
    async fn close(&self) {
        self.begin_close();
        self.gate().drained().await;
        match self {
            Backend::Sqlite(b) => {
                b.writer.close().await;
                b.reader.close().await;
            }
            Backend::Postgres(b) => b.pool.close().await,
        }
    }

    /// The gate this backend's operations pass.
    pub(crate) fn gate(&self) -> &std::sync::Arc<gate::Gate> {
        match self {
            Backend::Sqlite(b) => &b.gate,
            Backend::Postgres(b) => &b.gate,
        }
    }
}

/// A new `workflow_status` row.
#[derive(Debug)]
pub(crate) struct NewWorkflow<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub inputs: &'a str,
    pub owner_xid: &'a str,
    pub parent_id: Option<&'a str>,
    /// `Some(queue)`: `ENQUEUED` on that queue, for a dispatcher to claim; `None`: `PENDING`,
    /// run here now.
    pub queue: Option<&'a str>,
}

/// What the start upsert found: our own new row or the existing one.
#[derive(Debug, Clone)]
pub(crate) struct WorkflowRow {
    pub status: String,
    pub name: Option<String>,
    pub owner_xid: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub serialization: Option<String>,
}

/// A recorded operation (`operation_outputs` row).
#[derive(Debug, Clone)]
pub(crate) struct StepRow {
    pub function_id: i32,
    pub function_name: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub child_workflow_id: Option<String>,
    pub serialization: Option<String>,
}

/// An operation to record.
#[derive(Debug, Clone)]
pub(crate) struct StepWrite<'a> {
    pub workflow_id: &'a str,
    pub function_id: i32,
    pub function_name: &'a str,
    pub output: Option<&'a str>,
    pub error: Option<&'a str>,
    pub child_workflow_id: Option<&'a str>,
    pub serialization: Option<&'a str>,
    pub started_at_ms: i64,
    pub completed_at_ms: i64,
}

/// A workflow claimed from the internal queue, ready to run here.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub id: String,
    pub name: Option<String>,
    pub inputs: Option<String>,
    pub serialization: Option<String>,
    pub recovery_attempts: i64,
}

/// A workflow's terminal outcome, serialized.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Success(String),
    Error(String),
}

/// Pre-formatted statements for one schema prefix.
#[derive(Debug)]
struct Queries {
    insert_workflow: String,
    complete_workflow: String,
    get_workflow: String,
    record_step: String,
    load_steps: String,
    recover_pending: String,
    claim_candidates: String,
    claim: String,
    dead_letter: String,
    insert_version: String,
    send: String,
    has_message: String,
    consume: String,
    set_event: String,
    set_event_history: String,
    get_event: String,
}

impl Queries {
    fn new(p: &str) -> Queries {
        Queries {
            insert_workflow: format!(
                "INSERT INTO {p}workflow_status (workflow_uuid, status, name, inputs, executor_id, \
                 application_version, application_name, owner_xid, parent_workflow_id, queue_name, \
                 recovery_attempts, serialization, created_at, updated_at, started_at_epoch_ms, priority) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '{PORTABLE_JSON}', $12, $12, $13, 0) \
                 ON CONFLICT (workflow_uuid) DO UPDATE SET updated_at = EXCLUDED.updated_at \
                 RETURNING status, name, owner_xid, output, error, serialization"
            ),
            complete_workflow: format!(
                "UPDATE {p}workflow_status SET status = $2, output = $3, error = $4, \
                 deduplication_id = NULL, updated_at = $5, completed_at = $5 \
                 WHERE workflow_uuid = $1 AND status = 'PENDING'"
            ),
            get_workflow: format!(
                "SELECT status, name, owner_xid, output, error, serialization \
                 FROM {p}workflow_status WHERE workflow_uuid = $1"
            ),
            record_step: format!(
                "INSERT INTO {p}operation_outputs (workflow_uuid, function_id, function_name, output, error, \
                 child_workflow_id, serialization, started_at_epoch_ms, completed_at_epoch_ms, application_name) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (workflow_uuid, function_id) DO UPDATE \
                 SET completed_at_epoch_ms = {p}operation_outputs.completed_at_epoch_ms \
                 RETURNING completed_at_epoch_ms, function_name, child_workflow_id"
            ),
            load_steps: format!(
                "SELECT function_id, function_name, output, error, child_workflow_id, serialization \
                 FROM {p}operation_outputs WHERE workflow_uuid = $1"
            ),
            recover_pending: format!(
                "UPDATE {p}workflow_status SET status = 'ENQUEUED', \
                 queue_name = COALESCE(queue_name, $5), started_at_epoch_ms = NULL, updated_at = $4 \
                 WHERE status = 'PENDING' AND executor_id = $1 AND application_version = $2 \
                 AND (application_name = $3 OR application_name IS NULL)"
            ),
            claim_candidates: format!(
                "SELECT workflow_uuid FROM {p}workflow_status \
                 WHERE queue_name = $4 AND status = 'ENQUEUED' \
                 AND (application_version = $1 OR application_version IS NULL) \
                 AND (application_name = $2 OR application_name IS NULL) \
                 ORDER BY priority, created_at LIMIT $3"
            ),
            // Re-checks the row: of several processes claiming one workflow, one wins.
            claim: format!(
                "UPDATE {p}workflow_status SET status = 'PENDING', executor_id = $1, application_version = $2, \
                 application_name = $3, started_at_epoch_ms = $4, rate_limited = FALSE, \
                 recovery_attempts = COALESCE(recovery_attempts, 0) + 1, updated_at = $4 \
                 WHERE workflow_uuid = $5 AND status = 'ENQUEUED' AND queue_name = $6 \
                 AND (application_version = $2 OR application_version IS NULL) \
                 AND (application_name = $3 OR application_name IS NULL) \
                 RETURNING workflow_uuid, name, inputs, serialization, recovery_attempts"
            ),
            dead_letter: format!(
                "UPDATE {p}workflow_status SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', queue_name = NULL, \
                 deduplication_id = NULL, started_at_epoch_ms = NULL, updated_at = $2, completed_at = $2 \
                 WHERE workflow_uuid = $1 AND status = 'PENDING' AND recovery_attempts >= $3"
            ),
            insert_version: format!(
                "INSERT INTO {p}application_versions (version_id, version_name, version_timestamp, created_at, \
                 application_name) VALUES ($1, $2, $3, $3, $4) ON CONFLICT DO NOTHING"
            ),
            send: format!(
                "INSERT INTO {p}notifications (message_uuid, destination_uuid, topic, message, \
                 created_at_epoch_ms, serialization) VALUES ($1, $2, $3, $4, $5, '{PORTABLE_JSON}') \
                 ON CONFLICT (message_uuid) DO NOTHING"
            ),
            has_message: format!(
                "SELECT 1 FROM {p}notifications WHERE destination_uuid = $1 AND topic = $2 AND NOT consumed LIMIT 1"
            ),
            consume: format!(
                "UPDATE {p}notifications SET consumed = TRUE WHERE message_uuid = (\
                 SELECT message_uuid FROM {p}notifications WHERE destination_uuid = $1 AND topic = $2 \
                 AND NOT consumed ORDER BY created_at_epoch_ms, message_uuid LIMIT 1) \
                 RETURNING message, serialization"
            ),
            set_event: format!(
                "INSERT INTO {p}workflow_events (workflow_uuid, key, value, serialization) \
                 VALUES ($1, $2, $3, '{PORTABLE_JSON}') ON CONFLICT (workflow_uuid, key) \
                 DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization"
            ),
            set_event_history: format!(
                "INSERT INTO {p}workflow_events_history (workflow_uuid, function_id, key, value, serialization) \
                 VALUES ($1, $2, $3, $4, '{PORTABLE_JSON}') ON CONFLICT (workflow_uuid, function_id, key) \
                 DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization"
            ),
            get_event: format!(
                "SELECT value, serialization FROM {p}workflow_events WHERE workflow_uuid = $1 AND key = $2"
            ),
        }
    }
}

/// What the change feed saw another process (or connection) write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change<'a> {
    /// A message arrived for `<workflow>::<topic>`.
    Message(&'a str),
    /// Event `<workflow>::<key>` was set.
    Event(&'a str),
    /// Something changed that no key names (another process wrote the SQLite file, or the
    /// `LISTEN` connection was lost and notifications may be missing): every waiter re-checks.
    Unknown,
}

/// The topic DBOS stores for `send` without a topic.
pub(crate) const NULL_TOPIC: &str = "__null__topic__";

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
        let app = Backend::connect(&app_url, cfg, true).await?;
        let (sys, shared) = match sys_url {
            Some(u) if u != app_url => (Backend::connect(&u, cfg, true).await?, false),
            _ => (app.clone(), true),
        };
        let prefix = sys.prefix(&cfg.system_schema);
        let db = SysDb {
            q: Queries::new(&prefix),
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

    /// Inserts the workflow's status row, or finds the existing one (one upsert).
    pub(crate) async fn insert_workflow(&self, w: &NewWorkflow<'_>) -> Result<WorkflowRow> {
        let now = now_ms();
        let (status, queue, attempts, started) = match w.queue {
            Some(queue) => ("ENQUEUED", Some(queue), 0_i64, None),
            None => ("PENDING", None, 1_i64, Some(now)),
        };
        self.metrics.add_commit();
        on_writer!(&self.sys, |p| {
            let row = sqlx::query(&self.q.insert_workflow)
                .bind(w.id)
                .bind(status)
                .bind(w.name)
                .bind(w.inputs)
                .bind(&self.executor_id)
                .bind(&self.app_version)
                .bind(&self.app_name)
                .bind(w.owner_xid)
                .bind(w.parent_id)
                .bind(queue)
                .bind(attempts)
                .bind(now)
                .bind(started)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("starting a workflow"))?;
            let row = row
                .first()
                .ok_or_else(|| Error::db("starting a workflow")(sqlx::Error::RowNotFound))?;
            workflow_row(row)
        })
    }

    /// Writes a terminal status; `false` when the row was no longer PENDING (cancelled,
    /// dead-lettered or handed on).
    pub(crate) async fn complete_workflow(&self, id: &str, outcome: &Outcome) -> Result<bool> {
        let (status, output, error) = match outcome {
            Outcome::Success(o) => ("SUCCESS", Some(o.as_str()), None),
            Outcome::Error(e) => ("ERROR", None, Some(e.as_str())),
        };
        self.metrics.add_commit();
        on_writer!(&self.sys, |p| {
            let done = sqlx::query(&self.q.complete_workflow)
                .bind(id)
                .bind(status)
                .bind(output)
                .bind(error)
                .bind(now_ms())
                .execute(&mut *p)
                .await
                .map_err(Error::db("recording a workflow's outcome"))?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Reads a workflow's status row.
    pub(crate) async fn get_workflow(&self, id: &str) -> Result<Option<WorkflowRow>> {
        on_reader!(&self.sys, |p| {
            let row = sqlx::query(&self.q.get_workflow)
                .bind(id)
                .fetch_optional(&mut *p)
                .await
                .map_err(Error::db("reading a workflow's status"))?;
            row.as_ref().map(workflow_row).transpose()
        })
    }

    /// The greatest workflow ID (in byte order) that starts with `prefix` and is `len`
    /// characters long: a schedule's last recorded tick (the scheduler's catch-up). One scan
    /// of `workflow_status`, run once per schedule at launch.
    pub(crate) async fn last_id_with_prefix(
        &self,
        prefix: &str,
        len: usize,
    ) -> Result<Option<String>> {
        let p = self.sys.prefix(&self.schema);
        // Byte order on Postgres whatever the database's collation; SQLite compares bytes.
        let collate = if self.sys.is_postgres() {
            " COLLATE \"C\""
        } else {
            ""
        };
        let sql = format!(
            "SELECT MAX(workflow_uuid{collate}) FROM {p}workflow_status \
             WHERE substr(workflow_uuid, 1, $1) = $2 AND length(workflow_uuid) = $3"
        );
        let to_i32 = |n: usize| {
            i32::try_from(n).map_err(|_| Error::Config("a schedule name is too long".into()))
        };
        let (prefix_len, len) = (to_i32(prefix.chars().count())?, to_i32(len)?);
        on_reader!(&self.sys, |p| {
            sqlx::query_scalar::<_, Option<String>>(&sql)
                .bind(prefix_len)
                .bind(prefix)
                .bind(len)
                .fetch_one(&mut *p)
                .await
                .map_err(Error::db("reading a schedule's last tick"))
        })
    }

    /// Reads every recorded operation of a workflow (once, when it is resumed).
    pub(crate) async fn load_steps(&self, id: &str) -> Result<Vec<StepRow>> {
        on_reader!(&self.sys, |p| {
            let rows = sqlx::query(&self.q.load_steps)
                .bind(id)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("reading recorded steps"))?;
            rows.iter().map(step_row).collect()
        })
    }

    /// Records an operation (one statement, one commit). Fails with `ConcurrentExecution`
    /// when another execution recorded this position first.
    pub(crate) async fn record_step(&self, s: &StepWrite<'_>) -> Result<()> {
        self.metrics.add_commit();
        let row = on_writer!(&self.sys, |p| {
            bind_step(&self.q.record_step, s, &self.app_name)
                .fetch_all(&mut *p)
                .await
                .and_then(|rows| {
                    rows.first()
                        .ok_or(sqlx::Error::RowNotFound)?
                        .try_get::<Option<i64>, _>(0)
                })
                .map_err(Error::db("recording a step"))
        })?;
        check_step_written(s, row)
    }

    /// Moves this executor's PENDING workflows of this version back to their queue, or to
    /// `queue` for those started without one.
    pub(crate) async fn recover_pending(&self, queue: &str) -> Result<u64> {
        on_writer!(&self.sys, |p| {
            let done = sqlx::query(&self.q.recover_pending)
                .bind(&self.executor_id)
                .bind(&self.app_version)
                .bind(&self.app_name)
                .bind(now_ms())
                .bind(queue)
                .execute(&mut *p)
                .await
                .map_err(Error::db("recovering pending workflows"))?;
            Ok(done.rows_affected())
        })
    }

    /// Claims up to `limit` workflows enqueued on `queue` for this executor.
    ///
    /// Candidates are read without writing anything (an idle dispatcher costs no commit); each
    /// is then claimed by an update that re-checks it, so of several processes one wins.
    pub(crate) async fn claim(&self, queue: &str, limit: i64) -> Result<Vec<Claimed>> {
        let ids: Vec<String> = on_reader!(&self.sys, |p| {
            sqlx::query_scalar(&self.q.claim_candidates)
                .bind(&self.app_version)
                .bind(&self.app_name)
                .bind(limit)
                .bind(queue)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("finding enqueued workflows"))
        })?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            claimed.extend(self.claim_one(queue, id).await?);
        }
        Ok(claimed)
    }

    async fn claim_one(&self, queue: &str, id: String) -> Result<Option<Claimed>> {
        self.metrics.add_commit();
        on_writer!(&self.sys, |p| {
            let row = sqlx::query(&self.q.claim)
                .bind(&self.executor_id)
                .bind(&self.app_version)
                .bind(&self.app_name)
                .bind(now_ms())
                .bind(id)
                .bind(queue)
                .fetch_all(&mut *p)
                .await;
            match row {
                Ok(rows) => rows.first().map(claimed_row).transpose(),
                Err(e) => Err(Error::db("claiming an enqueued workflow")(e)),
            }
        })
    }

    /// Sets a workflow aside after too many recovery attempts.
    pub(crate) async fn dead_letter(&self, id: &str, attempts: i64) -> Result<bool> {
        on_writer!(&self.sys, |p| {
            let done = sqlx::query(&self.q.dead_letter)
                .bind(id)
                .bind(now_ms())
                .bind(attempts)
                .execute(&mut *p)
                .await
                .map_err(Error::db("dead-lettering a workflow"))?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Records this application version (DBOS tools list versions from here).
    pub(crate) async fn insert_app_version(&self) -> Result<()> {
        on_writer!(&self.sys, |p| {
            sqlx::query(&self.q.insert_version)
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(&self.app_version)
                .bind(now_ms())
                .bind(&self.app_name)
                .execute(&mut *p)
                .await
                .map_err(Error::db("recording the application version"))?;
            Ok(())
        })
    }

    /// A creation time for a message: the clock, but strictly increasing within this process so
    /// that messages from one sender keep their order.
    fn message_time(&self) -> i64 {
        let now = now_ms();
        let mut last = match self.last_message_ms.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *last = (*last + 1).max(now);
        *last
    }

    /// Inserts a message, with the sender's marker row when sent from a workflow, in one transaction.
    pub(crate) async fn send(
        &self,
        message_uuid: &str,
        destination: &str,
        topic: &str,
        message: &str,
        marker: Option<&StepWrite<'_>>,
    ) -> Result<()> {
        let created = self.message_time();
        let map = |e: sqlx::Error| {
            if is_fk_violation(&e) {
                Error::NonExistentWorkflow(destination.to_owned())
            } else {
                Error::db("sending a message")(e)
            }
        };
        self.metrics.add_commit();
        in_write_tx!(&self.sys, "sending a message", |t| {
            let inserted = sqlx::query(&self.q.send)
                .bind(message_uuid)
                .bind(destination)
                .bind(topic)
                .bind(message)
                .bind(created)
                .execute(&mut *t)
                .await
                .map_err(map);
            match (inserted, marker) {
                (Err(e), _) => Err(e),
                (Ok(_), None) => Ok(()),
                (Ok(_), Some(s)) => {
                    let row = bind_step(&self.q.record_step, s, &self.app_name)
                        .fetch_one(&mut *t)
                        .await
                        .map_err(Error::db("recording a send"))?;
                    check_step_written(s, row.try_get(0).map_err(Error::db("recording a send"))?)
                }
            }
        })
    }

    /// Whether an unconsumed message waits on `topic` for `workflow`.
    pub(crate) async fn has_message(&self, workflow: &str, topic: &str) -> Result<bool> {
        on_reader!(&self.sys, |p| {
            let row = sqlx::query(&self.q.has_message)
                .bind(workflow)
                .bind(topic)
                .fetch_optional(&mut *p)
                .await
                .map_err(Error::db("checking for messages"))?;
            Ok(row.is_some())
        })
    }

    /// Consumes the oldest message on `topic` (if any) and records the `recv` step with it (or
    /// with JSON `null`) in one transaction: a message is delivered exactly once.
    pub(crate) async fn consume_message(
        &self,
        step: &StepWrite<'_>,
        topic: &str,
    ) -> Result<Option<(String, Option<String>)>> {
        self.metrics.add_commit();
        in_write_tx!(&self.sys, "receiving a message", |t| {
            let msg = sqlx::query(&self.q.consume)
                .bind(step.workflow_id)
                .bind(topic)
                .fetch_optional(&mut *t)
                .await
                .map_err(Error::db("receiving a message"))?;
            let msg: Option<(String, Option<String>)> = match msg {
                Some(r) => Some((
                    r.try_get(0).map_err(Error::db("receiving a message"))?,
                    r.try_get(1).map_err(Error::db("receiving a message"))?,
                )),
                None => None,
            };
            let mut s = step.clone();
            match &msg {
                Some((text, tag)) => {
                    s.output = Some(text);
                    s.serialization = Some(tag.as_deref().unwrap_or(PORTABLE_JSON));
                }
                None => {
                    s.output = Some("null");
                    s.serialization = Some(PORTABLE_JSON);
                }
            }
            let row = bind_step(&self.q.record_step, &s, &self.app_name)
                .fetch_one(&mut *t)
                .await
                .map_err(Error::db("recording a recv"))?;
            check_step_written(&s, row.try_get(0).map_err(Error::db("recording a recv"))?)
                .map(|()| msg)
        })
    }

    /// Sets an event (last value wins), its history row and, from a workflow body, the
    /// marker row, in one transaction; then notifies listeners on Postgres.
    pub(crate) async fn set_event(
        &self,
        workflow: &str,
        function_id: i32,
        key: &str,
        value: &str,
        marker: Option<&StepWrite<'_>>,
    ) -> Result<()> {
        self.metrics.add_commit();
        in_write_tx!(&self.sys, "setting an event", |t| {
            sqlx::query(&self.q.set_event)
                .bind(workflow)
                .bind(key)
                .bind(value)
                .execute(&mut *t)
                .await
                .map_err(Error::db("setting an event"))?;
            sqlx::query(&self.q.set_event_history)
                .bind(workflow)
                .bind(function_id)
                .bind(key)
                .bind(value)
                .execute(&mut *t)
                .await
                .map_err(Error::db("setting an event"))?;
            if let Some(s) = marker {
                let row = bind_step(&self.q.record_step, s, &self.app_name)
                    .fetch_one(&mut *t)
                    .await
                    .map_err(Error::db("recording a set_event"))?;
                check_step_written(
                    s,
                    row.try_get(0).map_err(Error::db("recording a set_event"))?,
                )?;
            }
            Ok::<(), Error>(())
        })?;
        if let Backend::Postgres(b) = &self.sys {
            b.notify(postgres::EVENTS_CHANNEL, &format!("{workflow}::{key}"))
                .await;
        }
        Ok(())
    }

    /// Reads an event's current value and its serialization tag.
    pub(crate) async fn get_event(
        &self,
        workflow: &str,
        key: &str,
    ) -> Result<Option<(String, Option<String>)>> {
        on_reader!(&self.sys, |p| {
            let row = sqlx::query(&self.q.get_event)
                .bind(workflow)
                .bind(key)
                .fetch_optional(&mut *p)
                .await
                .map_err(Error::db("reading an event"))?;
            match row {
                Some(r) => Ok(Some((
                    r.try_get(0).map_err(Error::db("reading an event"))?,
                    r.try_get(1).map_err(Error::db("reading an event"))?,
                ))),
                None => Ok(None),
            }
        })
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

    /// Opens an application transaction.
    pub(crate) async fn begin_app(&self, opts: &TxOptions) -> Result<Tx> {
        Tx::begin(&self.app, opts).await
    }

    /// Reads a `transaction_outputs` row inside an app transaction (separate-database setup).
    pub(crate) async fn read_transaction_output(
        &self,
        tx: &mut Tx,
        workflow: &str,
        function_id: i32,
    ) -> Result<Option<(String, Option<String>, Option<String>)>> {
        tx.read_transaction_output(&self.app_prefix, workflow, function_id)
            .await
    }

    /// Writes the checkpoint of a transaction step inside its app transaction: the
    /// `operation_outputs` row when the databases are shared, else a `transaction_outputs` row.
    pub(crate) async fn write_checkpoint_in(&self, tx: &mut Tx, s: &StepWrite<'_>) -> Result<()> {
        if self.shared {
            // The app prefix is the system prefix here. A plain INSERT (a duplicate means
            // another execution recorded the step: rule 10's outcome): `ON CONFLICT` would read
            // the index page under SERIALIZABLE and make concurrent steps conflict falsely.
            tx.insert_step_in(&self.app_prefix, s, &self.app_name).await
        } else {
            tx.write_transaction_output(&self.app_prefix, s, &self.executor_id)
                .await
        }
    }

    /// Records a transaction's error in `transaction_outputs` (its own app transaction) when the
    /// databases are separate; nothing when shared.
    pub(crate) async fn write_transaction_error(&self, s: &StepWrite<'_>) -> Result<()> {
        if self.shared {
            return Ok(());
        }
        let opts = TxOptions::default();
        let mut tx = Tx::begin(&self.app, &opts).await?;
        tx.write_transaction_output(&self.app_prefix, s, &self.executor_id)
            .await?;
        self.metrics.add_commit();
        tx.commit().await
    }
}

fn bind_step<'q, DB>(
    sql: &'q str,
    s: &'q StepWrite<'q>,
    app_name: &'q str,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i32: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    sqlx::query(sql)
        .bind(s.workflow_id)
        .bind(s.function_id)
        .bind(s.function_name)
        .bind(s.output)
        .bind(s.error)
        .bind(s.child_workflow_id)
        .bind(s.serialization)
        .bind(s.started_at_ms)
        .bind(s.completed_at_ms)
        .bind(app_name)
}

fn claimed_row<R: Row>(r: &R) -> Result<Claimed>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let e = || Error::db("claiming an enqueued workflow");
    Ok(Claimed {
        id: r.try_get(0).map_err(e())?,
        name: r.try_get(1).map_err(e())?,
        inputs: r.try_get(2).map_err(e())?,
        serialization: r.try_get(3).map_err(e())?,
        recovery_attempts: r.try_get::<Option<i64>, _>(4).map_err(e())?.unwrap_or(0),
    })
}

/// Rule 10: the returned completion time is ours unless another execution wrote the row first.
fn check_step_written(s: &StepWrite<'_>, completed: Option<i64>) -> Result<()> {
    if completed == Some(s.completed_at_ms) {
        Ok(())
    } else {
        Err(Error::ConcurrentExecution {
            workflow_id: s.workflow_id.to_owned(),
            function_id: s.function_id,
        })
    }
}

fn workflow_row<R: Row>(row: &R) -> Result<WorkflowRow>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let map = Error::db("reading a workflow row");
    let get = |i: usize| row.try_get::<Option<String>, _>(i);
    Ok(WorkflowRow {
        status: get(0).map_err(map)?.unwrap_or_default(),
        name: get(1).map_err(Error::db("reading a workflow row"))?,
        owner_xid: get(2).map_err(Error::db("reading a workflow row"))?,
        output: get(3).map_err(Error::db("reading a workflow row"))?,
        error: get(4).map_err(Error::db("reading a workflow row"))?,
        serialization: get(5).map_err(Error::db("reading a workflow row"))?,
    })
}

fn step_row<R: Row>(row: &R) -> Result<StepRow>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i32: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let e = || Error::db("reading a step row");
    Ok(StepRow {
        function_id: row.try_get(0).map_err(e())?,
        function_name: row.try_get(1).map_err(e())?,
        output: row.try_get(2).map_err(e())?,
        error: row.try_get(3).map_err(e())?,
        child_workflow_id: row.try_get(4).map_err(e())?,
        serialization: row.try_get(5).map_err(e())?,
    })
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
