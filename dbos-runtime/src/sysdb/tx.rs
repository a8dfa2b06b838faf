//! `Tx`: an application-database transaction that runs the same SQL text on SQLite and Postgres.
//!
//! The user writes one SQL string with `$1, $2, …` placeholders (both SQLite and Postgres read
//! them), binds [`Param`]s, and decodes rows with `sqlx::FromRow`. Each `Param` has one
//! encoding per backend, chosen so that a value read back equals the value bound on both:
//! decimals are exact ([`Numeric`]: NUMERIC on Postgres, text on SQLite) and timestamps keep
//! microseconds (Postgres' resolution) and sort as text on SQLite.

use super::{Backend, StepWrite};
use crate::error::{Error, Result};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SubsecRound, Utc};
use rust_decimal::Decimal;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgRow, PgTypeInfo, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArgumentValue, SqliteRow, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Type, TypeInfo, ValueRef};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

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
}

enum Inner {
    Sqlite(SqliteTx),
    Postgres(PgTx),
}

/// A Postgres transaction driven by hand, so that the runtime's checkpoint insert and the
/// `COMMIT` travel in one round trip (one simple query).
struct PgTx {
    conn: PoolConnection<Postgres>,
    open: bool,
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if self.open {
            // Dropped mid-transaction (a cancelled task): closing the connection makes the
            // server roll back; the pool opens a fresh one when needed.
            self.conn.close_on_drop();
        }
    }
}

impl std::ops::Deref for PgTx {
    type Target = sqlx::PgConnection;
    fn deref(&self) -> &sqlx::PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for PgTx {
    fn deref_mut(&mut self) -> &mut sqlx::PgConnection {
        &mut self.conn
    }
}

impl PgTx {
    /// Runs `sql` with `params` inlined as literals, then `COMMIT`, as one simple query.
    async fn execute_and_commit(&mut self, sql: &str, params: &[Param]) -> sqlx::Result<u64> {
        let text = format!("{};\nCOMMIT", inline_pg(sql, params)?);
        // No arguments: sqlx sends a simple query, which may hold several statements.
        match sqlx::Executor::execute(&mut *self.conn, text.as_str()).await {
            Ok(done) => {
                self.open = false;
                Ok(done.rows_affected())
            }
            Err(e) => {
                // The transaction cannot commit any more: end it now, so that nothing depends
                // on the caller rolling back.
                let _ = self.end("ROLLBACK").await;
                Err(e)
            }
        }
    }

