//! Postgres: a bounded pool, DBOS's schema `dbos`, and LISTEN/NOTIFY for cross-process wake-ups.

use super::{retry_connect, Change, SCHEMA_VERSION};
use crate::config::DbosConfig;
use crate::error::{Error, Result};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Row};
use std::str::FromStr;
use std::time::Duration;

const DDL: &str = include_str!("postgres.sql");
pub(crate) const NOTIFICATIONS_CHANNEL: &str = "dbos_notifications_channel";
pub(crate) const EVENTS_CHANNEL: &str = "dbos_workflow_events_channel";
pub(crate) const STREAMS_CHANNEL: &str = "dbos_streams_channel";
/// Ours (DBOS has none): the payload is a workflow ID just cancelled, so a process running it
/// stops it at once instead of at its next checkpoint write.
pub(crate) const CANCEL_CHANNEL: &str = "dbos_workflow_cancel_channel";
const MIGRATION_LOCK: i64 = 1234567890;

#[derive(Clone, Debug)]
pub(crate) struct PgDb {
    pub(crate) pool: PgPool,
    /// Every operation of the runtime passes it (see `gate.rs`).
    pub(crate) gate: std::sync::Arc<super::gate::Gate>,
    /// The database's default collation orders text by code point (`C`, `POSIX`, `C.UTF-8`
    /// under libc), so a key range holds exactly the IDs with a given prefix.
    pub(crate) code_point_order: bool,
}

/// Whether the database's default collation orders text by code point; `false` when unsure.
async fn code_point_order(pool: &PgPool) -> bool {
    // `datlocprovider` exists from Postgres 15 on ('c' libc, 'i' ICU); read through JSON so that
    // older servers answer NULL instead of failing.
    let row: std::result::Result<(Option<String>, Option<String>), _> = sqlx::query_as(
        "SELECT datcollate::TEXT, to_jsonb(d) ->> 'datlocprovider' FROM pg_database d \
         WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await;
    match row {
        Ok((Some(collate), provider)) => {
            matches!(provider.as_deref(), None | Some("c"))
                && matches!(collate.as_str(), "C" | "POSIX" | "C.UTF-8" | "C.utf8")
        }
        _ => false,
    }
}

fn redact(opts: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        opts.get_username(),
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap_or("")
    )
}

/// A pooled connection idle for longer than this is pinged before it is handed out.
///
/// sqlx pings every connection when it goes back to the pool, and by default again when it is
/// taken out: a round trip to the server per database call that carries no statement (about
/// one in two round trips of a workflow). A connection that went back a moment ago was just
/// checked, so only one that sat idle long enough to have been cut (a server restart, an idle
/// timeout, a network change) is checked again.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

