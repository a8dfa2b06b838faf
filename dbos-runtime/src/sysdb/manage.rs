//! `SysDb`'s management operations, as DBOS's own tools do them on the same rows: list
//! workflows and their steps, cancel, resume, fork, and delete old finished workflows.

use super::backend::{in_write_tx, on_reader, on_writer};
use super::rows::claimed_row;
use super::Claimed;
use super::{now_ms, postgres, Backend, SysDb};
use crate::error::{Error, Result};
use crate::notify::WaitsOn;
use sqlx::Row;

/// The statuses of a workflow that has ended, as SQL.
const TERMINAL: &str = "'SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'";

/// Every status a workflow row can hold (SYSDB.md rule 5).
pub(crate) const STATUSES: [&str; 7] = [
    "PENDING",
    "ENQUEUED",
    "DELAYED",
    "SUCCESS",
    "ERROR",
    "CANCELLED",
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
];

/// Which workflows [`Runtime::list_workflows`](crate::Runtime::list_workflows) returns.
///
/// Every filter narrows the list (an empty list of values means "any"); the result is ordered
/// by creation time, oldest first unless [`WorkflowFilter::newest_first`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkflowFilter {
    /// Statuses to include (`PENDING`, `ENQUEUED`, `DELAYED`, `SUCCESS`, `ERROR`,
    /// `CANCELLED`, `MAX_RECOVERY_ATTEMPTS_EXCEEDED`).
    pub statuses: Vec<String>,
    /// Registered workflow names to include.
    pub names: Vec<String>,
    /// Queues to include.
    pub queues: Vec<String>,
    /// Executors to include.
    pub executors: Vec<String>,
    /// Application versions to include.
    pub app_versions: Vec<String>,
    /// Exact workflow IDs to include.
    pub workflow_ids: Vec<String>,
    /// Only IDs that start with this (case-sensitive).
    pub id_prefix: Option<String>,
    /// Only workflows created at or after this time (epoch milliseconds).
    pub created_after_ms: Option<i64>,
    /// Only workflows created before this time (epoch milliseconds).
    pub created_before_ms: Option<i64>,
    /// Only children of this workflow.
    pub parent_workflow_id: Option<String>,
    /// Only forks of this workflow.
    pub forked_from: Option<String>,
    /// At most this many rows.
    pub limit: Option<u32>,
    /// Skip this many rows first.
    pub offset: Option<u32>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// Return the stored inputs.
    pub load_input: bool,
    /// Return the stored output and error.
    pub load_output: bool,
    /// Only workflows on a queue that are not finished (unless statuses say otherwise).
    pub(crate) queued_only: bool,
    /// Keyset paging: only rows after this `(created_at, workflow_id)` in the listing's order.
    pub(crate) after_key: Option<(i64, String)>,
}

impl WorkflowFilter {
    /// A filter that matches every workflow.
    pub fn new() -> WorkflowFilter {
        WorkflowFilter::default()
    }

    /// Adds a status to include.
    pub fn status(mut self, status: impl Into<String>) -> Self {
        self.statuses.push(status.into());
        self
    }

    /// Adds a workflow name to include.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.names.push(name.into());
        self
    }

    /// Adds a queue to include.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queues.push(queue.into());
        self
    }

    /// Adds an executor to include.
    pub fn executor(mut self, executor: impl Into<String>) -> Self {
        self.executors.push(executor.into());
        self
    }

    /// Adds an application version to include.
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_versions.push(version.into());
        self
    }

    /// Adds an exact workflow ID to include.
    pub fn workflow_id(mut self, id: impl Into<String>) -> Self {
        self.workflow_ids.push(id.into());
        self
    }

    /// Only IDs starting with `prefix`.
    pub fn id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.id_prefix = Some(prefix.into());
        self
    }

    /// Only workflows created in `[after, before)`, epoch milliseconds (either end open).
    pub fn created_between(mut self, after_ms: Option<i64>, before_ms: Option<i64>) -> Self {
        self.created_after_ms = after_ms;
        self.created_before_ms = before_ms;
        self
    }

    /// Only children of `parent`.
    pub fn parent(mut self, parent: impl Into<String>) -> Self {
        self.parent_workflow_id = Some(parent.into());
        self
    }

    /// Only forks of `original`.
    pub fn forked_from(mut self, original: impl Into<String>) -> Self {
        self.forked_from = Some(original.into());
        self
    }

    /// At most `n` rows.
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }

    /// Skips the first `n` rows.
    pub fn offset(mut self, n: u32) -> Self {
        self.offset = Some(n);
        self
    }

    /// Newest first.
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }

    /// Also return inputs, outputs and errors.
    pub fn with_payloads(mut self) -> Self {
        self.load_input = true;
        self.load_output = true;
        self
    }

    fn check(&self) -> Result<()> {
        if let Some(bad) = self
            .statuses
            .iter()
            .find(|s| !STATUSES.contains(&s.as_str()))
        {
            return Err(Error::InvalidArgument(format!(
                "unknown workflow status `{bad}` (one of {})",
                STATUSES.join(", ")
            )));
        }
        Ok(())
    }
}

