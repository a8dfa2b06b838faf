//! Running a workflow: record its start, run its body under a context, record its outcome;
//! and the handles that wait for it.

use crate::context::{self, Current, Position, WfCtx};
use crate::dbos::Runtime;
use crate::error::{Error, PortableError, Result, WorkflowError};
use crate::notify::done_key;
use crate::serialization::{self, ArgsEncoder, PORTABLE_JSON};
use crate::sysdb::{now_ms, NewWorkflow, Outcome, StepRow, StepWrite, WorkflowRow};
use futures_util::FutureExt;
use serde::{de::DeserializeOwned, Serialize};
use std::any::Any;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a finished body hands back: the stored form, and the typed value for a local waiter.
pub(crate) struct Finished {
    pub outcome: std::result::Result<String, PortableError>,
    pub typed: Option<Box<dyn Any + Send>>,
}

/// A type-erased workflow call: name, encoded inputs and the body. Not API.
pub struct ErasedCall {
    pub(crate) name: &'static str,
    pub(crate) inputs: Result<String>,
    pub(crate) body: BoxFuture<'static, Finished>,
    pub(crate) id: Option<String>,
}

impl std::fmt::Debug for ErasedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErasedCall")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish()
    }
}

/// A call of a `#[workflow]` function, not yet started.
///
/// `.await` it to run the workflow durably and get its result, or pass it to
/// [`crate::DBOS::start_workflow`] to run it in the background. Set the workflow ID (an
/// idempotency key) with [`WorkflowCall::with_id`]; otherwise a fresh UUID is used (or, for a
/// child started from a workflow, `<parent id>-<position>`).
///
/// # Durability
/// Once started, the workflow finishes even if this process dies: recovery resumes it at the
/// next launch, replaying recorded steps. Starting an ID that exists never runs it again; the
/// call returns (or waits for) that workflow's result.
#[must_use = "a workflow call does nothing until awaited or started"]
pub struct WorkflowCall<T, E> {
    erased: ErasedCall,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> std::fmt::Debug for WorkflowCall<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.erased.fmt(f)
    }
}

impl<T, E> WorkflowCall<T, E>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    E: WorkflowError,
{
    pub(crate) fn new<F>(name: &'static str, args: ArgsEncoder, body: F) -> Self
    where
        F: Future<Output = std::result::Result<T, E>> + Send + 'static,
    {
        let body = async move {
            let result = body.await;
            let outcome = match &result {
                Ok(v) => {
                    serialization::to_json(v, "the workflow's output").map_err(|e| e.to_portable())
                }
                Err(e) => Err(e.to_portable()),
            };
            Finished {
                outcome,
                typed: Some(Box::new(result)),
            }
        };
        WorkflowCall {
            erased: ErasedCall {
                name,
                inputs: args.finish(),
                body: Box::pin(body),
                id: None,
            },
            _types: PhantomData,
        }
    }

    /// Runs the workflow under this ID: an idempotency key. Starting an ID that exists joins
    /// that workflow instead of running a second one.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.erased.id = Some(id.into());
        self
    }

    /// The registered name of the workflow function.
    pub fn name(&self) -> &'static str {
        self.erased.name
    }

    pub(crate) fn erase(self) -> ErasedCall {
        self.erased
    }
}

impl<T, E> IntoFuture for WorkflowCall<T, E>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    E: WorkflowError,
{
    type Output = std::result::Result<T, E>;
    type IntoFuture = BoxFuture<'static, std::result::Result<T, E>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let handle = start::<T, E>(self).await.map_err(E::from)?;
            handle.get_result().await
        })
    }
}

/// The status of a workflow, as its row says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkflowStatus {
    /// The workflow ID.
    pub workflow_id: String,
    /// `PENDING`, `ENQUEUED`, `SUCCESS`, `ERROR`, `CANCELLED` or `MAX_RECOVERY_ATTEMPTS_EXCEEDED`.
    pub status: String,
    /// The registered function name.
    pub name: Option<String>,
}

/// A started workflow: its ID, its status, and a way to wait for its result.
pub struct WorkflowHandle<T, E = Error> {
    id: String,
    rt: Runtime,
    local: Mutex<Option<oneshot::Receiver<Finished>>>,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> std::fmt::Debug for WorkflowHandle<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowHandle")
            .field("id", &self.id)
            .finish()
    }
}

