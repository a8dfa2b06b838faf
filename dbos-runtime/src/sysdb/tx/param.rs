//! [`Param`]: a value bound to a `$n` placeholder, and how a statement's parameters are bound
//! on each backend (per-backend encodings, Postgres statement keys).

use super::numeric::Numeric;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SubsecRound, Utc};
use rust_decimal::Decimal;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, Postgres};
use sqlx::sqlite::Sqlite;
use sqlx::{Encode, Type};

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

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

pub(super) fn bind_sqlite<'q>(sql: &'q str, params: &'q [Param]) -> SqliteQuery<'q> {
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

pub(super) fn bind_pg<'q>(sql: &'q str, params: &'q [Param]) -> PgQuery<'q> {
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
pub(super) fn pg_sql(sql: &str, params: &[Param]) -> String {
    let mut text = String::with_capacity(sql.len() + params.len() + 16);
    text.push_str(sql);
    text.push_str("\n/* dbos:");
    text.extend(params.iter().map(Param::signature));
    text.push_str(" */");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

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
