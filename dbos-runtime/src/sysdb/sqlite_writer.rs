//! Group commit for SQLite. Every write of the runtime goes through one connection; an operation
//! that arrives while another holds the connection joins the same transaction, and the last
//! holder commits once for all of them. Each operation returns only after its commit, so
//! durability per operation is unchanged, while the cost of a commit (the WAL write) is shared.
//!
//! Every call to the connection is a hand-off to its thread and back, so an operation makes as
//! few as it can: a single statement with no batch open and nobody queued runs alone in
//! autocommit (one call), and a batch's `BEGIN IMMEDIATE` travels with the first savepoint.
//!
//! Invariants: the connection is either idle or inside a `BEGIN IMMEDIATE` transaction owned by
//! the batch (or, for the one statement that holds it, in autocommit); whoever releases the
//! connection commits the batch unless another task is already queued for it (which then
//! inherits the duty), or the batch is full. A task whose operation is
//! in a batch that nobody commits (its successor was cancelled) commits it itself after a short
//! wait. A multi-statement operation runs inside a savepoint so that its failure undoes only it.

use crate::error::{Error, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::ConnectOptions;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

/// Operations committed together at most.
const MAX_BATCH: usize = 256;
/// How long an operation waits for someone else to commit its batch before doing it itself.
const COMMIT_GRACE: Duration = Duration::from_millis(2);

type CommitResult = std::result::Result<(), String>;

struct State {
    conn: SqliteConnection,
    /// A batch transaction is open.
    open: bool,
    /// Operations in the open batch, waiting for its commit.
    pending: Vec<oneshot::Sender<CommitResult>>,
    /// A savepoint left behind by a cancelled operation, to roll back before anything else.
    dirty: Option<&'static str>,
    /// A statement that changes whether a transaction is open was sent, and its caller was
    /// cancelled before learning how it went: the next holder asks SQLite.
    unsure: Option<Unsure>,
}

/// What an [`State::unsure`] statement was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unsure {
    Begin,
    Commit,
    Rollback,
}

/// Whether the connection is inside a transaction (SQLite's autocommit flag is off); `None`
/// when the connection cannot be asked. Queued behind every call sent before it, so it sees
/// what they left.
async fn in_transaction(conn: &mut SqliteConnection) -> Option<bool> {
    let mut handle = conn.lock_handle().await.ok()?;
    let db = handle.as_raw_handle();
    // SAFETY: `db` is this open connection's handle, held for us while `handle` lives (the
    // connection's thread waits meanwhile); sqlite3_get_autocommit only reads a flag.
    Some(unsafe { libsqlite3_sys::sqlite3_get_autocommit(db.as_ptr()) } == 0)
}

struct Shared {
    state: Arc<Mutex<State>>,
    /// Set by [`Writer::close`]: no operation takes the connection afterwards.
    closed: AtomicBool,
    /// Tasks queued for the connection.
    waiting: AtomicUsize,
    /// `COMMIT`s run.
    commits: std::sync::atomic::AtomicU64,
}

/// The single SQLite writer connection, with group commit.
#[derive(Clone)]
pub(crate) struct Writer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

async fn exec(conn: &mut SqliteConnection, sql: &str, doing: &'static str) -> Result<()> {
    sqlx::Executor::execute(conn, sql)
        .await
        .map(|_| ())
        .map_err(Error::db(doing))
}

impl State {
    /// Rolls back what an operation cancelled mid-way left behind, and settles from SQLite
    /// itself whether a batch is open when a cancelled call left that unknown.
    async fn clean_up(&mut self) {
        let dirty = self.dirty.take();
        let unsure = self.unsure.take();
        if dirty.is_none() && unsure.is_none() {
            return;
        }
        if let Some(sp) = dirty {
            // Fails when the operation was cancelled before its savepoint opened.
            let sql = format!("ROLLBACK TO {sp}; RELEASE {sp}");
            let _ = sqlx::Executor::execute(&mut self.conn, sql.as_str()).await;
        }
        match in_transaction(&mut self.conn).await {
            // A batch is open (perhaps one whose BEGIN IMMEDIATE ran after its caller left):
            // whoever releases the connection next commits it.
            Some(true) => self.open = true,
            Some(false) => {
                // No batch: a cancelled COMMIT ran (it fails only with the transaction still
                // open), or the batch was rolled back: by a cancelled ROLLBACK, or by SQLite
                // after a cancelled operation's statement failed.
                self.open = false;
                let outcome = match unsure {
                    Some(Unsure::Commit) => Ok(()),
                    _ => Err(ROLLED_BACK.to_owned()),
                };
                for p in self.pending.drain(..) {
                    let _ = p.send(outcome.clone());
                }
            }
            None => {
                let _ = sqlx::Executor::execute(&mut self.conn, "ROLLBACK").await;
                self.open = false;
                for p in self.pending.drain(..) {
                    let _ = p.send(Err(ROLLED_BACK.to_owned()));
                }
            }
        }
    }