impl<T, E> WorkflowHandle<T, E>
where
    T: DeserializeOwned + Serialize + Send + 'static,
    E: WorkflowError,
{
    pub(crate) fn new(id: String, rt: Runtime, local: Option<oneshot::Receiver<Finished>>) -> Self {
        WorkflowHandle {
            id,
            rt,
            local: Mutex::new(local),
            _types: PhantomData,
        }
    }

    /// The workflow's ID.
    pub fn workflow_id(&self) -> &str {
        &self.id
    }

    /// The workflow's current status row.
    pub async fn get_status(&self) -> Result<WorkflowStatus> {
        match self.rt.db().get_workflow(&self.id).await? {
            Some(row) => Ok(WorkflowStatus {
                workflow_id: self.id.clone(),
                status: row.status,
                name: row.name,
            }),
            None => Err(Error::NonExistentWorkflow(self.id.clone())),
        }
    }

    /// Waits for the workflow to finish and returns its result (its recorded error, for a
    /// failed one). Called from a workflow body, the result is recorded as an operation.
    pub async fn get_result(&self) -> std::result::Result<T, E> {
        match context::position().map_err(E::from)? {
            Position::Workflow(rt, ctx) => {
                let n = ctx.next_id();
                if let Some(row) = ctx.recorded(n, GET_RESULT).map_err(E::from)? {
                    return replay_step(&row);
                }
                let started = now_ms();
                let (outcome, typed) = self.wait().await.map_err(E::from)?;
                let (output, error) = match &outcome {
                    Ok(o) => (Some(o.as_str()), None),
                    Err(e) => (
                        None,
                        Some(serialization::to_json(e, "an error").map_err(E::from)?),
                    ),
                };
                rt.db()
                    .record_step(&StepWrite {
                        workflow_id: &ctx.id,
                        function_id: n,
                        function_name: GET_RESULT,
                        output,
                        error: error.as_deref(),
                        child_workflow_id: Some(&self.id),
                        serialization: Some(PORTABLE_JSON),
                        started_at_ms: started,
                        completed_at_ms: now_ms(),
                    })
                    .await
                    .map_err(E::from)?;
                decode_finished(outcome, typed)
            }
            _ => {
                let (outcome, typed) = self.wait().await.map_err(E::from)?;
                decode_finished(outcome, typed)
            }
        }
    }

    async fn wait(
        &self,
    ) -> Result<(
        std::result::Result<String, PortableError>,
        Option<Box<dyn Any + Send>>,
    )> {
        let local = match self.local.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(rx) = local {
            if let Ok(f) = rx.await {
                return Ok((f.outcome, f.typed));
            }
            // The execution stopped without an outcome (shutdown, conflict): read the row.
        }
        let row = wait_for_outcome(&self.rt, &self.id).await?;
        Ok((row_outcome(&self.id, &row)?, None))
    }
}

const GET_RESULT: &str = "DBOS.getResult";

fn decode_finished<T: DeserializeOwned + 'static, E: WorkflowError>(
    outcome: std::result::Result<String, PortableError>,
    typed: Option<Box<dyn Any + Send>>,
) -> std::result::Result<T, E> {
    if let Some(t) = typed {
        if let Ok(r) = t.downcast::<std::result::Result<T, E>>() {
            return *r;
        }
    }
    match outcome {
        Ok(text) => serialization::from_json(&text, Some(PORTABLE_JSON), "a workflow's output")
            .map_err(E::from),
        Err(e) => Err(E::from_portable(e)),
    }
}

/// Replays a recorded operation: its output, or its error.
pub(crate) fn replay_step<T: DeserializeOwned, E: WorkflowError>(
    row: &StepRow,
) -> std::result::Result<T, E> {
    let tag = row.serialization.as_deref();
    if let Some(err) = &row.error {
        let p = serialization::error_from_json(err, tag).map_err(E::from)?;
        return Err(E::from_portable(p));
    }
    let text = row.output.as_deref().unwrap_or("null");
    serialization::from_json(text, tag, "a recorded output").map_err(E::from)
}

/// A terminal row's outcome; `Err` of the outer result for non-terminal or unreadable rows.
fn row_outcome(id: &str, row: &WorkflowRow) -> Result<std::result::Result<String, PortableError>> {
    let tag = row.serialization.as_deref();
    match row.status.as_str() {
        "SUCCESS" => {
            serialization::check_tag(tag)?;
            Ok(Ok(row.output.clone().unwrap_or_else(|| "null".to_owned())))
        }
        "ERROR" => Ok(Err(serialization::error_from_json(
            row.error.as_deref().unwrap_or("{}"),
            tag,
        )?)),
        "CANCELLED" => Err(Error::WorkflowCancelled(id.to_owned())),
        "MAX_RECOVERY_ATTEMPTS_EXCEEDED" => Err(Error::MaxRecoveryAttemptsExceeded(id.to_owned())),
        _ => unreachable_status(id, &row.status),
    }
}

