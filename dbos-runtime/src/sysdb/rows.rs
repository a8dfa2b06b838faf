//! The row types the rest of the runtime speaks (workflow status, recorded steps, claims), how
//! they are decoded from and bound to statements, and the check that a step row is ours.

use crate::error::{Error, Result};
use sqlx::Row;

/// A new `workflow_status` row.
#[derive(Debug)]
pub(crate) struct NewWorkflow<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub inputs: &'a str,
    pub owner_xid: &'a str,
    pub parent_id: Option<&'a str>,
    /// `Some(queue)`: `ENQUEUED` on that queue, for a dispatcher to claim; `None`: `PENDING`,
    /// run here now.
    pub queue: Option<&'a str>,
    /// `workflow_timeout_ms`.
    pub timeout_ms: Option<i64>,
    /// `workflow_deadline_epoch_ms`: set for a direct start with a timeout, or inherited from
    /// the parent; an enqueued workflow's is set when a dispatcher claims it.
    pub deadline_ms: Option<i64>,
    /// Queue priority (0 when none was given).
    pub priority: i32,
    /// `deduplication_id`.
    pub dedup_id: Option<&'a str>,
    /// `queue_partition_key`.
    pub partition: Option<&'a str>,
    /// Enqueued `DELAYED` until this long after now.
    pub delay_ms: Option<i64>,
    /// The `serialization` tag of `inputs` (and of the output written at the end).
    pub serialization: &'a str,
    /// `attributes`: the trace context it was started under (see `otel`), if any.
    pub attributes: Option<&'a str>,
    /// `is_debounced`, and `debounce_deadline_epoch_ms` (see `Debouncer`).
    pub debounce: Option<Option<i64>>,
}

/// What the start upsert found: our own new row or the existing one.
#[derive(Debug, Clone)]
pub(crate) struct WorkflowRow {
    pub status: String,
    pub name: Option<String>,
    pub owner_xid: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub serialization: Option<String>,
    pub deadline_ms: Option<i64>,
}

/// A recorded operation (`operation_outputs` row).
#[derive(Debug, Clone)]
pub(crate) struct StepRow {
    pub function_id: i32,
    pub function_name: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub child_workflow_id: Option<String>,
    pub serialization: Option<String>,
}

/// An operation to record.
#[derive(Debug, Clone)]
pub(crate) struct StepWrite<'a> {
    pub workflow_id: &'a str,
    pub function_id: i32,
    pub function_name: &'a str,
    pub output: Option<&'a str>,
    pub error: Option<&'a str>,
    pub child_workflow_id: Option<&'a str>,
    pub serialization: Option<&'a str>,
    pub started_at_ms: i64,
    pub completed_at_ms: i64,
}

/// A workflow claimed from the internal queue, ready to run here.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub id: String,
    pub name: Option<String>,
    pub inputs: Option<String>,
    pub serialization: Option<String>,
    pub recovery_attempts: i64,
    pub deadline_ms: Option<i64>,
    /// Queue order: priority, then `created_at`.
    pub order: (i32, i64),
    /// It has recorded operations (to load before resuming it).
    pub has_steps: bool,
    /// Its `attributes` (the trace context it was started under), as JSON text.
    pub attributes: Option<String>,
}

/// A workflow's terminal outcome, serialized.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Success(String),
    Error(String),
}

pub(super) fn bind_step<'q, DB>(
    sql: &'q str,
    s: &'q StepWrite<'q>,
    app_name: &'q str,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i32: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    sqlx::query(sql)
        .bind(s.workflow_id)
        .bind(s.function_id)
        .bind(s.function_name)
        .bind(s.output)
        .bind(s.error)
        .bind(s.child_workflow_id)
        .bind(s.serialization)
        .bind(s.started_at_ms)
        .bind(s.completed_at_ms)
        .bind(app_name)
}

pub(super) fn claimed_row<R: Row>(r: &R) -> Result<Claimed>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i32: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    bool: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let e = || Error::db("claiming an enqueued workflow");
    Ok(Claimed {
        id: r.try_get(0).map_err(e())?,
        name: r.try_get(1).map_err(e())?,
        inputs: r.try_get(2).map_err(e())?,
        serialization: r.try_get(3).map_err(e())?,
        recovery_attempts: r.try_get::<Option<i64>, _>(4).map_err(e())?.unwrap_or(0),
        deadline_ms: r.try_get::<Option<i64>, _>(5).map_err(e())?,
        order: (r.try_get(6).map_err(e())?, r.try_get(7).map_err(e())?),
        has_steps: r.try_get(8).map_err(e())?,
        attributes: r.try_get(9).map_err(e())?,
    })
}

/// The error of a step write: the cancel guard's NOT NULL violation is
/// [`Error::WorkflowCancelled`], anything else a database error while `doing`.
pub(super) fn step_write_error<'a>(
    s: &'a StepWrite<'_>,
    doing: &'static str,
) -> impl FnOnce(sqlx::Error) -> Error + 'a {
    move |e| match &e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::NotNullViolation => {
            Error::WorkflowCancelled(s.workflow_id.to_owned())
        }
        _ => Error::db(doing)(e),
    }
}

/// Rule 10: the returned completion time is ours unless another execution wrote the row first.
pub(super) fn check_step_written(s: &StepWrite<'_>, completed: Option<i64>) -> Result<()> {
    if completed == Some(s.completed_at_ms) {
        Ok(())
    } else {
        Err(Error::ConcurrentExecution {
            workflow_id: s.workflow_id.to_owned(),
            function_id: s.function_id,
        })
    }
}

/// Rule 10 on the row a step write returned (`completed_at_epoch_ms` first).
pub(super) fn check_step_row<R: Row>(s: &StepWrite<'_>, row: &R, doing: &'static str) -> Result<()>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    check_step_written(s, row.try_get(0).map_err(Error::db(doing))?)
}

pub(super) fn workflow_row<R: Row>(row: &R) -> Result<WorkflowRow>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let map = Error::db("reading a workflow row");
    let get = |i: usize| row.try_get::<Option<String>, _>(i);
    Ok(WorkflowRow {
        status: get(0).map_err(map)?.unwrap_or_default(),
        name: get(1).map_err(Error::db("reading a workflow row"))?,
        owner_xid: get(2).map_err(Error::db("reading a workflow row"))?,
        output: get(3).map_err(Error::db("reading a workflow row"))?,
        error: get(4).map_err(Error::db("reading a workflow row"))?,
        serialization: get(5).map_err(Error::db("reading a workflow row"))?,
        deadline_ms: row
            .try_get::<Option<i64>, _>(6)
            .map_err(Error::db("reading a workflow row"))?,
    })
}

pub(super) fn step_row<R: Row>(row: &R) -> Result<StepRow>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i32: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let e = || Error::db("reading a step row");
    Ok(StepRow {
        function_id: row.try_get(0).map_err(e())?,
        function_name: row.try_get(1).map_err(e())?,
        output: row.try_get(2).map_err(e())?,
        error: row.try_get(3).map_err(e())?,
        child_workflow_id: row.try_get(4).map_err(e())?,
        serialization: row.try_get(5).map_err(e())?,
    })
}
