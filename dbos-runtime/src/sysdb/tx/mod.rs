//! `Tx`: an application-database transaction that runs the same SQL text on SQLite and Postgres.
//!
//! The user writes one SQL string with `$1, $2, …` placeholders (both SQLite and Postgres read
//! them), binds [`Param`]s, and decodes rows with `sqlx::FromRow`. Each `Param` has one
//! encoding per backend, chosen so that a value read back equals the value bound on both:
//! decimals are exact ([`Numeric`]: NUMERIC on Postgres, text on SQLite) and timestamps keep
//! microseconds (Postgres' resolution) and sort as text on SQLite.

mod checkpoint;
mod numeric;
mod outbox;
mod param;
mod pg;
mod query;
mod sqlite;

pub use numeric::Numeric;
pub use param::Param;
pub use query::{FromRow, TxQuery};

use super::Backend;
use crate::error::{Error, Result};
use pg::PgTx;
use sqlite::{SqliteConn, SqliteState, SqliteTx};
use std::fmt;

/// Isolation level of a `#[transaction]` on Postgres. SQLite transactions are always
/// serializable (one writer at a time), whatever is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// `SERIALIZABLE`: the default. Concurrent transactions behave as if run one after the
    /// other; the losers of a conflict are retried transparently.
    Serializable,
    /// `REPEATABLE READ`: a snapshot; concurrent updates of one row still conflict (and retry).
    RepeatableRead,
    /// `READ COMMITTED`: each statement sees what is committed when it starts.
    ReadCommitted,
}

/// Options of a `#[transaction]`: `#[transaction(isolation = "read_committed", read_only)]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TxOptions {
    /// `None`: the default, `SERIALIZABLE` on Postgres.
    pub isolation: Option<Isolation>,
    /// A read-only transaction: `READ ONLY` on Postgres, a reader connection on SQLite (it does
    /// not wait for the writer). Its result is still recorded in a workflow, after it ends.
    pub read_only: bool,
    /// How the transaction's output is stored: `#[transaction(serialization = "bincode")]`.
    pub format: crate::serialization::Format,
}