    async fn end(&mut self, statement: &'static str) -> sqlx::Result<()> {
        if !self.open {
            return Ok(());
        }
        let r = sqlx::Executor::execute(&mut *self.conn, statement).await;
        if r.is_ok() {
            self.open = false;
        }
        r.map(|_| ())
    }
}

/// `sql` with its `$n` placeholders replaced by literals: only for the runtime's own inserts
/// (integers, text and NULLs, whose placeholders are not inside quotes).
fn inline_pg(sql: &str, params: &[Param]) -> sqlx::Result<String> {
    let literal = |p: &Param| -> sqlx::Result<String> {
        Ok(match p {
            Param::Null | Param::I32(None) | Param::I64(None) | Param::Text(None) => {
                "NULL".to_owned()
            }
            Param::I32(Some(v)) => v.to_string(),
            Param::I64(Some(v)) => v.to_string(),
            Param::Text(Some(t)) if !t.contains('\0') => {
                format!("E'{}'", t.replace('\\', "\\\\").replace('\'', "\\'"))
            }
            other => {
                return Err(sqlx::Error::Protocol(format!(
                    "cannot inline {other:?} in a statement"
                )))
            }
        })
    };
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let digits = rest[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
        let n: usize = rest[i + 1..i + 1 + digits].parse().unwrap_or(0);
        match n.checked_sub(1).and_then(|k| params.get(k)) {
            Some(p) => out.push_str(&literal(p)?),
            None => out.push_str(&rest[i..i + 1 + digits]),
        }
        rest = &rest[i + 1 + digits..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A SQLite transaction driven by hand, to save round trips to the connection's thread:
/// `BEGIN` travels with the first statement and `COMMIT` with the runtime's checkpoint insert,
/// so a transaction step of one statement costs two (`BEGIN; UPDATE …` and `INSERT …; COMMIT`).
struct SqliteTx {
    conn: SqliteConn,
    /// `BEGIN IMMEDIATE` (writers) or `BEGIN` (readers).
    begin: &'static str,
    state: SqliteState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SqliteState {
    /// Nothing sent yet: the next statement carries the `BEGIN`.
    NotBegun,
    /// `BEGIN` ran; the transaction is open.
    Open,
    /// A statement failed with an error after which SQLite may have rolled the transaction
    /// back on its own (full disk, I/O, out of memory, busy): no further statement may run,
    /// since it would run outside any transaction.
    Poisoned,
    /// Committed or rolled back.
    Ended,
}

/// Where a SQLite transaction runs: a reader connection (read-only transactions), or the
/// writer connection inside the current group commit, under a savepoint.
enum SqliteConn {
    Reader(PoolConnection<Sqlite>),
    /// `None` once the transaction ended and the writer was given back.
    Writer(Option<super::sqlite_writer::WriteGuard>),
}

const TX_SAVEPOINT: &str = "dbos_tx";

impl SqliteConn {
    fn get(&mut self) -> sqlx::Result<&mut sqlx::SqliteConnection> {
        match self {
            SqliteConn::Reader(c) => Ok(&mut *c),
            SqliteConn::Writer(Some(g)) => Ok(&mut *g),
            SqliteConn::Writer(None) => Err(sqlx::Error::Protocol(
                "the transaction has already ended".into(),
            )),
        }
    }

    fn is_writer(&self) -> bool {
        matches!(self, SqliteConn::Writer(_))
    }

    fn close_on_drop(&mut self) {
        if let SqliteConn::Reader(c) = self {
            c.close_on_drop();
        }
        // A writer guard dropped inside its savepoint marks it for rollback by the next holder.
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        if matches!(self.state, SqliteState::Open | SqliteState::Poisoned) {
            // Dropped mid-transaction (a cancelled task): closing the connection rolls the
            // transaction back, and the pool opens a fresh one.
            self.conn.close_on_drop();
        }
    }
}

/// SQLite errors after which "the transaction may or may not be rolled back automatically"
/// (SQLite's documentation): BUSY, LOCKED, NOMEM, IOERR, CORRUPT, FULL.
fn may_have_rolled_back(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6 | 7 | 10 | 11 | 13)),
        _ => false,
    }
}

/// The error for a statement after one that may have made SQLite roll the transaction back.
fn poisoned() -> sqlx::Error {
    sqlx::Error::Protocol(
        "an earlier statement failed in a way that may have rolled the SQLite transaction back; \
         it cannot go on"
            .into(),
    )
}

impl SqliteTx {
    /// Refuses statements that would run outside the transaction.
    fn usable(&self) -> sqlx::Result<()> {
        match self.state {
            SqliteState::NotBegun | SqliteState::Open => Ok(()),
            SqliteState::Poisoned => Err(poisoned()),
            SqliteState::Ended => Err(sqlx::Error::Protocol(
                "the transaction has already ended".into(),
            )),
        }
    }

    /// The text to send for `sql`: with the pending `BEGIN` in front, and `COMMIT` behind when
    /// this statement ends the transaction.
    fn text<'a>(&self, sql: &'a str, commit: bool) -> Cow<'a, str> {
        if self.conn.is_writer() {
            // Inside the group commit: the savepoint opened at begin. The statement that ends
            // the transaction (the checkpoint insert, whose row count nobody reads) carries its
            // RELEASE; the batch's COMMIT follows in `commit`.
            return if commit {
                Cow::Owned(format!("{sql};\nRELEASE {TX_SAVEPOINT}"))
            } else {
                Cow::Borrowed(sql)
            };
        }
        match (self.state == SqliteState::NotBegun, commit) {
            (false, false) => Cow::Borrowed(sql),
            (true, false) => Cow::Owned(format!("{};\n{sql}", self.begin)),
            (false, true) => Cow::Owned(format!("{sql};\nCOMMIT")),
            (true, true) => Cow::Owned(format!("{};\n{sql};\nCOMMIT", self.begin)),
        }
    }

    /// Tracks what a statement sent by [`SqliteTx::text`] did to the transaction.
    fn settle(&mut self, commit: bool, error: Option<&sqlx::Error>) {
        self.state = match (error, self.state) {
            (None, _) if commit => SqliteState::Ended,
            (None, _) => SqliteState::Open,
            // `BEGIN IMMEDIATE` fails only when the database is busy (and after it, nothing
            // else in the transaction can be): the transaction did not begin. Any other error
            // came from the statement behind an executed `BEGIN`.
            (Some(e), SqliteState::NotBegun) if crate::error::is_conflict(e) => {
                SqliteState::NotBegun
            }
            (Some(e), _) if may_have_rolled_back(e) => SqliteState::Poisoned,
            (Some(_), SqliteState::NotBegun) => SqliteState::Open,
            (Some(_), state) => state,
        };
    }