/// One workflow's row, as listed by [`Runtime::list_workflows`](crate::Runtime::list_workflows).
///
/// Times are epoch milliseconds. `inputs`, `output` and `error` are the stored text (JSON for
/// `portable_json`), present only when asked for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct WorkflowInfo {
    /// The workflow ID.
    pub workflow_id: String,
    /// Its status.
    pub status: String,
    /// The registered workflow name.
    pub name: Option<String>,
    /// The class name (DBOS Python's; none for ours).
    pub class_name: Option<String>,
    /// The configured instance name (DBOS Python's; none for ours).
    pub config_name: Option<String>,
    /// The queue it was enqueued on.
    pub queue_name: Option<String>,
    /// The executor that runs (or last ran) it.
    pub executor_id: Option<String>,
    /// The application version it runs under.
    pub application_version: Option<String>,
    /// The application that owns it.
    pub application_name: Option<String>,
    /// When it was created.
    pub created_at: i64,
    /// When its row last changed.
    pub updated_at: Option<i64>,
    /// How many times it was started or recovered.
    pub recovery_attempts: Option<i64>,
    /// Its timeout, if it has one.
    pub timeout_ms: Option<i64>,
    /// Its deadline, if it has one.
    pub deadline_epoch_ms: Option<i64>,
    /// The workflow it was forked from.
    pub forked_from: Option<String>,
    /// Its parent, for a child workflow.
    pub parent_workflow_id: Option<String>,
    /// When a dispatcher last took it off its queue.
    pub dequeued_at: Option<i64>,
    /// When it finished.
    pub completed_at: Option<i64>,
    /// Its queue priority.
    pub priority: i32,
    /// Its queue deduplication ID.
    pub deduplication_id: Option<String>,
    /// The serialization of inputs, output and error.
    pub serialization: Option<String>,
    /// The stored inputs.
    pub inputs: Option<String>,
    /// The stored output.
    pub output: Option<String>,
    /// The stored error.
    pub error: Option<String>,
}

impl WorkflowInfo {
    /// The inputs as tools show them: the JSON text, or for another format (bincode) its tag
    /// and size, never the encoded bytes.
    pub fn inputs_shown(&self) -> Option<String> {
        crate::serialization::shown(self.inputs.as_deref(), self.serialization.as_deref())
    }

    /// The output as tools show it (see [`WorkflowInfo::inputs_shown`]).
    pub fn output_shown(&self) -> Option<String> {
        crate::serialization::shown(self.output.as_deref(), self.serialization.as_deref())
    }
}

impl StepInfo {
    /// The output as tools show it: the JSON text, or for another format (bincode) its tag
    /// and size, never the encoded bytes.
    pub fn output_shown(&self) -> Option<String> {
        crate::serialization::shown(self.output.as_deref(), self.serialization.as_deref())
    }
}

/// One recorded operation of a workflow, as [`Runtime::get_workflow_steps`](crate::Runtime::get_workflow_steps)
/// returns it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct StepInfo {
    /// Its position (function ID, numbered from 1).
    pub function_id: i32,
    /// The step's name, or `DBOS.sleep`, `DBOS.recv`... for the runtime's own operations.
    pub function_name: String,
    /// The stored output.
    pub output: Option<String>,
    /// The stored error.
    pub error: Option<String>,
    /// The child workflow it started or awaited.
    pub child_workflow_id: Option<String>,
    /// When it started (epoch milliseconds).
    pub started_at_epoch_ms: Option<i64>,
    /// When it was recorded (epoch milliseconds; a sleep's wake-up time).
    pub completed_at_epoch_ms: Option<i64>,
    /// The serialization of output and error.
    pub serialization: Option<String>,
}

/// A fork to make: see [`Runtime::fork_workflow`](crate::Runtime::fork_workflow).
pub(crate) struct NewFork<'a> {
    pub original: &'a str,
    pub new_id: &'a str,
    pub start_step: i32,
    pub app_version: Option<&'a str>,
    pub timeout_ms: Option<i64>,
    pub queue: &'a str,
}

/// A value bound to a dynamically built statement.
enum Arg {
    Text(String),
    Int(i64),
}

const LIST_COLUMNS: &str =
    "workflow_uuid, status, name, class_name, config_name, queue_name, executor_id, \
     application_version, application_name, created_at, updated_at, recovery_attempts, \
     workflow_timeout_ms, workflow_deadline_epoch_ms, forked_from, parent_workflow_id, \
     started_at_epoch_ms, completed_at, priority, deduplication_id, serialization";

/// Binds `a` as the statement's next parameter; returns its placeholder. (Placeholders are
/// numbered in order of appearance, as SQLite requires of `$N` names.)
fn push(args: &mut Vec<Arg>, a: Arg) -> String {
    args.push(a);
    format!("${}", args.len())
}

/// Binds `args` in order to a statement built with [`push`].
fn bind_all<'q, DB>(
    mut q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s.as_str()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

/// Rows deleted per statement by [`SysDb::garbage_collect`].
const GC_BATCH: i64 = 10_000;