/// A database transaction on the application database, opened by the runtime for a
/// `#[transaction]` function and committed when the function returns `Ok`.
///
/// # One SQL text for both backends
/// Write each statement once, with `$1, $2, …` placeholders: SQLite and Postgres both accept
/// them, so the same string runs on either database. Bind values in placeholder order with
/// [`TxQuery::bind`]; each becomes a [`Param`] whose encoding is chosen per backend (see its
/// variants). Decode rows into any type that implements `sqlx::FromRow` for both backends
/// (`#[derive(sqlx::FromRow)]` on a struct of portable field types does; so do tuples):
/// integers, `f64`, `String`, `bool`, `Vec<u8>`, `DateTime<Utc>`, `NaiveDateTime`,
/// `NaiveDate`, [`Numeric`] for exact decimals, and `Option`s of those.
///
/// Use `$n`, never `?` (Postgres rejects it); a `$n` may appear several times. Standard SQL
/// that both dialects share (`INSERT … ON CONFLICT (…) DO NOTHING`, `UPDATE … RETURNING`,
/// `CAST(… AS BIGINT)`) runs unchanged. What stays backend-specific is DDL (column types) and
/// SQL functions that differ (`now()`, `strftime`, …); [`Tx::backend_name`] lets the rare
/// query branch.
///
/// Timestamps bind at microsecond resolution on both backends (`DateTime<Utc>`: `TIMESTAMPTZ`
/// on Postgres, fixed-width RFC 3339 text on SQLite, which sorts in time order); decimals bind
/// exactly (see [`Numeric`]). Declare such columns `TIMESTAMPTZ`/`NUMERIC` on Postgres and
/// `TEXT` on SQLite.
///
/// ```
/// # use dbos_runtime::prelude::*;
/// # use dbos_runtime::{Numeric, Runtime};
/// #[derive(sqlx::FromRow)]
/// struct Product {
///     name: String,
///     price: Numeric,
///     inventory: i64,
/// }
///
/// #[transaction]
/// async fn cheap_products(tx: &mut Tx, max: Numeric) -> Result<Vec<String>, Error> {
///     let rows: Vec<Product> = tx
///         .query("SELECT name, price, inventory FROM products WHERE inventory > $1 ORDER BY name")
///         .bind(0)
///         .fetch_all()
///         .await?;
///     Ok(rows.into_iter().filter(|p| p.price <= max).map(|p| p.name).collect())
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// # let rt = Runtime::launch(DbosConfig::new("doc").with_database_url("sqlite::memory:")).await?;
/// # rt.scope(async {
/// #     setup().await?;
/// let names = cheap_products("10.00".parse().unwrap()).await?;
/// assert_eq!(names, ["bolt"]);
/// #     Ok::<(), Error>(())
/// # }).await?;
/// # rt.shutdown().await;
/// # Ok(())
/// # }
/// # #[transaction]
/// # async fn setup(tx: &mut Tx) -> Result<(), Error> {
/// #     tx.query("CREATE TABLE products (name TEXT, price TEXT, inventory BIGINT)").execute().await?;
/// #     for (name, price) in [("bolt", "0.10"), ("widget", "99.99")] {
/// #         tx.query("INSERT INTO products VALUES ($1, $2, 5)")
/// #             .bind(name).bind(price.parse::<Numeric>().unwrap()).execute().await?;
/// #     }
/// #     Ok(())
/// # }
/// ```
///
/// # Rules of the road
/// - On Postgres a failed statement aborts the whole transaction: prefer `ON CONFLICT …` or
///   `WHERE` guards to catching a statement's error and going on. (If the function still
///   returns `Ok`, the runtime reports the aborted transaction instead of committing.)
/// - Don't call other DBOS operations (workflows, steps that write, `send`, another
///   `#[transaction]`) from a transaction body: on SQLite the body holds the only write
///   connection. A nested `#[transaction]` is refused with [`Error::InStep`].
/// - The body may run more than once before it commits (conflicts are retried, a crash before
///   the commit re-runs it): keep side effects other than its SQL out of it.
/// - Money: keep the arithmetic exact. Bind and read [`Numeric`] (or integer cents); on SQLite
///   do the arithmetic in Rust (`SELECT`, compute, `UPDATE … SET price = $1`) rather than in SQL,
///   where SQLite computes with doubles.
pub struct Tx {
    inner: Inner,
    /// Holds the backend's gate open until the transaction ends (see `gate.rs`).
    _pass: super::gate::Pass,
    /// A statement failed with a retryable conflict; the runtime retries the whole transaction.
    pub(crate) conflicted: bool,
    /// A statement failed (on Postgres this aborts the transaction).
    failed: bool,
    /// The transaction runs on the system database, where [`Tx::enqueue`] can write.
    pub(crate) on_system_db: bool,
    /// Workflows enqueued by [`Tx::enqueue`] so far.
    pub(crate) enqueued: u32,
}

enum Inner {
    Sqlite(SqliteTx),
    Postgres(PgTx),
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("backend", &self.backend_name())
            .finish()
    }
}