    async fn execute(&mut self, sql: &str, params: &[Param], commit: bool) -> sqlx::Result<u64> {
        self.usable()?;
        let text = self.text(sql, commit);
        let r = bind_sqlite(&text, params)
            .execute(self.conn.get()?)
            .await
            .map(|r| r.rows_affected());
        self.settle(commit, r.as_ref().err());
        if commit && r.is_err() {
            // The transaction cannot commit any more: end it now (see `PgTx`).
            let _ = self.rollback().await;
        }
        r
    }

    async fn fetch_all(&mut self, sql: &str, params: &[Param]) -> sqlx::Result<Vec<SqliteRow>> {
        self.usable()?;
        let text = self.text(sql, false);
        let r = bind_sqlite(&text, params).fetch_all(self.conn.get()?).await;
        self.settle(false, r.as_ref().err());
        r
    }

    async fn fetch_optional(
        &mut self,
        sql: &str,
        params: &[Param],
    ) -> sqlx::Result<Option<SqliteRow>> {
        self.usable()?;
        let text = self.text(sql, false);
        let r = bind_sqlite(&text, params)
            .fetch_optional(self.conn.get()?)
            .await;
        self.settle(false, r.as_ref().err());
        r
    }

    /// Commits; `false` when no statement ever ran (nothing to commit).
    async fn commit(&mut self) -> sqlx::Result<bool> {
        if let SqliteConn::Writer(slot) = &mut self.conn {
            if self.state == SqliteState::Poisoned {
                return Err(poisoned());
            }
            let released = self.state == SqliteState::Ended;
            self.state = SqliteState::Ended;
            return match slot.take() {
                // Releases the savepoint (unless the last statement carried the RELEASE), then
                // waits for the batch's COMMIT.
                Some(mut g) => {
                    if released {
                        g.forget_savepoint();
                    }
                    g.commit()
                        .await
                        .map(|()| true)
                        .map_err(|e| sqlx::Error::Protocol(e.to_string()))
                }
                None => Ok(true),
            };
        }
        match self.state {
            SqliteState::NotBegun => {
                self.state = SqliteState::Ended;
                Ok(false)
            }
            SqliteState::Ended => Ok(true),
            SqliteState::Poisoned => Err(poisoned()),
            SqliteState::Open => {
                sqlx::query("COMMIT").execute(self.conn.get()?).await?;
                self.state = SqliteState::Ended;
                Ok(true)
            }
        }
    }

    async fn rollback(&mut self) -> sqlx::Result<()> {
        if let SqliteConn::Writer(slot) = &mut self.conn {
            let poisoned = self.state == SqliteState::Poisoned;
            self.state = SqliteState::Ended;
            if let Some(g) = slot.take() {
                if poisoned {
                    // SQLite may have rolled the whole batch back: end it for everyone in it.
                    g.abort_batch().await;
                } else {
                    g.abandon().await;
                }
            }
            return Ok(());
        }
        if !matches!(self.state, SqliteState::Open | SqliteState::Poisoned) {
            self.state = SqliteState::Ended;
            return Ok(());
        }
        let r = sqlx::query("ROLLBACK").execute(self.conn.get()?).await;
        self.state = SqliteState::Ended;
        match r {
            Ok(_) => Ok(()),
            // A failed statement may have ended the transaction already (SQLite does on some
            // errors): nothing left to roll back.
            Err(sqlx::Error::Database(e)) if e.message().contains("no transaction is active") => {
                Ok(())
            }
            Err(e) => {
                // Unsure what state the connection is in: don't hand it to the next user.
                self.conn.close_on_drop();
                Err(e)
            }
        }
    }
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("backend", &self.backend_name())
            .finish()
    }
}

