//! A started workflow: its handle, its status, and waiting for its outcome.

use super::Local;
use crate::context;
use crate::context::Wakeup;
use crate::error::{Error, PortableError, Result, WorkflowError};
use crate::notify::{done_key, WaitsOn};
use crate::operation::{self, Begun, Site};
use crate::runtime::Runtime;
use crate::serialization::{self, Format, PORTABLE_JSON};
use crate::sysdb::{StepRow, WorkflowRow};
use crate::unload;
use serde::{de::DeserializeOwned, Serialize};
use std::any::Any;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::time::Duration;

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
    local: Mutex<Option<Local>>,
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
    pub(crate) fn new(id: String, rt: Runtime, local: Option<Local>) -> Self {
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
        // Under the handle's runtime: recorded when called from a workflow body of it. Boxed,
        // so a caller's future stays small however many results it awaits.
        Box::pin(context::enter(&self.rt, async {
            let op = match operation::begin(GET_RESULT).map_err(E::from)? {
                Site::Workflow(Begun::Recorded(row)) => return replay_step(&row),
                Site::Workflow(Begun::Run(op)) => Some(op),
                Site::InStep(..) | Site::Outside(_) => None,
            };
            if let Some(op) = &op {
                if op.workflow_id() == self.id {
                    // It would wait for itself forever.
                    return Err(E::from(Error::BadInputs(format!(
                        "workflow {} awaits its own result",
                        self.id
                    ))));
                }
            }
            let (outcome, typed, format) = match &op {
                Some(op) => {
                    // A long wait unloads the parent (see `unload.rs`); the child's end loads
                    // it again.
                    let rt = op.rt();
                    let unload_at = std::sync::Mutex::new(unload::unload_at(rt, op.ctx(), None));
                    let wakeup = || Wakeup {
                        on: WaitsOn::Done(self.id.clone()),
                        at: operation::after(tokio::time::Instant::now(), Duration::MAX),
                    };
                    let long = Box::pin(unload::after_waiting(rt, op.ctx(), &unload_at, wakeup, 1));
                    let waited = op.wait(async {
                        tokio::select! {
                            waited = self.wait() => waited,
                            never = long => match never {},
                        }
                    });
                    waited.await.map_err(E::from)?
                }
                None => self.wait().await,
            }
            .map_err(E::from)?;
            if let Some(op) = op {
                // The child's output as it is stored, in its format; errors are JSON.
                let (output, error, tag) = match &outcome {
                    Ok(o) => (Some(o.as_str()), None, format.tag()),
                    Err(e) => (
                        None,
                        Some(serialization::to_json(e, "an error").map_err(E::from)?),
                        PORTABLE_JSON,
                    ),
                };
                op.record(output, error.as_deref(), Some(&self.id), Some(tag))
                    .await
                    .map_err(E::from)?;
            }
            decode_finished(outcome, typed, format)
        }))
        .await
    }

    async fn wait(&self) -> Result<Awaited> {
        let local = match self.local.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(Local { mut rx, ctx }) = local {
            // The execution here hands its outcome over. A cancel settles the wait at once
            // (the execution may still be finishing a step body): then the row answers.
            let cancelled = async {
                ctx.cancelled().await;
                self.rt.db().get_workflow(&self.id).await
            };
            tokio::select! {
                biased;
                f = &mut rx => {
                    if let Ok(f) = f {
                        return Ok((f.outcome, f.typed, f.format));
                    }
                    // It stopped without an outcome (shutdown, conflict): read the row.
                }
                row = cancelled => {
                    if let Some(row) = row? {
                        if row.status == "CANCELLED" {
                            return row_awaited(&self.id, &row);
                        }
                    }
                    // Resumed since: wait for the new execution's outcome.
                }
            }
        }
        let row = wait_for_outcome(&self.rt, &self.id).await?;
        row_awaited(&self.id, &row)
    }
}

/// A finished workflow's stored outcome, the typed result when it ran here, and the format of
/// the stored output.
type Awaited = (
    std::result::Result<String, PortableError>,
    Option<Box<dyn Any + Send>>,
    Format,
);

fn row_awaited(id: &str, row: &WorkflowRow) -> Result<Awaited> {
    // An unreadable tag is reported for a SUCCESS row by `row_outcome`.
    let format = Format::of_tag(row.serialization.as_deref()).unwrap_or_default();
    Ok((row_outcome(id, row)?, None, format))
}

const GET_RESULT: &str = "DBOS.getResult";

fn decode_finished<T: DeserializeOwned + 'static, E: WorkflowError>(
    outcome: std::result::Result<String, PortableError>,
    typed: Option<Box<dyn Any + Send>>,
    format: Format,
) -> std::result::Result<T, E> {
    if let Some(t) = typed {
        if let Ok(r) = t.downcast::<std::result::Result<T, E>>() {
            return *r;
        }
    }
    match outcome {
        Ok(text) => {
            serialization::decode(&text, Some(format.tag()), "a workflow's output").map_err(E::from)
        }
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
    serialization::decode(text, tag, "a recorded output").map_err(E::from)
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
        // Cancelled at or after its deadline: the timeout cancelled it.
        "CANCELLED" if row.deadline_ms.is_some_and(|d| d <= crate::sysdb::now_ms()) => {
            Err(Error::WorkflowTimedOut(id.to_owned()))
        }
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
        // A workflow running or parked here announces its end at once: check the row only
        // as a safety net (a workflow unloaded while it waits may wait for days).
        let nap = if rt.runs(id) || rt.notifier().is_parked(id) {
            crate::notify::SAFETY_NET
        } else {
            Duration::from_secs(1)
        };
        rt.notifier().wait(notified, nap).await?;
    }
}
