//! `Tx`: an application-database transaction that runs the same SQL text on SQLite and Postgres.

use super::{Backend, StepWrite};
use crate::error::{Error, Result};
use crate::transaction::{Isolation, TxOptions};
use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::{PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::Row;

/// A database transaction on the application database, opened by the runtime for a
/// `#[transaction]` function and committed when it returns `Ok`.
///
/// Write SQL once with `$1, $2, …` placeholders; it runs on SQLite and Postgres alike:
///
/// ```ignore
/// let n = tx.query("UPDATE products SET inventory = inventory - 1 WHERE product_id = $1")
///     .bind(1)
///     .execute()
///     .await?;
/// ```
///
/// Parameters are [`Param`]s (integers, floats, text, booleans, [`Decimal`], timestamps,
/// `Option`s of those); rows decode into any type implementing `sqlx::FromRow` for both
/// backends (`#[derive(sqlx::FromRow)]` does).
pub struct Tx {
    inner: Inner,
    /// A statement failed with a retryable conflict; the runtime retries the whole transaction.
    pub(crate) conflicted: bool,
}

enum Inner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.inner {
            Inner::Sqlite(_) => "sqlite",
            Inner::Postgres(_) => "postgres",
        };
        f.debug_struct("Tx").field("backend", &backend).finish()
    }
}

/// A value bound to a `$n` placeholder.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Param {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 32-bit integer (Postgres INT4).
    I32(i32),
    /// A 64-bit integer (Postgres INT8).
    I64(i64),
    /// A double.
    F64(f64),
    /// Text.
    Text(String),
    /// An exact decimal: NUMERIC on Postgres, its text on SQLite (no rounding through floats).
    Decimal(Decimal),
    /// A UTC timestamp: TIMESTAMPTZ on Postgres, RFC 3339 text on SQLite.
    Timestamp(DateTime<Utc>),
    /// A timestamp without zone: TIMESTAMP on Postgres, text on SQLite.
    NaiveTimestamp(NaiveDateTime),
}

macro_rules! param_from {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for Param {
            fn from(v: $t) -> Param { Param::$v(v.into()) }
        }
    )*};
}
param_from!(bool => Bool, i32 => I32, i16 => I32, i64 => I64, u32 => I64, f64 => F64, f32 => F64,
    String => Text, &str => Text, Decimal => Decimal, DateTime<Utc> => Timestamp,
    NaiveDateTime => NaiveTimestamp);

impl From<&String> for Param {
    fn from(v: &String) -> Param {
        Param::Text(v.clone())
    }
}

impl<T: Into<Param>> From<Option<T>> for Param {
    fn from(v: Option<T>) -> Param {
        v.map_or(Param::Null, Into::into)
    }
}

/// Row types a [`Tx`] can return: `sqlx::FromRow` on both backends.
pub trait FromRow:
    for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}
impl<T> FromRow for T where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}

/// A statement being built on a [`Tx`]: bind parameters, then execute or fetch.
#[must_use = "a query does nothing until executed or fetched"]
pub struct TxQuery<'t> {
    tx: &'t mut Tx,
    sql: &'t str,
    params: Vec<Param>,
}

fn bind_sqlite<'q>(
    mut q: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    params: &'q [Param],
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    for p in params {
        q = match p {
            Param::Null => q.bind(None::<i64>),
            Param::Bool(v) => q.bind(*v),
            Param::I32(v) => q.bind(*v),
            Param::I64(v) => q.bind(*v),
            Param::F64(v) => q.bind(*v),
            Param::Text(v) => q.bind(v.as_str()),
            Param::Decimal(v) => q.bind(v.to_string()),
            Param::Timestamp(v) => q.bind(*v),
            Param::NaiveTimestamp(v) => q.bind(*v),
        };
    }
    q
}

fn bind_pg<'q>(
    mut q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    params: &'q [Param],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    for p in params {
        q = match p {
            Param::Null => q.bind(None::<String>),
            Param::Bool(v) => q.bind(*v),
            Param::I32(v) => q.bind(*v),
            Param::I64(v) => q.bind(*v),
            Param::F64(v) => q.bind(*v),
            Param::Text(v) => q.bind(v.as_str()),
            Param::Decimal(v) => q.bind(*v),
            Param::Timestamp(v) => q.bind(*v),
            Param::NaiveTimestamp(v) => q.bind(*v),
        };
    }
    q
}

