//! [`TxQuery`]: a statement being built on a [`Tx`] (bind, then execute or fetch), and
//! [`FromRow`], the row types it decodes on both backends.

use super::param::{bind_pg, pg_sql, Param};
use super::{Inner, Tx};
use crate::error::{Error, Result};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use std::fmt;

/// Row types a [`Tx`] can return: `sqlx::FromRow` on both backends.
pub trait FromRow:
    for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}
impl<T> FromRow for T where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}

/// A statement being built on a [`Tx`]: bind its parameters, then execute or fetch.
#[must_use = "a query does nothing until executed or fetched"]
pub struct TxQuery<'t> {
    pub(super) tx: &'t mut Tx,
    pub(super) sql: &'t str,
    pub(super) params: Vec<Param>,
}

impl fmt::Debug for TxQuery<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxQuery")
            .field("sql", &self.sql)
            .field("params", &self.params)
            .finish()
    }
}

impl<'t> TxQuery<'t> {
    /// Binds the next `$n` parameter.
    pub fn bind(mut self, value: impl Into<Param>) -> Self {
        self.params.push(value.into());
        self
    }

    /// Runs the statement and returns the number of rows it affected.
    pub async fn execute(self) -> Result<u64> {
        self.run_execute(false).await
    }

    /// Runs the statement and, with `commit`, the `COMMIT` after it in the same round trip.
    pub(super) async fn run_execute(self, commit: bool) -> Result<u64> {
        let TxQuery { tx, sql, params } = self;
        let r = match &mut tx.inner {
            Inner::Sqlite(t) => t.execute(sql, &params, commit).await,
            Inner::Postgres(t) if commit => t.execute_and_commit(sql, &params).await,
            Inner::Postgres(t) => {
                let sql = pg_sql(sql, &params);
                bind_pg(&sql, &params)
                    .execute(&mut **t)
                    .await
                    .map(|r| r.rows_affected())
            }
        };
        r.map_err(|e| tx.fail(e))
    }

    /// Runs the query and decodes every row.
    pub async fn fetch_all<T: FromRow>(self) -> Result<Vec<T>> {
        let TxQuery { tx, sql, params } = self;
        let r = match &mut tx.inner {
            Inner::Sqlite(t) => t.fetch_all(sql, &params).await.and_then(|rows| {
                rows.iter()
                    .map(<T as sqlx::FromRow<SqliteRow>>::from_row)
                    .collect()
            }),
            Inner::Postgres(t) => {
                let sql = pg_sql(sql, &params);
                bind_pg(&sql, &params)
                    .fetch_all(&mut **t)
                    .await
                    .and_then(|rows| {
                        rows.iter()
                            .map(<T as sqlx::FromRow<PgRow>>::from_row)
                            .collect()
                    })
            }
        };
        r.map_err(|e| tx.fail(e))
    }

    /// Runs the query and decodes its first row, if any.
    pub async fn fetch_optional<T: FromRow>(self) -> Result<Option<T>> {
        let TxQuery { tx, sql, params } = self;
        let r = match &mut tx.inner {
            Inner::Sqlite(t) => t.fetch_optional(sql, &params).await.and_then(|row| {
                row.as_ref()
                    .map(<T as sqlx::FromRow<SqliteRow>>::from_row)
                    .transpose()
            }),
            Inner::Postgres(t) => {
                let sql = pg_sql(sql, &params);
                bind_pg(&sql, &params)
                    .fetch_optional(&mut **t)
                    .await
                    .and_then(|row| {
                        row.as_ref()
                            .map(<T as sqlx::FromRow<PgRow>>::from_row)
                            .transpose()
                    })
            }
        };
        r.map_err(|e| tx.fail(e))
    }

    /// Runs the query and decodes its first row; no row is a [`Error::Database`] error whose
    /// source is `sqlx::Error::RowNotFound`.
    pub async fn fetch_one<T: FromRow>(self) -> Result<T> {
        match self.fetch_optional().await? {
            Some(v) => Ok(v),
            None => Err(Error::Database {
                doing: "running a transaction statement",
                source: sqlx::Error::RowNotFound,
            }),
        }
    }

    /// Runs the query and decodes the first column of its first row
    /// (`SELECT COUNT(*) …`, `… RETURNING id`).
    pub async fn fetch_scalar<T>(self) -> Result<T>
    where
        (T,): FromRow,
    {
        self.fetch_one::<(T,)>().await.map(|(v,)| v)
    }
}
