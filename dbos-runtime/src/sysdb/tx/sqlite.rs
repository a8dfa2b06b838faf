//! The SQLite transaction state machine: `BEGIN`/`COMMIT` sent along with statements on a
//! reader connection, or a savepoint on the writer connection inside the current group commit;
//! and which errors leave the transaction unusable.

use super::param::{bind_sqlite, Param};
use crate::sysdb::sqlite_writer::WriteGuard;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteRow};
use std::borrow::Cow;

/// A SQLite transaction driven by hand, to save round trips to the connection's thread:
/// `BEGIN` travels with the first statement and `COMMIT` with the runtime's checkpoint insert,
/// so a transaction step of one statement costs two (`BEGIN; UPDATE …` and `INSERT …; COMMIT`).
pub(super) struct SqliteTx {
    pub(super) conn: SqliteConn,
    /// `BEGIN IMMEDIATE` (writers) or `BEGIN` (readers).
    pub(super) begin: &'static str,
    pub(super) state: SqliteState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SqliteState {
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
pub(super) enum SqliteConn {
    Reader(PoolConnection<Sqlite>),
    /// `None` once the transaction ended and the writer was given back.
    Writer(Option<WriteGuard>),
}

pub(super) const TX_SAVEPOINT: &str = "dbos_tx";

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
    pub(super) fn usable(&self) -> sqlx::Result<()> {
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

    pub(super) async fn execute(
        &mut self,
        sql: &str,
        params: &[Param],
        commit: bool,
    ) -> sqlx::Result<u64> {
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

    pub(super) async fn fetch_all(
        &mut self,
        sql: &str,
        params: &[Param],
    ) -> sqlx::Result<Vec<SqliteRow>> {
        self.usable()?;
        let text = self.text(sql, false);
        let r = bind_sqlite(&text, params).fetch_all(self.conn.get()?).await;
        self.settle(false, r.as_ref().err());
        r
    }

    pub(super) async fn fetch_optional(
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
    pub(super) async fn commit(&mut self) -> sqlx::Result<bool> {
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

    pub(super) async fn rollback(&mut self) -> sqlx::Result<()> {
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
