//! Executor liveness (Postgres): each launched process renews a row of ours,
//! `<schema>.rs_executor_liveness`, and the live processes of an application take over the
//! unfinished workflows of one that stopped renewing it. On SQLite these are no-ops: one
//! process owns the file's work.

use super::{Backend, SysDb};
use crate::error::{Error, Result};
use crate::queue::INTERNAL_QUEUE;

/// The database clock in epoch milliseconds: liveness compares times written by many
/// machines, so it uses one clock.
const NOW_MS: &str = "(EXTRACT(epoch FROM clock_timestamp()) * 1000)::BIGINT";

/// Another executor's liveness row, as a candidate for a takeover.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub executor_id: String,
    pub hostname: Option<String>,
    pub pid: Option<i64>,
    /// Its PID namespace (`/proc/self/ns/pid`): a pid can only be checked from the same one.
    pub pid_ns: Option<String>,
    /// It missed its deadline.
    pub expired: bool,
}

impl SysDb {
    /// Whether the system database is Postgres.
    pub(crate) fn is_postgres(&self) -> bool {
        self.sys.is_postgres()
    }

    fn liveness_table(&self) -> String {
        format!("{}.rs_executor_liveness", self.schema)
    }

    /// Creates the liveness table when missing (Postgres; not one of DBOS's migrations).
    pub(crate) async fn create_liveness_table(&self) -> Result<()> {
        let Backend::Postgres(b) = &self.sys else {
            return Ok(());
        };
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (executor_id TEXT PRIMARY KEY, \
             application_name TEXT NOT NULL, hostname TEXT, pid BIGINT, \
             started_at BIGINT NOT NULL, last_seen_at BIGINT NOT NULL, timeout_ms BIGINT NOT NULL, \
             pid_ns TEXT)",
            self.liveness_table()
        );
        match sqlx::query(&sql).execute(&b.pool).await {
            Ok(_) => Ok(()),
            // Two processes creating it at once: the loser sees a catalog conflict.
            Err(e) if super::lost_create_race(&e) => Ok(()),
            Err(e) => Err(Error::db("creating the liveness table")(e)),
        }
    }

    /// Renews this executor's liveness row (creating it when missing).
    pub(crate) async fn beat(
        &self,
        hostname: &str,
        pid: i64,
        started_at: i64,
        timeout_ms: i64,
        pid_ns: Option<&str>,
    ) -> Result<()> {
        let Backend::Postgres(b) = &self.sys else {
            return Ok(());
        };
        let _pass = b.gate.enter()?;
        let sql = format!(
            "INSERT INTO {} (executor_id, application_name, hostname, pid, started_at, last_seen_at, \
             timeout_ms, pid_ns) VALUES ($1, $2, $3, $4, $5, {NOW_MS}, $6, $7) \
             ON CONFLICT (executor_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at, \
             hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, timeout_ms = EXCLUDED.timeout_ms, \
             pid_ns = EXCLUDED.pid_ns",
            self.liveness_table()
        );
        self.metrics.add_commit();
        sqlx::query(&sql)
            .bind(&self.executor_id)
            .bind(&self.app_name)
            .bind(hostname)
            .bind(pid)
            .bind(started_at)
            .bind(timeout_ms)
            .bind(pid_ns)
            .execute(&b.pool)
            .await
            .map_err(Error::db("renewing the liveness record"))?;
        Ok(())
    }

    /// Marks this executor's row expired (at a clean shutdown): its unfinished workflows are
    /// taken over at once, by a restart or any live process.
    /// Runs after the gate closed (at the end of shutdown, while the pool is still open).
    pub(crate) async fn expire_self(&self) -> Result<()> {
        let Backend::Postgres(b) = &self.sys else {
            return Ok(());
        };
        sqlx::query(&format!(
            "UPDATE {} SET last_seen_at = 0 WHERE executor_id = $1",
            self.liveness_table()
        ))
        .bind(&self.executor_id)
        .execute(&b.pool)
        .await
        .map_err(Error::db("expiring the liveness record"))?;
        Ok(())
    }

    /// The application's other executors that missed their deadline (each by its own
    /// timeout), or that ran on `hostname` (whose pids the caller can check).
    pub(crate) async fn takeover_candidates(&self, hostname: &str) -> Result<Vec<Peer>> {
        let Backend::Postgres(b) = &self.sys else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT executor_id, hostname, pid, pid_ns, last_seen_at < {NOW_MS} - timeout_ms FROM {} \
             WHERE application_name = $1 AND executor_id <> $2 \
             AND (last_seen_at < {NOW_MS} - timeout_ms OR hostname = $3)",
            self.liveness_table()
        );
        #[allow(clippy::type_complexity)]
        let rows: Vec<(String, Option<String>, Option<i64>, Option<String>, bool)> =
            sqlx::query_as(&sql)
                .bind(&self.app_name)
                .bind(&self.executor_id)
                .bind(hostname)
                .fetch_all(&b.pool)
                .await
                .map_err(Error::db("reading liveness records"))?;
        Ok(rows
            .into_iter()
            .map(|(executor_id, hostname, pid, pid_ns, expired)| Peer {
                executor_id,
                hostname,
                pid,
                pid_ns,
                expired,
            })
            .collect())
    }

    /// Takes over `peer`'s unfinished workflows when it is still dead: deletes its liveness
    /// row (expired, or with the same host and pid when `dead_pid`) and moves its PENDING
    /// workflows back to their queue (the runtime's own for those started directly), in one
    /// transaction. Of several processes trying, exactly one deletes the row and moves them.
    /// Returns how many workflows moved, or `None` when another process took it over first
    /// (or it came back).
    pub(crate) async fn take_over(&self, peer: &Peer, dead_pid: bool) -> Result<Option<u64>> {
        let Backend::Postgres(b) = &self.sys else {
            return Ok(None);
        };
        let _pass = b.gate.enter()?;
        let p = format!("{}.", self.schema);
        let mut tx = b
            .pool
            .begin()
            .await
            .map_err(Error::db("taking over an executor"))?;
        let deleted = sqlx::query(&format!(
            "DELETE FROM {} WHERE executor_id = $1 AND (last_seen_at < {NOW_MS} - timeout_ms \
             OR ($2 AND hostname IS NOT DISTINCT FROM $3 AND pid IS NOT DISTINCT FROM $4))",
            self.liveness_table()
        ))
        .bind(&peer.executor_id)
        .bind(dead_pid)
        .bind(&peer.hostname)
        .bind(peer.pid)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("taking over an executor"))?
        .rows_affected();
        if deleted == 0 {
            return Ok(None);
        }
        let moved = sqlx::query(&format!(
            "UPDATE {p}workflow_status SET status = 'ENQUEUED', \
             queue_name = COALESCE(queue_name, $2), started_at_epoch_ms = NULL, updated_at = $3 \
             WHERE status = 'PENDING' AND executor_id = $1 \
             AND (application_name = $4 OR application_name IS NULL)"
        ))
        .bind(&peer.executor_id)
        .bind(INTERNAL_QUEUE)
        .bind(super::now_ms())
        .bind(&self.app_name)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("taking over an executor's workflows"))?
        .rows_affected();
        if moved > 0 {
            // Every dispatcher may claim them (delivered at commit).
            sqlx::query(&format!("SELECT pg_notify('{}', $1)", super::QUEUE_CHANNEL))
                .bind(INTERNAL_QUEUE)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("taking over an executor"))?;
        }
        self.metrics.add_commit();
        tx.commit()
            .await
            .map_err(Error::db("taking over an executor"))?;
        Ok(Some(moved))
    }
}