/// An exact decimal (a [`rust_decimal::Decimal`]) that binds and decodes on both backends.
///
/// Postgres stores it as `NUMERIC`; SQLite, which has no decimal type, as text (`"12.50"`), so
/// nothing passes through a float. Declare such columns `NUMERIC(p, s)` on Postgres and `TEXT`
/// on SQLite. Reading a SQLite column of `NUMERIC`/`DECIMAL` affinity also works: SQLite may
/// have stored the value as an integer or a double there (exact up to 15 significant digits,
/// without trailing zeros), and it is read back through its shortest decimal text.
///
/// At most 28 significant digits (rust_decimal's range); larger Postgres values fail to decode.
/// Serialized with serde as a string (`"12.50"`), as DBOS's portable JSON wants decimals.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Numeric(pub Decimal);

impl Numeric {
    /// The decimal value.
    pub fn get(self) -> Decimal {
        self.0
    }
}

impl From<Decimal> for Numeric {
    fn from(d: Decimal) -> Self {
        Numeric(d)
    }
}

impl From<Numeric> for Decimal {
    fn from(n: Numeric) -> Self {
        n.0
    }
}

impl std::ops::Deref for Numeric {
    type Target = Decimal;
    fn deref(&self) -> &Decimal {
        &self.0
    }
}

impl fmt::Display for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Numeric {
    type Err = rust_decimal::Error;
    /// Parses `"12.50"` or scientific notation (`"1.25e1"`).
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let s = s.trim();
        if s.contains(['e', 'E']) {
            Decimal::from_scientific(s).map(Numeric)
        } else {
            Decimal::from_str_exact(s).map(Numeric)
        }
    }
}

impl Type<Sqlite> for Numeric {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        matches!(ty.name(), "TEXT" | "INTEGER" | "REAL" | "NUMERIC")
    }
}

impl<'q> Encode<'q, Sqlite> for Numeric {
    fn encode_by_ref(
        &self,
        buf: &mut Vec<SqliteArgumentValue<'q>>,
    ) -> std::result::Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.0.to_string(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Numeric {
    fn decode(value: SqliteValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        let storage = value.type_info().name().to_owned();
        match storage.as_str() {
            "INTEGER" => Ok(Numeric(Decimal::from(<i64 as Decode<Sqlite>>::decode(
                value,
            )?))),
            "REAL" => {
                let f = <f64 as Decode<Sqlite>>::decode(value)?;
                if !f.is_finite() {
                    return Err(format!("{f} is not a decimal number").into());
                }
                // Rust prints the shortest text that reads back as the same double.
                Ok(format!("{f}").parse::<Numeric>()?)
            }
            _ => {
                let text = <&str as Decode<Sqlite>>::decode(value)?;
                text.parse::<Numeric>()
                    .map_err(|e| format!("{text:?} is not a decimal number: {e}").into())
            }
        }
    }
}

impl Type<Postgres> for Numeric {
    fn type_info() -> PgTypeInfo {
        <Decimal as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <Decimal as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Numeric {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> std::result::Result<IsNull, BoxDynError> {
        <Decimal as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for Numeric {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, BoxDynError> {
        <Decimal as Decode<Postgres>>::decode(value).map(Numeric)
    }
}

/// A value bound to a `$n` placeholder, with one encoding per backend.
///
/// Build it with `.bind(v)` from the Rust value (`From` impls); `Option<T>` binds `NULL`
/// of `T`'s SQL type when `None`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Param {
    /// An untyped `NULL`: Postgres infers its type from the statement. Prefer `None::<T>`.
    Null,
    /// A boolean: `BOOL` on Postgres, `0`/`1` on SQLite.
    Bool(Option<bool>),
    /// A 32-bit integer (Postgres `INT4`; also from `i16`).
    I32(Option<i32>),
    /// A 64-bit integer (Postgres `INT8`; also from `u32`).
    I64(Option<i64>),
    /// A double (`FLOAT8`).
    F64(Option<f64>),
    /// Text.
    Text(Option<String>),
    /// Bytes: `BYTEA` on Postgres, a blob on SQLite.
    Bytes(Option<Vec<u8>>),
    /// An exact decimal: `NUMERIC` on Postgres, its text (`"12.50"`) on SQLite.
    Decimal(Option<Decimal>),
    /// A UTC timestamp, truncated to microseconds on both backends (Postgres' resolution):
    /// `TIMESTAMPTZ` on Postgres; on SQLite fixed-width RFC 3339 text
    /// (`2026-10-05T12:00:00.000000+00:00`), so text order is time order and SQLite's date
    /// functions read it.
    Timestamp(Option<DateTime<Utc>>),
    /// A timestamp without zone, truncated to microseconds: `TIMESTAMP` on Postgres,
    /// `2026-10-05 12:00:00.000000` on SQLite.
    NaiveTimestamp(Option<NaiveDateTime>),
    /// A date: `DATE` on Postgres, `2026-10-05` on SQLite.
    Date(Option<NaiveDate>),
}

macro_rules! param_from {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for Param {
            fn from(v: $t) -> Param { Param::$v(Some(v.into())) }
        }
        impl From<Option<$t>> for Param {
            fn from(v: Option<$t>) -> Param { Param::$v(v.map(Into::into)) }
        }
    )*};
}
param_from!(bool => Bool, i32 => I32, i16 => I32, u16 => I32, i64 => I64, u32 => I64, f64 => F64,
    f32 => F64, String => Text, &str => Text, Vec<u8> => Bytes, &[u8] => Bytes, Decimal => Decimal,
    Numeric => Decimal, DateTime<Utc> => Timestamp, NaiveDateTime => NaiveTimestamp, NaiveDate => Date);

impl From<&String> for Param {
    fn from(v: &String) -> Param {
        Param::Text(Some(v.clone()))
    }
}

impl From<Option<&String>> for Param {
    fn from(v: Option<&String>) -> Param {
        Param::Text(v.cloned())
    }
}

const SQLITE_TIMESTAMP: &str = "%Y-%m-%dT%H:%M:%S%.6f+00:00";
const SQLITE_NAIVE_TIMESTAMP: &str = "%Y-%m-%d %H:%M:%S%.6f";

impl Param {
    /// One letter per SQL type: part of the statement's cache key on Postgres.
    fn signature(&self) -> char {
        match self {
            Param::Null => 'n',
            Param::Bool(_) => 'b',
            Param::I32(_) => 'i',
            Param::I64(_) => 'l',
            Param::F64(_) => 'f',
            Param::Text(_) => 't',
            Param::Bytes(_) => 'x',
            Param::Decimal(_) => 'm',
            Param::Timestamp(_) => 'z',
            Param::NaiveTimestamp(_) => 's',
            Param::Date(_) => 'd',
        }
    }
}

/// An untyped Postgres `NULL` (OID 0: the server infers the parameter's type).
struct UntypedNull;

impl Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(0))
    }
}