async fn check_idle(
    conn: &mut sqlx::PgConnection,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> std::result::Result<bool, sqlx::Error> {
    if meta.idle_for >= PING_IF_IDLE_FOR {
        sqlx::Connection::ping(conn).await?;
    }
    Ok(true)
}

impl PgDb {
    pub(crate) async fn connect(url: &str, cfg: &DbosConfig, create: bool) -> Result<PgDb> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Config(format!("malformed Postgres URL: {e}")))?
            .log_statements(tracing::log::LevelFilter::Trace);
        if create {
            create_database(&opts).await?;
        }
        let what = format!("Postgres database {}", redact(&opts));
        let pool = retry_connect(&what, || {
            PgPoolOptions::new()
                .max_connections(cfg.max_connections.max(2))
                .acquire_timeout(Duration::from_secs(60))
                .test_before_acquire(false)
                .before_acquire(|conn, meta| Box::pin(check_idle(conn, meta)))
                .connect_with(opts.clone())
        })
        .await?;
        let code_point_order = code_point_order(&pool).await;
        Ok(PgDb {
            pool,
            gate: Default::default(),
            code_point_order,
        })
    }

    /// Creates DBOS's schema at version 108, or finishes a DBOS-made one (SYSDB.md §2), under
    /// DBOS's advisory lock so that processes launching together do not race.
    pub(crate) async fn migrate(&self, schema: &str) -> Result<()> {
        let ddl = DDL.replace("dbos.", &format!("{schema}.")).replace(
            "CREATE SCHEMA IF NOT EXISTS dbos;",
            &format!("CREATE SCHEMA IF NOT EXISTS {schema};"),
        );
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(Error::db("migrating the system database"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut locked = false;
        while !locked && tokio::time::Instant::now() < deadline {
            locked = sqlx::query("SELECT pg_try_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .fetch_one(&mut *conn)
                .await
                .and_then(|r| r.try_get::<bool, _>(0))
                .map_err(Error::db("taking the migration lock"))?;
            if !locked {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        let result = self.migrate_locked(&mut conn, schema, &ddl).await;
        if locked {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await;
        }
        result
    }

    async fn migrate_locked(
        &self,
        conn: &mut sqlx::PgConnection,
        schema: &str,
        ddl: &str,
    ) -> Result<()> {
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(format!("{schema}.dbos_migrations"))
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db("reading dbos_migrations"))?;
        let version: Option<i64> = if exists.is_some() {
            sqlx::query_scalar(&format!(
                "SELECT MAX(version) FROM {schema}.dbos_migrations"
            ))
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db("reading dbos_migrations"))?
        } else {
            None
        };
        match version {
            None => {
                let mut tx = conn
                    .begin()
                    .await
                    .map_err(Error::db("migrating the system database"))?;
                if exists.is_none() {
                    sqlx::raw_sql(ddl)
                        .execute(&mut *tx)
                        .await
                        .map_err(Error::db("creating the system tables"))?;
                }
                sqlx::query(&format!(
                    "INSERT INTO {schema}.dbos_migrations (version) VALUES ($1)"
                ))
                .bind(SCHEMA_VERSION)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("recording the migration"))?;
                tx.commit()
                    .await
                    .map_err(Error::db("migrating the system database"))
            }
            Some(v) if v >= SCHEMA_VERSION => Ok(()),
            Some(v) if v >= 99 => {
                for n in (v + 1)..=SCHEMA_VERSION {
                    let mut tx = conn
                        .begin()
                        .await
                        .map_err(Error::db("applying a shared DBOS migration"))?;
                    if let Some(sql) = shared_migration(n, schema) {
                        sqlx::raw_sql(&sql)
                            .execute(&mut *tx)
                            .await
                            .map_err(Error::db("applying a shared DBOS migration"))?;
                    }
                    sqlx::query(&format!("UPDATE {schema}.dbos_migrations SET version = $1"))
                        .bind(n)
                        .execute(&mut *tx)
                        .await
                        .map_err(Error::db("recording the migration"))?;
                    tx.commit()
                        .await
                        .map_err(Error::db("applying a shared DBOS migration"))?;
                }
                Ok(())
            }
            Some(v) => Err(Error::Migration {
                found: v,
                why: "another DBOS SDK's private migrations are unfinished; upgrade the database with that SDK first",
            }),
        }
    }

    pub(crate) async fn create_transaction_outputs(&self, schema: &str) -> Result<()> {
        sqlx::raw_sql(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; \
             CREATE TABLE IF NOT EXISTS {schema}.transaction_outputs (workflow_uuid TEXT NOT NULL, \
             function_id INTEGER NOT NULL, output TEXT, error TEXT, txn_id TEXT, txn_snapshot TEXT, \
             executor_id TEXT, function_name TEXT NOT NULL DEFAULT '', \
             created_at BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000.0)::bigint, \
             PRIMARY KEY (workflow_uuid, function_id)); \
             CREATE INDEX IF NOT EXISTS transaction_outputs_created_at_index ON {schema}.transaction_outputs (created_at);"
        ))
        .execute(&self.pool)
        .await
        .map(|_| ())
        .or_else(|e| {
            // Two processes creating it at once: the loser sees a catalog conflict.
            if super::lost_create_race(&e) {
                Ok(())
            } else {
                Err(Error::db("creating transaction_outputs")(e))
            }
        })
    }

    /// Sends a NOTIFY; failures only delay waiters until their next poll, so they are logged.
    pub(crate) async fn notify(&self, channel: &str, payload: &str) {
        match sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await
        {
            // Shutting down: nobody in this process waits any more.
            Ok(_) | Err(sqlx::Error::PoolClosed) => {}
            Err(e) => tracing::warn!("pg_notify on {channel} failed: {e}"),
        }
    }

    /// Listens on DBOS's channels and reports each notification to `on_change`. A lost
    /// connection is reported as [`Change::Unknown`] (notifications may be missing): once it
    /// is back, and every second while it stays down, so waiters re-check until then.
    pub(crate) async fn listen(
        &self,
        on_change: impl Fn(Change<'_>) + Send + Sync + 'static,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let pool = self.pool.clone();
        let mut listener = subscribe(&pool)
            .await
            .map_err(Error::db("listening for notifications"))?;
        Ok(tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => match n.channel() {
                        NOTIFICATIONS_CHANNEL => on_change(Change::Message(n.payload())),
                        EVENTS_CHANNEL => on_change(Change::Event(n.payload())),
                        STREAMS_CHANNEL => on_change(Change::Stream(n.payload())),
                        CANCEL_CHANNEL => on_change(Change::Cancelled(n.payload())),
                        super::QUEUE_CHANNEL => on_change(Change::Queue(n.payload())),
                        _ => {}
                    },
                    // Lost and reconnected: whatever was sent in between is gone.
                    Ok(None) => on_change(Change::Unknown),
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::debug!("LISTEN connection failed (reconnecting): {e}");
                        loop {
                            on_change(Change::Unknown);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            match subscribe(&pool).await {
                                Ok(l) => {
                                    listener = l;
                                    on_change(Change::Unknown);
                                    break;
                                }
                                Err(sqlx::Error::PoolClosed) => return,
                                Err(e) => tracing::debug!("LISTEN reconnect failed: {e}"),
                            }
                        }
                    }
                }
            }
        }))
    }
}

