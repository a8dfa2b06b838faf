//! Operating workflows: list them and their steps, cancel, resume, fork, and delete old ones.
//! The same calls work on a launched runtime and on a connected client, and act on the rows
//! DBOS's own tools read and write (so their CLI sees what ours does, and the reverse).

use crate::error::{Error, Result};
use crate::queue::INTERNAL_QUEUE;
use crate::runtime::Runtime;
use crate::sysdb::NewFork;
pub use crate::sysdb::{StepInfo, WorkflowFilter, WorkflowInfo};
use std::time::Duration;

/// How [`Runtime::fork_workflow`] makes the fork.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForkOptions {
    /// The fork's ID; a fresh UUID when `None`.
    pub workflow_id: Option<String>,
    /// The application version that may run the fork; any process running the latest
    /// version when `None` (as DBOS does).
    pub application_version: Option<String>,
    /// A timeout for the fork (its deadline starts when a dispatcher takes it).
    pub timeout: Option<Duration>,
}

impl ForkOptions {
    /// Default options: a fresh ID, any version, no timeout.
    pub fn new() -> ForkOptions {
        ForkOptions::default()
    }

    /// The fork's ID.
    pub fn workflow_id(mut self, id: impl Into<String>) -> Self {
        self.workflow_id = Some(id.into());
        self
    }

    /// The application version that may run the fork.
    pub fn application_version(mut self, version: impl Into<String>) -> Self {
        self.application_version = Some(version.into());
        self
    }

    /// A timeout for the fork.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl Runtime {
    /// The workflows `filter` selects, oldest first unless it says otherwise.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown status name; database errors.
    pub async fn list_workflows(&self, filter: &WorkflowFilter) -> Result<Vec<WorkflowInfo>> {
        self.db().list_workflows(filter).await
    }

    /// The database's query plan for [`Runtime::list_workflows`] with `filter` (Postgres
    /// `EXPLAIN`, SQLite `EXPLAIN QUERY PLAN`): to check a listing is served by an index.
    #[doc(hidden)]
    pub async fn explain_list_workflows(
        &self,
        filter: &WorkflowFilter,
        queued: bool,
    ) -> Result<String> {
        let mut filter = filter.clone();
        filter.queued_only = queued;
        self.db().explain_list(&filter).await
    }

    /// Workflows waiting on or taken from a queue and not finished (unless `filter` names
    /// statuses), oldest first.
    pub async fn list_queued_workflows(
        &self,
        filter: &WorkflowFilter,
    ) -> Result<Vec<WorkflowInfo>> {
        let mut filter = filter.clone();
        filter.queued_only = true;
        self.db().list_workflows(&filter).await
    }

    /// A workflow's recorded operations in order: name, output or error, child workflow,
    /// start and end times.
    ///
    /// # Errors
    /// [`Error::NonExistentWorkflow`] for an unknown ID.
    pub async fn get_workflow_steps(&self, workflow_id: &str) -> Result<Vec<StepInfo>> {
        self.db().list_steps(workflow_id).await
    }

    /// Cancels a workflow that has not finished: it becomes CANCELLED (and leaves its queue).
    /// Returns `false` for a workflow that had succeeded or failed, which stays as it was.
    ///
    /// # Guarantees
    /// Nothing the workflow does after the cancel is recorded, in any process, even after a
    /// restart: every checkpoint write checks the row in the same statement, and a
    /// transaction step's own writes roll back with its checkpoint. The process running it
    /// (this one, or another on Postgres, told by a notification) stops it before its next
    /// operation, and a `recv`, `sleep`, `get_event` or `get_result` it waits in ends at once;
    /// a step already running finishes its body, but its result is not recorded. Child
    /// workflows are not cancelled (as in DBOS); a timeout cancels them too.
    ///
    /// # Errors
    /// [`Error::NonExistentWorkflow`] for an unknown ID; database errors.
    pub async fn cancel_workflow(&self, workflow_id: &str) -> Result<bool> {
        self.cancel_workflows(workflow_id, false).await
    }

    /// Puts a CANCELLED, ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow back on the internal
    /// queue with its recovery attempts reset: a launched runtime of its application version
    /// resumes it from its last checkpoint (recorded steps are not run again). Returns `false`
    /// for a workflow that is active or succeeded, which stays as it was.
    ///
    /// # Errors
    /// [`Error::NonExistentWorkflow`] for an unknown ID; database errors.
    pub async fn resume_workflow(&self, workflow_id: &str) -> Result<bool> {
        let changed = self
            .db()
            .resume_workflow(workflow_id, INTERNAL_QUEUE)
            .await?;
        if changed {
            self.wake_dispatcher();
        }
        Ok(changed)
    }

    /// Starts a new workflow that replays `workflow_id`'s recorded operations before
    /// `start_step` and runs the rest with the code running now. Returns the fork's ID.
    ///
    /// The fork has the original's name and inputs and `forked_from` set; it is enqueued on
    /// the internal queue for a launched runtime. Steps are numbered from 1, as
    /// [`Runtime::get_workflow_steps`] shows them: `start_step` 1 runs everything again.
    ///
    /// # Errors
    /// [`Error::NonExistentWorkflow`] for an unknown ID; [`Error::InvalidArgument`] for a
    /// `start_step` below 1 or past the step after the last recorded one, or an ID that is
    /// taken; database errors.
    pub async fn fork_workflow(
        &self,
        workflow_id: &str,
        start_step: i32,
        options: ForkOptions,
    ) -> Result<String> {
        let new_id = options
            .workflow_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if new_id.trim().is_empty() {
            return Err(Error::InvalidWorkflowId {
                id: new_id,
                why: "it is empty or whitespace",
            });
        }
        let timeout_ms = crate::workflow::timeout_ms(options.timeout)?;
        self.db()
            .fork_workflow(&NewFork {
                original: workflow_id,
                new_id: &new_id,
                start_step,
                app_version: options.application_version.as_deref(),
                timeout_ms,
                queue: INTERNAL_QUEUE,
            })
            .await?;
        self.wake_dispatcher();
        Ok(new_id)
    }

    /// Deletes finished workflows (SUCCESS, ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED)
    /// created before `cutoff_epoch_ms`, or all but the newest `keep` workflows, whichever
    /// deletes more, with their steps, messages, events and streams. Active workflows are
    /// never deleted. Returns how many workflows were deleted.
    pub async fn garbage_collect(
        &self,
        cutoff_epoch_ms: Option<i64>,
        keep: Option<u64>,
    ) -> Result<u64> {
        self.db().garbage_collect(cutoff_epoch_ms, keep).await
    }
}
