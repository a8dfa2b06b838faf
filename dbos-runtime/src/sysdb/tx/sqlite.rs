//! The SQLite transaction state machine: `BEGIN`/`COMMIT` sent along with statements on a
//! reader connection, or a savepoint on the writer connection inside the current group commit;
//! and which errors leave the transaction unusable.

use super::param::{bind_sqlite, Param};
use crate::sysdb::sqlite_readers::ReadConn;
use crate::sysdb::sqlite_writer::WriteGuard;
use sqlx::sqlite::SqliteRow;
use std::borrow::Cow;

/// A SQLite transaction driven by hand, to save round trips to the connection's thread:
/// `BEGIN` travels with the first statement and `COMMIT` with the runtime's checkpoint insert,
/// so a transaction step of one statement costs two (`BEGIN; UPDATE …` and `INSERT …; COMMIT`).
/// On the writer the same holds with the group commit's savepoint: `[BEGIN IMMEDIATE;]
/// SAVEPOINT; UPDATE …`, then `INSERT …; RELEASE`, with the batch's `COMMIT` behind it when the
/// transaction is alone in its batch (else the batch commits once for all its operations).
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
    Reader(ReadConn),
    /// `None` once the transaction ended and the writer was given back.
    Writer(Option<WriteGuard>),
}

const TX_SAVEPOINT: &str = "dbos_tx";

impl SqliteConn {
    fn get(&mut self) -> sqlx::Result<&mut sqlx::SqliteConnection> {
        match self {
            SqliteConn::Reader(c) => Ok(&mut *c),
            SqliteConn::Writer(Some(g)) => Ok(&mut *g),
            SqliteConn::Writer(None) => Err(ended()),
        }
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

/// Runs `text` and returns the rows changed by the caller's statements in it, not counting
/// the ones [`SqliteTx::text`] put around them.
async fn rows_affected(
    text: &str,
    params: &[Param],
    conn: &mut sqlx::SqliteConnection,
    carried: Carried,
) -> sqlx::Result<u64> {
    use futures_util::TryStreamExt;
    // Several statements in one prepared text is SQLite-only in sqlx (hence the deprecation);
    // it is what saves the calls here, and each statement's own result comes back.
    #[allow(deprecated)]
    let mut results = bind_sqlite(text, params).fetch_many(conn);
    let mut counts = Vec::with_capacity(carried.before + 1 + carried.after);
    while let Some(item) = results.try_next().await? {
        if let sqlx::Either::Left(done) = item {
            counts.push(done.rows_affected());
        }
    }
    let end = counts.len().saturating_sub(carried.after);
    Ok(counts
        .get(carried.before.min(end)..end)
        .map_or(0, |own| own.iter().sum()))
}

fn ended() -> sqlx::Error {
    sqlx::Error::Protocol("the transaction has already ended".into())
}

/// What a statement's text carries besides the statement (see [`SqliteTx::text`]).
#[derive(Debug, Default, Clone, Copy)]
struct Carried {
    /// The savepoint (and maybe the batch's `BEGIN IMMEDIATE`) in front.
    opens: bool,
    /// The batch's `COMMIT` behind.
    commits: bool,
    /// Statements in front of the caller's, and behind it: their row counts are not the
    /// caller's (SQLite reports the last data change's count for `BEGIN`, `SAVEPOINT`,
    /// `RELEASE` and `COMMIT`).
    before: usize,
    after: usize,
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
            SqliteState::Ended => Err(ended()),
        }
    }

