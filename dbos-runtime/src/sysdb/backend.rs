//! [`Backend`]: one connection set (SQLite or Postgres), how it connects and closes, and the
//! `on_writer!`/`on_reader!`/`in_write_tx!` macros that run one statement body on either.

use super::{gate, postgres, sqlite};
use crate::config::{DatabaseUrl, DbosConfig};
use crate::error::Result;

/// One connection set: SQLite (a single writer connection and a reader pool) or a Postgres pool.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Sqlite(sqlite::SqliteDb),
    Postgres(postgres::PgDb),
}

/// Runs `$body` (one statement, evaluating to a `Result`) with `$p` bound to what takes
/// writes: the Postgres pool, or on SQLite the writer connection inside the current group
/// commit (the result is returned once that batch committed).
///
/// A statement that returns rows must be read to its end (`fetch_all`, never `fetch_one`):
/// Postgres sends the rows of an autocommit statement before it commits it, so a caller that
/// stops at the first row may act on a write that is not yet committed (and a shutdown may
/// return before it is).
macro_rules! on_writer {
    ($backend:expr, |$p:ident| $body:expr) => {
        match $backend {
            Backend::Sqlite(b) => {
                let _pass = b.gate.enter()?;
                let mut $p = b.writer.begin_statement().await?;
                let out = $body;
                match out {
                    Ok(v) => $p.commit().await.map(|()| v),
                    Err(e) => {
                        $p.fail(&e).await;
                        Err(e)
                    }
                }
            }
            Backend::Postgres(b) => {
                let _pass = b.gate.enter()?;
                let mut $p = b
                    .pool
                    .acquire()
                    .await
                    .map_err(Error::db("acquiring a connection"))?;
                $body
            }
        }
    };
}

/// Runs `$body` with `$p` bound to a pool for reads.
macro_rules! on_reader {
    ($backend:expr, |$p:ident| $body:expr) => {
        match $backend {
            Backend::Sqlite(b) => {
                let mut $p = b
                    .reader
                    .acquire()
                    .await
                    .map_err(Error::db("acquiring a connection"))?;
                $body
            }
            Backend::Postgres(b) => {
                let mut $p = b
                    .pool
                    .acquire()
                    .await
                    .map_err(Error::db("acquiring a connection"))?;
                $body
            }
        }
    };
}

/// Runs `$body` atomically with `$t` bound to a connection, and keeps its writes when `$body`
/// returns `Ok`: a Postgres transaction, or on SQLite a savepoint inside the current group
/// commit (returning once that batch committed). `$body` evaluates to a `Result`.
macro_rules! in_write_tx {
    ($backend:expr, $doing:literal, |$t:ident| $body:expr) => {
        match $backend {
            Backend::Sqlite(b) => {
                let _pass = b.gate.enter()?;
                let mut $t = b.writer.begin_savepoint("dbos_op").await?;
                let out = $body;
                match out {
                    Ok(v) => $t.commit().await.map(|()| v),
                    Err(e) => {
                        $t.fail(&e).await;
                        Err(e)
                    }
                }
            }
            Backend::Postgres(b) => {
                let _pass = b.gate.enter()?;
                let mut $t = b.pool.begin().await.map_err(Error::db($doing))?;
                let out = $body;
                if out.is_ok() {
                    $t.commit().await.map_err(Error::db($doing))?;
                }
                out
            }
        }
    };
}

pub(super) use {in_write_tx, on_reader, on_writer};

impl Backend {
    pub(super) async fn connect(
        url: &DatabaseUrl,
        cfg: &DbosConfig,
        create: bool,
    ) -> Result<Backend> {
        match url {
            DatabaseUrl::Sqlite(u) => Ok(Backend::Sqlite(sqlite::SqliteDb::connect(u, cfg).await?)),
            DatabaseUrl::Postgres(u) => Ok(Backend::Postgres(
                postgres::PgDb::connect(u, cfg, create).await?,
            )),
        }
    }

    pub(super) fn prefix(&self, schema: &str) -> String {
        match self {
            Backend::Sqlite(_) => String::new(),
            Backend::Postgres(_) => format!("{schema}."),
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres(_))
    }

    /// Whether workflow IDs sort by code point (SQLite's binary order; Postgres with a `C`
    /// collation), so that the IDs with a prefix are exactly a key range.
    pub(crate) fn ids_in_code_point_order(&self) -> bool {
        match self {
            Backend::Sqlite(_) => true,
            Backend::Postgres(b) => b.code_point_order,
        }
    }

    /// Refuses new work at once: a pool hands out no connection, the SQLite writer takes no
    /// operation ([`crate::Error::ShuttingDown`]). What holds a connection goes on.
    pub(super) fn begin_close(&self) {
        self.gate().close();
        match self {
            Backend::Sqlite(b) => b.writer.begin_close(),
            Backend::Postgres(_) => {}
        }
    }

    /// Closes, and returns once every operation that passed the gate has ended (committed or
    /// rolled back on the server) and the connections are closed.
    pub(super) async fn close(&self) {
        self.begin_close();
        self.gate().drained().await;
        match self {
            Backend::Sqlite(b) => {
                b.writer.close().await;
                b.reader.close().await;
            }
            Backend::Postgres(b) => b.pool.close().await,
        }
    }

    /// The gate this backend's operations pass.
    pub(crate) fn gate(&self) -> &std::sync::Arc<gate::Gate> {
        match self {
            Backend::Sqlite(b) => &b.gate,
            Backend::Postgres(b) => &b.gate,
        }
    }
}