fn unreachable_status(
    id: &str,
    status: &str,
) -> Result<std::result::Result<String, PortableError>> {
    Err(Error::BadInputs(format!(
        "workflow `{id}` has no outcome yet (status {status})"
    )))
}

fn is_terminal(status: &str) -> bool {
    matches!(
        status,
        "SUCCESS" | "ERROR" | "CANCELLED" | "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
    )
}

/// Waits until the workflow's row is terminal: woken at once by local completions, polling
/// every second for completions in other processes.
pub(crate) async fn wait_for_outcome(rt: &Runtime, id: &str) -> Result<WorkflowRow> {
    let notify = rt.notifier().subscribe(&done_key(id));
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(row) = rt.db().get_workflow(id).await? {
            if is_terminal(&row.status) {
                return Ok(row);
            }
        }
        rt.notifier().wait(notified, Duration::from_secs(1)).await?;
    }
}

fn validate_id(id: &str) -> Result<()> {
    if id.trim().is_empty() {
        return Err(Error::InvalidWorkflowId {
            id: id.to_owned(),
            why: "it is empty or whitespace",
        });
    }
    Ok(())
}

/// Starts a workflow call: records it (or finds it) and runs it in the background when this
/// call owns it. From a workflow body the call is a child, recorded in the parent.
pub(crate) async fn start<T, E>(call: WorkflowCall<T, E>) -> Result<WorkflowHandle<T, E>>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    E: WorkflowError,
{
    let (rt, id, local) = start_erased(call.erase(), None).await?;
    Ok(WorkflowHandle::new(id, rt, local))
}

/// The untyped start: returns the runtime, the workflow ID and, when this call runs the body
/// here, the receiver of its outcome.
pub(crate) async fn start_erased(
    call: ErasedCall,
    queue: Option<&str>,
) -> Result<(Runtime, String, Option<oneshot::Receiver<Finished>>)> {
    match context::position()? {
        Position::InStep(..) => Err(Error::InStep("starting a workflow")),
        Position::Outside(rt) => {
            let id = match call.id.clone() {
                Some(id) => id,
                None => uuid::Uuid::new_v4().to_string(),
            };
            validate_id(&id)?;
            let local = insert_and_run(&rt, call, &id, None, queue).await?;
            Ok((rt, id, local))
        }
        Position::Workflow(rt, parent) => {
            let n = parent.next_id();
            if let Some(row) = parent.recorded(n, call.name)? {
                if let Some(err) = &row.error {
                    let p = serialization::error_from_json(err, row.serialization.as_deref())?;
                    return Err(Error::Recorded(p));
                }
                if let Some(child) = row.child_workflow_id {
                    return Ok((rt, child, None));
                }
            }
            let id = call
                .id
                .clone()
                .unwrap_or_else(|| format!("{}-{}", parent.id, n));
            validate_id(&id)?;
            let started = now_ms();
            let name = call.name;
            let local = insert_and_run(&rt, call, &id, Some(&parent.id), queue).await?;
            let res = rt
                .db()
                .record_step(&StepWrite {
                    workflow_id: &parent.id,
                    function_id: n,
                    function_name: name,
                    output: None,
                    error: None,
                    child_workflow_id: Some(&id),
                    serialization: None,
                    started_at_ms: started,
                    completed_at_ms: now_ms(),
                })
                .await;
            match res {
                Ok(()) => Ok((rt, id, local)),
                Err(Error::ConcurrentExecution { .. }) => {
                    // Recorded already: the same child is fine, another is non-determinism.
                    let rows = rt.db().load_steps(&parent.id).await?;
                    match rows.into_iter().find(|r| r.function_id == n) {
                        Some(r) if r.child_workflow_id.as_deref() == Some(id.as_str()) => {
                            Ok((rt, id, local))
                        }
                        Some(r) => Err(Error::NonDeterministic {
                            workflow_id: parent.id.clone(),
                            function_id: n,
                            recorded: r.child_workflow_id.unwrap_or(r.function_name),
                            current: id,
                        }),
                        None => Err(Error::ConcurrentExecution {
                            workflow_id: parent.id.clone(),
                            function_id: n,
                        }),
                    }
                }
                Err(e) => Err(e),
            }
        }
    }
}