impl Tx {
    pub(crate) async fn begin(backend: &Backend, opts: &TxOptions) -> Result<Tx> {
        let pass = backend.gate().enter()?;
        let inner = match backend {
            // SQLite transactions are always serializable. Writers take the one write
            // connection with BEGIN IMMEDIATE (the write lock up front, so two writers never
            // deadlock upgrading a read lock); read-only ones read a WAL snapshot on a reader.
            Backend::Sqlite(b) => {
                if opts.read_only {
                    let conn = b.reader.acquire().await.map_err(begin_err)?;
                    Inner::Sqlite(SqliteTx {
                        conn: SqliteConn::Reader(conn),
                        begin: "BEGIN",
                        state: SqliteState::NotBegun,
                    })
                } else {
                    // The writer joins the current group commit; a savepoint makes this
                    // transaction undoable alone.
                    // The first statement opens the savepoint (see `SqliteTx::text`).
                    let guard = b.writer.take().await?;
                    Inner::Sqlite(SqliteTx {
                        conn: SqliteConn::Writer(Some(guard)),
                        begin: "",
                        state: SqliteState::NotBegun,
                    })
                }
            }
            Backend::Postgres(b) => {
                let begin = match (
                    opts.isolation.unwrap_or(Isolation::Serializable),
                    opts.read_only,
                ) {
                    (Isolation::Serializable, false) => "BEGIN ISOLATION LEVEL SERIALIZABLE",
                    (Isolation::Serializable, true) => {
                        "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"
                    }
                    (Isolation::RepeatableRead, false) => "BEGIN ISOLATION LEVEL REPEATABLE READ",
                    (Isolation::RepeatableRead, true) => {
                        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                    }
                    (Isolation::ReadCommitted, false) => "BEGIN ISOLATION LEVEL READ COMMITTED",
                    (Isolation::ReadCommitted, true) => {
                        "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY"
                    }
                };
                let mut conn = b.pool.acquire().await.map_err(begin_err)?;
                sqlx::Executor::execute(&mut *conn, begin)
                    .await
                    .map_err(begin_err)?;
                Inner::Postgres(PgTx { conn, open: true })
            }
        };
        Ok(Tx {
            inner,
            _pass: pass,
            conflicted: false,
            failed: false,
            on_system_db: false,
            enqueued: 0,
        })
    }

    /// Starts a statement; bind its `$n` parameters in order.
    pub fn query<'t>(&'t mut self, sql: &'t str) -> TxQuery<'t> {
        TxQuery {
            tx: self,
            sql,
            params: Vec::new(),
        }
    }

    /// Which backend this transaction runs on (`"sqlite"` or `"postgres"`), for the rare query
    /// that must differ.
    pub fn backend_name(&self) -> &'static str {
        match self.inner {
            Inner::Sqlite(_) => "sqlite",
            Inner::Postgres(_) => "postgres",
        }
    }

    fn fail(&mut self, e: sqlx::Error) -> Error {
        self.failed = true;
        if crate::error::is_conflict(&e) {
            self.conflicted = true;
        }
        Error::Database {
            doing: "running a transaction statement",
            source: e,
        }
    }

    /// When a statement failed on Postgres, the transaction is aborted and a COMMIT would
    /// silently roll back: the server's error for the aborted transaction, if so. On SQLite,
    /// the error of a transaction that SQLite may have rolled back after a failed statement.
    pub(crate) async fn aborted(&mut self) -> Option<Error> {
        match &mut self.inner {
            Inner::Sqlite(t) => t.usable().err().map(|source| Error::Database {
                doing: "committing a transaction after one of its statements failed",
                source,
            }),
            Inner::Postgres(t) if self.failed => {
                match sqlx::query("SELECT 1").execute(&mut **t).await {
                    Ok(_) => None,
                    Err(source) => Some(Error::Database {
                        doing: "committing a transaction after one of its statements failed",
                        source,
                    }),
                }
            }
            _ => None,
        }
    }

    /// Whether a transaction is open on the database (on SQLite, `BEGIN` travels with the
    /// first statement: a transaction that ran none has nothing to commit).
    pub(crate) fn began(&self) -> bool {
        match &self.inner {
            Inner::Sqlite(t) => t.state != SqliteState::NotBegun,
            Inner::Postgres(_) => true,
        }
    }

    /// Commits (on SQLite, a no-op after a statement that carried the `COMMIT`).
    pub(crate) async fn commit(self) -> Result<()> {
        let r = match self.inner {
            Inner::Sqlite(mut t) => t.commit().await.map(|_| ()),
            Inner::Postgres(mut t) => t.end("COMMIT").await,
        };
        r.map_err(|e| Error::Database {
            doing: "committing a transaction",
            source: e,
        })
    }

    pub(crate) async fn rollback(self) -> Result<()> {
        let r = match self.inner {
            Inner::Sqlite(mut t) => t.rollback().await,
            Inner::Postgres(mut t) => t.end("ROLLBACK").await,
        };
        r.map_err(|e| Error::Database {
            doing: "rolling back a transaction",
            source: e,
        })
    }
}

fn begin_err(e: sqlx::Error) -> Error {
    Error::Database {
        doing: "beginning a transaction",
        source: e,
    }
}