    /// The text to send for `sql`: with the pending `BEGIN` in front, and `COMMIT` behind when
    /// this statement ends the transaction; and what the text carries besides `sql`.
    fn text<'a>(&mut self, sql: &'a str, commit: bool) -> sqlx::Result<(Cow<'a, str>, Carried)> {
        let mut carried = Carried::default();
        if let SqliteConn::Writer(slot) = &mut self.conn {
            // Inside the group commit, under a savepoint that the first statement opens (with
            // the batch's BEGIN IMMEDIATE when none is open). The statement that ends the
            // transaction (the checkpoint insert, whose row count nobody reads) carries the
            // RELEASE, and the batch's COMMIT too when this transaction is alone in it.
            let g = slot.as_mut().ok_or_else(ended)?;
            if self.state != SqliteState::NotBegun && !commit {
                return Ok((Cow::Borrowed(sql), carried));
            }
            let mut text = String::with_capacity(sql.len() + 64);
            if self.state == SqliteState::NotBegun {
                let (front, statements) = g.open_in_front(TX_SAVEPOINT);
                text.push_str(&front);
                carried.opens = true;
                carried.before = statements;
            }
            text.push_str(sql);
            if commit {
                text.push_str(";\nRELEASE ");
                text.push_str(TX_SAVEPOINT);
                carried.after = 1;
                if g.may_commit_inline() {
                    text.push_str(";\nCOMMIT");
                    carried.commits = true;
                    carried.after = 2;
                }
            }
            return Ok((Cow::Owned(text), carried));
        }
        let begin = self.state == SqliteState::NotBegun;
        carried.before = usize::from(begin);
        carried.after = usize::from(commit);
        let text = match (begin, commit) {
            (false, false) => Cow::Borrowed(sql),
            (true, false) => Cow::Owned(format!("{};\n{sql}", self.begin)),
            (false, true) => Cow::Owned(format!("{sql};\nCOMMIT")),
            (true, true) => Cow::Owned(format!("{};\n{sql};\nCOMMIT", self.begin)),
        };
        Ok((text, carried))
    }

    /// Tracks what a statement sent by [`SqliteTx::text`] did to the transaction.
    async fn settle(&mut self, commit: bool, carried: Carried, error: Option<&sqlx::Error>) {
        if let SqliteConn::Writer(Some(g)) = &mut self.conn {
            self.state = match error {
                None => {
                    if carried.commits {
                        g.committed_inline();
                    }
                    if commit {
                        SqliteState::Ended
                    } else {
                        SqliteState::Open
                    }
                }
                // The batch held only this transaction: whichever statement failed (the last
                // one, or a deferred constraint at COMMIT), ending the batch ends just it.
                Some(_) if carried.commits => SqliteState::Poisoned,
                Some(e) => {
                    if carried.opens {
                        g.settle_failed_open().await;
                    }
                    if !g.in_savepoint() {
                        SqliteState::NotBegun
                    } else if may_have_rolled_back(e) {
                        SqliteState::Poisoned
                    } else {
                        SqliteState::Open
                    }
                }
            };
            return;
        }
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
        let (text, carried) = self.text(sql, commit)?;
        let r = rows_affected(&text, params, self.conn.get()?, carried).await;
        self.settle(commit, carried, r.as_ref().err()).await;
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
        let (text, carried) = self.text(sql, false)?;
        let r = bind_sqlite(&text, params).fetch_all(self.conn.get()?).await;
        self.settle(false, carried, r.as_ref().err()).await;
        r
    }

    pub(super) async fn fetch_optional(
        &mut self,
        sql: &str,
        params: &[Param],
    ) -> sqlx::Result<Option<SqliteRow>> {
        self.usable()?;
        let (text, carried) = self.text(sql, false)?;
        let r = bind_sqlite(&text, params)
            .fetch_optional(self.conn.get()?)
            .await;
        self.settle(false, carried, r.as_ref().err()).await;
        r
    }

    /// Commits; `false` when no statement ever ran (nothing to commit).
    pub(super) async fn commit(&mut self) -> sqlx::Result<bool> {
        if let SqliteConn::Writer(slot) = &mut self.conn {
            if self.state == SqliteState::Poisoned {
                return Err(poisoned());
            }
            let released = self.state == SqliteState::Ended;
            let began = self.state != SqliteState::NotBegun;
            self.state = SqliteState::Ended;
            return match slot.take() {
                // No statement ran: nothing to commit.
                Some(g) if !began => {
                    g.abandon().await;
                    Ok(false)
                }
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

#[cfg(test)]
mod tests {
    //! The writer's transaction path, which saves calls by sending the savepoint (and the
    //! batch's `BEGIN IMMEDIATE`) with the first statement and the `COMMIT` with the last:
    //! what happens when the file is busy, when the last statement fails, and when the caller
    //! is cancelled in the middle of its first statement.

    use super::*;
    use crate::sysdb::sqlite_writer::Writer;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};
    use std::time::Duration;

    struct Db {
        dir: std::path::PathBuf,
        opts: SqliteConnectOptions,
        writer: Writer,
    }

    impl Drop for Db {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn db(name: &str) -> Db {
        db_waiting(name, Duration::from_millis(50)).await
    }

    /// A fresh file whose connections wait `busy` for another connection's lock.
    async fn db_waiting(name: &str, busy: Duration) -> Db {
        let dir = std::env::temp_dir().join(format!("dbos-tx-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let opts = SqliteConnectOptions::new()
            .filename(dir.join("db.sqlite"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(busy);
        let writer = Writer::connect(&opts).await.unwrap();
        let mut w = writer.begin_statement().await.unwrap();
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .execute(&mut *w)
            .await
            .unwrap();
        w.commit().await.unwrap();
        Db { dir, opts, writer }
    }

    impl Db {
        async fn tx(&self) -> SqliteTx {
            SqliteTx {
                conn: SqliteConn::Writer(Some(self.writer.take().await.unwrap())),
                begin: "",
                state: SqliteState::NotBegun,
            }
        }

        /// The keys committed, read on a separate connection.
        async fn keys(&self) -> Vec<String> {
            let mut c = self.opts.connect().await.unwrap();
            sqlx::query_scalar("SELECT k FROM t ORDER BY k")
                .fetch_all(&mut c)
                .await
                .unwrap()
        }

        /// One more write through the writer must work: no transaction or savepoint is left
        /// open by mistake.
        async fn still_writes(&self, key: &str) {
            let mut tx = self.tx().await;
            tx.execute("INSERT INTO t VALUES ($1)", &[key.into()], true)
                .await
                .unwrap();
            assert!(tx.commit().await.unwrap());
            let mut w = self.writer.begin_statement().await.unwrap();
            sqlx::query("INSERT INTO t VALUES ($1)")
                .bind(format!("{key}-alone"))
                .execute(&mut *w)
                .await
                .unwrap();
            w.commit().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_transaction_alone_sends_begin_and_commit_with_its_statements() {
        let db = db("alone").await;
        let before = db.writer.batch_commits();
        let mut tx = db.tx().await;
        tx.execute("INSERT INTO t VALUES ('a')", &[], false)
            .await
            .unwrap();
        tx.execute("INSERT INTO t VALUES ('b')", &[], true)
            .await
            .unwrap();
        // The last statement carried the COMMIT: a separate connection already sees both.
        assert_eq!(db.keys().await, ["a", "b"]);
        assert!(tx.commit().await.unwrap());
        assert_eq!(db.writer.batch_commits() - before, 1, "one commit");
        db.still_writes("c").await;
        assert_eq!(db.keys().await, ["a", "b", "c", "c-alone"]);
    }

    #[tokio::test]
    async fn row_counts_are_the_statements_own_not_what_travels_with_them() {
        let db = db("counts").await;
        let mut tx = db.tx().await;
        let n = tx.execute("INSERT INTO t VALUES ('a'), ('b'), ('c')", &[], false);
        assert_eq!(n.await.unwrap(), 3);
        let n = tx.execute("UPDATE t SET k = k WHERE k = 'none'", &[], false);
        assert_eq!(n.await.unwrap(), 0);
        let n = tx.execute("DELETE FROM t WHERE k = 'a'", &[], true);
        assert_eq!(
            n.await.unwrap(),
            1,
            "not counting the RELEASE and COMMIT behind it"
        );
        assert!(tx.commit().await.unwrap());
        // The BEGIN and SAVEPOINT in front would report the DELETE's 1 each.
        let mut tx = db.tx().await;
        let n = tx.execute("UPDATE t SET k = k WHERE k = 'none'", &[], false);
        assert_eq!(
            n.await.unwrap(),
            0,
            "not counting the BEGIN and SAVEPOINT in front"
        );
        let n = tx.execute("UPDATE t SET k = k WHERE k = 'b'", &[], true);
        assert_eq!(n.await.unwrap(), 1);
        assert!(tx.commit().await.unwrap());
        assert_eq!(db.keys().await, ["b", "c"]);
    }

    #[tokio::test]
    async fn a_failed_last_statement_that_carried_the_commit_keeps_nothing() {
        let db = db("last-fails").await;
        db.still_writes("dup").await;
        let mut tx = db.tx().await;
        tx.execute("INSERT INTO t VALUES ('mine')", &[], false)
            .await
            .unwrap();
        let err = tx
            .execute("INSERT INTO t VALUES ('dup')", &[], true)
            .await
            .expect_err("a duplicate key");
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        assert_eq!(tx.state, SqliteState::Ended, "rolled back at once");
        assert_eq!(db.keys().await, ["dup", "dup-alone"], "'mine' went with it");
        db.still_writes("next").await;
    }

    #[tokio::test]
    async fn a_busy_file_at_the_first_statement_leaves_no_batch_open() {
        let db = db("busy").await;
        // Another connection holds the write lock: the BEGIN IMMEDIATE in front fails.
        let mut other = db.opts.connect().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        let mut tx = db.tx().await;
        let err = tx
            .execute("INSERT INTO t VALUES ('x')", &[], false)
            .await
            .expect_err("busy");
        assert!(crate::error::is_conflict(&err), "{err}");
        assert_eq!(tx.state, SqliteState::NotBegun, "nothing began");
        tx.rollback().await.unwrap();
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        other.close().await.unwrap();
        db.still_writes("after").await;
        assert_eq!(db.keys().await, ["after", "after-alone"]);
    }

    #[tokio::test]
    async fn a_batch_begun_after_its_caller_was_cancelled_still_commits_what_joins_it() {
        let db = db_waiting("late-begin", Duration::from_secs(5)).await;
        // Another connection holds the write lock, so the writer's BEGIN IMMEDIATE waits.
        let mut other = db.opts.connect().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        let writer = db.writer.clone();
        let task = tokio::spawn(async move {
            let _batch = writer.begin().await;
            std::future::pending::<()>().await;
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        task.abort();
        let _ = task.await;
        // The lock frees: the BEGIN IMMEDIATE its cancelled caller sent now runs.
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        let mut w = db.writer.begin_statement().await.unwrap();
        sqlx::query("INSERT INTO t VALUES ('joined')")
            .execute(&mut *w)
            .await
            .unwrap();
        w.commit().await.unwrap();
        // Committed when commit returned: not left in a transaction nobody knew was open.
        let mut c = db.opts.connect().await.unwrap();
        let seen: Vec<String> = sqlx::query_scalar("SELECT k FROM t")
            .fetch_all(&mut c)
            .await
            .unwrap();
        assert_eq!(seen, ["joined"]);
        db.still_writes("after").await;
    }

    #[tokio::test]
    async fn a_caller_cancelled_in_its_first_statement_leaves_nothing_behind() {
        let db = db("cancelled").await;
        for delay_ms in [0, 1, 5, 20] {
            let writer = db.writer.clone();
            let task = tokio::spawn(async move {
                let mut tx = SqliteTx {
                    conn: SqliteConn::Writer(Some(writer.take().await.unwrap())),
                    begin: "",
                    state: SqliteState::NotBegun,
                };
                // A slow first statement, so that the cancellation lands while it runs.
                tx.execute(
                    "INSERT INTO t SELECT 'slow-' || x FROM (WITH RECURSIVE n(x) AS \
                     (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 300000) \
                     SELECT max(x) AS x FROM n)",
                    &[],
                    false,
                )
                .await
                .unwrap();
                std::future::pending::<()>().await;
            });
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            task.abort();
            let _ = task.await;
            db.still_writes(&format!("after-{delay_ms}")).await;
        }
        let keys = db.keys().await;
        assert!(
            keys.iter().all(|k| !k.starts_with("slow")),
            "the cancelled transaction's write was rolled back: {keys:?}"
        );
        assert_eq!(keys.len(), 8, "{keys:?}");
    }
}
