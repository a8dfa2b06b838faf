//! `SysDb`'s workflow operations: status rows (start, complete, read), recorded steps,
//! recovery of pending workflows, dead-lettering and application versions.

use super::backend::{on_reader, on_writer};
use super::rows::{bind_step, check_step_written, step_row, step_write_error, workflow_row};
use super::{now_ms, Backend, NewWorkflow, Outcome, StepRow, StepWrite, SysDb, WorkflowRow};
use crate::error::{Error, Result};
use sqlx::Row;

impl SysDb {
    /// Inserts the workflow's status row, or finds the existing one (one upsert).
    pub(crate) async fn insert_workflow(&self, w: &NewWorkflow<'_>) -> Result<WorkflowRow> {
        let now = now_ms();
        let (enqueued, delay_until) = enqueued_status(w.delay_ms, now);
        let (status, queue, attempts, started) = match w.queue {
            Some(queue) => (enqueued, Some(queue), 0_i64, None),
            None => ("PENDING", None, 1_i64, Some(now)),
        };
        let sql = if queue.is_some() {
            &self.q.enqueue_workflow
        } else {
            &self.q.insert_workflow
        };
        // A direct start's timeout runs from now; an enqueued one's from its claim.
        let deadline = match (w.queue, w.timeout_ms) {
            (None, Some(t)) => Some(now.saturating_add(t)),
            _ => w.deadline_ms,
        };
        self.metrics.add_commit();
        on_writer!(&self.sys, |p| {
            let row = sqlx::query(sql)
                .bind(w.id)
                .bind(status)
                .bind(w.name)
                .bind(w.inputs)
                .bind(&self.executor_id)
                .bind(&self.app_version)
                .bind(&self.app_name)
                .bind(w.owner_xid)
                .bind(w.parent_id)
                .bind(queue)
                .bind(attempts)
                .bind(now)
                .bind(started)
                .bind(w.timeout_ms)
                .bind(deadline)
                .bind(w.priority)
                .bind(w.dedup_id)
                .bind(w.partition)
                .bind(delay_until)
                .bind(w.serialization)
                .bind(w.attributes)
                .bind(w.debounce.is_some())
                .bind(w.debounce.flatten())
                .fetch_all(&mut *p)
                .await
                .map_err(|e| match (super::unique_violation(&e), queue, w.dedup_id) {
                    // The workflow ID is the upsert's conflict target: only the
                    // deduplication index can raise this.
                    (true, Some(queue), Some(dedup)) => Error::QueueDeduplicated {
                        queue: queue.to_owned(),
                        deduplication_id: dedup.to_owned(),
                        workflow_id: w.id.to_owned(),
                    },
                    _ => Error::db("starting a workflow")(e),
                })?;
            let row = row
                .first()
                .ok_or_else(|| Error::db("starting a workflow")(sqlx::Error::RowNotFound))?;
            workflow_row(row)
        })
    }

    /// The enqueue upsert for `w` (on `w.queue`) with its parameters in order, to run inside
    /// an application transaction ([`super::Tx::enqueue`]).
    pub(crate) fn enqueue_statement(&self, w: &NewWorkflow<'_>) -> (String, Vec<super::Param>) {
        let now = now_ms();
        let (status, delay_until) = enqueued_status(w.delay_ms, now);
        let params: Vec<super::Param> = vec![
            w.id.into(),
            status.into(),
            w.name.into(),
            w.inputs.into(),
            self.executor_id.as_str().into(),
            self.app_version.as_str().into(),
            self.app_name.as_str().into(),
            w.owner_xid.into(),
            w.parent_id.into(),
            w.queue.into(),
            0_i64.into(),
            now.into(),
            None::<i64>.into(),
            w.timeout_ms.into(),
            w.deadline_ms.into(),
            w.priority.into(),
            w.dedup_id.into(),
            w.partition.into(),
            delay_until.into(),
            w.serialization.into(),
            w.attributes.into(),
            w.debounce.is_some().into(),
            w.debounce.flatten().into(),
        ];
        (self.q.enqueue_workflow.clone(), params)
    }