impl Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(&self, _: &mut PgArgumentBuffer) -> std::result::Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
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

/// A statement being built on a [`Tx`]: bind its parameters, then execute or fetch.
#[must_use = "a query does nothing until executed or fetched"]
pub struct TxQuery<'t> {
    tx: &'t mut Tx,
    sql: &'t str,
    params: Vec<Param>,
}

impl fmt::Debug for TxQuery<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxQuery")
            .field("sql", &self.sql)
            .field("params", &self.params)
            .finish()
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

fn bind_sqlite<'q>(sql: &'q str, params: &'q [Param]) -> SqliteQuery<'q> {
    let mut q = sqlx::query(sql);
    for p in params {
        q = match p {
            Param::Null => q.bind(None::<i64>),
            Param::Bool(v) => q.bind(*v),
            Param::I32(v) => q.bind(*v),
            Param::I64(v) => q.bind(*v),
            Param::F64(v) => q.bind(*v),
            Param::Text(v) => q.bind(v.as_deref()),
            Param::Bytes(v) => q.bind(v.as_deref()),
            Param::Decimal(v) => q.bind(v.map(|d| d.to_string())),
            Param::Timestamp(v) => {
                q.bind(v.map(|t| t.trunc_subsecs(6).format(SQLITE_TIMESTAMP).to_string()))
            }
            Param::NaiveTimestamp(v) => q.bind(v.map(|t| {
                t.trunc_subsecs(6)
                    .format(SQLITE_NAIVE_TIMESTAMP)
                    .to_string()
            })),
            Param::Date(v) => q.bind(v.map(|d| d.format("%Y-%m-%d").to_string())),
        };
    }
    q
}

fn bind_pg<'q>(sql: &'q str, params: &'q [Param]) -> PgQuery<'q> {
    let mut q = sqlx::query(sql);
    for p in params {
        q = match p {
            Param::Null => q.bind(UntypedNull),
            Param::Bool(v) => q.bind(*v),
            Param::I32(v) => q.bind(*v),
            Param::I64(v) => q.bind(*v),
            Param::F64(v) => q.bind(*v),
            Param::Text(v) => q.bind(v.as_deref()),
            Param::Bytes(v) => q.bind(v.as_deref()),
            Param::Decimal(v) => q.bind(*v),
            Param::Timestamp(v) => q.bind(v.map(|t| t.trunc_subsecs(6))),
            Param::NaiveTimestamp(v) => q.bind(v.map(|t| t.trunc_subsecs(6))),
            Param::Date(v) => q.bind(*v),
        };
    }
    q
}

