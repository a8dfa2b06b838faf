//! Running a workflow: start it (record its row, or find it), run its body in a task under a
//! workflow context, record its outcome. The call is in `call.rs`, the handle in `handle.rs`.

pub(crate) mod call;
mod handle;

pub(crate) use call::Finished;
pub use call::{BoxFuture, ErasedCall, WorkflowCall};
pub(crate) use handle::replay_step;
pub use handle::{WorkflowHandle, WorkflowStatus};

use crate::context::{self, Current, WfCtx};
use crate::error::{Error, Result, WorkflowError};
use crate::notify::done_key;
use crate::operation::{self, Begun, Site};
use crate::queue::INTERNAL_QUEUE;
use crate::runtime::{Mode, Runtime};
use crate::serialization;
use crate::sysdb::{NewWorkflow, Outcome, StepRow};
use futures_util::FutureExt;
use serde::{de::DeserializeOwned, Serialize};
use std::any::Any;
use std::future::IntoFuture;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

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

pub(crate) fn validate_id(id: &str) -> Result<()> {
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

/// Enqueues a workflow call on `queue` (declared and checked by the caller).
pub(crate) async fn start_on<T, E>(
    call: WorkflowCall<T, E>,
    queue: &str,
) -> Result<WorkflowHandle<T, E>>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    E: WorkflowError,
{
    let (rt, id, local) = start_erased(call.erase(), Some(queue)).await?;
    Ok(WorkflowHandle::new(id, rt, local))
}

/// The untyped start: returns the runtime, the workflow ID and, when this call runs the body
/// here, the receiver of its outcome.
pub(crate) async fn start_erased(
    call: ErasedCall,
    queue: Option<&str>,
) -> Result<(Runtime, String, Option<Local>)> {
    if queue.is_none() && !call.enqueue.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "a priority, deduplication ID, partition or delay applies only to an enqueue \
             (`QUEUE.enqueue(call)`); workflow `{}` was started directly",
            call.name
        )));
    }
    match operation::begin(call.name)? {
        Site::InStep(..) => Err(Error::InStep("starting a workflow")),
        Site::Outside(rt) => {
            let id = match call.id.clone() {
                Some(id) => id,
                None => uuid::Uuid::new_v4().to_string(),
            };
            validate_id(&id)?;
            // A client runs nothing: what it starts waits on the queue for a launched runtime.
            let queue = queue.or((rt.mode() == Mode::Connected).then_some(INTERNAL_QUEUE));
            let local = insert_and_run(&rt, call, &id, None, queue, None).await?;
            Ok((rt, id, local))
        }
        Site::Workflow(Begun::Recorded(row)) => {
            if let Some(err) = &row.error {
                let p = serialization::error_from_json(err, row.serialization.as_deref())?;
                return Err(Error::Recorded(p));
            }
            let rt = context::runtime()?;
            match row.child_workflow_id {
                Some(child) => Ok((rt, child, None)),
                None => Err(Error::BadInputs(format!(
                    "operation {} of workflow `{}` was recorded as `{}` without a child workflow",
                    row.function_id, call.name, row.function_name
                ))),
            }
        }
        Site::Workflow(Begun::Run(op)) => {
            let parent = op.workflow_id();
            let id = call
                .id
                .clone()
                .unwrap_or_else(|| format!("{parent}-{}", op.position()));
            validate_id(&id)?;
            let rt = op.rt().clone();
            // A child without a timeout of its own inherits its parent's deadline.
            let inherited = op.ctx().deadline_ms;
            let local = match insert_and_run(&rt, call, &id, Some(parent), queue, inherited).await {
                Ok(local) => local,
                // Refused for a reason that may not hold on a replay (the deduplication ID
                // freed, say): record the refusal, so the replay takes the same path.
                Err(e @ (Error::QueueDeduplicated { .. } | Error::WorkflowConflict { .. })) => {
                    let text = serialization::to_json(&e.to_portable(), "an error")?;
                    op.record(None, Some(&text), None, Some(serialization::PORTABLE_JSON))
                        .await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            match op.record(None, None, Some(&id), None).await {
                Ok(()) => Ok((rt, id, local)),
                Err(Error::ConcurrentExecution { .. }) => {
                    // Recorded already: the same child is fine, another is non-determinism.
                    let rows = rt.db().load_steps(parent).await?;
                    let n = op.position();
                    match rows.into_iter().find(|r| r.function_id == n) {
                        Some(r) if r.child_workflow_id.as_deref() == Some(id.as_str()) => {
                            Ok((rt, id, local))
                        }
                        Some(r) => Err(Error::NonDeterministic {
                            workflow_id: parent.to_owned(),
                            function_id: n,
                            recorded: r.child_workflow_id.unwrap_or(r.function_name),
                            current: id,
                        }),
                        None => Err(Error::ConcurrentExecution {
                            workflow_id: parent.to_owned(),
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
    inherited_deadline: Option<i64>,
) -> Result<Option<Local>> {
    let f = Fields::of(&call)?;
    let inputs = call.inputs?;
    let owner = uuid::Uuid::new_v4().to_string();
    let attributes = crate::otel::current_attributes();
    let row = rt
        .db()
        .insert_workflow(&NewWorkflow {
            id,
            name: call.name,
            inputs: &inputs,
            owner_xid: &owner,
            parent_id: parent,
            queue,
            timeout_ms: f.timeout_ms,
            deadline_ms: if f.timeout_ms.is_some() {
                None
            } else {
                inherited_deadline
            },
            priority: f.priority,
            dedup_id: call.enqueue.dedup_id.as_deref(),
            partition: call.enqueue.partition.as_deref(),
            delay_ms: f.delay_ms,
            serialization: call.format.get().tag(),
            attributes: attributes.as_deref(),
            debounce: None,
        })
        .await?;
    if row.owner_xid.as_deref() == Some(owner.as_str()) {
        if queue.is_some() {
            rt.wake_dispatcher();
            return Ok(None);
        }
        return Ok(Some(spawn_execution(
            rt,
            call.name,
            id.to_owned(),
            call.body,
            Resumed {
                recorded: Vec::new(),
                resumed: false,
                deadline_ms: row.deadline_ms,
                trace: None,
            },
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

/// A workflow timeout in milliseconds, checked: positive and representable.
pub(crate) fn timeout_ms(timeout: Option<Duration>) -> Result<Option<i64>> {
    match timeout {
        Some(t) if t.is_zero() => Err(Error::InvalidArgument(
            "a workflow timeout must be positive".into(),
        )),
        Some(t) => Ok(Some(i64::try_from(t.as_millis()).map_err(|_| {
            Error::InvalidArgument(format!("workflow timeout {t:?} is too long"))
        })?)),
        None => Ok(None),
    }
}

/// A call's timeout, priority and delay, checked and in the columns' units.
pub(crate) struct Fields {
    pub timeout_ms: Option<i64>,
    pub priority: i32,
    pub delay_ms: Option<i64>,
}

impl Fields {
    pub(crate) fn of(call: &ErasedCall) -> Result<Fields> {
        let timeout_ms = timeout_ms(call.timeout)?;
        let priority = match call.enqueue.priority {
            Some(p) => i32::try_from(p).map_err(|_| {
                Error::InvalidArgument(format!("priority {p} is above the maximum, {}", i32::MAX))
            })?,
            None => 0,
        };
        let delay_ms = match call.enqueue.delay {
            Some(d) => Some(
                i64::try_from(d.as_millis())
                    .map_err(|_| Error::InvalidArgument(format!("delay {d:?} is too long")))?,
            ),
            None => None,
        };
        Ok(Fields {
            timeout_ms,
            priority,
            delay_ms,
        })
    }
}

/// Where an execution starts from: a fresh start has nothing recorded; a resumed one (claimed
/// off a queue, recovered) has its records, its deadline and the trace it was started under.
pub(crate) struct Resumed<'a> {
    pub recorded: Vec<StepRow>,
    pub resumed: bool,
    pub deadline_ms: Option<i64>,
    /// `workflow_status.attributes`, with the stored trace context (see `otel`).
    pub trace: Option<&'a str>,
}

/// Runs a workflow body in its own task under a fresh context; records the outcome.
///
/// With a deadline, a timer in the same task cancels the workflow (and its descendants) when
/// it passes; the body stops at its next operation. An execution that saw its workflow
/// cancelled, or handed off, records no outcome: the row says what happened.
pub(crate) fn spawn_execution(
    rt: &Runtime,
    name: &str,
    id: String,
    body: BoxFuture<'static, Finished>,
    from: Resumed<'_>,
) -> Local {
    let Resumed {
        recorded,
        resumed,
        deadline_ms,
        trace,
    } = from;
    let (tx, rx) = oneshot::channel();
    let ctx = Arc::new(WfCtx::new(id.clone(), recorded, resumed, deadline_ms));
    // This task can drop the body: a long wait may unload the workflow (see `unload.rs`).
    ctx.unload.allow();
    let serial = rt.execution_starts(&id, ctx.cancelled.clone());
    rt.metrics().workflow_started(name);
    let name = name.to_owned();
    let current = Current::workflow(rt.clone(), ctx.clone());
    let current_ctx = ctx.clone();
    let rt2 = rt.clone();
    // The execution's span: its steps' and transactions' spans are its children.
    let span = tracing::info_span!(
        "dbos.workflow",
        operationUUID = %id,
        operationType = "workflow",
        operationName = %name,
        resumed
    );
    // Claimed off a queue or recovered: continue the trace it was started under.
    crate::otel::continue_trace(&span, trace);
    let task = rt.spawn(tracing::Instrument::instrument(async move {
        let rt = rt2;
        // An earlier execution that was still here may have recorded operations after this
        // one read its records: read them again before the body replays them.
        // The database calls here and at the end are boxed: the task of every workflow in
        // memory would otherwise keep room for them while its body runs (or waits).
        if resumed && Box::pin(rt.earlier_executions_stopped(&id, serial)).await {
            match Box::pin(rt.db().load_steps(&id)).await {
                Ok(rows) => current_ctx.set_recorded(rows),
                Err(e) => tracing::warn!(workflow_id = %id, "re-reading recorded steps failed: {e}"),
            }
        }
        let run = context::scope(current, AssertUnwindSafe(body).catch_unwind());
        let ctx = current_ctx;
        // Boxed: the cancel it may run is a large future, needed only at a deadline.
        let expiry = Box::pin(expire_at(&rt, &id, deadline_ms));
        let ended = tokio::select! {
            run = run => Ended::Ran(run),
            never = expiry => match never {},
            wakeup = ctx.unload_requested() => Ended::Unloaded(wakeup),
        };
        let run = match ended {
            Ended::Ran(run) => run,
            Ended::Unloaded(wakeup) => {
                // The body is dropped (it waited, with nothing else under way): the row stays
                // PENDING and the workflow is loaded again when its wait ends.
                let cancelled = ctx.is_cancelled();
                rt.metrics()
                    .workflow_finished(&name, if cancelled { "CANCELLED" } else { "UNLOADED" });
                rt.execution_done(serial);
                if cancelled {
                    // Cancelled as it left: nothing to load again.
                    rt.notifier().notify(&done_key(&id));
                } else {
                    Box::pin(crate::unload::park(&rt, &id, wakeup, deadline_ms)).await;
                }
                return;
            }
        };
        let finished = match run {
            Ok(f) => f,
            Err(panic) => {
                let msg = panic_message(&panic);
                tracing::error!(workflow_id = %id, "workflow panicked: {msg}");
                Finished {
                    outcome: Err(Error::Panic(msg).to_portable()),
                    typed: None,
                    format: serialization::Format::Json,
                }
            }
        };
        let mut ended = "STOPPED";
        if ctx.is_cancelled() {
            tracing::info!(workflow_id = %id, "workflow cancelled; it stopped without an outcome");
            ended = "CANCELLED";
        } else if !ctx.handed_off() {
            // (Handed off: another execution recorded one of our operations first and owns
            // the outcome.)
            let outcome = match &finished.outcome {
                Ok(o) => Ok(Outcome::Success(o.clone())),
                Err(p) => serialization::to_json(p, "an error").map(Outcome::Error),
            };
            let recorded = match outcome {
                Ok(outcome) => Box::pin(record_outcome(&rt, &id, &outcome)).await,
                Err(e) => {
                    tracing::error!(workflow_id = %id, "cannot record outcome: {e}");
                    false
                }
            };
            // A local waiter gets the in-memory result only when it is what the row says;
            // otherwise (cancelled, handed on, not recorded) it reads the row (SYSDB rule 6).
            if recorded {
                ended = if finished.outcome.is_ok() {
                    "SUCCESS"
                } else {
                    "ERROR"
                };
                let _ = tx.send(finished);
            }
        }
        rt.metrics().workflow_finished(&name, ended);
        rt.notifier().notify(&done_key(&id));
        rt.execution_done(serial);
    }, span));
    rt.execution_spawned(serial, task.abort_handle());
    Local { rx, ctx }
}

/// How an execution's body ended.
enum Ended {
    /// It ran to its end (or panicked).
    Ran(std::thread::Result<Finished>),
    /// A long wait asked for the workflow to be unloaded until `Wakeup`.
    Unloaded(crate::context::Wakeup),
}

/// An execution running in this process, as its starter holds it.
pub(crate) struct Local {
    /// Its outcome, sent only when it is what the row now says.
    pub rx: oneshot::Receiver<Finished>,
    /// Its context: whether the workflow was cancelled while it ran.
    pub ctx: Arc<WfCtx>,
}

/// Cancels workflow `id` and its descendants once `deadline_ms` passes, then never resolves
/// (the body runs on to its next operation and stops there).
async fn expire_at(rt: &Runtime, id: &str, deadline_ms: Option<i64>) -> std::convert::Infallible {
    if let Some(deadline) = deadline_ms {
        tokio::time::sleep_until(operation::instant_at(deadline)).await;
        tracing::info!(workflow_id = %id, "workflow timed out; cancelling it and its children");
        if let Err(e) = Box::pin(rt.cancel_workflows(id, true)).await {
            // The row stays as it is; the body is stopped here all the same.
            tracing::warn!(workflow_id = %id, "cancelling a timed-out workflow failed: {e}");
            rt.cancel_local(id);
        }
    }
    std::future::pending().await
}

/// Writes the terminal status; `true` when this execution's outcome is what the row now holds.
async fn record_outcome(rt: &Runtime, id: &str, outcome: &Outcome) -> bool {
    let mut delay = Duration::from_millis(10);
    for attempt in 0..8 {
        match rt.db().complete_workflow(id, outcome).await {
            Ok(Some(queue)) => {
                // A slot of its queue is free: the dispatcher may start the next one.
                if queue.is_some_and(|q| q != INTERNAL_QUEUE) {
                    rt.wake_dispatcher();
                }
                return true;
            }
            Ok(None) => {
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
    tracing::error!(workflow_id = %id, "outcome not recorded; the workflow stays PENDING and is recovered by this executor's next launch or, on Postgres, taken over once this process is gone");
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
