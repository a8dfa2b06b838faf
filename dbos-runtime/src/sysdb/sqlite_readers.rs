//! The SQLite reader connections: a small pool that hands a connection out and takes it back
//! without a word to it.
//!
//! sqlx's pool pings every connection it takes back (and by default again before handing it
//! out), which for SQLite is a round trip to the connection's own thread, as costly as the read
//! itself. A local file does not hang up, so these connections are never checked: one is
//! closed only when its user says it may be mid-transaction ([`ReadConn::close_on_drop`]), and
//! a new one is opened in its place when needed.

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long [`Readers::acquire`] waits for a free connection (as sqlx's pool did).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

struct Shared {
    opts: SqliteConnectOptions,
    /// Connections not in use.
    idle: Mutex<Vec<SqliteConnection>>,
    /// One permit per connection that may be open; closed by [`Readers::close`].
    permits: Arc<Semaphore>,
}

/// The reader connections (cheap to clone: a handle).
#[derive(Clone)]
pub(crate) struct Readers {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").finish_non_exhaustive()
    }
}

/// A reader connection, back in the pool when dropped; derefs to the connection.
pub(crate) struct ReadConn {
    conn: Option<SqliteConnection>,
    shared: Arc<Shared>,
    discard: bool,
    _permit: OwnedSemaphorePermit,
}

impl Readers {
    /// Up to `max` connections with `opts`; one is opened now, so that a bad file fails here.
    pub(crate) async fn connect(
        opts: SqliteConnectOptions,
        max: usize,
    ) -> Result<Readers, sqlx::Error> {
        let first = opts.connect().await?;
        Ok(Readers {
            shared: Arc::new(Shared {
                opts,
                idle: Mutex::new(vec![first]),
                permits: Arc::new(Semaphore::new(max.max(1))),
            }),
        })
    }

    /// A connection: an idle one, or a new one while fewer than `max` are open. Waits for
    /// one to come back otherwise (refused after [`ACQUIRE_TIMEOUT`] and after `close`).
    pub(crate) async fn acquire(&self) -> Result<ReadConn, sqlx::Error> {
        let permit =
            tokio::time::timeout(ACQUIRE_TIMEOUT, self.shared.permits.clone().acquire_owned())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?
                .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.shared.opts.connect().await?,
        };
        Ok(ReadConn {
            conn: Some(conn),
            shared: self.shared.clone(),
            discard: false,
            _permit: permit,
        })
    }

    /// Refuses further acquires and closes the idle connections; one in use closes when it
    /// is dropped.
    pub(crate) async fn close(&self) {
        self.shared.permits.close();
        let idle = std::mem::take(
            &mut *self
                .shared
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for conn in idle {
            let _ = conn.close().await;
        }
    }
}

impl ReadConn {
    /// Closes the connection when dropped instead of handing it to the next reader (it may
    /// be inside a transaction).
    pub(crate) fn close_on_drop(&mut self) {
        self.discard = true;
    }
}

impl std::ops::Deref for ReadConn {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for ReadConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.discard || self.shared.permits.is_closed() {
            // Dropping it ends its thread, which closes the database handle.
            return;
        }
        self.shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_are_reused_bounded_replaced_and_refused_after_close() {
        let dir = std::env::temp_dir().join(format!("dbos-readers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let opts = SqliteConnectOptions::new()
            .filename(dir.join("db.sqlite"))
            .create_if_missing(true);
        let readers = Readers::connect(opts, 2).await.unwrap();
        // A connection's own mark: a temporary table, which only that connection sees.
        async fn marked(c: &mut ReadConn) -> bool {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM temp.sqlite_master WHERE name = 'mark'")
                    .fetch_one(&mut **c)
                    .await
                    .unwrap();
            n == 1
        }
        let mut a = readers.acquire().await.unwrap();
        sqlx::query("CREATE TEMP TABLE mark (x)")
            .execute(&mut *a)
            .await
            .unwrap();
        drop(a);
        let mut a = readers.acquire().await.unwrap();
        assert!(
            marked(&mut a).await,
            "the idle connection is handed out again"
        );
        let mut b = readers.acquire().await.unwrap();
        assert!(!marked(&mut b).await, "a second connection");
        // Both are in use: a third waits until one comes back.
        let third = tokio::time::timeout(Duration::from_millis(100), readers.acquire()).await;
        assert!(third.is_err(), "at most two connections");
        a.close_on_drop();
        drop(a);
        let mut c = readers.acquire().await.unwrap();
        assert!(
            !marked(&mut c).await,
            "a discarded connection is replaced by a new one"
        );
        drop((b, c));
        readers.close().await;
        assert!(matches!(
            readers.acquire().await.map(|_| ()),
            Err(sqlx::Error::PoolClosed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
