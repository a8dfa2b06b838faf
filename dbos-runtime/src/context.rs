//! The task-local context: which runtime, which workflow, which operation comes next.

use crate::dbos::Runtime;
use crate::error::{Error, Result};
use crate::sysdb::StepRow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

tokio::task_local! {
    static CURRENT: Current;
}

/// What the running task is: a workflow body, a step body, or plain code under a runtime.
#[derive(Clone)]
pub(crate) struct Current {
    pub rt: Runtime,
    pub wf: Option<Arc<WfCtx>>,
    pub in_step: bool,
}

/// One execution of one workflow.
pub(crate) struct WfCtx {
    pub id: String,
    next: AtomicI32,
    /// Operations recorded by earlier executions (loaded once when a workflow is resumed).
    recorded: Mutex<HashMap<i32, StepRow>>,
    /// Whether this execution resumes an earlier one (so records may exist).
    pub resumed: bool,
    /// Another execution recorded one of our operations first: it owns the outcome.
    handed_off: std::sync::atomic::AtomicBool,
}

impl WfCtx {
    pub(crate) fn new(id: String, recorded: Vec<StepRow>, resumed: bool) -> WfCtx {
        WfCtx {
            id,
            next: AtomicI32::new(0),
            recorded: Mutex::new(recorded.into_iter().map(|r| (r.function_id, r)).collect()),
            resumed,
            handed_off: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The next operation's position (SYSDB rule 7: numbered from 1).
    pub(crate) fn next_id(&self) -> i32 {
        self.next.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The current position (the last one handed out).
    pub(crate) fn current_id(&self) -> i32 {
        self.next.load(Ordering::SeqCst)
    }

    /// The record at `n`, if an earlier execution wrote one; a record under another name is a
    /// determinism failure (SYSDB rule 9).
    pub(crate) fn recorded(&self, n: i32, name: &str) -> Result<Option<StepRow>> {
        if !self.resumed {
            return Ok(None);
        }
        let guard = match self.recorded.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match guard.get(&n) {
            None => Ok(None),
            Some(row) if row.function_name == name => Ok(Some(row.clone())),
            Some(row) => Err(Error::NonDeterministic {
                workflow_id: self.id.clone(),
                function_id: n,
                recorded: row.function_name.clone(),
                current: name.to_owned(),
            }),
        }
    }
}

impl WfCtx {
    /// Whether another execution took this workflow over (see [`concurrent_execution`]).
    pub(crate) fn handed_off(&self) -> bool {
        self.handed_off.load(Ordering::SeqCst)
    }
}

/// The error for "another execution recorded this operation first"; it also marks the calling
/// workflow execution as handed off, so that it records no outcome of its own, whatever error
/// type the user's code turns this into.
pub(crate) fn concurrent_execution(workflow_id: &str, function_id: i32) -> Error {
    let _ = CURRENT.try_with(|c| {
        if let Some(wf) = &c.wf {
            if wf.id == workflow_id {
                wf.handed_off.store(true, Ordering::SeqCst);
            }
        }
    });
    Error::ConcurrentExecution {
        workflow_id: workflow_id.to_owned(),
        function_id,
    }
}

/// Where the caller stands.
pub(crate) enum Position {
    /// Not in a workflow.
    Outside(Runtime),
    /// Inside a step (or transaction) body: nested operations are plain calls.
    InStep(Runtime, Arc<WfCtx>),
    /// In a workflow body: operations are checkpointed.
    Workflow(Runtime, Arc<WfCtx>),
}

pub(crate) fn position() -> Result<Position> {
    match CURRENT.try_with(|c| c.clone()) {
        Ok(Current {
            rt,
            wf: Some(wf),
            in_step: false,
        }) => Ok(Position::Workflow(rt, wf)),
        Ok(Current {
            rt,
            wf: Some(wf),
            in_step: true,
        }) => Ok(Position::InStep(rt, wf)),
        Ok(Current { rt, wf: None, .. }) => Ok(Position::Outside(rt)),
        Err(_) => Ok(Position::Outside(crate::dbos::global()?)),
    }
}

/// The runtime of the calling task (a scoped one, else the global one).
pub(crate) fn runtime() -> Result<Runtime> {
    match CURRENT.try_with(|c| c.rt.clone()) {
        Ok(rt) => Ok(rt),
        Err(_) => crate::dbos::global(),
    }
}

/// Runs `fut` with `current` as the task's context.
pub(crate) async fn scope<F: std::future::Future>(current: Current, fut: F) -> F::Output {
    CURRENT.scope(current, fut).await
}

/// Runs `fut` as a step body of `wf`.
pub(crate) async fn in_step<F: std::future::Future>(
    rt: &Runtime,
    wf: &Arc<WfCtx>,
    fut: F,
) -> F::Output {
    scope(
        Current {
            rt: rt.clone(),
            wf: Some(wf.clone()),
            in_step: true,
        },
        fut,
    )
    .await
}
