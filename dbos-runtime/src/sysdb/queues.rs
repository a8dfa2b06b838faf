//! `SysDb`'s queue operations: which queues have work, claiming within a queue's limits, and
//! delayed workflows.

use super::backend::{in_write_tx, on_reader, on_writer};
use super::rows::claimed_row;
use super::{now_ms, Backend, Claimed, SysDb};
use crate::error::{Error, Result};

/// The limits a claim from one queue (or one partition of it) must respect.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits<'a> {
    pub name: &'a str,
    /// Only this partition, whose limits are its own.
    pub partition: Option<&'a str>,
    /// Running workflows in every process.
    pub concurrency: Option<i64>,
    /// Running workflows of this executor.
    pub worker_concurrency: Option<i64>,
    /// At most `.0` starts in any window of `.1` milliseconds.
    pub rate_limit: Option<(i64, i64)>,
}

/// What one claim took.
#[derive(Debug, Default)]
pub(crate) struct Dequeued {
    /// The claimed workflows, in queue order.
    pub claimed: Vec<Claimed>,
    /// With a rate limit: when (epoch ms) the oldest start in the window leaves it.
    pub window_frees_at: Option<i64>,
}

impl SysDb {
    /// Claims, for this executor, as many of the queue's `ENQUEUED` workflows as its limits
    /// allow (at most `batch`), in one transaction.
    ///
    /// Limits shared with other processes (concurrency, rate) are counted and spent under a
    /// per-queue transaction lock on Postgres (the SQLite write lock on SQLite), so two
    /// dispatchers never both spend the same free slot; rows are taken `FOR UPDATE SKIP
    /// LOCKED`, so two processes never claim one workflow.
    pub(crate) async fn dequeue(&self, q: &QueueLimits<'_>, batch: i64) -> Result<Dequeued> {
        let shared = q.concurrency.is_some() || q.rate_limit.is_some();
        let limited = shared || q.worker_concurrency.is_some();
        let lock_key = format!("dbos_queue:{}:{}", q.name, q.partition.unwrap_or(""));
        let pg = self.sys.is_postgres();
        let (counts_sql, dequeue_sql) = match q.partition {
            Some(_) => (&self.q.queue_counts_partition, &self.q.dequeue_partition),
            None => (&self.q.queue_counts, &self.q.dequeue),
        };
        self.metrics.add_commit();
        in_write_tx!(&self.sys, "claiming enqueued workflows", |t| {
            async {
                let now = now_ms();
                let mut free = batch;
                let mut window_frees_at = None;
                if pg && shared {
                    // A process paused while it holds the lock (SIGSTOP, a frozen VM) has its
                    // session ended by the server after 5 s, releasing the lock.
                    sqlx::query(
                        "SELECT set_config('idle_in_transaction_session_timeout', '5s', true), \
                         pg_advisory_xact_lock(hashtextextended($1, 0))",
                    )
                    .bind(&lock_key)
                    .execute(&mut *t)
                    .await
                    .map_err(Error::db("locking a queue"))?;
                }
                if limited {
                    let since = now - q.rate_limit.map_or(0, |(_, period)| period);
                    let mut counts = sqlx::query_as(counts_sql)
                        .bind(q.name)
                        .bind(&self.executor_id)
                        .bind(since);
                    if let Some(key) = q.partition {
                        counts = counts.bind(key);
                    }
                    let (pending, mine, started, oldest): (i64, i64, i64, Option<i64>) = counts
                        .fetch_one(&mut *t)
                        .await
                        .map_err(Error::db("counting a queue's running workflows"))?;
                    if let Some(c) = q.concurrency {
                        free = free.min(c - pending);
                    }
                    if let Some(w) = q.worker_concurrency {
                        free = free.min(w - mine);
                    }
                    if let Some((max, period)) = q.rate_limit {
                        free = free.min(max - started);
                        window_frees_at = oldest.map(|o| o + period);
                    }
                }
                if free <= 0 {
                    return Ok(Dequeued {
                        claimed: Vec::new(),
                        window_frees_at,
                    });
                }
                let mut claim = sqlx::query(dequeue_sql)
                    .bind(&self.executor_id)
                    .bind(&self.app_version)
                    .bind(&self.app_name)
                    .bind(now)
                    .bind(q.name)
                    .bind(free)
                    .bind(q.rate_limit.is_some());
                if let Some(key) = q.partition {
                    claim = claim.bind(key);
                }
                let rows = claim
                    .fetch_all(&mut *t)
                    .await
                    .map_err(Error::db("claiming enqueued workflows"))?;
                let mut claimed = rows.iter().map(claimed_row).collect::<Result<Vec<_>>>()?;
                // RETURNING gives no order.
                claimed.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.id.cmp(&b.id)));
                if window_frees_at.is_none() && q.rate_limit.is_some() && !claimed.is_empty() {
                    window_frees_at = q.rate_limit.map(|(_, period)| now + period);
                }
                Ok(Dequeued {
                    claimed,
                    window_frees_at,
                })
            }
            .await
        })
    }

    /// Puts a workflow this executor claimed but could not start back on its queue.
    pub(crate) async fn release_claim(&self, id: &str) -> Result<()> {
        let sql = format!(
            "UPDATE {}workflow_status SET status = 'ENQUEUED', started_at_epoch_ms = NULL, \
             updated_at = $2 WHERE workflow_uuid = $1 AND status = 'PENDING' AND executor_id = $3",
            self.sys.prefix(&self.schema)
        );
        self.metrics.add_commit();
        on_writer!(&self.sys, |p| {
            sqlx::query(&sql)
                .bind(id)
                .bind(now_ms())
                .bind(&self.executor_id)
                .execute(&mut *p)
                .await
                .map(|_| ())
                .map_err(Error::db("releasing a claimed workflow"))
        })
    }

    /// The queues that hold `ENQUEUED` workflows this process may claim (one read of the
    /// in-flight index).
    pub(crate) async fn queues_with_work(&self) -> Result<Vec<String>> {
        on_reader!(&self.sys, |p| {
            sqlx::query_scalar(&self.q.queues_with_work)
                .bind(&self.app_version)
                .bind(&self.app_name)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("finding queues with work"))
        })
    }

    /// The partition keys of a queue's `ENQUEUED` workflows.
    pub(crate) async fn queue_partitions(&self, queue: &str) -> Result<Vec<String>> {
        on_reader!(&self.sys, |p| {
            sqlx::query_scalar(&self.q.queue_partitions)
                .bind(queue)
                .bind(&self.app_version)
                .bind(&self.app_name)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("listing a queue's partitions"))
        })
    }

    /// When (epoch ms) the next `DELAYED` workflow of this application is due.
    pub(crate) async fn next_delayed(&self) -> Result<Option<i64>> {
        on_reader!(&self.sys, |p| {
            sqlx::query_scalar(&self.q.next_delayed)
                .bind(&self.app_name)
                .fetch_one(&mut *p)
                .await
                .map_err(Error::db("reading delayed workflows"))
        })
    }

    /// Moves `DELAYED` workflows whose time has come to `ENQUEUED`.
    pub(crate) async fn promote_delayed(&self, now: i64) -> Result<u64> {
        self.metrics.add_commit();
        on_writer!(&self.sys, |p| {
            sqlx::query(&self.q.promote_delayed)
                .bind(now)
                .bind(&self.app_name)
                .execute(&mut *p)
                .await
                .map(|done| done.rows_affected())
                .map_err(Error::db("enqueueing delayed workflows"))
        })
    }
}