async fn insert_and_run(
    rt: &Runtime,
    call: ErasedCall,
    id: &str,
    parent: Option<&str>,
    queue: Option<&str>,
) -> Result<Option<oneshot::Receiver<Finished>>> {
    let inputs = call.inputs?;
    let owner = uuid::Uuid::new_v4().to_string();
    let row = rt
        .db()
        .insert_workflow(&NewWorkflow {
            id,
            name: call.name,
            inputs: &inputs,
            owner_xid: &owner,
            parent_id: parent,
            queue,
        })
        .await?;
    if row.owner_xid.as_deref() == Some(owner.as_str()) {
        if queue.is_some() {
            rt.wake_dispatcher();
            return Ok(None);
        }
        return Ok(Some(spawn_execution(
            rt,
            id.to_owned(),
            call.body,
            Vec::new(),
            false,
        )));
    }
    let existing = row.name.as_deref().unwrap_or("");
    if existing != call.name {
        return Err(Error::WorkflowConflict {
            id: id.to_owned(),
            existing: existing.to_owned(),
            requested: call.name.to_owned(),
        });
    }
    Ok(None)
}

/// Runs a workflow body in its own task under a fresh context; records the outcome.
pub(crate) fn spawn_execution(
    rt: &Runtime,
    id: String,
    body: BoxFuture<'static, Finished>,
    recorded: Vec<StepRow>,
    resumed: bool,
) -> oneshot::Receiver<Finished> {
    let (tx, rx) = oneshot::channel();
    let ctx = Arc::new(WfCtx::new(id.clone(), recorded, resumed));
    let current = Current {
        rt: rt.clone(),
        wf: Some(ctx.clone()),
        in_step: false,
    };
    let rt2 = rt.clone();
    let task_id = id.clone();
    let task = rt.spawn(async move {
        let rt = rt2;
        let run = context::scope(current, AssertUnwindSafe(body).catch_unwind()).await;
        let finished = match run {
            Ok(f) => f,
            Err(panic) => {
                let msg = panic_message(&panic);
                tracing::error!(workflow_id = %id, "workflow panicked: {msg}");
                Finished {
                    outcome: Err(Error::Panic(msg).to_portable()),
                    typed: None,
                }
            }
        };
        // Conditions where another execution owns the outcome: record nothing.
        let handed_off = ctx.handed_off()
            || matches!(&finished.outcome,
                Err(p) if p.name == "ConcurrentExecution" || p.name == "WorkflowCancelled");
        if !handed_off {
            let outcome = match &finished.outcome {
                Ok(o) => Ok(Outcome::Success(o.clone())),
                Err(p) => serialization::to_json(p, "an error").map(Outcome::Error),
            };
            let recorded = match outcome {
                Ok(outcome) => record_outcome(&rt, &id, &outcome).await,
                Err(e) => {
                    tracing::error!(workflow_id = %id, "cannot record outcome: {e}");
                    false
                }
            };
            // A local waiter gets the in-memory result only when it is what the row says;
            // otherwise (cancelled, handed on, not recorded) it reads the row (SYSDB rule 6).
            if recorded {
                let _ = tx.send(finished);
            }
        }
        rt.notifier().notify(&done_key(&id));
        rt.task_done(&id);
    });
    rt.track_task(task_id, task.abort_handle());
    rx
}

/// Writes the terminal status; `true` when this execution's outcome is what the row now holds.
async fn record_outcome(rt: &Runtime, id: &str, outcome: &Outcome) -> bool {
    let mut delay = Duration::from_millis(10);
    for attempt in 0..8 {
        match rt.db().complete_workflow(id, outcome).await {
            Ok(true) => return true,
            Ok(false) => {
                tracing::warn!(workflow_id = %id, "workflow was no longer PENDING when it finished; outcome not recorded");
                return false;
            }
            Err(Error::ShuttingDown) => {
                tracing::info!(workflow_id = %id, "shutting down: the workflow stays PENDING and resumes at the next launch");
                return false;
            }
            Err(e) => {
                tracing::warn!(workflow_id = %id, attempt, "recording the outcome failed: {e}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    tracing::error!(workflow_id = %id, "outcome not recorded; the workflow will be recovered at the next launch");
    false
}

pub(crate) fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