    /// Writes a terminal status. `None` when the row was no longer PENDING (cancelled,
    /// dead-lettered or handed on); otherwise the queue the workflow came from, if any (on
    /// Postgres the same statement told other processes that queue has a free slot).
    pub(crate) async fn complete_workflow(
        &self,
        id: &str,
        outcome: &Outcome,
    ) -> Result<Option<Option<String>>> {
        let (status, output, error) = match outcome {
            Outcome::Success(o) => ("SUCCESS", Some(o.as_str()), None),
            Outcome::Error(e) => ("ERROR", None, Some(e.as_str())),
        };
        self.metrics.add_commit();
        on_writer!(&self.sys, |p| {
            let rows = sqlx::query_scalar::<_, Option<String>>(&self.q.complete_workflow)
                .bind(id)
                .bind(status)
                .bind(output)
                .bind(error)
                .bind(now_ms())
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("recording a workflow's outcome"))?;
            Ok(rows.into_iter().next())
        })
    }

    /// Reads a workflow's status row.
    pub(crate) async fn get_workflow(&self, id: &str) -> Result<Option<WorkflowRow>> {
        on_reader!(&self.sys, |p| {
            let row = sqlx::query(&self.q.get_workflow)
                .bind(id)
                .fetch_optional(&mut *p)
                .await
                .map_err(Error::db("reading a workflow's status"))?;
            row.as_ref().map(workflow_row).transpose()
        })
    }

    /// The greatest workflow ID (in byte order) that starts with `prefix` and is `len`
    /// characters long: a schedule's last recorded tick (the scheduler's catch-up). One scan
    /// of `workflow_status`, run once per schedule at launch.
    pub(crate) async fn last_id_with_prefix(
        &self,
        prefix: &str,
        len: usize,
    ) -> Result<Option<String>> {
        let p = self.sys.prefix(&self.schema);
        // Byte order on Postgres whatever the database's collation; SQLite compares bytes.
        let collate = if self.sys.is_postgres() {
            " COLLATE \"C\""
        } else {
            ""
        };
        let sql = format!(
            "SELECT MAX(workflow_uuid{collate}) FROM {p}workflow_status \
             WHERE substr(workflow_uuid, 1, $1) = $2 AND length(workflow_uuid) = $3"
        );
        let to_i32 = |n: usize| {
            i32::try_from(n).map_err(|_| Error::Config("a schedule name is too long".into()))
        };
        let (prefix_len, len) = (to_i32(prefix.chars().count())?, to_i32(len)?);
        on_reader!(&self.sys, |p| {
            sqlx::query_scalar::<_, Option<String>>(&sql)
                .bind(prefix_len)
                .bind(prefix)
                .bind(len)
                .fetch_one(&mut *p)
                .await
                .map_err(Error::db("reading a schedule's last tick"))
        })
    }

    /// Reads every recorded operation of a workflow (once, when it is resumed).
    pub(crate) async fn load_steps(&self, id: &str) -> Result<Vec<StepRow>> {
        on_reader!(&self.sys, |p| {
            let rows = sqlx::query(&self.q.load_steps)
                .bind(id)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("reading recorded steps"))?;
            rows.iter().map(step_row).collect()
        })
    }

    /// Records an operation (one statement, one commit). Fails with `ConcurrentExecution`
    /// when another execution recorded this position first.
    pub(crate) async fn record_step(&self, s: &StepWrite<'_>) -> Result<()> {
        self.metrics.add_commit();
        let row = on_writer!(&self.sys, |p| {
            bind_step(&self.q.record_step, s, &self.app_name)
                .fetch_all(&mut *p)
                .await
                .and_then(|rows| {
                    rows.first()
                        .ok_or(sqlx::Error::RowNotFound)?
                        .try_get::<Option<i64>, _>(0)
                })
                .map_err(step_write_error(s, "recording a step"))
        })?;
        check_step_written(s, row)
    }

    /// Moves this executor's PENDING workflows of this version back to their queue, or to
    /// `queue` for those started without one.
    pub(crate) async fn recover_pending(&self, queue: &str) -> Result<u64> {
        on_writer!(&self.sys, |p| {
            let done = sqlx::query(&self.q.recover_pending)
                .bind(&self.executor_id)
                .bind(&self.app_version)
                .bind(&self.app_name)
                .bind(now_ms())
                .bind(queue)
                .execute(&mut *p)
                .await
                .map_err(Error::db("recovering pending workflows"))?;
            Ok(done.rows_affected())
        })
    }

    /// Sets a workflow aside after too many recovery attempts.
    pub(crate) async fn dead_letter(&self, id: &str, attempts: i64) -> Result<bool> {
        on_writer!(&self.sys, |p| {
            let done = sqlx::query(&self.q.dead_letter)
                .bind(id)
                .bind(now_ms())
                .bind(attempts)
                .execute(&mut *p)
                .await
                .map_err(Error::db("dead-lettering a workflow"))?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Records this application version (DBOS tools list versions from here).
    pub(crate) async fn insert_app_version(&self) -> Result<()> {
        on_writer!(&self.sys, |p| {
            sqlx::query(&self.q.insert_version)
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(&self.app_version)
                .bind(now_ms())
                .bind(&self.app_name)
                .execute(&mut *p)
                .await
                .map_err(Error::db("recording the application version"))?;
            Ok(())
        })
    }
}

/// An enqueued workflow's status and due time: `DELAYED` until `now + delay` when it has a
/// positive delay, else `ENQUEUED`.
fn enqueued_status(delay_ms: Option<i64>, now: i64) -> (&'static str, Option<i64>) {
    match delay_ms {
        Some(d) if d > 0 => ("DELAYED", Some(now.saturating_add(d))),
        _ => ("ENQUEUED", None),
    }
}

impl SysDb {
    /// A debounce's bounce (see `Queries::bounce`): the waiting debounced workflow, if there
    /// is one, takes the new inputs and waits until `delay_until_ms` (capped at its deadline).
    pub(crate) async fn bounce(
        &self,
        name: &str,
        queue: &str,
        dedup_id: &str,
        delay_until_ms: i64,
        inputs: &str,
        serialization: &str,
    ) -> Result<Option<String>> {
        self.metrics.add_commit();
        on_writer!(&self.sys, |p| {
            sqlx::query_scalar::<_, String>(&self.q.bounce)
                .bind(name)
                .bind(queue)
                .bind(dedup_id)
                .bind(delay_until_ms)
                .bind(inputs)
                .bind(serialization)
                .bind(now_ms())
                // Read to the end (see `on_writer!`): the statement has committed only then.
                .fetch_all(&mut *p)
                .await
                .map(|ids| ids.into_iter().next())
                .map_err(Error::db("debouncing a workflow"))
        })
    }
}
