//! [`Numeric`]: an exact decimal that binds and decodes on both backends (`NUMERIC` on
//! Postgres, text on SQLite).

use rust_decimal::Decimal;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Type, TypeInfo, ValueRef};
use std::fmt;
use std::str::FromStr;

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
}