/// A fresh LISTEN connection on DBOS's three channels and our two.
async fn subscribe(pool: &PgPool) -> std::result::Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([
            NOTIFICATIONS_CHANNEL,
            EVENTS_CHANNEL,
            STREAMS_CHANNEL,
            CANCEL_CHANNEL,
            super::QUEUE_CHANNEL,
        ])
        .await?;
    Ok(listener)
}

/// Creates the database named in the URL when it does not exist.
async fn create_database(opts: &PgConnectOptions) -> Result<()> {
    let Some(name) = opts.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let admin = opts.clone().database("postgres");
    let what = format!("Postgres server {}", redact(opts));
    let mut conn = retry_connect(&what, || admin.connect()).await?;
    let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await
        .map_err(Error::db("checking whether the database exists"))?
        .is_some();
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        if let Err(e) = sqlx::raw_sql(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut conn)
            .await
        {
            // Another process created it first.
            let raced = matches!(&e, sqlx::Error::Database(d)
                if d.code().as_deref() == Some("42P04") || d.code().as_deref() == Some("23505"));
            if !raced {
                return Err(Error::db("creating the database")(e));
            }
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// The shared DBOS migrations 100–108 for Postgres (SYSDB.md §3.3).
fn shared_migration(n: i64, s: &str) -> Option<String> {
    Some(match n {
        100 => format!("ALTER TABLE {s}.workflow_status ADD COLUMN IF NOT EXISTS application_name TEXT DEFAULT NULL"),
        101 => format!("ALTER TABLE {s}.queues ADD COLUMN IF NOT EXISTS application_name TEXT DEFAULT NULL"),
        102 => format!("ALTER TABLE {s}.workflow_schedules ADD COLUMN IF NOT EXISTS application_name TEXT DEFAULT NULL"),
        103 => format!("ALTER TABLE {s}.application_versions ADD COLUMN IF NOT EXISTS application_name TEXT DEFAULT NULL"),
        104 => format!("ALTER TABLE {s}.operation_outputs ADD COLUMN IF NOT EXISTS application_name TEXT DEFAULT NULL"),
        106 => format!("CREATE UNIQUE INDEX IF NOT EXISTS uq_application_versions_owner_version ON {s}.application_versions (application_name, version_name) WHERE application_name IS NOT NULL"),
        107 => format!("CREATE UNIQUE INDEX IF NOT EXISTS uq_application_versions_unclaimed_version ON {s}.application_versions (version_name) WHERE application_name IS NULL"),
        108 => format!("ALTER TABLE {s}.queues ADD COLUMN IF NOT EXISTS partition_concurrency INT4 DEFAULT NULL, \
                        ADD COLUMN IF NOT EXISTS partition_worker_concurrency INT4 DEFAULT NULL, \
                        ADD COLUMN IF NOT EXISTS partition_rate_limit_max INT4 DEFAULT NULL, \
                        ADD COLUMN IF NOT EXISTS partition_rate_limit_period_sec DOUBLE PRECISION DEFAULT NULL"),
        _ => return None,
    })
}