impl SysDb {
    /// The workflows `f` selects.
    pub(crate) async fn list_workflows(&self, f: &WorkflowFilter) -> Result<Vec<WorkflowInfo>> {
        f.check()?;
        let (sql, args) = self.list_sql(f);
        on_reader!(&self.sys, |p| {
            let rows = bind_all(sqlx::query(&sql), &args)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("listing workflows"))?;
            rows.iter()
                .map(|r| {
                    let e = || Error::db("reading a listed workflow");
                    Ok(WorkflowInfo {
                        workflow_id: r.try_get(0).map_err(e())?,
                        status: r
                            .try_get::<Option<String>, _>(1)
                            .map_err(e())?
                            .unwrap_or_default(),
                        name: r.try_get(2).map_err(e())?,
                        class_name: r.try_get(3).map_err(e())?,
                        config_name: r.try_get(4).map_err(e())?,
                        queue_name: r.try_get(5).map_err(e())?,
                        executor_id: r.try_get(6).map_err(e())?,
                        application_version: r.try_get(7).map_err(e())?,
                        application_name: r.try_get(8).map_err(e())?,
                        created_at: r.try_get(9).map_err(e())?,
                        updated_at: r.try_get(10).map_err(e())?,
                        recovery_attempts: r.try_get(11).map_err(e())?,
                        timeout_ms: r.try_get(12).map_err(e())?,
                        deadline_epoch_ms: r.try_get(13).map_err(e())?,
                        forked_from: r.try_get(14).map_err(e())?,
                        parent_workflow_id: r.try_get(15).map_err(e())?,
                        dequeued_at: r.try_get(16).map_err(e())?,
                        completed_at: r.try_get(17).map_err(e())?,
                        priority: r.try_get(18).map_err(e())?,
                        deduplication_id: r.try_get(19).map_err(e())?,
                        serialization: r.try_get(20).map_err(e())?,
                        inputs: r.try_get(21).map_err(e())?,
                        output: r.try_get(22).map_err(e())?,
                        error: r.try_get(23).map_err(e())?,
                    })
                })
                .collect()
        })
    }

    /// The query plan of the statement [`SysDb::list_workflows`] runs for `f`, one line per
    /// row (Postgres `EXPLAIN`, SQLite `EXPLAIN QUERY PLAN`).
    pub(crate) async fn explain_list(&self, f: &WorkflowFilter) -> Result<String> {
        f.check()?;
        let (sql, args) = self.list_sql(f);
        let postgres = self.sys.is_postgres();
        let sql = if postgres {
            format!("EXPLAIN {sql}")
        } else {
            format!("EXPLAIN QUERY PLAN {sql}")
        };
        on_reader!(&self.sys, |p| {
            let rows = bind_all(sqlx::query(&sql), &args)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("explaining a workflow listing"))?;
            let column = if postgres { 0 } else { 3 };
            let lines: Vec<String> = rows
                .iter()
                .map(|r| r.try_get::<String, _>(column))
                .collect::<std::result::Result<_, _>>()
                .map_err(Error::db("reading a query plan"))?;
            Ok(lines.join("\n"))
        })
    }

    fn list_sql(&self, f: &WorkflowFilter) -> (String, Vec<Arg>) {
        let p = self.sys.prefix(&self.schema);
        let mut args: Vec<Arg> = Vec::new();
        let mut conds: Vec<String> = Vec::new();
        for (column, values) in [
            ("status", &f.statuses),
            ("name", &f.names),
            ("queue_name", &f.queues),
            ("executor_id", &f.executors),
            ("application_version", &f.app_versions),
            ("workflow_uuid", &f.workflow_ids),
        ] {
            if !values.is_empty() {
                let marks: Vec<String> = values
                    .iter()
                    .map(|v| push(&mut args, Arg::Text(v.clone())))
                    .collect();
                conds.push(format!("{column} IN ({})", marks.join(", ")));
            }
        }
        if !self.sys.is_postgres() && !f.statuses.is_empty() {
            // SQLite uses a partial index only when the query repeats its WHERE term.
            let all = |set: &[&str]| f.statuses.iter().all(|s| set.contains(&s.as_str()));
            if all(&["ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"]) {
                conds.push(
                    "status IN ('ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')".into(),
                );
            } else if all(&["PENDING"]) {
                conds.push("status = 'PENDING'".into());
            } else if all(&["ENQUEUED", "PENDING"]) {
                conds.push("status IN ('ENQUEUED', 'PENDING')".into());
            }
        }
        if let Some(prefix) = &f.id_prefix {
            if self.sys.is_postgres() {
                let escaped = prefix
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                let m = push(&mut args, Arg::Text(format!("{escaped}%")));
                conds.push(format!("workflow_uuid LIKE {m} ESCAPE '\\'"));
            } else {
                // SQLite's LIKE ignores case; compare the leading characters instead.
                let n = push(&mut args, Arg::Int(prefix.chars().count() as i64));
                let m = push(&mut args, Arg::Text(prefix.clone()));
                conds.push(format!("substr(workflow_uuid, 1, {n}) = {m}"));
            }
            // Where IDs sort by code point, every ID with the prefix lies in one key range:
            // the primary key finds them instead of a scan of the table.
            if let (true, Some(end)) = (self.sys.ids_in_code_point_order(), prefix_end(prefix)) {
                let lo = push(&mut args, Arg::Text(prefix.clone()));
                let hi = push(&mut args, Arg::Text(end));
                conds.push(format!("workflow_uuid >= {lo} AND workflow_uuid < {hi}"));
            }
        }
        if let Some(t) = f.created_after_ms {
            let m = push(&mut args, Arg::Int(t));
            conds.push(format!("created_at >= {m}"));
        }
        if let Some(t) = f.created_before_ms {
            let m = push(&mut args, Arg::Int(t));
            conds.push(format!("created_at < {m}"));
        }
        if let Some(parent) = &f.parent_workflow_id {
            let m = push(&mut args, Arg::Text(parent.clone()));
            conds.push(format!("parent_workflow_id = {m}"));
        }
        if let Some(original) = &f.forked_from {
            let m = push(&mut args, Arg::Text(original.clone()));
            conds.push(format!("forked_from = {m}"));
        }
        if f.queued_only {
            if f.statuses.is_empty() {
                // Spelled so that each branch matches a partial index (in-flight, delayed).
                conds.push(
                    "((status IN ('ENQUEUED', 'PENDING') AND queue_name IS NOT NULL) \
                     OR (status = 'DELAYED' AND queue_name IS NOT NULL))"
                        .into(),
                );
            } else {
                conds.push("queue_name IS NOT NULL".into());
            }
        }
        if let Some((at, id)) = &f.after_key {
            let a = push(&mut args, Arg::Int(*at));
            let b = push(&mut args, Arg::Text(id.clone()));
            let cmp = if f.newest_first { "<" } else { ">" };
            // The first term bounds the created_at index scan; the second breaks ties.
            conds.push(format!(
                "created_at {cmp}= {a} AND (created_at {cmp} {a} OR workflow_uuid {cmp} {b})"
            ));
        }
        let payload = |load: bool, column: &str| {
            if load {
                column.to_owned()
            } else {
                format!("CAST(NULL AS TEXT) AS {column}")
            }
        };
        let mut sql = format!(
            "SELECT {LIST_COLUMNS}, {}, {}, {} FROM {p}workflow_status",
            payload(f.load_input, "inputs"),
            payload(f.load_output, "output"),
            payload(f.load_output, "error"),
        );
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        let order = if f.newest_first { "DESC" } else { "ASC" };
        sql.push_str(&format!(
            " ORDER BY created_at {order}, workflow_uuid {order}"
        ));
        match (f.limit, f.offset) {
            (Some(l), _) => sql.push_str(&format!(" LIMIT {l}")),
            (None, Some(_)) if !self.sys.is_postgres() => sql.push_str(" LIMIT -1"),
            (None, _) => {}
        }
        if let Some(o) = f.offset {
            sql.push_str(&format!(" OFFSET {o}"));
        }
        (sql, args)
    }

    /// A workflow's recorded operations in order; [`Error::NonExistentWorkflow`] for an
    /// unknown ID.
    pub(crate) async fn list_steps(&self, id: &str) -> Result<Vec<StepInfo>> {
        if self.get_workflow(id).await?.is_none() {
            return Err(Error::NonExistentWorkflow(id.to_owned()));
        }
        let p = self.sys.prefix(&self.schema);
        let sql = format!(
            "SELECT function_id, function_name, output, error, child_workflow_id, \
             started_at_epoch_ms, completed_at_epoch_ms, serialization \
             FROM {p}operation_outputs WHERE workflow_uuid = $1 ORDER BY function_id"
        );
        on_reader!(&self.sys, |p| {
            let rows = sqlx::query(&sql)
                .bind(id)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("listing a workflow's steps"))?;
            rows.iter()
                .map(|r| {
                    let e = || Error::db("reading a step");
                    Ok(StepInfo {
                        function_id: r.try_get(0).map_err(e())?,
                        function_name: r.try_get(1).map_err(e())?,
                        output: r.try_get(2).map_err(e())?,
                        error: r.try_get(3).map_err(e())?,
                        child_workflow_id: r.try_get(4).map_err(e())?,
                        started_at_epoch_ms: r.try_get(5).map_err(e())?,
                        completed_at_epoch_ms: r.try_get(6).map_err(e())?,
                        serialization: r.try_get(7).map_err(e())?,
                    })
                })
                .collect()
        })
    }

    /// Sets a workflow that has not succeeded or failed to CANCELLED (taking it off its
    /// queue), then tells the other processes on Postgres. `Ok(false)`: it had finished, and
    /// nothing changed; [`Error::NonExistentWorkflow`] for an unknown ID.
    pub(crate) async fn cancel_workflow(&self, id: &str) -> Result<bool> {
        let p = self.sys.prefix(&self.schema);
        let sql = format!(
            "UPDATE {p}workflow_status SET status = 'CANCELLED', queue_name = NULL, \
             deduplication_id = NULL, started_at_epoch_ms = NULL, updated_at = $2, completed_at = $2 \
             WHERE workflow_uuid = $1 AND status NOT IN ('SUCCESS', 'ERROR')"
        );
        self.metrics.add_commit();
        let changed = on_writer!(&self.sys, |p| {
            let done = sqlx::query(&sql)
                .bind(id)
                .bind(now_ms())
                .execute(&mut *p)
                .await
                .map_err(Error::db("cancelling a workflow"))?;
            Ok::<bool, Error>(done.rows_affected() > 0)
        })?;
        if !changed {
            return match self.get_workflow(id).await? {
                Some(_) => Ok(false),
                None => Err(Error::NonExistentWorkflow(id.to_owned())),
            };
        }
        if let Backend::Postgres(b) = &self.sys {
            b.notify(postgres::CANCEL_CHANNEL, id).await;
        }
        Ok(true)
    }

    /// Which of `ids` are CANCELLED (a check after a change feed reported writes it could not
    /// name: another process on the SQLite file, or a lost `LISTEN` connection).
    pub(crate) async fn cancelled_among(&self, ids: &[String]) -> Result<Vec<String>> {
        self.ids_with_status(ids, "'CANCELLED'", "checking for cancelled workflows")
            .await
    }

    /// Which of `ids` have ended (any terminal status).
    pub(crate) async fn finished_among(&self, ids: &[String]) -> Result<Vec<String>> {
        self.ids_with_status(ids, TERMINAL, "checking for finished workflows")
            .await
    }

    /// Which of `ids` have one of `statuses` (quoted SQL literals, comma-separated).
    async fn ids_with_status(
        &self,
        ids: &[String],
        statuses: &str,
        doing: &'static str,
    ) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let p = self.sys.prefix(&self.schema);
        let mut args = Vec::new();
        let marks: Vec<String> = ids
            .iter()
            .map(|id| push(&mut args, Arg::Text(id.clone())))
            .collect();
        let sql = format!(
            "SELECT workflow_uuid FROM {p}workflow_status WHERE status IN ({statuses}) \
             AND workflow_uuid IN ({})",
            marks.join(", ")
        );
        on_reader!(&self.sys, |p| {
            let rows = bind_all(sqlx::query(&sql), &args)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db(doing))?;
            rows.iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<std::result::Result<Vec<String>, _>>()
                .map_err(Error::db(doing))
        })
    }

    /// Which of `waiting` (workflow, topic) have an unconsumed message on that topic: the
    /// workflows among them, for parked `recv`s (see `unload.rs`).
    pub(crate) async fn messages_waiting(
        &self,
        waiting: &[(String, String)],
    ) -> Result<Vec<String>> {
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let p = self.sys.prefix(&self.schema);
        let mut args = Vec::new();
        let mut ids: Vec<&str> = waiting.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let marks: Vec<String> = ids
            .iter()
            .map(|id| push(&mut args, Arg::Text((*id).to_owned())))
            .collect();
        let sql = format!(
            "SELECT DISTINCT destination_uuid, topic FROM {p}notifications \
             WHERE NOT consumed AND destination_uuid IN ({})",
            marks.join(", ")
        );
        let found: Vec<(String, Option<String>)> = on_reader!(&self.sys, |p| {
            let rows = bind_all(sqlx::query(&sql), &args)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("looking for messages"))?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get::<String, _>(0)?,
                        r.try_get::<Option<String>, _>(1)?,
                    ))
                })
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
                .map_err(Error::db("looking for messages"))
        })?;
        Ok(waiting
            .iter()
            .filter(|(id, topic)| {
                found
                    .iter()
                    .any(|(i, t)| i == id && t.as_deref() == Some(topic.as_str()))
            })
            .map(|(id, _)| id.clone())
            .collect())
    }

    /// Whether workflow `id` is `PENDING`, and whether what it waits on is there (a message on
    /// its topic, the end of the workflow it waits for): what a workflow just parked needs to
    /// know (see `unload.rs`).
    pub(crate) async fn parked_state(&self, id: &str, on: &WaitsOn) -> Result<(bool, bool)> {
        let p = self.sys.prefix(&self.schema);
        let (ready, arg) = match on {
            WaitsOn::Time => ("FALSE".to_owned(), None),
            WaitsOn::Message(topic) => (
                format!(
                    "EXISTS (SELECT 1 FROM {p}notifications WHERE destination_uuid = $1 \
                     AND topic = $2 AND NOT consumed)"
                ),
                Some(topic.as_str()),
            ),
            WaitsOn::Done(child) => (
                format!(
                    "EXISTS (SELECT 1 FROM {p}workflow_status c WHERE c.workflow_uuid = $2 \
                     AND c.status IN ({TERMINAL}))"
                ),
                Some(child.as_str()),
            ),
        };
        let sql = format!(
            "SELECT status = 'PENDING', {ready} FROM {p}workflow_status WHERE workflow_uuid = $1"
        );
        on_reader!(&self.sys, |p| {
            let mut q = sqlx::query(&sql).bind(id);
            if let Some(arg) = arg {
                q = q.bind(arg);
            }
            let row = q
                .fetch_optional(&mut *p)
                .await
                .map_err(Error::db("reading a parked workflow"))?;
            match row {
                Some(r) => Ok((
                    r.try_get::<bool, _>(0)
                        .map_err(Error::db("reading a parked workflow"))?,
                    r.try_get::<bool, _>(1)
                        .map_err(Error::db("reading a parked workflow"))?,
                )),
                None => Ok((false, false)),
            }
        })
    }

    /// Workflow `id` as the dispatcher would claim it, when it is `PENDING` under this
    /// executor: to load it again after it was unloaded while it waited.
    pub(crate) async fn reloadable(&self, id: &str) -> Result<Option<Claimed>> {
        let p = self.sys.prefix(&self.schema);
        let sql = format!(
            "SELECT workflow_uuid, name, inputs, serialization, recovery_attempts, \
             workflow_deadline_epoch_ms, priority, created_at, \
             EXISTS (SELECT 1 FROM {p}operation_outputs o WHERE o.workflow_uuid = w.workflow_uuid), \
             CAST(attributes AS TEXT) FROM {p}workflow_status w \
             WHERE workflow_uuid = $1 AND status = 'PENDING' AND executor_id = $2"
        );
        on_reader!(&self.sys, |p| {
            let row = sqlx::query(&sql)
                .bind(id)
                .bind(&self.executor_id)
                .fetch_optional(&mut *p)
                .await
                .map_err(Error::db("reading a parked workflow"))?;
            row.as_ref().map(claimed_row).transpose()
        })
    }

    /// Counts of workflows by status.
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) async fn status_counts(&self) -> Result<Vec<(String, i64)>> {
        let p = self.sys.prefix(&self.schema);
        let sql = format!(
            "SELECT COALESCE(status, ''), COUNT(*) FROM {p}workflow_status GROUP BY status ORDER BY 1"
        );
        on_reader!(&self.sys, |p| {
            sqlx::query_as(&sql)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("counting workflows"))
        })
    }

    /// Workflows created and finished per `bucket_ms` since `since_ms`: `(bucket start,
    /// created, finished)`, oldest first (buckets with neither are left out).
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) async fn activity(
        &self,
        since_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, i64, i64)>> {
        let p = self.sys.prefix(&self.schema);
        let sql = format!(
            "SELECT b, SUM(c), SUM(f) FROM (\
               SELECT (created_at / $2) * $2 AS b, 1 AS c, 0 AS f FROM {p}workflow_status WHERE created_at >= $1 \
               UNION ALL \
               SELECT (completed_at / $2) * $2 AS b, 0 AS c, 1 AS f FROM {p}workflow_status WHERE completed_at >= $1\
             ) t GROUP BY b ORDER BY b"
        );
        on_reader!(&self.sys, |p| {
            let rows = sqlx::query(&sql)
                .bind(since_ms)
                .bind(bucket_ms)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("reading recent activity"))?;
            rows.iter()
                .map(|r| {
                    let e = || Error::db("reading recent activity");
                    Ok((
                        r.try_get::<i64, _>(0).map_err(e())?,
                        r.try_get::<i64, _>(1).map_err(e())?,
                        r.try_get::<i64, _>(2).map_err(e())?,
                    ))
                })
                .collect()
        })
    }

    /// Per queue: workflows waiting (ENQUEUED) and running (PENDING).
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) async fn queue_depths(&self) -> Result<Vec<(String, i64, i64)>> {
        let p = self.sys.prefix(&self.schema);
        let sql = format!(
            "SELECT queue_name, SUM(CASE WHEN status = 'ENQUEUED' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN status = 'PENDING' THEN 1 ELSE 0 END) FROM {p}workflow_status \
             WHERE status IN ('ENQUEUED', 'PENDING') AND queue_name IS NOT NULL \
             GROUP BY queue_name ORDER BY queue_name"
        );
        on_reader!(&self.sys, |p| {
            sqlx::query_as(&sql)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("reading queue depths"))
        })
    }

    /// A workflow's events (`key`, value text) and the messages sent to it (`topic`, message
    /// text, consumed, time), the newest 100.
    #[allow(clippy::type_complexity)]
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) async fn events_and_messages(
        &self,
        id: &str,
    ) -> Result<(
        Vec<(String, String)>,
        Vec<(Option<String>, String, bool, i64)>,
    )> {
        let p = self.sys.prefix(&self.schema);
        let events_sql = format!(
            "SELECT key, value FROM {p}workflow_events WHERE workflow_uuid = $1 ORDER BY key"
        );
        let messages_sql = format!(
            "SELECT topic, message, consumed, created_at_epoch_ms FROM {p}notifications \
             WHERE destination_uuid = $1 ORDER BY created_at_epoch_ms DESC LIMIT 100"
        );
        let events = on_reader!(&self.sys, |p| {
            sqlx::query_as(&events_sql)
                .bind(id)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("reading a workflow's events"))
        })?;
        let messages = on_reader!(&self.sys, |p| {
            sqlx::query_as(&messages_sql)
                .bind(id)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("reading a workflow's messages"))
        })?;
        Ok((events, messages))
    }

    /// The IDs of a workflow's children.
    pub(crate) async fn children_of(&self, id: &str) -> Result<Vec<String>> {
        let p = self.sys.prefix(&self.schema);
        let sql =
            format!("SELECT workflow_uuid FROM {p}workflow_status WHERE parent_workflow_id = $1");
        on_reader!(&self.sys, |p| {
            sqlx::query_scalar(&sql)
                .bind(id)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("finding child workflows"))
        })
    }

    /// Puts a CANCELLED, ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow back on `queue` with
    /// its recovery attempts reset (a dispatcher resumes it from its last checkpoint, with a
    /// fresh deadline when it has a timeout). `Ok(false)`: it was active or succeeded, and
    /// nothing changed.
    pub(crate) async fn resume_workflow(&self, id: &str, queue: &str) -> Result<bool> {
        let p = self.sys.prefix(&self.schema);
        let sql = format!(
            "UPDATE {p}workflow_status SET status = 'ENQUEUED', queue_name = $2, recovery_attempts = 0, \
             workflow_deadline_epoch_ms = NULL, started_at_epoch_ms = NULL, deduplication_id = NULL, \
             completed_at = NULL, output = NULL, error = NULL, updated_at = $3 \
             WHERE workflow_uuid = $1 AND status IN ('CANCELLED', 'ERROR', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')"
        );
        self.metrics.add_commit();
        let changed = on_writer!(&self.sys, |p| {
            let done = sqlx::query(&sql)
                .bind(id)
                .bind(queue)
                .bind(now_ms())
                .execute(&mut *p)
                .await
                .map_err(Error::db("resuming a workflow"))?;
            Ok::<bool, Error>(done.rows_affected() > 0)
        })?;
        if !changed && self.get_workflow(id).await?.is_none() {
            return Err(Error::NonExistentWorkflow(id.to_owned()));
        }
        Ok(changed)
    }

    /// Makes a fork in one transaction: a new ENQUEUED workflow with the original's name and
    /// inputs, `forked_from` set, and copies of the original's records before `start_step`
    /// (operations, events and their history, streams).
    pub(crate) async fn fork_workflow(&self, f: &NewFork<'_>) -> Result<()> {
        let p = self.sys.prefix(&self.schema);
        let last_sql = format!(
            "SELECT CAST(MAX(function_id) AS BIGINT) FROM {p}operation_outputs WHERE workflow_uuid = $1"
        );
        let exists_sql = format!("SELECT 1 FROM {p}workflow_status WHERE workflow_uuid = $1");
        let insert_sql = format!(
            "INSERT INTO {p}workflow_status (workflow_uuid, status, name, class_name, config_name, inputs, \
             serialization, application_name, application_version, queue_name, recovery_attempts, \
             created_at, updated_at, forked_from, owner_xid, priority, workflow_timeout_ms) \
             SELECT $2, 'ENQUEUED', name, class_name, config_name, inputs, serialization, application_name, \
             $3, $4, 0, $5, $5, workflow_uuid, $6, 0, $7 FROM {p}workflow_status WHERE workflow_uuid = $1 \
             ON CONFLICT (workflow_uuid) DO NOTHING"
        );
        let mark_sql = format!(
            "UPDATE {p}workflow_status SET was_forked_from = TRUE WHERE workflow_uuid = $1"
        );
        let copies = [
            format!(
                "INSERT INTO {p}operation_outputs (workflow_uuid, function_id, function_name, output, error, \
                 child_workflow_id, serialization, started_at_epoch_ms, completed_at_epoch_ms, application_name) \
                 SELECT $2, function_id, function_name, output, error, child_workflow_id, serialization, \
                 started_at_epoch_ms, completed_at_epoch_ms, application_name FROM {p}operation_outputs \
                 WHERE workflow_uuid = $1 AND function_id < $3"
            ),
            format!(
                "INSERT INTO {p}workflow_events_history (workflow_uuid, function_id, key, value, serialization) \
                 SELECT $2, function_id, key, value, serialization FROM {p}workflow_events_history \
                 WHERE workflow_uuid = $1 AND function_id < $3"
            ),
            format!(
                "INSERT INTO {p}workflow_events (workflow_uuid, key, value, serialization) \
                 SELECT $2, h.key, h.value, h.serialization FROM {p}workflow_events_history h \
                 WHERE h.workflow_uuid = $1 AND h.function_id = (SELECT MAX(h2.function_id) \
                 FROM {p}workflow_events_history h2 WHERE h2.workflow_uuid = $1 AND h2.key = h.key \
                 AND h2.function_id < $3)"
            ),
            format!(
                "INSERT INTO {p}streams (workflow_uuid, key, value, \"offset\", function_id, serialization) \
                 SELECT $2, key, value, \"offset\", function_id, serialization FROM {p}streams \
                 WHERE workflow_uuid = $1 AND function_id < $3"
            ),
        ];
        let owner = uuid::Uuid::new_v4().to_string();
        self.metrics.add_commit();
        in_write_tx!(&self.sys, "forking a workflow", |t| {
            let found = sqlx::query(&exists_sql)
                .bind(f.original)
                .fetch_optional(&mut *t)
                .await
                .map_err(Error::db("forking a workflow"))?;
            if found.is_none() {
                return Err(Error::NonExistentWorkflow(f.original.to_owned()));
            }
            let last: Option<i64> = sqlx::query_scalar(&last_sql)
                .bind(f.original)
                .fetch_one(&mut *t)
                .await
                .map_err(Error::db("forking a workflow"))?;
            let end = last.unwrap_or(0) + 1;
            if f.start_step < 1 || i64::from(f.start_step) > end {
                return Err(Error::InvalidArgument(format!(
                    "cannot fork workflow `{}` from step {}: it has steps 1 to {} recorded, so a fork starts at 1 to {end}",
                    f.original,
                    f.start_step,
                    end - 1
                )));
            }
            let inserted = sqlx::query(&insert_sql)
                .bind(f.original)
                .bind(f.new_id)
                .bind(f.app_version)
                .bind(f.queue)
                .bind(now_ms())
                .bind(&owner)
                .bind(f.timeout_ms)
                .execute(&mut *t)
                .await
                .map_err(Error::db("forking a workflow"))?;
            if inserted.rows_affected() == 0 {
                return Err(Error::InvalidArgument(format!(
                    "cannot fork into workflow ID `{}`: a workflow with that ID exists",
                    f.new_id
                )));
            }
            sqlx::query(&mark_sql)
                .bind(f.original)
                .execute(&mut *t)
                .await
                .map_err(Error::db("forking a workflow"))?;
            for copy in &copies {
                sqlx::query(copy)
                    .bind(f.original)
                    .bind(f.new_id)
                    .bind(f.start_step)
                    .execute(&mut *t)
                    .await
                    .map_err(Error::db("copying a forked workflow's records"))?;
            }
            Ok::<(), Error>(())
        })
    }

    /// Moves executor `executor`'s PENDING workflows of this application version back to
    /// their queue (or `queue` for those started without one), as DBOS's admin
    /// `/dbos-workflow-recovery` does for a dead executor; returns their IDs.
    pub(crate) async fn recover_executor(
        &self,
        executor: &str,
        queue: &str,
    ) -> Result<Vec<String>> {
        let p = self.sys.prefix(&self.schema);
        let sql = format!(
            "UPDATE {p}workflow_status SET status = 'ENQUEUED', queue_name = COALESCE(queue_name, $4), \
             started_at_epoch_ms = NULL, updated_at = $3 \
             WHERE status = 'PENDING' AND executor_id = $1 AND application_version = $2 \
             RETURNING workflow_uuid"
        );
        self.metrics.add_commit();
        on_writer!(&self.sys, |p| {
            sqlx::query_scalar(&sql)
                .bind(executor)
                .bind(&self.app_version)
                .bind(now_ms())
                .bind(queue)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("recovering an executor's workflows"))
        })
    }

    /// Deletes finished workflows (with their records) created before `cutoff_ms`, or all but
    /// the newest `keep` workflows, whichever deletes more; active ones are never deleted.
    /// Returns how many workflows were deleted.
    pub(crate) async fn garbage_collect(
        &self,
        cutoff_ms: Option<i64>,
        keep: Option<u64>,
    ) -> Result<u64> {
        let p = self.sys.prefix(&self.schema);
        let mut cutoff = cutoff_ms;
        if let Some(keep) = keep {
            let nth_sql = format!(
                "SELECT created_at FROM {p}workflow_status ORDER BY created_at DESC LIMIT 1 OFFSET $1"
            );
            let offset = i64::try_from(keep.saturating_sub(1)).unwrap_or(i64::MAX);
            let nth: Option<i64> = on_reader!(&self.sys, |p| {
                sqlx::query_scalar(&nth_sql)
                    .bind(offset)
                    .fetch_optional(&mut *p)
                    .await
                    .map_err(Error::db("finding the garbage-collection cutoff"))
            })?;
            if let Some(nth) = nth {
                cutoff = Some(cutoff.map_or(nth, |c| c.max(nth)));
            }
        }
        let Some(cutoff) = cutoff else {
            return Ok(0);
        };
        let sql = format!(
            "DELETE FROM {p}workflow_status WHERE workflow_uuid IN (SELECT workflow_uuid FROM {p}workflow_status \
             WHERE created_at < $1 AND status NOT IN ('PENDING', 'ENQUEUED', 'DELAYED') LIMIT $2)"
        );
        let mut deleted = 0;
        loop {
            self.metrics.add_commit();
            let n = on_writer!(&self.sys, |p| {
                let done = sqlx::query(&sql)
                    .bind(cutoff)
                    .bind(GC_BATCH)
                    .execute(&mut *p)
                    .await
                    .map_err(Error::db("deleting old workflows"))?;
                Ok::<u64, Error>(done.rows_affected())
            })?;
            deleted += n;
            if n < GC_BATCH as u64 {
                return Ok(deleted);
            }
        }
    }
}

/// The least string above every string that starts with `prefix`, in UTF-8 byte order (its
/// last character's successor); `None` for an empty prefix or one whose last character has no
/// successor.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    let last = chars.pop()?;
    let next = (u32::from(last) + 1..=0x10FFFF).find_map(char::from_u32)?;
    chars.push(next);
    Some(chars.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn the_prefix_end_bounds_every_id_with_the_prefix_in_byte_order() {
        assert_eq!(prefix_end("wf-1").as_deref(), Some("wf-2"));
        assert_eq!(prefix_end(""), None);
        // The successor skips the surrogate gap; the last scalar value has none.
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}"), None);
        let end = prefix_end("wf-1").unwrap_or_default();
        for id in ["wf-1", "wf-1\u{10FFFF}x", "wf-19", "wf-1~~~"] {
            assert!(id >= "wf-1" && id < end.as_str(), "{id}");
        }
        assert!("wf-2" >= end.as_str());
    }
}