impl<'t> TxQuery<'t> {
    /// Binds the next `$n` parameter.
    pub fn bind(mut self, value: impl Into<Param>) -> Self {
        self.params.push(value.into());
        self
    }

    fn fail(tx: &mut Tx, e: sqlx::Error) -> Error {
        if super::is_conflict(&e) {
            tx.conflicted = true;
        }
        Error::Database {
            doing: "running a transaction statement",
            source: e,
        }
    }

    /// Runs the statement and returns the number of rows it affected.
    pub async fn execute(self) -> Result<u64> {
        let TxQuery { tx, sql, params } = self;
        let r = match &mut tx.inner {
            Inner::Sqlite(t) => bind_sqlite(sqlx::query(sql), &params)
                .execute(&mut **t)
                .await
                .map(|r| r.rows_affected()),
            Inner::Postgres(t) => bind_pg(sqlx::query(sql), &params)
                .execute(&mut **t)
                .await
                .map(|r| r.rows_affected()),
        };
        r.map_err(|e| Self::fail(tx, e))
    }

    /// Runs the query and decodes every row.
    pub async fn fetch_all<T: FromRow>(self) -> Result<Vec<T>> {
        let TxQuery { tx, sql, params } = self;
        let r = match &mut tx.inner {
            Inner::Sqlite(t) => bind_sqlite(sqlx::query(sql), &params)
                .fetch_all(&mut **t)
                .await
                .and_then(|rows| rows.iter().map(<T as sqlx::FromRow<SqliteRow>>::from_row).collect()),
            Inner::Postgres(t) => bind_pg(sqlx::query(sql), &params)
                .fetch_all(&mut **t)
                .await
                .and_then(|rows| rows.iter().map(<T as sqlx::FromRow<PgRow>>::from_row).collect()),
        };
        r.map_err(|e| Self::fail(tx, e))
    }

    /// Runs the query and decodes the first row, if any.
    pub async fn fetch_optional<T: FromRow>(self) -> Result<Option<T>> {
        let TxQuery { tx, sql, params } = self;
        let r = match &mut tx.inner {
            Inner::Sqlite(t) => bind_sqlite(sqlx::query(sql), &params)
                .fetch_optional(&mut **t)
                .await
                .and_then(|row| row.as_ref().map(<T as sqlx::FromRow<SqliteRow>>::from_row).transpose()),
            Inner::Postgres(t) => bind_pg(sqlx::query(sql), &params)
                .fetch_optional(&mut **t)
                .await
                .and_then(|row| row.as_ref().map(<T as sqlx::FromRow<PgRow>>::from_row).transpose()),
        };
        r.map_err(|e| Self::fail(tx, e))
    }

    /// Runs the query and decodes its first row; no row is a `Database` error (`RowNotFound`).
    pub async fn fetch_one<T: FromRow>(self) -> Result<T> {
        match self.fetch_optional().await? {
            Some(v) => Ok(v),
            None => Err(Error::Database {
                doing: "running a transaction statement",
                source: sqlx::Error::RowNotFound,
            }),
        }
    }
}

impl Tx {
    pub(crate) async fn begin(backend: &Backend, opts: &TxOptions) -> Result<Tx> {
        let inner = match backend {
            // SQLite transactions are always serializable; IMMEDIATE takes the write lock up
            // front so that two writers never deadlock upgrading from a read lock.
            Backend::Sqlite(b) => {
                let begin = if opts.read_only { "BEGIN" } else { "BEGIN IMMEDIATE" };
                let pool = if opts.read_only { &b.reader } else { &b.writer };
                Inner::Sqlite(pool.begin_with(begin).await.map_err(begin_err)?)
            }
            Backend::Postgres(b) => {
                let level = match opts.isolation.unwrap_or(Isolation::Serializable) {
                    Isolation::Serializable => "SERIALIZABLE",
                    Isolation::RepeatableRead => "REPEATABLE READ",
                    Isolation::ReadCommitted => "READ COMMITTED",
                };
                let mode = if opts.read_only { " READ ONLY" } else { "" };
                Inner::Postgres(
                    b.pool
                        .begin_with(format!("BEGIN ISOLATION LEVEL {level}{mode}"))
                        .await
                        .map_err(begin_err)?,
                )
            }
        };
        Ok(Tx { inner, conflicted: false })
    }