    async fn commit_batch(&mut self) {
        self.unsure = Some(Unsure::Commit);
        let result = sqlx::Executor::execute(&mut self.conn, "COMMIT")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        if result.is_err() {
            // A failed COMMIT may leave the transaction open: end it so the next batch starts clean.
            self.unsure = Some(Unsure::Rollback);
            let _ = sqlx::Executor::execute(&mut self.conn, "ROLLBACK").await;
        }
        self.unsure = None;
        self.open = false;
        for p in self.pending.drain(..) {
            let _ = p.send(result.clone());
        }
    }
}

/// What the operations of a batch that was rolled back as a whole are told.
const ROLLED_BACK: &str =
    "an earlier operation in the same batch failed and SQLite rolled the batch back";

impl Writer {
    pub(crate) async fn connect(
        opts: &SqliteConnectOptions,
    ) -> std::result::Result<Writer, sqlx::Error> {
        let conn = opts.connect().await?;
        Ok(Writer {
            shared: Arc::new(Shared {
                state: Arc::new(Mutex::new(State {
                    conn,
                    open: false,
                    pending: Vec::new(),
                    dirty: None,
                    unsure: None,
                })),
                closed: AtomicBool::new(false),
                waiting: AtomicUsize::new(0),
                commits: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// Takes the connection, after whoever queued first; refused once the writer is closed.
    async fn lock(&self) -> Result<OwnedMutexGuard<State>> {
        struct Queued<'a>(&'a AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.shared.waiting.fetch_add(1, Ordering::SeqCst);
        let queued = Queued(&self.shared.waiting);
        let mut guard = self.shared.state.clone().lock_owned().await;
        drop(queued);
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        guard.clean_up().await;
        Ok(guard)
    }

    /// Takes the connection as it is, beginning nothing: for a statement that writes nothing
    /// (a pragma), or an operation whose first statement opens its savepoint (and the batch)
    /// itself ([`WriteGuard::open_in_front`]).
    pub(crate) async fn take(&self) -> Result<WriteGuard> {
        Ok(WriteGuard {
            guard: self.lock().await?,
            shared: self.shared.clone(),
            savepoint: None,
            alone: false,
            began_in_front: false,
        })
    }

    /// Takes the connection inside the open batch (starting one with `BEGIN IMMEDIATE`).
    pub(crate) async fn begin(&self) -> Result<WriteGuard> {
        let mut w = self.take().await?;
        if !w.guard.open {
            w.open_batch().await?;
        }
        Ok(w)
    }

    /// Takes the connection for one statement: inside the open batch, or inside a new one when
    /// other operations are queued to join it, or else alone in autocommit (the statement
    /// commits by itself: one call to the connection's thread instead of three).
    ///
    /// Only for a single statement, which SQLite applies or undoes as a whole.
    pub(crate) async fn begin_statement(&self) -> Result<WriteGuard> {
        let mut w = self.take().await?;
        if w.guard.open {
            return Ok(w);
        }
        if self.shared.waiting.load(Ordering::SeqCst) > 0 {
            w.open_batch().await?;
        } else {
            w.alone = true;
        }
        Ok(w)
    }

    /// Takes the connection inside the open batch under savepoint `name`, so that the
    /// operation can be undone alone; `BEGIN IMMEDIATE` (when no batch is open) and the
    /// `SAVEPOINT` travel in one call.
    pub(crate) async fn begin_savepoint(&self, name: &'static str) -> Result<WriteGuard> {
        let mut w = self.take().await?;
        let began = !w.guard.open;
        let sql = if began {
            format!("BEGIN IMMEDIATE;\nSAVEPOINT {name}")
        } else {
            format!("SAVEPOINT {name}")
        };
        // Marked before sending: if this task is cancelled mid-call, the next holder finds
        // the savepoint to roll back, and `clean_up` settles whether a batch is open.
        w.guard.open = true;
        w.savepoint = Some(name);
        if let Err(e) = exec(&mut w.guard.conn, &sql, "beginning a write").await {
            if began {
                // `BEGIN IMMEDIATE` failed (the file is busy), or, in theory, the savepoint
                // after it: either way no batch of ours is open afterwards. (Cancelled during
                // the ROLLBACK, the savepoint still marked makes the next holder settle it.)
                let _ = sqlx::Executor::execute(&mut w.guard.conn, "ROLLBACK").await;
                w.guard.open = false;
            }
            w.savepoint = None;
            w.release().await;
            return Err(e);
        }
        Ok(w)
    }

    /// How many batch `COMMIT`s ran.
    pub(crate) fn batch_commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Refuses every operation that has not taken the connection yet ([`Error::ShuttingDown`]);
    /// operations already holding it go on. Returns at once; [`Writer::closed`] waits for them.
    pub(crate) fn begin_close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
    }

    /// Closes (see [`Writer::begin_close`]), waits for the operation holding the connection, if
    /// any, and commits the batch it leaves behind, so that every operation that started has
    /// committed or rolled back when this returns and nothing is written afterwards. The
    /// connection itself closes when the last handle is dropped.
    pub(crate) async fn close(&self) {
        self.begin_close();
        let mut guard = self.shared.state.clone().lock_owned().await;
        guard.clean_up().await;
        if guard.open {
            guard.commit_batch().await;
            self.shared.commits.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer connection, held by one operation; derefs to the connection.
pub(crate) struct WriteGuard {
    guard: OwnedMutexGuard<State>,
    shared: Arc<Shared>,
    savepoint: Option<&'static str>,
    /// The holder runs one statement in autocommit (no batch was open): it commits by itself.
    alone: bool,
    /// [`WriteGuard::open_in_front`] put `BEGIN IMMEDIATE` in front of the first statement.
    began_in_front: bool,
}

impl std::ops::Deref for WriteGuard {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.guard.conn
    }
}

impl std::ops::DerefMut for WriteGuard {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.guard.conn
    }
}

impl WriteGuard {
    /// Starts a batch with `BEGIN IMMEDIATE`; on failure gives the connection back.
    async fn open_batch(&mut self) -> Result<()> {
        // BEGIN IMMEDIATE may wait for another process's lock (up to the busy timeout): if this
        // task is cancelled meanwhile, it still runs, and the next holder must find out.
        self.guard.unsure = Some(Unsure::Begin);
        let r = exec(&mut self.guard.conn, "BEGIN IMMEDIATE", "beginning a write").await;
        self.guard.unsure = None;
        if let Err(e) = r {
            self.release().await;
            return Err(e);
        }
        self.guard.open = true;
        Ok(())
    }

    /// `PRAGMA data_version` of the writer connection.
    pub(crate) async fn data_version(&mut self) -> std::result::Result<i64, String> {
        sqlx::query_scalar::<_, i64>("PRAGMA data_version")
            .fetch_one(&mut self.guard.conn)
            .await
            .map_err(|e| e.to_string())
    }

    /// The text that opens savepoint `name` in front of the caller's first statement, with
    /// `BEGIN IMMEDIATE` before it when no batch is open, so that both travel with the
    /// statement. Both are marked open at once (a cancelled caller leaves the savepoint for the
    /// next holder to roll back); after a failed call the caller settles them with
    /// [`WriteGuard::settle_failed_open`].
    ///
    /// Returns the text and how many statements it holds.
    pub(crate) fn open_in_front(&mut self, name: &'static str) -> (String, usize) {
        self.began_in_front = !self.guard.open;
        self.guard.open = true;
        self.savepoint = Some(name);
        if self.began_in_front {
            (format!("BEGIN IMMEDIATE;\nSAVEPOINT {name};\n"), 2)
        } else {
            (format!("SAVEPOINT {name};\n"), 1)
        }
    }

    /// After the statement carrying [`WriteGuard::open_in_front`] failed: whether the batch
    /// and the savepoint opened. Only `BEGIN IMMEDIATE` can have failed before the statement
    /// (the file was busy); SQLite's autocommit flag tells.
    pub(crate) async fn settle_failed_open(&mut self) {
        if !std::mem::take(&mut self.began_in_front) {
            // Only the savepoint went in front, inside an open batch: it opened.
            return;
        }
        match in_transaction(&mut self.guard.conn).await {
            Some(true) => {}
            Some(false) => {
                self.savepoint = None;
                self.guard.open = false;
            }
            None => {
                // Cannot tell: the next holder settles it (the savepoint stays marked).
                self.guard.unsure = Some(Unsure::Begin);
            }
        }
    }

    /// Whether the operation's last statement may carry the batch's `COMMIT`: it is the only
    /// operation in the batch and nobody is queued to join it.
    pub(crate) fn may_commit_inline(&self) -> bool {
        self.guard.open
            && self.guard.pending.is_empty()
            && self.shared.waiting.load(Ordering::SeqCst) == 0
    }

    /// Records that the last statement carried the `COMMIT` (after
    /// [`WriteGuard::may_commit_inline`]) and it ran: the batch, this operation alone, is
    /// committed.
    pub(crate) fn committed_inline(&mut self) {
        self.savepoint = None;
        self.guard.open = false;
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this operation's savepoint is open.
    pub(crate) fn in_savepoint(&self) -> bool {
        self.savepoint.is_some()
    }

    /// Records that the caller's own statement released the savepoint.
    pub(crate) fn forget_savepoint(&mut self) {
        self.savepoint = None;
    }

    /// Undoes this operation's writes since its savepoint.
    pub(crate) async fn rollback_savepoint(&mut self) -> Result<()> {
        if let Some(sp) = self.savepoint.take() {
            exec(
                &mut self.guard.conn,
                &format!("ROLLBACK TO {sp}; RELEASE {sp}"),
                "rolling back a savepoint",
            )
            .await?;
        }
        Ok(())
    }

    /// Keeps this operation's writes: joins the batch and returns once the batch committed.
    pub(crate) async fn commit(mut self) -> Result<()> {
        if let Some(sp) = self.savepoint.take() {
            if let Err(e) = exec(
                &mut self.guard.conn,
                &format!("RELEASE {sp}"),
                "releasing a savepoint",
            )
            .await
            {
                self.savepoint = Some(sp);
                let _ = self.rollback_savepoint().await;
                self.release().await;
                return Err(e);
            }
        }
        if !self.guard.open {
            // Not in a batch: a statement that committed by itself, an operation whose last
            // statement carried the COMMIT, or a plain guard.
            if self.alone {
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
            }
            self.release().await;
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.guard.pending.push(tx);
        let shared = self.shared.clone();
        self.release().await;
        // Give the connection back before waiting: the next holder may be the one to commit.
        drop(self);
        wait_for_commit(&shared, rx).await
    }

    /// Ends this operation without keeping anything it wrote since its savepoint.
    pub(crate) async fn abandon(mut self) {
        let _ = self.rollback_savepoint().await;
        self.release().await;
    }

    /// Ends this operation after an error that may have made SQLite roll the whole batch back
    /// (busy, locked, out of memory, I/O, corrupt, full): the batch is ended and every
    /// operation waiting for its commit is told it failed, rather than committing what follows
    /// outside any transaction.
    pub(crate) async fn abort_batch(mut self) {
        self.savepoint = None;
        if self.guard.open {
            self.guard.unsure = Some(Unsure::Rollback);
            let _ = sqlx::Executor::execute(&mut self.guard.conn, "ROLLBACK").await;
            self.guard.unsure = None;
            self.guard.open = false;
            for p in self.guard.pending.drain(..) {
                let _ = p.send(Err(ROLLED_BACK.to_owned()));
            }
        }
    }

    /// Ends a failed operation: [`WriteGuard::abort_batch`] when `error` may have rolled the
    /// batch back, else [`WriteGuard::abandon`].
    pub(crate) async fn fail(self, error: &Error) {
        let batch_lost = match error {
            Error::Database {
                source: sqlx::Error::Database(db),
                ..
            } => db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| matches!(c & 0xff, 5 | 6 | 7 | 10 | 11 | 13)),
            _ => false,
        };
        if batch_lost {
            self.abort_batch().await;
        } else {
            self.abandon().await;
        }
    }

    /// Gives the connection back; commits the batch unless a queued task takes it over.
    async fn release(&mut self) {
        let queued = self.shared.waiting.load(Ordering::SeqCst);
        if self.guard.open && (queued == 0 || self.guard.pending.len() >= MAX_BATCH) {
            self.guard.commit_batch().await;
            self.shared.commits.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        // Cancelled in the middle of an operation: its savepoint is rolled back by the next holder.
        if let Some(sp) = self.savepoint.take() {
            self.guard.dirty = Some(sp);
        }
    }
}

async fn wait_for_commit(
    shared: &Arc<Shared>,
    mut rx: oneshot::Receiver<CommitResult>,
) -> Result<()> {
    loop {
        match tokio::time::timeout(COMMIT_GRACE, &mut rx).await {
            Ok(Ok(r)) => return r.map_err(Error::CommitFailed),
            Ok(Err(_)) => return Err(Error::CommitFailed("the writer was closed".into())),
            Err(_) => {
                // Whoever was to commit our batch went away: commit it ourselves, after
                // rolling back what a cancelled operation left in it.
                let mut g = shared.state.clone().lock_owned().await;
                g.clean_up().await;
                if g.open && shared.waiting.load(Ordering::SeqCst) == 0 {
                    g.commit_batch().await;
                    shared.commits.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
