//! The Postgres transaction state machine: a transaction driven by hand on a pooled
//! connection, so that the runtime's checkpoint insert and the `COMMIT` travel in one round trip.

use super::param::Param;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;

/// A Postgres transaction driven by hand, so that the runtime's checkpoint insert and the
/// `COMMIT` travel in one round trip (one simple query).
pub(super) struct PgTx {
    pub(super) conn: PoolConnection<Postgres>,
    pub(super) open: bool,
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
    pub(super) async fn execute_and_commit(
        &mut self,
        sql: &str,
        params: &[Param],
    ) -> sqlx::Result<u64> {
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

    pub(super) async fn end(&mut self, statement: &'static str) -> sqlx::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