    /// Starts a statement; bind its `$n` parameters in order.
    pub fn query<'t>(&'t mut self, sql: &'t str) -> TxQuery<'t> {
        TxQuery { tx: self, sql, params: Vec::new() }
    }

    /// Which backend this transaction runs on (`"sqlite"` or `"postgres"`), for the rare query
    /// that must differ.
    pub fn backend_name(&self) -> &'static str {
        match self.inner {
            Inner::Sqlite(_) => "sqlite",
            Inner::Postgres(_) => "postgres",
        }
    }

    pub(crate) async fn commit(self) -> Result<()> {
        let r = match self.inner {
            Inner::Sqlite(t) => t.commit().await,
            Inner::Postgres(t) => t.commit().await,
        };
        r.map_err(|e| Error::Database { doing: "committing a transaction", source: e })
    }

    pub(crate) async fn rollback(self) -> Result<()> {
        let r = match self.inner {
            Inner::Sqlite(t) => t.rollback().await,
            Inner::Postgres(t) => t.rollback().await,
        };
        r.map_err(|e| Error::Database { doing: "rolling back a transaction", source: e })
    }

    pub(crate) async fn record_step_in(
        &mut self,
        sql: &str,
        s: &StepWrite<'_>,
        app_name: &str,
    ) -> Result<Option<i64>> {
        let r = match &mut self.inner {
            Inner::Sqlite(t) => super::bind_step(sql, s, app_name)
                .fetch_one(&mut **t)
                .await
                .and_then(|r| r.try_get::<Option<i64>, _>(0)),
            Inner::Postgres(t) => super::bind_step(sql, s, app_name)
                .fetch_one(&mut **t)
                .await
                .and_then(|r| r.try_get::<Option<i64>, _>(0)),
        };
        r.map_err(|e| {
            if super::is_conflict(&e) {
                self.conflicted = true;
            }
            Error::Database { doing: "recording a transaction step", source: e }
        })
    }

    pub(crate) async fn read_transaction_output(
        &mut self,
        prefix: &str,
        workflow: &str,
        function_id: i32,
    ) -> Result<Option<(String, Option<String>, Option<String>)>> {
        let sql = format!(
            "SELECT function_name, output, error FROM {prefix}transaction_outputs \
             WHERE workflow_uuid = $1 AND function_id = $2"
        );
        let r = self
            .query(&sql)
            .bind(workflow)
            .bind(function_id)
            .fetch_optional::<(String, Option<String>, Option<String>)>()
            .await?;
        Ok(r)
    }

    pub(crate) async fn write_transaction_output(
        &mut self,
        prefix: &str,
        s: &StepWrite<'_>,
        executor_id: &str,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {prefix}transaction_outputs (workflow_uuid, function_id, output, error, txn_id, \
             txn_snapshot, executor_id, function_name, created_at) VALUES ($1, $2, $3, $4, '', '', $5, $6, $7)"
        );
        match self
            .query(&sql)
            .bind(s.workflow_id)
            .bind(s.function_id)
            .bind(s.output)
            .bind(s.error)
            .bind(executor_id)
            .bind(s.function_name)
            .bind(s.completed_at_ms)
            .execute()
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::Database { source, .. }) if super::unique_violation(&source) => {
                Err(Error::ConcurrentExecution {
                    workflow_id: s.workflow_id.to_owned(),
                    function_id: s.function_id,
                })
            }
            Err(e) => Err(e),
        }
    }
}

fn begin_err(e: sqlx::Error) -> Error {
    Error::Database { doing: "beginning a transaction", source: e }
}