/// sqlx caches one prepared statement per SQL text and connection, with the parameter types
/// of its first use; binding other types to the same text later would be misread by the
/// server. Suffixing the types makes each typing its own statement.
fn pg_sql(sql: &str, params: &[Param]) -> String {
    let mut text = String::with_capacity(sql.len() + params.len() + 16);
    text.push_str(sql);
    text.push_str("\n/* dbos:");
    text.extend(params.iter().map(Param::signature));
    text.push_str(" */");
    text
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
    async fn run_execute(self, commit: bool) -> Result<u64> {
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
                    let mut guard = b.writer.begin().await?;
                    guard.savepoint(TX_SAVEPOINT).await?;
                    Inner::Sqlite(SqliteTx {
                        conn: SqliteConn::Writer(Some(guard)),
                        begin: "",
                        state: SqliteState::Open,
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

    /// Inserts the `operation_outputs` row of a transaction step inside its transaction (the
    /// system database is the application database), as its last statement: on SQLite the
    /// `COMMIT` rides along, so only `commit` may follow. A duplicate key means another
    /// execution recorded this step first: [`Error::ConcurrentExecution`].
    pub(crate) async fn insert_step_in(
        &mut self,
        prefix: &str,
        s: &StepWrite<'_>,
        app_name: &str,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {prefix}operation_outputs (workflow_uuid, function_id, function_name, output, error, \
             child_workflow_id, serialization, started_at_epoch_ms, completed_at_epoch_ms, application_name) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        let done = self
            .query(&sql)
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
            .run_execute(true)
            .await;
        match done {
            Ok(_) => Ok(()),
            Err(Error::Database { source, .. }) if super::unique_violation(&source) => {
                Err(Error::ConcurrentExecution {
                    workflow_id: s.workflow_id.to_owned(),
                    function_id: s.function_id,
                })
            }
            Err(Error::Database { source, .. }) => Err(Error::Database {
                doing: "recording a transaction step",
                source,
            }),
            Err(e) => Err(e),
        }
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
        self.query(&sql)
            .bind(workflow)
            .bind(function_id)
            .fetch_optional::<(String, Option<String>, Option<String>)>()
            .await
    }

    /// Inserts a `transaction_outputs` row as the transaction's last statement (on SQLite the
    /// `COMMIT` rides along, so only `commit` may follow); a duplicate key is
    /// [`Error::ConcurrentExecution`].
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
            .run_execute(true)
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
    Error::Database {
        doing: "beginning a transaction",
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_parses_plain_and_scientific_text_exactly() {
        assert_eq!("12.50".parse::<Numeric>().unwrap().to_string(), "12.50");
        assert_eq!("1.25e1".parse::<Numeric>().unwrap().0, Decimal::new(125, 1));
        assert!("12,5".parse::<Numeric>().is_err());
        assert_eq!(
            format!("{}", 0.1_f64).parse::<Numeric>().unwrap().0,
            Decimal::new(1, 1)
        );
    }

    #[test]
    fn inlined_literals_escape_quotes_and_backslashes() {
        let sql = "INSERT INTO t VALUES ($1, $2, $3, $10, '')";
        let params = [
            Param::from("it's a \\ $2"),
            Param::from(7_i32),
            Param::from(None::<&str>),
        ];
        assert_eq!(
            inline_pg(sql, &params).unwrap(),
            "INSERT INTO t VALUES (E'it\\'s a \\\\ $2', 7, NULL, $10, '')"
        );
        assert!(inline_pg("SELECT $1", &[Param::from("nul\0")]).is_err());
        assert!(inline_pg("SELECT $1", &[Param::from(1.5)]).is_err());
    }

    #[test]
    fn postgres_statements_are_keyed_by_parameter_types() {
        let a = pg_sql("SELECT $1", &[Param::from(1_i32)]);
        let b = pg_sql("SELECT $1", &[Param::from(1_i64)]);
        let c = pg_sql("SELECT $1", &[Param::from(None::<i64>)]);
        assert_ne!(a, b);
        assert_eq!(b, c, "a typed NULL shares its type's statement");
        assert!(a.starts_with("SELECT $1\n"));
    }
}
